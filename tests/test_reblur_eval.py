"""Chapter 5's evaluation command and the optional LPIPS path (with local stand-in weights)."""

import json

import pytest
import torch
from scipy.stats import spearmanr

from deblur_edu.bench import methods, protocol
from deblur_edu.experiments import ch5_reblur_eval as reblur_eval
from deblur_edu.zoo import shipped as zoo_shipped
from deblur_edu.zoo.checkpoints import save_model
from deblur_edu.learned import ReblurDeblurrer
from deblur_edu.metrics.lpips import BACKBONE_FILE, LINEAR_FILE, TORCHVISION_INDEX, AlexNetFeatures, LPIPS, load_lpips
from deblur_edu.physics import blur
from deblur_edu.kernels import gaussian
from deblur_edu.metrics import paired_bootstrap, psnr as psnr_

TINY = {"channels": 1, "width": 4, "levels": 1, "blocks": 1, "reblur_features": 4, "reblur_blocks": 1}
TWO_STAGE = {"width": 4, "levels": 1, "blocks": 1, "two_stage": True, "reblurrer_shape": "unet", "reblur_features": 4,
             "reblur_blocks": 1, "reblur_levels": 1}


@pytest.fixture
def tiny_weights(tmp_path, monkeypatch):
    """Untrained stand-ins for the shipped chapter-5 checkpoints the evaluation uses, in a private weights folder."""
    from deblur_edu.learned.blind_refiner import BlindRefiner

    torch.manual_seed(0)
    save_model(tmp_path / "blind-refiner-cpu", BlindRefiner(4, 1),
               {"model_name": "blind-refiner", "config": {"model": {"width": 4, "levels": 1}}})
    for name, extra in [("reblur-l1-ft-cpu", {"reblur_weight": 0.0}), ("reblur-cpu", {"reblur_weight": 1.0}),
                        ("reblur-module-cpu", {"reblurrer": True}), ("reblur-judge", {"reblurrer": True})]:
        torch.manual_seed(len(name))
        cfg = {**TWO_STAGE, **extra}
        save_model(tmp_path / name, ReblurDeblurrer(**cfg), {"model_name": "reblur", "config": {"model": cfg}})
    monkeypatch.setattr(zoo_shipped, "WEIGHTS_DIR", tmp_path)
    monkeypatch.setattr(methods, "_MODELS", {})
    return tmp_path


@pytest.fixture
def small_blind_split(monkeypatch):
    """The blind split cut to 2 images × its 2 smallest shakes on 64² crops (the evaluation's loop, in seconds)."""
    real = protocol.load_benchmark

    def small(split, crop=None, data_dir=None, fallback=True):
        b = real(split, crop=64, data_dir=data_dir, fallback=fallback)
        images = dict(list(b.images.items())[:2])
        return protocol.Benchmark(b.split, images, b.kernels[:2], b.crop, b.note, b.data)

    monkeypatch.setattr(reblur_eval, "load_benchmark", small)


def standin_lpips_folder(folder, seed=0):
    """Random weights in the layout of torchvision's AlexNet file and the LPIPS linear file."""
    g = torch.Generator().manual_seed(seed)
    net = AlexNetFeatures()
    state = {}
    for n, i in enumerate(TORCHVISION_INDEX):
        conv = net.convs[n]
        state[f"features.{i}.weight"] = torch.randn(conv.weight.shape, generator=g) * 0.05
        state[f"features.{i}.bias"] = torch.zeros(conv.out_channels)
    state["classifier.1.weight"] = torch.zeros(2, 2)  # present in the real file, ignored
    torch.save(state, folder / BACKBONE_FILE)
    torch.save({f"lin{n}.model.1.weight": torch.rand(1, c.out_channels, 1, 1, generator=g)
                for n, c in enumerate(net.convs)}, folder / LINEAR_FILE)
    return folder


def standin_lpips(folder):
    from deblur_edu.data import sha256

    return load_lpips(folder, sha256={BACKBONE_FILE: sha256(folder / BACKBONE_FILE)})


def test_spearman_matches_scipy():
    a, b = [3.0, 1.0, 4.0, 1.5, 9.0, 2.6], [2.0, 7.0, 1.0, 8.0, 2.5, 8.5]
    assert reblur_eval.spearman(a, b) == pytest.approx(spearmanr(a, b).statistic)
    assert reblur_eval.spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)


