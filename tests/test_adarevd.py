"""The miniature AdaRevD: model, training path, and chapter 6's measurement command."""

import json

import pytest
import torch

from deblur_edu.bench import methods, protocol
from deblur_edu.experiments import ch6_adarevd_eval as adarevd_eval
from deblur_edu.zoo import shipped as zoo_shipped
from deblur_edu.zoo.checkpoints import save_model
from deblur_edu.learned import AdaRevD
from deblur_edu.learned.blind_refiner import BlindRefiner
from deblur_edu.learned.patch_exit import adaptive_deblur, exit_after
from deblur_edu.metrics import paired_bootstrap


def tiny(columns=2, seed=0, **kwargs):
    torch.manual_seed(seed)
    model = AdaRevD(width=4, levels=2, columns=columns, classifier_hidden=8, **kwargs)
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


def test_a_two_stage_model_freezes_the_refiners_u_net():
    """``refiner_from: blind-refiner-cpu`` copies chapter 5's second stage's U-Net in (it reads [y, x̂₀])."""
    from deblur_edu.zoo import pretrained
    from deblur_edu.zoo.shipped import warm_start

    model = AdaRevD(width=16, levels=3, columns=1, two_stage=True)
    assert warm_start("adarevd", model, {"refiner_from": "blind-refiner-cpu"}) == ["decoder.encoder from blind-refiner-cpu"]
    shipped = pretrained("blind-refiner-cpu").unet
    assert torch.equal(model.decoder.encoder.stem.weight, shipped.stem.weight)
    assert not model.decoder.encoder.stem.weight.requires_grad
    with pytest.raises(ValueError, match="two_stage: true"):  # a one-stage model cannot take it
        warm_start("adarevd", AdaRevD(width=16, levels=3, columns=1), {"refiner_from": "blind-refiner-cpu"})
    with pytest.raises(ValueError, match=r"reads \[y, x̂₀\]"):
        AdaRevD(encoder=shipped, width=16, levels=3, columns=1)


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
    exits = adarevd_eval.true_exits(model, adarevd_eval.Case(y, x, None, 0), tile=16, overlap=0)
    assert exits[0, 0].tolist() == [1, 1]  # clean tiles: class 0, the first exit
    assert exits[0, 1].tolist() == exit_after(torch.tensor([5, 5]), 4).tolist()


TWO_STAGE = {"width": 4, "levels": 2, "columns": 2, "classifier_hidden": 8, "channels": 1, "two_stage": True,
             "thresholds": [23.0, 28.0]}


@pytest.fixture
def small_blind_split(monkeypatch):
    """The blind split cut to 2 images × its 2 smallest shakes on 64² crops (the evaluation's loop, in seconds)."""
    real = protocol.load_benchmark

    def small(split, crop=None, data_dir=None, fallback=False):  # the command's own default: no fallback
        b = real(split, crop=64, data_dir=data_dir, fallback=fallback)
        return protocol.Benchmark(b.split, dict(list(b.images.items())[:2]), b.kernels[:2], b.crop, b.note, b.data)

    monkeypatch.setattr(adarevd_eval, "load_benchmark", small)


@pytest.fixture
def two_stage_weights(tmp_path, monkeypatch):
    """An untrained two-stage AdaRevD and the refiner whose encoder it names, in a private weights folder."""
    torch.manual_seed(0)
    save_model(tmp_path / "tiny-refiner", BlindRefiner(4, 2),
               {"model_name": "blind-refiner", "config": {"model": {"width": 4, "levels": 2}}})
    model = tiny(2, two_stage=True, thresholds=(23.0, 28.0))
    path = save_model(tmp_path / "tiny-adarevd", model, {"model_name": "adarevd", "metrics": {},
                                                         "config": {"model": {**TWO_STAGE, "refiner_from": "tiny-refiner"}}})
    monkeypatch.setattr(zoo_shipped, "WEIGHTS_DIR", tmp_path)
    monkeypatch.setattr(methods, "_MODELS", {})
    return path


