"""Chapter 4's shipped checkpoints: complete metadata, small, hash-verified, runnable."""

import json
import warnings

import pytest
import torch

from deblur_edu.kernels import motion
from deblur_edu.methods import WEIGHTS_DIR, get_method, load_shipped

SHIPPED = [("deq-jfb", "deq-jfb-cpu", "deq", "jfb"), ("deq-implicit", "deq-implicit-cpu", "deq", "implicit-anderson"),
           ("feedforward", "feedforward-cpu", "feedforward", None)]


@pytest.mark.parametrize("method, name, model_name, backward", SHIPPED)
def test_shipped_checkpoint_loads_and_deblurs(method, name, model_name, backward):
    meta = json.loads((WEIGHTS_DIR / f"{name}.json").read_text())
    for key in ("config", "data_recipe", "commit", "training", "sha256", "metrics"):
        assert meta[key], key
    assert meta["config"]["model"].get("backward") == backward
    assert (WEIGHTS_DIR / f"{name}.pt").stat().st_size < 5_000_000
    assert load_shipped(name, model_name).channels == 1
    y = torch.rand(1, 1, 40, 40)
    with warnings.catch_warnings():  # on pure noise the solve may stop at its cap: not what this test checks
        warnings.simplefilter("ignore", RuntimeWarning)
        out = get_method(method)(y, motion(7, 10), 0.01, {})
    assert out.shape == y.shape and torch.isfinite(out).all()


def test_the_two_deq_checkpoints_differ_only_in_how_they_were_trained():
    jfb, implicit = (json.loads((WEIGHTS_DIR / f"{n}.json").read_text()) for n in ("deq-jfb-cpu", "deq-implicit-cpu"))
    strip = lambda cfg: {**cfg, "model": {k: v for k, v in cfg["model"].items() if k != "backward"}}
    assert strip(jfb["config"]) == strip(implicit["config"])