def test_the_judge_measures_on_known_judges():
    from deblur_edu.data import centre_crop, sample_image

    x = centre_crop(sample_image("camera"), 64)
    k = gaussian(9, 1.5)
    y = blur(x, k, "replicate")
    identity = lambda img: img
    assert torch.equal(reblur_eval.reblur_gap(identity, x), torch.zeros(1))
    assert torch.allclose(reblur_eval.reblurring_psnr(identity, x, y, crop=4), psnr_(x, y, crop=4))
    # a judge that knows the blur rebuilds y exactly from the sharp image, and finds blur to add
    true_blur = lambda img: blur(img, k, "replicate")
    assert reblur_eval.reblurring_psnr(true_blur, x, y, crop=4) > 100
    assert reblur_eval.reblur_gap(true_blur, x, crop=4) > reblur_eval.reblur_gap(true_blur, y, crop=4) > 0


def test_lpips_standin_is_a_distance(tmp_path):
    metric = standin_lpips(standin_lpips_folder(tmp_path))
    from deblur_edu.data import centre_crop, sample_image

    x = torch.cat([centre_crop(sample_image("camera"), 64), centre_crop(sample_image("coffee"), 64)])
    y = blur(x, gaussian(9, 2.0), "replicate")
    d = metric(x, y)
    assert d.shape == (2,) and (d > 0).all()
    assert torch.allclose(metric(x, x), torch.zeros(2))
    assert torch.allclose(metric(y, x), d)
    rgb = x.expand(-1, 3, -1, -1)
    assert torch.allclose(metric(rgb, blur(rgb, gaussian(9, 2.0), "replicate")), d, atol=1e-6)


def test_lpips_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="optional"):
        load_lpips(tmp_path)
    standin_lpips_folder(tmp_path)
    with pytest.raises(ValueError, match="SHA-256"):
        load_lpips(tmp_path)  # the stand-in is not torchvision's file: its hash prefix differs
    torch.save({"lin0.weight": torch.ones(3)}, tmp_path / LINEAR_FILE)
    with pytest.raises(ValueError, match="not the LPIPS linear-layer file"):
        standin_lpips(tmp_path)
    with pytest.raises(ValueError, match="non-negative"):
        LPIPS(AlexNetFeatures(), [-torch.ones(c.out_channels) for c in AlexNetFeatures().convs])
    metric = standin_lpips(standin_lpips_folder(tmp_path))
    with pytest.raises(ValueError, match="one shape"):
        metric(torch.rand(1, 1, 64, 64), torch.rand(1, 1, 64, 60))


def test_scores_include_lpips_when_given(tmp_path):
    x = torch.rand(2, 1, 70, 70)
    judge = ReblurDeblurrer(**TINY, reblurrer=True).reblurrer
    s = reblur_eval.scores(x * 0.9, x, x * 0.8, crop=3, judge=judge, lpips=standin_lpips(standin_lpips_folder(tmp_path)))
    assert set(s) == set(reblur_eval.MEASURES)
    assert all(v.shape == (2,) and torch.isfinite(v).all() for v in s.values())


def test_the_command_writes_modules_table_intervals_trend_and_readme(tiny_weights, small_blind_split, tmp_path,
                                                                     data_dir, monkeypatch):
    monkeypatch.setenv("DEBLUR_EDU_DATA", str(data_dir))  # the README takes Set12 results, never the fallback's
    monkeypatch.setattr(reblur_eval, "REBLURS_RATIO", 10.0)  # untrained stand-ins: let the trend be measured
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- reblur:start -->\nold\n<!-- reblur:end -->\nrest\n")
    out = tmp_path / "reblur.json"
    reblur_eval.main(["--tta-steps", "2", "--json", str(out), "--readme", str(readme), "--record"])
    res = json.loads(out.read_text())
    assert [r["name"] for r in res["results"]] == list(reblur_eval.TABLE)
    n = res["setting"]["cases"]
    assert n == 4 and all(len(v) == n for case in res["per_case"].values() for v in case.values())
    # the blurry input and blind TV are what they say: the input itself, and the first stage every row corrects
    rows = {r["name"]: r for r in res["results"]}
    assert rows["blurred"]["seconds_per_image"] < rows["blind-tv"]["seconds_per_image"] <= rows["reblur"]["seconds_per_image"]
    # each comparison is the paired interval of the per-case scores, recomputed here from the JSON
    for d in res["differences"]:
        base, treated = res["per_case"][d["baseline"]], res["per_case"][d["treatment"]]
        again = paired_bootstrap(base["psnr"], treated["psnr"])
        assert d["psnr"]["mean"] == pytest.approx(again.mean) and d["psnr"]["low"] == pytest.approx(again.low)
        assert d["met"] == (d["sharper"] and d["psnr_cost"] <= 0.3)
    assert [(d["baseline"], d["treatment"]) for d in res["differences"]] == [("reblur-l1-ft", "reblur"), ("reblur", "reblur-tta")]
    for role in ("critic", "judge"):
        m = res["modules"][role]
        assert m["ratio"] == pytest.approx(m["l_blur"] / m["l_blur_identity"])
    assert len(res["trend"]["points"]) == len(reblur_eval.TABLE) - 1 + len(reblur_eval.TREND_EXTRA)
    meta = json.loads((tiny_weights / "reblur-judge.json").read_text())
    assert meta["metrics"]["reblurring"] == res["modules"]["judge"]
    text = readme.read_text()
    assert reblur_eval.markdown(res) in text and "old" not in text and text.endswith("rest\n")