def test_the_measurement_command_writes_every_figure(two_stage_weights, small_blind_split, tmp_path, data_dir,
                                                     monkeypatch):
    monkeypatch.setenv("DEBLUR_EDU_DATA", str(data_dir))  # the README takes Set12 results, never the fallback's
    ckpt = two_stage_weights
    out, readme = tmp_path / "out.json", tmp_path / "README.md"
    readme.write_text("x\n<!-- adarevd:start -->\n<!-- adarevd:end -->\n")
    memory = tmp_path / "mem.json"
    memory.write_text(json.dumps({"settings": {"batch": 2, "size": 32, "device": "cpu"},
                                  "rows": [{"columns": 1, "ratio": 1.2}, {"columns": 2, "ratio": 0.9}]}))
    adarevd_eval.main(["--checkpoint", str(ckpt), "--tile", "32", "--overlap", "8", "--knobs", "-1",
                       "0", "--repeats", "1", "--json", str(out), "--readme", str(readme), "--memory", str(memory),
                       "--record"])
    result = json.loads(out.read_text())
    q = result["sub_decoders"]
    assert len(q["psnr"]) == 2 and result["setting"]["base"] == "tiny-refiner"
    assert len(q["cases"]["base_psnr"]) == len(result["case_ids"]) == 4
    # the intervals pair each sub-decoder's cases with the base's, case by case (a shuffled pairing changes them)
    base, second = torch.tensor(q["cases"]["base_psnr"]), torch.tensor(q["cases"]["2_psnr"])
    assert q["versus_base"][1] == paired_bootstrap(base, second).as_dict()
    assert q["versus_base"][1] != paired_bootstrap(base.roll(1), second).as_dict()
    kinds = [r["kind"] for r in result["exiting"]]
    assert kinds == ["all", "knob", "knob", "oracle"]
    reference = result["exiting"][0]
    assert reference["mean_exit"] == 2 and reference["saving"] == 0 and reference["psnr_change"] == 0
    c = result["classifier"]
    confusion = torch.tensor(c["confusion"])
    assert confusion.shape == (3, 3) and int(confusion.sum()) == c["tiles"] == 4 * 9  # 3 × 3 tiles of 32 px per image
    assert c["accuracy"] == pytest.approx(int(confusion.trace()) / c["tiles"])
    assert c["majority"] == pytest.approx(int(confusion.sum(1).max()) / c["tiles"])
    text = readme.read_text()
    assert "after sub-decoder 2" in text and "2: 0.90" in text and "base (`tiny-refiner`)" in text
    assert "| < 23 dB |" in text and "| ≥ 28 dB |" in text
    recorded = json.loads(ckpt.with_suffix(".json").read_text())["metrics"]
    assert recorded["sub_decoders"]["psnr"] == q["psnr"] and recorded["classifier"] == c


def test_a_two_stage_model_corrects_the_first_estimate():
    """``x̂_i = x̂₀ + head_i(c_0)``: with zero heads every estimate is the first stage's, exactly."""
    model = tiny(2, two_stage=True)
    for column in model.decoder.columns:
        column.head.weight.data.zero_()
    y, first = torch.rand(2, 1, 13, 18), 1.5 * torch.rand(2, 1, 13, 18)  # a first estimate may overshoot [0, 1]
    with torch.no_grad():
        assert all(torch.equal(e, first) for e in model.estimates(y, first=first))
    with pytest.raises(ValueError, match="first=x̂₀"):
        model(y)
    with pytest.raises(ValueError, match="shape"):
        model(y, first=first[..., :-1])
    with pytest.raises(ValueError, match="two_stage=False"):
        tiny()(y, first=first)
    with pytest.raises(ValueError, match="8-bit"):
        model(255 * y, first=first)  # the blurry image itself is still checked
    x = torch.rand(2, 1, 16, 16)
    model.train()(x, sharp=x, first=x).backward()  # the loss: as for one stage
    assert all(p.grad is None for p in model.decoder.encoder.parameters())


def test_tiled_inference_of_a_two_stage_model_starts_from_the_first_estimate():
    """Tiles of ``[y, x̂₀]``, blended: one output channel, and with zero heads exactly x̂₀ (the blend of
    identical overlaps is the image itself)."""
    model = tiny(2, two_stage=True)
    y, first = torch.rand(1, 1, 48, 48), torch.rand(1, 1, 48, 48)
    out, exits = adaptive_deblur(model.decoder, model.classifier, model.inputs(y, first), 32, 16,
                                 exits=torch.full((1, 2, 2), 2))
    assert out.shape == y.shape and exits.unique().tolist() == [2] and not torch.allclose(out, first)
    for column in model.decoder.columns:
        column.head.weight.data.zero_()
    out, _ = adaptive_deblur(model.decoder, model.classifier, model.inputs(y, first), 32, 16)
    assert torch.allclose(out, first, atol=1e-6)
    with pytest.raises(ValueError, match=r"stacked images .* AdaRevD.inputs"):
        adaptive_deblur(model.decoder, model.classifier, y, 32, 16)


def test_the_thresholds_set_the_classes():
    model = tiny(thresholds=(23.0, 28.0))
    assert model.classifier.fc.out_features == 3
    x = torch.full((3, 1, 8, 8), 0.5)
    y = torch.stack([x[0], x[1] + 0.05, x[2] + 0.2])  # ∞, 26 and 14 dB
    assert adarevd_eval.degradation_class(y, x, model.thresholds).tolist() == [0, 1, 2]
    assert adarevd_eval.class_names([23.0, 28.0]) == ["≥ 28 dB", "23–28 dB", "< 23 dB"]
    with pytest.raises(ValueError, match="increasing"):
        tiny(thresholds=(28.0, 23.0))
    # the loss's classes are the model's: with a classifier sure of class 2, the 14-dB image costs nothing
    model.classifier.fc.weight.data.zero_()
    model.classifier.fc.bias.data = torch.tensor([-50.0, -50.0, 50.0])
    x16 = torch.full((1, 1, 16, 16), 0.5)
    model.fft_weight = 0.0
    with torch.no_grad():
        decoding = float(torch.stack([e.sub(x16).abs().mean() for e in model.estimates(x16 + 0.2)]).mean())
        assert float(model(x16 + 0.2, sharp=x16)) == pytest.approx(decoding, abs=1e-6)


def test_bad_images_are_clear_errors():
    model = tiny()
    with pytest.raises(ValueError, match="channel"):
        model(torch.rand(1, 3, 16, 16))
    with pytest.raises(ValueError, match="NaN"):
        model(torch.full((1, 1, 16, 16), float("nan")))
    with pytest.raises(ValueError, match="4 dimensions"):
        model.estimates(torch.rand(16, 16))
