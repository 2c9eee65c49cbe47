"""The two-stage blind deblurrer: blind TV, then a U-Net trained on a bank of blind TV's outputs."""

import json

import numpy as np
import pytest
import torch
from skimage.io import imsave

from deblur_edu import first_stage
from deblur_edu.bench import first_stage as first_stage_cli
from deblur_edu.bench.first_stage import blind_tv
from deblur_edu.first_stage import FirstStageBank
from deblur_edu.kernels import centre_of_mass
from deblur_edu.learned.blind_refiner import BlindRefiner
from deblur_edu.synthesis import BlurSynthesis, ImageBank
from deblur_edu.zoo.registry import MODELS


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for i in range(2):  # blocky random scenes: edges a kernel estimate can use
        small = rng.random((14, 14))
        imsave(folder / f"p{i}.png", (np.kron(small, np.ones((10, 10))) * 255).astype(np.uint8), check_contrast=False)
    return folder


def build_part(data, part, parts, log=lambda *_: None):
    return first_stage.build_part(data, part, parts, blind_tv, log=log)


def bank_config(photos, bank, size=16):
    return {"task": "refine", "photos": str(photos), "bank": str(bank), "bank_size": size, "bank_patch": 64,
            "patch": 32, "kernel_size": 31, "extent_range": [0.15, 0.5], "sigma_range": [0.0, 0.02], "holdout": 4,
            "seed": 0}


@pytest.fixture(scope="module")
def bank(photos, tmp_path_factory):
    cfg = bank_config(photos, tmp_path_factory.mktemp("bank"))
    build_part(cfg, 0, 1)
    return cfg


def test_the_refiner_adds_a_learned_residual_to_the_first_stage():
    net = BlindRefiner(width=4, levels=2)
    y, first = torch.rand(2, 1, 24, 24), torch.rand(2, 1, 24, 24)
    residual = net.unet.residual(torch.cat([y, first], 1))
    torch.testing.assert_close(net(y, first=first), first + residual)
    torch.testing.assert_close(net(y, torch.rand(2, 1, 5, 5), first=first), net(y, first=first))  # blind: k ignored
    with pytest.raises(ValueError, match="first must have y's shape"):
        net(y, first=first[..., :20])


def test_the_refiner_needs_a_first_stage(bank):
    b = FirstStageBank(bank["bank"], 64, holdout=4).held_out(2)
    with pytest.raises(ValueError, match="pass first="):
        BlindRefiner(width=4, levels=2)(b["blurred"])


def test_centred_synthesis_puts_every_kernel_on_its_centre_of_mass():
    bank = ImageBank([torch.rand(1, 1, 90, 90)])
    synth = BlurSynthesis(bank, patch=16, kernel_size=15, extent_range=(0.9, 1.0), centre_kernels=True)
    k = synth.batch(step=3, size=6)["kernel"]
    assert k.shape == (6, 1, 29, 29) and synth.support() == 29
    for dim in (-2, -1):
        torch.testing.assert_close(centre_of_mass(k, dim), torch.zeros(6, 1), atol=1e-4, rtol=0)
    torch.testing.assert_close(k.sum((-2, -1)), torch.ones(6, 1))
    # the shake moved whole, no part wrapped around to the far side: its support is as wide as the drawn shake's,
    # plus at most one row and one column from the sub-pixel shift
    raw = BlurSynthesis(bank, patch=16, kernel_size=15, extent_range=(0.9, 1.0)).batch(step=3, size=6)["kernel"]
    assert raw.shape == (6, 1, 15, 15)

    def extent(kernels, dim):
        on = (kernels[:, 0] > 0).any(dim=dim).float()  # (n, side): rows or columns holding mass
        first = on.argmax(-1)
        last = on.shape[-1] - 1 - on.flip(-1).argmax(-1)
        return last - first + 1

    for dim in (-1, -2):
        assert bool((extent(k, dim) <= extent(raw, dim) + 1).all())


def test_a_bank_built_in_parts_is_the_bank_built_at_once(bank, photos, tmp_path):
    cfg = bank_config(photos, tmp_path)
    for part in (1, 0):  # any order
        build_part(cfg, part, 2)
    whole, parts = FirstStageBank(bank["bank"], 32, holdout=4), FirstStageBank(tmp_path, 32, holdout=4)
    for key in first_stage.KEYS:
        assert torch.equal(whole.images[key], parts.images[key]), key
    assert whole.images["sharp"].shape == (16, 1, 64, 64) and whole.images["sharp"].dtype == torch.float16