def test_no_trend_from_a_judge_that_does_not_reblur(tiny_weights, small_blind_split, tmp_path):
    """A judge that is the identity rebuilds nothing of the blur: its L_blur equals the identity's (ratio 1, not
    ≤ 0.85), so the trend is not reported."""
    cfg = {**TWO_STAGE, "reblurrer": True}
    judge = ReblurDeblurrer(**cfg)
    silence_all(judge)
    save_model(tiny_weights / "reblur-judge", judge, {"model_name": "reblur", "config": {"model": cfg}})
    out = tmp_path / "reblur.json"
    reblur_eval.main(["--tta-steps", "1", "--json", str(out), "--trend-extra", "tv"])
    res = json.loads(out.read_text())
    assert res["modules"]["judge"]["ratio"] == pytest.approx(1.0) and res["trend"] is None
    assert not res["modules"]["judge"]["reblurs"]


def test_an_identity_module_rebuilds_nothing_and_a_blur_module_rebuilds_the_blur():
    """module_quality's ratio: 1 for M_R = identity; well below 1 for M_R = the true blur on a sharp estimate;
    the fixed Gaussian reference changes a sharp image more than a smoother one."""
    x = torch.rand(2, 1, 48, 48, generator=torch.Generator().manual_seed(0))
    k = gaussian(9, 2.0)
    y = blur(x, k, "circular")
    summary = lambda M_R, deblurred: reblur_eval.summarise_module(
        {k_: [v] for k_, v in reblur_eval.module_quality(M_R, deblurred, x, y, x, crop=8).items()})
    q = summary(torch.nn.Identity(), x)
    assert q["ratio"] == pytest.approx(1.0) and not q["reblurs"] and not q["more_on_deblurred"]
    q = summary(TrueBlur(k), x)
    assert q["ratio"] < 1e-3 and q["reblurs"]
    smoother = blur(x, gaussian(9, 1.0), "circular")
    q = summary(reblur_eval.FixedBlur(2.0), smoother)
    assert q["change_sharp"] > q["change_deblurred"] and not q["more_on_deblurred"]


def silence_all(pair):
    """Zero the last convolution of both U-Nets: the second stage returns x̂₀, the module its input."""
    for net in (pair.deblurrer.unet, pair.reblurrer):
        torch.nn.init.zeros_(net.head.weight)
        torch.nn.init.zeros_(net.head.bias)


class TrueBlur(torch.nn.Module):
    def __init__(self, k):
        super().__init__()
        self.k = k

    def forward(self, x):
        return blur(x, self.k, "circular")


def test_the_tta_sweep_runs_on_the_tune_split_only(tiny_weights, small_blind_split, tmp_path, cli_error):
    out = tmp_path / "sweep.json"
    reblur_eval.main(["--split", "tune", "--tta-steps", "1", "--tta-sweep", "1e-5,1e-3", "--json", str(out)])
    sweep = json.loads(out.read_text())
    assert [r["lr"] for r in sweep["rows"]] == [1e-5, 1e-3]
    ok = [r["lr"] for r in sweep["rows"] if r["mean_psnr_change"] >= -reblur_eval.TTA_MAX_PSNR_DROP]
    assert sweep["chosen_lr"] == (max(ok) if ok else 1e-5) and sweep["rule_met"] == bool(ok)
    assert "tune split" in cli_error(reblur_eval.main, ["--tta-sweep", "1e-5"])
