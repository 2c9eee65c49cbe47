"""The model zoo: a checkpoint alone rebuilds its model, every load is a fresh model the caller
owns, and warm starts happen only when a training run starts."""

import pytest
import torch

from deblur_edu.zoo import MODELS, WEIGHTS_DIR, available, metadata, pretrained
from deblur_edu.zoo import shipped as zoo_shipped
from deblur_edu.zoo.registry import WARM_STARTS, architecture

SHIPPED = sorted(p.stem for p in WEIGHTS_DIR.glob("*.json"))


@pytest.mark.parametrize("name", SHIPPED)
def test_a_checkpoint_alone_rebuilds_its_model(name, monkeypatch):
    """Loading reblur-cpu used to load and hash-check two more checkpoints (its constructor
    resolved deblurrer_from / reblurrer_from) and then overwrite their weights."""
    read = []
    real_load = torch.load

    def recording_load(f, *args, **kwargs):
        read.append(str(f))
        return real_load(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    model = pretrained(name)
    assert read == [str(WEIGHTS_DIR / f"{name}.pt")]
    assert not model.training
    assert type(model) is MODELS[metadata(name)["model_name"]].cls


def test_every_load_is_a_new_model_that_the_caller_owns():
    a, b = pretrained("rgdn-cpu"), pretrained("rgdn-cpu")
    assert a is not b
    with torch.no_grad():
        next(a.parameters()).add_(1.0)
    assert not torch.equal(next(a.parameters()), next(b.parameters()))
    assert torch.equal(next(b.parameters()), next(pretrained("rgdn-cpu").parameters()))


def test_building_from_a_config_ignores_the_names_of_other_checkpoints(monkeypatch):
    monkeypatch.setattr(zoo_shipped, "pretrained", lambda *a, **k: pytest.fail("a checkpoint was read"))
    cfg = {**metadata("reblur-cpu")["config"]["model"]}
    assert {"refiner_from", "reblurrer_from"} <= set(cfg) and not set(architecture("reblur", cfg)) & set(WARM_STARTS["reblur"])
    MODELS["reblur"].build(cfg)
    MODELS["adarevd"].build(metadata("adarevd-cpu")["config"]["model"])


def test_what_a_checkpoint_was_started_from_is_read_from_the_configs():
    assert zoo_shipped.built_on("reblur-cpu") == ["reblur-module-cpu", "blind-refiner-cpu"]
    assert zoo_shipped.built_on("adarevd-cpu") == ["blind-refiner-cpu"]
    assert zoo_shipped.built_on("rgdn-cpu") == ["denoiser-cpu"]
    assert zoo_shipped.built_on("rgdn-unet-cpu") == []


def test_a_missing_checkpoint_says_where_its_recipe_is(tmp_path, monkeypatch):
    monkeypatch.setattr(zoo_shipped, "WEIGHTS_DIR", tmp_path)
    assert not available("rgdn-cpu")
    with pytest.raises(FileNotFoundError, match="Makefile target"):
        pretrained("rgdn-cpu")