def test_a_bank_holds_blind_tv_of_each_blurred_image(bank):
    b = FirstStageBank(bank["bank"], 64, holdout=8)
    blurred = b.images["blurred"][8:].float() / 255  # the second batch of 8 (one σ per batch), stored exactly
    assert b.images["blurred"].dtype == torch.uint8
    torch.testing.assert_close(b.images["first"][8:].float(), blind_tv(blurred), atol=2e-3, rtol=0)  # float16


def test_training_crops_are_one_window_in_one_orientation_for_all_three_images(bank):
    b = FirstStageBank(bank["bank"], 32, holdout=4, seed=5)
    same = b.images["sharp"].clone()  # float16, as "first" and "sharp" are stored
    b.images = {key: same for key in first_stage.KEYS}
    batch = b.batch(step=7, size=12)
    assert torch.equal(batch["blurred"], batch["sharp"]) and torch.equal(batch["first"], batch["sharp"])
    assert batch["sharp"].shape == (12, 1, 32, 32) and batch["sharp"].dtype == torch.float32
    windows = same[:b.train_count, 0].float().unfold(1, 32, 1).unfold(2, 32, 1)  # (n, 33, 33, 32, 32)
    orientations = []
    for crop in batch["sharp"][:, 0]:
        views = [crop.rot90(r, (0, 1)) for r in range(4)] + [crop.flip(0).rot90(r, (0, 1)) for r in range(4)]
        matches = [v for v, view in enumerate(views) if bool((windows == view).all(-1).all(-1).any())]
        assert matches, "a training crop is not a window of a bank sample in any orientation"
        orientations.append(matches[0])
    assert len(set(orientations)) > 2, "the crops are not turned"
    again = FirstStageBank(bank["bank"], 32, holdout=4, seed=5)
    again.images = b.images
    assert torch.equal(again.batch(step=7, size=12)["sharp"], batch["sharp"])
    assert not torch.equal(again.batch(step=8, size=12)["sharp"], batch["sharp"])


def test_held_out_samples_are_never_drawn_for_training(bank):
    b = FirstStageBank(bank["bank"], 64, holdout=4)  # patch = bank side: a crop is a whole sample
    b.images = {key: torch.arange(16.0).reshape(16, 1, 1, 1).expand(16, 1, 64, 64) for key in first_stage.KEYS}
    drawn = torch.cat([b.batch(step, 16)["sharp"][:, 0, 0, 0] for step in range(20)])
    assert drawn.max() == 11 and set(b.held_out(8)["sharp"][:, 0, 0, 0].tolist()) == {12.0, 13.0, 14.0, 15.0}


