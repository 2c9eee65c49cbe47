"""Chapter 4's shipped checkpoints: complete metadata, small, hash-verified, runnable."""

import json
import warnings
from pathlib import Path

import pytest
import torch

from deblur_edu.kernels import motion
from deblur_edu.zoo import WEIGHTS_DIR, pretrained
from deblur_edu.bench.methods import get_method

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SHIPPED = [("deq-jfb", "deq-jfb-cpu", "deq", "jfb"), ("deq-implicit", "deq-implicit-cpu", "deq", "implicit-anderson"),
           ("feedforward", "feedforward-cpu", "feedforward", None)]


@pytest.mark.parametrize("method, name, model_name, backward", SHIPPED)
def test_shipped_checkpoint_loads_and_deblurs(method, name, model_name, backward):
    meta = json.loads((WEIGHTS_DIR / f"{name}.json").read_text())
    for key in ("config", "data_recipe", "commit", "training", "sha256", "metrics"):
        assert meta[key], key
    assert meta["config"]["model"].get("backward") == backward
    assert (WEIGHTS_DIR / f"{name}.pt").stat().st_size < 12_000_000  # the fine-tuned denoiser inside: 2.5 M float32 weights
    assert pretrained(name).channels == 1
    y = torch.rand(1, 1, 40, 40)
    with warnings.catch_warnings():  # on pure noise the solve may stop at its cap: not what this test checks
        warnings.simplefilter("ignore", RuntimeWarning)
        out = get_method(method)(y, motion(7, 10), 0.01, {})
    assert out.shape == y.shape and torch.isfinite(out).all()


def test_the_two_deq_checkpoints_differ_only_in_how_they_were_trained():
    """Same model, data and schedule; only the backward mode and the number of steps differ
    (the steps fill the same wall-clock budget, next test)."""
    jfb, implicit = (json.loads((WEIGHTS_DIR / f"{n}.json").read_text()) for n in ("deq-jfb-cpu", "deq-implicit-cpu"))
    strip = lambda cfg: {**cfg, "model": {k: v for k, v in cfg["model"].items() if k != "backward"},
                         "train": {k: v for k, v in cfg["train"].items() if k != "steps"}}
    assert strip(jfb["config"]) == strip(implicit["config"])


def test_jfb_and_implicit_trained_with_the_same_wall_clock_budget():
    """The shipped logs (side by side, one thread each): JFB's extra steps took the time of
    implicit backprop's fewer ones, within 15 % (seconds per step at the last validation × steps)."""
    budgets = {}
    for name in ("deq-jfb-cpu", "deq-implicit-cpu"):
        rows = [json.loads(line) for line in (BENCHMARKS / f"{name}-log.jsonl").read_text().splitlines()]
        meta = json.loads((WEIGHTS_DIR / f"{name}.json").read_text())
        assert rows[-1]["step"] == meta["training"]["steps"], name
        last_val = [r for r in rows if "train_seconds" in r][-1]  # training time without validation
        budgets[name] = (rows[-1]["step"], last_val["train_seconds"] / last_val["step"] * rows[-1]["step"])
    (jfb_steps, jfb_seconds), (implicit_steps, implicit_seconds) = budgets["deq-jfb-cpu"], budgets["deq-implicit-cpu"]
    assert jfb_steps > implicit_steps
    assert 0.85 < jfb_seconds / implicit_seconds < 1.15


def test_the_hqs_preset_starts_within_a_tenth_of_a_db_of_the_best_measured_level():
    """benchmarks/hqs_start.json (python -m deblur_edu.experiments.ch4_hqs_start, tune split): at each tuned σ,
    the level the preset deq-hqs-cpu starts from, s = aσ + b, scored within 0.1 dB of the best level measured,
    at the preset's λ; and the command's own choice is what its ``choose`` makes of those rows."""
    from deblur_edu.experiments.ch4_hqs_start import choose
    from deblur_edu.train import load_config

    run = json.loads((BENCHMARKS / "hqs_start.json").read_text())
    model = load_config("deq", "hqs-cpu")["model"]
    for sigma in (0.01, 0.03):
        rows = [r for r in run["rows"] if r["sigma"] == sigma and r["lam"] == model["strength"]]
        factor = (model["level_slope"] * sigma + model["level_floor"]) / sigma
        mine = [r for r in rows if abs(r["factor"] - factor) < 1e-6]
        assert mine, f"the preset's level {factor:g}σ at σ = {sigma} was not measured"
        assert mine[0]["psnr"] >= max(r["psnr"] for r in rows) - 0.1, sigma
    chosen = choose(run["rows"])
    assert chosen["level_slope"] == pytest.approx(run["chosen"]["level_slope"])
    assert chosen["level_floor"] == pytest.approx(run["chosen"]["level_floor"])


def test_the_shipped_deqs_come_from_the_hqs_preset():
    """The shipped recipe is the preset make deq-checkpoints names (JFB's steps are the Makefile's override)."""
    from deblur_edu.train import load_config

    preset = load_config("deq", "hqs-cpu")
    for name, backward in (("deq-jfb-cpu", "jfb"), ("deq-implicit-cpu", "implicit-anderson")):
        cfg = json.loads((WEIGHTS_DIR / f"{name}.json").read_text())["config"]
        assert cfg["model"] == {**preset["model"], "backward": backward}, name
        assert cfg["data"] == preset["data"], name
        assert {k: v for k, v in cfg["train"].items() if k != "steps"} == \
            {k: v for k, v in preset["train"].items() if k != "steps"}, name
