"""The reblurring-module probe: its baseline is the identity's price, and it trains what it measures."""

import pytest
import torch
import torch.nn.functional as F

from deblur_edu.learned import Reblurrer, UNet
from deblur_edu.experiments.ch5_reblur_probe import measure, probe, train_reblurrer
from deblur_edu.train import validation_batch

TINY = {"length": 64, "patch": 16, "kernel_size": 5, "sigma_range": [0.0, 0.02], "dead_leaves_fraction": 1.0,
        "quantise": True, "seed": 0}


def identity_reblurrer() -> Reblurrer:
    M_R = Reblurrer(1, 4, 1)
    torch.nn.init.zeros_(M_R.body[-1].weight)
    torch.nn.init.zeros_(M_R.body[-1].bias)
    return M_R


def test_a_module_that_does_nothing_pays_exactly_the_identity_price():
    torch.manual_seed(0)
    M_D = UNet(1, 4, 1).eval()
    out = measure(M_D, identity_reblurrer(), TINY, size=8)
    blurred = validation_batch(TINY, 8, torch.device("cpu"))["blurred"]
    with torch.no_grad():
        expected = float(F.l1_loss(M_D(blurred), blurred))
    assert out["L_blur_identity"] == out["L_blur"] and abs(out["L_blur_identity"] - expected) < 1e-7
    assert out["ratio"] == 1.0
    assert out["gap_sharp"] == out["gap_blurred"] == out["gap_deblurred"] == out["gap_deblurred_sharp"] == 0.0


def test_training_moves_only_the_reblurring_module():
    torch.manual_seed(0)
    M_D, M_R = UNet(1, 4, 1).eval().requires_grad_(False), Reblurrer(1, 4, 1)
    before_D = [p.clone() for p in M_D.parameters()]
    before_R = [p.clone() for p in M_R.parameters()]
    train_reblurrer(M_D, M_R, TINY, steps=2, batch_size=2)
    assert all(torch.equal(a, b) for a, b in zip(before_D, M_D.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(before_R, M_R.parameters()))


def test_probe_reports_every_shape_and_variant(monkeypatch):
    import deblur_edu.experiments.ch5_reblur_probe as rp

    monkeypatch.setattr(rp, "SHAPES", {"resnet": lambda: Reblurrer(1, 4, 1), "unet": lambda: UNet(1, 4, 1)})
    rows = probe(UNet(1, 4, 1), TINY, steps=1, shapes=["resnet", "unet"])
    # None stands for the recipe's own noise ceiling (0.02 in TINY)
    variants = [(0.02, 1.0), (0.0, 1.0), (0.02, 0.25)]
    assert [(r["shape"], r["sigma_max"], r["sharp_weight"]) for r in rows] == \
        [(shape, *v) for shape in ("resnet", "unet") for v in variants]
    assert all(r["ratio"] > 0 and torch.isfinite(torch.tensor(r["L_blur"])) for r in rows)


def test_the_sharp_term_weight_is_passed_to_the_module_loss():
    torch.manual_seed(0)
    M_D = UNet(1, 4, 1).eval().requires_grad_(False)
    weights = []
    for w in (1.0, 0.25):
        M_R = Reblurrer(1, 4, 1)
        torch.nn.init.zeros_(M_R.body[-1].bias)
        torch.manual_seed(1)
        train_reblurrer(M_D, M_R, TINY, steps=1, batch_size=2, sharp_weight=w)
        weights.append(torch.cat([p.flatten() for p in M_R.parameters()]))
    assert not torch.equal(*weights)


def test_shipped_modules_are_measured_with_and_without_noise():
    from deblur_edu.experiments.ch5_reblur_probe import measure_shipped

    torch.manual_seed(0)
    rows = measure_shipped(UNet(1, 4, 1).eval(), ["reblur-judge"], TINY)
    assert [(r["shape"], r["sigma_max"]) for r in rows] == [("reblur-judge", 0.02), ("reblur-judge", 0.0)]
    assert all(0 < r["ratio"] < 10 and r["gap_deblurred_sharp"] >= 0 for r in rows)


def test_recording_a_module_that_was_not_measured_is_a_clear_error():
    from deblur_edu.experiments.ch5_reblur_probe import record_module

    with pytest.raises(SystemExit, match="keep it in --shipped"):
        record_module([], "reblur-module-cpu", "reblur-l1-cpu")
