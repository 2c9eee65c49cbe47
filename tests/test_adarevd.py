"""The miniature AdaRevD: model, training path, and chapter 6's measurement command."""

import json

import pytest
import torch

from deblur_edu.experiments import ch6_adarevd_eval as adarevd_eval
from deblur_edu.zoo.checkpoints import save_model
from deblur_edu.learned import AdaRevD
from deblur_edu.learned.patch_exit import adaptive_deblur, exit_after


def tiny(columns=2, seed=0):
    torch.manual_seed(seed)
    model = AdaRevD(width=4, levels=2, columns=columns, classifier_hidden=8)
    for column in model.decoder.columns:  # trained heads are not 0: make the sub-decoders differ
        column.head.weight.data.normal_(0, 0.05)
    return model.eval()


def test_the_loss_trains_the_sub_decoders_and_the_classifier_but_not_the_encoder():
    model = tiny().train()
    g = torch.Generator().manual_seed(0)
    y, x = torch.rand(3, 1, 16, 16, generator=g), torch.rand(3, 1, 16, 16, generator=g)
    model(y, sharp=x).backward()
    assert all(p.grad is None for p in model.decoder.encoder.parameters())
    assert all(p.grad is not None for p in model.classifier.parameters())
    assert model.decoder.columns[0].head.weight.grad.abs().sum() > 0
    without = tiny().train()
    without.classifier_weight = 0.0
    without(y, sharp=x).backward()
    assert all(p.grad is None for p in without.classifier.parameters())


def test_calling_it_deblurs_with_every_sub_decoder():
    model = tiny(3)
    y = torch.rand(2, 1, 13, 18)
    with torch.no_grad():
        every = model.estimates(y)
        assert torch.equal(model(y), every[-1])
        first_two = model.estimates(y, n=2)  # exiting early: the same estimates, only fewer
        assert len(first_two) == 2 and all(torch.equal(a, b) for a, b in zip(first_two, every))
        assert not torch.equal(every[0], every[-1])  # each sub-decoder changes the estimate


def test_the_encoder_is_chapter_5s_frozen_and_the_shipped_model_is_left_alone():
    """The config's ``encoder: reblur-l1-cpu`` copies that checkpoint's deblurrer in when training
    starts (:func:`warm_start`); the copy is frozen, the shipped model is not touched."""
    from deblur_edu.zoo import pretrained
    from deblur_edu.zoo.shipped import warm_start

    model = AdaRevD(width=16, levels=3, columns=1)
    assert warm_start("adarevd", model, {"encoder": "reblur-l1-cpu"}) == ["decoder.encoder from reblur-l1-cpu"]
    shipped = pretrained("reblur-l1-cpu").deblurrer
    unet = model.decoder.encoder
    assert unet is not shipped and torch.equal(unet.stem.weight, shipped.stem.weight)
    assert not unet.stem.weight.requires_grad and shipped.stem.weight.requires_grad


def test_an_encoder_of_another_size_is_a_clear_error():
    from deblur_edu.zoo.shipped import warm_start

    with pytest.raises(ValueError, match="does not fit"):
        warm_start("adarevd", AdaRevD(width=8, levels=3, columns=1), {"encoder": "reblur-l1-cpu"})
    with pytest.raises(ValueError, match="grey-scale"):
        AdaRevD(width=4, levels=2, channels=3)


def test_the_training_loop_trains_it_and_the_checkpoint_loads(tmp_path):
    from deblur_edu.train import load_config, train

    path = train("adarevd", load_config("adarevd", "tiny"), tmp_path / "run", progress=False)
    model = adarevd_eval.load_adarevd(path)
    assert isinstance(model, AdaRevD) and not model.training
    with pytest.raises(FileNotFoundError):
        adarevd_eval.load_adarevd(tmp_path / "missing")


def test_the_timings_split_encoding_decoding_and_blending():
    model = tiny()
    timings = {}
    adaptive_deblur(model.decoder, model.classifier, torch.rand(1, 1, 32, 32), 16, 4, timings=timings)
    assert set(timings) == {"encode", "decode", "blend"} and all(t >= 0 for t in timings.values())


def test_true_exits_follow_the_tiles_degradation():
    model = tiny(4)
    x = torch.full((1, 1, 32, 32), 0.5)
    y = x.clone()
    y[..., 16:, :] += 0.2 * torch.randn(1, 1, 16, 32, generator=torch.Generator().manual_seed(0))
    exits = adarevd_eval.true_exits(model, y, x, tile=16, overlap=0)
    assert exits[0, 0].tolist() == [1, 1]  # clean tiles: class 0, the first exit
    assert exits[0, 1].tolist() == exit_after(torch.tensor([5, 5]), 4).tolist()


def test_the_measurement_command_writes_every_figure(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("DEBLUR_EDU_DATA", str(data_dir))  # the README takes Set12 results, never the fallback's
    model = tiny(2)
    meta = {"model_name": "adarevd", "config": {"model": {"encoder": None, "width": 4, "levels": 2, "columns": 2,
                                                           "classifier_hidden": 8, "channels": 1}},
            "metrics": {}}
    ckpt = save_model(tmp_path / "tiny", model, meta)
    out, readme = tmp_path / "out.json", tmp_path / "README.md"
    readme.write_text("x\n<!-- adarevd:start -->\n<!-- adarevd:end -->\n")
    memory = tmp_path / "mem.json"
    memory.write_text(json.dumps({"settings": {"batch": 2, "size": 32, "device": "cpu"},
                                  "rows": [{"columns": 1, "ratio": 1.2}, {"columns": 2, "ratio": 0.9}]}))
    adarevd_eval.main(["--checkpoint", str(ckpt), "--crop", "32", "--tile", "16", "--overlap", "4", "--knobs", "-1",
                       "0", "--repeats", "1", "--json", str(out), "--readme", str(readme), "--memory", str(memory),
                       "--record"])
    result = json.loads(out.read_text())
    assert len(result["sub_decoders"]["psnr"]) == 2
    kinds = [r["kind"] for r in result["exiting"]]
    assert kinds == ["all", "knob", "knob", "oracle"]
    reference = result["exiting"][0]
    assert reference["mean_exit"] == 2 and reference["saving"] == 0 and reference["psnr_change"] == 0
    assert 0 <= result["exiting"][1]["classifier_accuracy"] <= 1
    assert "after sub-decoder 2" in readme.read_text() and "2: 0.90" in readme.read_text()
    recorded = json.loads(ckpt.with_suffix(".json").read_text())["metrics"]
    assert recorded["sub_decoders"] == result["sub_decoders"]


def test_bad_images_are_clear_errors():
    model = tiny()
    with pytest.raises(ValueError, match="channel"):
        model(torch.rand(1, 3, 16, 16))
    with pytest.raises(ValueError, match="NaN"):
        model(torch.full((1, 1, 16, 16), float("nan")))
    with pytest.raises(ValueError, match="4 dimensions"):
        model.estimates(torch.rand(16, 16))