def test_bank_mistakes_say_what_to_do(bank, photos, tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m deblur_edu.bench.first_stage"):
        FirstStageBank(tmp_path / "none", 32)
    with pytest.raises(ValueError, match="exceeds the bank's crops"):
        FirstStageBank(bank["bank"], 65)
    with pytest.raises(ValueError, match="multiple of 8"):
        build_part({**bank_config(photos, tmp_path), "bank_size": 12}, 0, 1)
    with pytest.raises(ValueError, match="I/N"):
        build_part(bank_config(photos, tmp_path), 2, 2)
    with pytest.raises(ValueError, match="cannot be split into 3 parts"):
        build_part(bank_config(photos, tmp_path), 0, 3)  # 16 samples: 2 batches
    with pytest.raises(ValueError, match="another data recipe than this config's"):
        FirstStageBank(bank["bank"], 32, holdout=4, expected=first_stage.recipe({**bank, "seed": 1}))
    with pytest.raises(ValueError, match="holdout = 16 must leave samples to train on: the bank keeps 16 of its 16"):
        FirstStageBank(bank["bank"], 32, holdout=16)
    with pytest.raises(ValueError, match="data.keep must be one of"):
        FirstStageBank(tmp_path / "none", 32, keep="best")  # checked before anything is loaded


@pytest.mark.parametrize("part", ["one", "2/2", "1"])
def test_the_cli_refuses_a_malformed_part(part, cli_error):
    assert "--part must be I/N" in cli_error(first_stage_cli.main, ["--config", "tiny", "--part", part])


def test_the_cli_names_a_missing_preset(cli_error):
    assert "no config 'nothing' for blind-refiner" in cli_error(first_stage_cli.main, ["--config", "nothing"])


def test_the_training_loop_trains_the_refiner_on_the_bank(bank, tmp_path):
    from deblur_edu.train import train

    cfg = {"model": {"width": 4, "levels": 2, "blocks": 1}, "data": bank,
           "train": {"batch_size": 4, "steps": 6, "lr": 1e-3, "weight_decay": 0.0, "clip": 1.0, "seed": 0,
                     "amp": False, "log_every": 2, "ckpt_every": 3, "val_every": 3, "val_size": 4}}
    assert train("blind-refiner", cfg, tmp_path / "run", device="cpu", progress=False).is_file()
    meta = (tmp_path / "run" / "model.json").read_text()
    assert "blind TV's estimate" in meta and "no benchmark images" in meta
    recorded = json.loads(meta)["training"]  # what the bank cost is part of the training cost
    assert recorded["first_stage_seconds"] == FirstStageBank(bank["bank"], 32, holdout=4).build_seconds > 0
    assert recorded["first_stage_samples"] == {"built": 16, "kept": 16}
    log = (tmp_path / "run" / "log.jsonl").read_text()
    assert '"val_psnr"' in log
    model = MODELS["blind-refiner"].build(cfg["model"])
    assert isinstance(model, BlindRefiner)
    assert torch.isfinite(MODELS["blind-refiner"].loss(model, FirstStageBank(bank["bank"], 32, holdout=4).batch(0, 4)))


def test_the_training_loop_trains_a_two_stage_adarevd_on_the_bank(bank, tmp_path):
    """Chapter 6's sub-decoders learn from the same bank as the refiner: the loss reads ``first``."""
    from deblur_edu.train import train
    from deblur_edu.zoo import pretrained

    cfg = {"model": {"width": 4, "levels": 2, "blocks": 1, "columns": 2, "two_stage": True, "classifier_hidden": 8,
                     "thresholds": [23.0, 28.0]}, "data": bank,
           "train": {"batch_size": 4, "steps": 4, "lr": 1e-3, "weight_decay": 0.0, "clip": 1.0, "seed": 0,
                     "amp": False, "log_every": 2, "ckpt_every": 2, "val_every": 2, "val_size": 4}}
    path = train("adarevd", cfg, tmp_path / "run", device="cpu", progress=False)
    model = pretrained(str(path))
    batch = FirstStageBank(bank["bank"], 32, holdout=4).held_out(4)
    with torch.no_grad():
        estimates = model.estimates(batch["blurred"], first=batch["first"])
    assert len(estimates) == 2 and estimates[-1].shape == batch["sharp"].shape
    assert json.loads((tmp_path / "run" / "model.json").read_text())["training"]["first_stage_seconds"] > 0


def test_a_built_part_is_kept_never_recomputed_or_overwritten(bank, photos):
    path = first_stage.bank_files(bank["bank"])[0]
    before, messages = path.stat().st_mtime_ns, []
    assert build_part(bank, 0, 1, log=messages.append) == path and "kept" in messages[0]
    assert path.stat().st_mtime_ns == before
    with pytest.raises(ValueError, match="another data recipe; delete"):
        build_part({**bank, "sigma_range": [0.0, 0.03]}, 0, 1)


def test_parts_of_two_splittings_are_refused(bank, photos, tmp_path):
    cfg = bank_config(photos, tmp_path)
    build_part(cfg, 0, 2)
    with pytest.raises(ValueError, match="do not make one bank"):  # half a bank
        FirstStageBank(tmp_path, 32, holdout=4)
    (tmp_path / "part-0-of-1.pt").write_bytes(first_stage.bank_files(bank["bank"])[0].read_bytes())
    with pytest.raises(ValueError, match="do not make one bank"):  # a whole bank and half of it again
        FirstStageBank(tmp_path, 32, holdout=4)


def test_usable_keeps_exactly_the_samples_whose_first_stage_beats_the_blurry_input():
    sharp = torch.rand(4, 1, 40, 40)
    first = torch.stack([sharp[0], sharp[1] + 0.3, sharp[2] + 0.01, sharp[3] + 0.25])
    blurred = torch.stack([sharp[0] + 0.05, sharp[1] + 0.1, sharp[2] + 0.1, sharp[3] + 0.2])
    images = {"sharp": sharp, "first": first, "blurred": (blurred.clamp(0, 1) * 255).round().to(torch.uint8)}
    assert first_stage.usable(images, border=3).tolist() == [0, 2]


def test_a_bank_kept_to_its_usable_samples_trains_and_validates_on_those_only(bank):
    every, kept = FirstStageBank(bank["bank"], 32, holdout=2), FirstStageBank(bank["bank"], 32, holdout=2, keep="usable")
    chosen = first_stage.usable(every.images, 31)
    assert 2 < len(chosen) < 16, "the fixture's bank should hold usable and unusable samples"
    assert torch.equal(kept.images["sharp"], every.images["sharp"][chosen]) and kept.train_count == len(chosen) - 2
    with pytest.raises(ValueError, match="data.keep must be one of"):
        FirstStageBank(bank["bank"], 32, keep="best")


def test_the_noise_free_target_is_each_blurry_image_without_its_noise(bank):
    """The bank's blurry images are recomputed from its recipe: with each batch's own σ exactly as stored, with
    σ = 0 the same blur (same kernels, same crops) without the noise — the reblurring module's target."""
    b = FirstStageBank(bank["bank"], 32, holdout=4, noise_free=True)
    stored, clean = b.images["blurred"].float() / 255, b.images["blurred_clean"].float() / 255
    assert b.images["blurred_clean"].dtype == torch.uint8 and clean.shape == stored.shape
    photos = first_stage.bank_photos(bank)
    for batch in range(2):  # one σ per batch of 8: what is left is the noise, of that σ
        synth = first_stage.bank_synthesis(bank, photos, batch)
        sigma = synth.sigma_range[0]
        again = (synth.batch(step=batch, size=8)["blurred"] * 255).round() / 255
        assert torch.equal(again, stored[8 * batch:8 * (batch + 1)])
        residual = (stored - clean)[8 * batch:8 * (batch + 1)]
        assert float(residual.std()) == pytest.approx(sigma, rel=0.15, abs=2e-3)
    crops = b.batch(step=3, size=6)  # the same window and orientation as the other images
    assert set(crops) == {"blurred", "first", "sharp", "blurred_clean"}
    assert float((crops["blurred"] - crops["blurred_clean"]).abs().mean()) < 0.03


def test_the_reblurring_module_learns_from_the_target_it_is_given():
    """reblur_target replaces y in L_blur only: M_R's gradient changes, M_D's (L1 + w·L_R) does not."""
    from deblur_edu.learned import ReblurDeblurrer

    torch.manual_seed(0)
    pair = ReblurDeblurrer(width=4, levels=1, two_stage=True, reblur_weight=0.5, reblur_features=4, reblur_blocks=1)
    y, first, s = (torch.rand(2, 1, 24, 24, generator=torch.Generator().manual_seed(i)) for i in range(3))
    grads = []
    for target in (None, (y - 0.05).clamp(0, 1)):
        pair.zero_grad()
        pair(y, sharp=s, first=first, reblur_target=target).backward()
        grads.append({n: p.grad.clone() for n, p in pair.named_parameters()})
    assert all(torch.equal(grads[0][n], grads[1][n]) for n in grads[0] if n.startswith("deblurrer."))
    assert any(not torch.equal(grads[0][n], grads[1][n]) for n in grads[0] if n.startswith("reblurrer."))


def test_a_bank_whose_images_are_not_its_recipes_is_refused_a_noise_free_target(bank, tmp_path):
    """Built elsewhere (another device's random draws), the stored images are not the recipe's plus noise: the bank
    is refused for reblur_target: noise-free rather than paired with the wrong targets."""
    import shutil

    copy = tmp_path / "bank"
    shutil.copytree(bank["bank"], copy)
    part = next(copy.glob("part-*.pt"))
    stored = torch.load(part, weights_only=True)
    stored["blurred"] = stored["blurred"].flip(-1)  # other scenes than the recipe's
    torch.save(stored, part)
    FirstStageBank(copy, 32, holdout=4)  # without the target, nothing to check
    with pytest.raises(ValueError, match="rebuild it on the CPU"):
        FirstStageBank(copy, 32, holdout=4, noise_free=True)


def test_an_unknown_reblurring_target_is_refused_before_the_bank_is_read(bank):
    from deblur_edu.train import first_stage_bank

    with pytest.raises(ValueError, match="reblur_target must be 'noisy' or 'noise-free'"):
        first_stage_bank({**bank, "reblur_target": "clean"}, torch.device("cpu"))
