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
from deblur_edu.metrics import psnr as psnr_

TINY = {"channels": 1, "width": 4, "levels": 1, "blocks": 1, "reblur_features": 4, "reblur_blocks": 1}


@pytest.fixture
def tiny_weights(tmp_path, monkeypatch):
    """Untrained stand-ins for the shipped chapter-5 checkpoints that grading uses, in a private weights folder."""
    for name, extra in [("reblur-l1-cpu", {"reblur_weight": 0.0}), ("reblur-l1-ft-cpu", {"reblur_weight": 0.0}),
                        ("reblur-cpu", {"reblur_weight": 1.0}), ("reblur-judge", {"reblur_weight": 0.0, "reblurrer": True})]:
        torch.manual_seed(len(name))
        cfg = {**TINY, **extra}
        save_model(tmp_path / name, ReblurDeblurrer(**cfg), {"model_name": "reblur", "config": {"model": cfg}})
    monkeypatch.setattr(zoo_shipped, "WEIGHTS_DIR", tmp_path)
    monkeypatch.setattr(methods, "_MODELS", {})
    return tmp_path


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


def test_the_command_writes_table_trend_tta_and_readme(tiny_weights, tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("DEBLUR_EDU_DATA", str(data_dir))  # the README takes Set12 results, never the fallback's
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- reblur:start -->\nold\n<!-- reblur:end -->\nrest\n")
    out = tmp_path / "reblur.json"
    reblur_eval.main(["--split", "tune", "--crop", "48", "--table", "wiener-taper,reblur-l1,reblur-l1-ft,reblur",
                      "--tta-steps", "2", "--json", str(out), "--readme", str(readme), "--record"])
    res = json.loads(out.read_text())
    names = [r["name"] for r in res["results"]]
    assert names == ["blurred", "wiener-taper", "reblur-l1", "reblur-l1-ft", "reblur"]
    assert len(res["trend"]["points"]) == 4 and -1 <= res["trend"]["spearman"] <= 1
    assert res["tta"]["cases"] == res["setting"]["cases"] == len(res["tta"]["per_case"])
    # the guard's bound: the kept output's loss is at most (1 + tolerance) = 2 times the loss before adaptation
    assert all(0 <= c["own_loss"][1] <= 2 * c["own_loss"][0] for c in res["tta"]["per_case"])
    assert set(res["acceptance"]) >= {"psnr_drop", "sharper_blur_effect", "smaller_reblur_gap"}
    # graded against its control (the same fine-tuning without the reblurring loss), not the L1 base
    by_name = {r["name"]: r for r in res["results"]}
    assert res["acceptance"]["psnr_drop"] == by_name["reblur-l1-ft"]["psnr"] - by_name["reblur"]["psnr"]
    meta = json.loads((tiny_weights / "reblur-judge.json").read_text())
    assert meta["metrics"]["judge"] == res["judge"] and set(res["judge"]) == {"reblur_gap_sharp", "reblur_gap_blurred"}
    text = readme.read_text()
    assert reblur_eval.markdown(res) in text and "old" not in text and text.endswith("rest\n")


def test_the_command_rejects_unknown_methods_and_missing_snapshots(tiny_weights, tmp_path, cli_error):
    assert "unknown method 'nope'" in cli_error(reblur_eval.main, ["--split", "tune", "--table", "nope"])
    with pytest.raises(FileNotFoundError, match="snapshot_every"):
        reblur_eval.snapshots(tmp_path)


def test_snapshots_are_deblurrers_at_each_stage(tmp_path):
    import yaml

    cfg = {**TINY, "reblur_weight": 0.0}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"model": cfg}))
    (tmp_path / "snapshots").mkdir()
    for step in (5, 10):
        torch.save(ReblurDeblurrer(**cfg).state_dict(), tmp_path / "snapshots" / f"step-{step:06d}.pt")
    stages = reblur_eval.snapshots(tmp_path)
    assert list(stages) == ["l1 step 5", "l1 step 10"]
    y = torch.rand(1, 1, 16, 16)
    assert stages["l1 step 10"](y, None, 0.01).shape == y.shape


def test_the_tta_sweep_runs_on_the_tune_split_only(tiny_weights, tmp_path, cli_error):
    out = tmp_path / "sweep.json"
    reblur_eval.main(["--split", "tune", "--crop", "48", "--tta-steps", "1", "--tta-sweep", "1e-5,1e-3", "--json", str(out)])
    sweep = json.loads(out.read_text())
    assert [r["lr"] for r in sweep["rows"]] == [1e-5, 1e-3] and sweep["chosen_lr"] in (1e-5, 1e-3)
    assert "tune split" in cli_error(reblur_eval.main, ["--tta-sweep", "1e-5"])


def test_chapter_kernels_are_seeded_shakes_of_the_training_size_and_differ_between_splits():
    test, tune = protocol.shake_kernels("test"), protocol.shake_kernels("tune")
    assert len(test) == 8 and all(k.shape[-1] == reblur_eval.SHAKE_SIZE for k in test)
    assert all(torch.equal(a, b) for a, b in zip(test, protocol.shake_kernels("test")))
    assert not any(torch.equal(a, b) for a in test for b in tune)
    with pytest.raises(ValueError, match="shakes"):
        reblur_eval.chapter_benchmark(kernels="gaussian")
