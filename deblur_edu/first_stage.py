r"""Training data for a second stage: the first stage's outputs, computed once and sampled like a bank.

:class:`~deblur_edu.learned.blind_refiner.BlindRefiner` learns to improve blind TV's estimate
``x̂₀``. Blind TV costs seconds per image on a CPU — far too slow to run at every training
step — and it is not trained, so its outputs can be computed once:

    python -m deblur_edu.bench.first_stage --config cpu [--part 0/2]    # the preset blind-refiner-cpu

(the command lives with the benchmark, whose ``blind-tv`` method holds TV's tuned weights) draws ``bank_size`` samples from the photographs with :class:`~deblur_edu.synthesis.BlurSynthesis`
(``bank_patch``² crops, the camera shakes moved onto their centre of mass, one σ per batch of
``BANK_BATCH`` so that blind TV's one weight per call fits every image of it), runs blind TV on
each batch and writes ``(blurred, first, sharp)`` (8-bit, float16, float16) under the config's ``bank`` folder,
one file per part (parts run side by side, one per core). Training (:class:`FirstStageBank`)
then cuts ``patch``² crops from random bank samples, each in one of the square's 8 orientations
(the same for the three images: a rotated blur is the blur of the rotated image by the rotated
kernel), as a pure function of ``(seed, step)``. The last ``holdout`` samples are never trained
on: they are the validation batch.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from typing import Callable

from .synthesis import BlurSynthesis, ImageBank, step_generator
from .data import load_photos
from .metrics import psnr

#: samples per blind-TV call while building a bank (one noise level each)
BANK_BATCH = 8
KEYS = ("blurred", "first", "sharp")
#: the stream that draws each bank batch's σ (the batch's own stream, seed and index, draws the rest)
SIGMA_SEED_OFFSET = 1


def bank_files(folder: str | Path) -> list[Path]:
    """The part files of the bank in ``folder``."""
    return sorted(Path(folder).glob("part-*.pt"))


def recipe(data: dict) -> dict:
    """What a bank's samples depend on (not the crops training cuts from them, nor the holdout)."""
    keys = ("photos", "bank_size", "bank_patch", "kernel_size", "extent_range", "sigma_range", "seed")
    return {key: (list(data[key]) if isinstance(data.get(key), (list, tuple)) else data.get(key)) for key in keys}


def bank_photos(data: dict, device: torch.device | str = "cpu") -> ImageBank:
    """The photographs a bank's crops are cut from: those large enough for a crop and its kernel's margin."""
    side = data["bank_patch"] + 2 * data["kernel_size"]
    return ImageBank(list(load_photos(data.get("photos"), min_side=side).values()), device)


def bank_synthesis(data: dict, photos: ImageBank, b: int, sigma: float | None = None) -> BlurSynthesis:
    """The synthesis of bank batch ``b``: its own σ (drawn from the seed and ``b``), or ``sigma`` (e.g. 0). The
    kernels and crops do not depend on σ, so ``sigma=0`` gives the same batch without its noise."""
    if sigma is None:
        g = step_generator(data["seed"] + SIGMA_SEED_OFFSET, b, photos.device)
        lo, hi = data["sigma_range"]
        sigma = lo + (hi - lo) * float(torch.rand(1, generator=g, device=photos.device))
    return BlurSynthesis(photos, patch=data["bank_patch"], kernel_size=data["kernel_size"],
                         extent_range=tuple(data.get("extent_range", (0.15, 0.95))), sigma_range=(sigma, sigma),
                         seed=data["seed"], centre_kernels=True)


def noise_free_blurred(data: dict) -> torch.Tensor:
    """Every bank sample's blurry image *without its noise* (8-bit, in the bank's order), recomputed from the recipe in
    seconds on the CPU: the target a reblurring module can learn (the noise in ``y`` is what no module can predict)."""
    photos = bank_photos(data)
    out = [(bank_synthesis(data, photos, b, sigma=0.0).batch(step=b, size=BANK_BATCH)["blurred"] * 255).round()
           .to("cpu", torch.uint8) for b in range(data["bank_size"] // BANK_BATCH)]
    return torch.cat(out)


def checked_noise_free(blurred: torch.Tensor, data: dict) -> torch.Tensor:
    """:func:`noise_free_blurred` on the CPU, checked against the stored blurry images: what separates the two must be
    noise of at most the recipe's largest σ (plus rounding). The draws are the CPU generator's; a bank built on another
    device drew other scenes and kernels, and is refused rather than paired with the wrong targets."""
    clean = noise_free_blurred(data)
    residual = (blurred.float() - clean.float()).flatten(1).std(dim=1) / 255
    if not bool((residual <= 1.5 * data["sigma_range"][1] + 2 / 255).all()):
        raise ValueError("the bank's blurry images are not its recipe's images plus noise (was it built on another "
                         "device?): rebuild it on the CPU (python -m deblur_edu.bench.first_stage --device cpu) to train "
                         "with reblur_target: noise-free.")
    return clean


def build_part(data: dict, part: int, parts: int, first_stage: Callable[[torch.Tensor], torch.Tensor],
               device: torch.device | str = "cpu", log=print) -> Path:
    """Compute batches ``part, part + parts, …`` of the bank the config's ``data`` section describes, the
    first stage ``first_stage(y) → x̂₀`` run on each, and write them to ``bank/part-PART-of-PARTS.pt``. Every batch is a pure function of
    (seed, batch index), so the parts together are the same bank however many there are."""
    count, side = data["bank_size"], data["bank_patch"]
    if count % BANK_BATCH:
        raise ValueError(f"data.bank_size must be a multiple of {BANK_BATCH}, got {count}.")
    if not 0 <= part < parts:
        raise ValueError(f"--part must be I/N with 0 <= I < N, got {part}/{parts}.")
    if parts > count // BANK_BATCH:
        raise ValueError(f"a bank of {count} samples has {count // BANK_BATCH} batches of {BANK_BATCH}: "
                         f"it cannot be split into {parts} parts.")
    path = Path(data["bank"]) / f"part-{part}-of-{parts}.pt"
    if path.is_file():  # never recomputed, never overwritten: kept if it was built from this recipe
        if torch.load(path, weights_only=True).get("data") != recipe(data):
            raise ValueError(f"{path} was built from another data recipe; delete {path.parent} to rebuild the bank.")
        log(f"kept {path} (built from this recipe)")
        return path
    photos = bank_photos(data, device)
    out = {key: [] for key in KEYS}
    batches = range(part, count // BANK_BATCH, parts)
    start = time.time()
    for i, b in enumerate(batches):
        synth = bank_synthesis(data, photos, b)
        sigma = synth.sigma_range[0]
        batch = synth.batch(step=b, size=BANK_BATCH)
        with torch.no_grad():
            first = first_stage(batch["blurred"])
        out["blurred"].append((batch["blurred"] * 255).round().to("cpu", torch.uint8))  # 8-bit by construction: exact
        out["first"].append(first.to("cpu", torch.float16))
        out["sharp"].append(batch["sharp"].to("cpu", torch.float16))
        log(f"part {part}/{parts}: batch {i + 1}/{len(batches)} (σ = {sigma:.4f}), {time.time() - start:.0f} s")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")  # renamed when complete: a killed run leaves no part that looks finished
    torch.save({"data": recipe(data), "batches": list(batches), "seconds": time.time() - start,
                **{key: torch.cat(v) for key, v in out.items()}}, partial)
    partial.replace(path)
    log(f"wrote {path}")
    return path


#: which bank samples training uses: all, or only those whose first stage beats the blurry input
KEEP = ("all", "usable")


def usable(images: dict[str, torch.Tensor], border: int) -> torch.Tensor:
    """Indices of the samples whose first-stage estimate is closer to the sharp image than the blurry
    input is (PSNR, ``border`` pixels left out): where blind TV found a usable kernel.

    Blind TV fails on many photograph crops (little structure, or texture that misleads the kernel
    step), far more often than on the benchmarks' images. Trained on every sample, the second stage
    learns that x̂₀ is often useless and leans on y; kept to the usable ones, it learns to repair an
    estimate that is roughly right — and where blind TV fails at test time, it fails with it.
    """
    sharp = as_float(images["sharp"])
    gain = (psnr(as_float(images["first"]).clamp(0, 1), sharp, crop=border)
            - psnr(as_float(images["blurred"]), sharp, crop=border))
    return torch.nonzero(gain > 0).flatten()


def as_float(x: torch.Tensor) -> torch.Tensor:
    """A bank's stored images as float32 in [0, 1] (8-bit ones divided by 255)."""
    return x.float() / 255 if x.dtype == torch.uint8 else x.float()


REBUILD = "delete the folder and rebuild it with python -m deblur_edu.bench.first_stage"


def load_parts(bank: str | Path, expected: dict | None = None) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """The bank's images (all parts, batches back in their global order) and its parts' records.
    ``expected``: the recipe (:func:`recipe`) the caller's config describes; a bank built from another is refused."""
    files = bank_files(bank)
    if not files:
        raise FileNotFoundError(f"no first-stage bank in {bank}: build it first with python -m deblur_edu.bench.first_stage "
                                f"--config PRESET (see the Makefile's blind-refiner-checkpoint).")
    parts = [torch.load(f, weights_only=True) for f in files]
    batches = torch.cat([torch.tensor(p["batches"]) for p in parts])
    built = parts[0]["data"]
    if any(p["data"] != built for p in parts) or sorted(batches.tolist()) != list(range(built["bank_size"] // BANK_BATCH)):
        raise ValueError(f"the parts in {bank} do not make one bank (another recipe, a missing part, or parts of two "
                         f"splittings): {REBUILD}.")
    if expected is not None and built != expected:
        raise ValueError(f"the bank in {bank} was built from another data recipe than this config's: {REBUILD}.")
    order = batches.argsort()
    images = {key: torch.cat([p[key].reshape(len(p["batches"]), -1, *p[key].shape[1:]) for p in parts])[order]
              .flatten(0, 1) for key in KEYS}
    return images, parts


class FirstStageBank:
    """Training batches of ``(blurred, first, sharp)`` crops from a bank built by :func:`build_part`.

    Args:
        bank: the folder of part files.
        patch: side of the crops.
        holdout: the bank's last samples, kept for validation (:meth:`held_out`).
        seed: with the step, fixes every draw.
        keep: ``"all"`` samples, or only the ``"usable"`` ones (:func:`usable`; the holdout is then taken
            from those too, so validation scores the samples where the first stage worked).
        expected: the recipe the bank must have been built from (a config's, :func:`recipe`), if given.
        noise_free: add each sample's blurry image without its noise as ``blurred_clean`` (:func:`noise_free_blurred`:
            the target of a reblurring module).

    Attributes:
        build_seconds: wall-clock seconds the bank took to build, parts side by side (the slowest part's).
        built, kept: samples in the bank, and those training and validation use.
    """

    def __init__(self, bank: str | Path, patch: int, holdout: int = 32, seed: int = 0,
                 device: torch.device | str = "cpu", keep: str = "all", expected: dict | None = None,
                 noise_free: bool = False):
        if keep not in KEEP:
            raise ValueError(f"data.keep must be one of {KEEP}, got {keep!r}.")
        images, parts = load_parts(bank, expected)
        if noise_free:
            images["blurred_clean"] = checked_noise_free(images["blurred"], parts[0]["data"])
        self.build_seconds = max(float(p.get("seconds", 0.0)) for p in parts)
        self.built = len(images["sharp"])
        if keep == "usable":
            chosen = usable(images, parts[0]["data"]["kernel_size"])
            images = {key: v[chosen] for key, v in images.items()}
        self.kept, side = len(images["sharp"]), images["sharp"].shape[-1]
        if patch > side:
            raise ValueError(f"data.patch = {patch} exceeds the bank's crops ({side} px).")
        if not 0 < holdout < self.kept:
            raise ValueError(f"data.holdout = {holdout} must leave samples to train on: the bank keeps {self.kept} of "
                             f"its {self.built} (keep: {keep}); use a smaller holdout or a larger bank.")
        self.device = torch.device(device)
        self.images = {key: v.to(self.device) for key, v in images.items()}
        self.patch, self.holdout, self.seed, self.train_count = patch, holdout, seed, self.kept - holdout

    def batch(self, step: int, size: int) -> dict[str, torch.Tensor]:
        """The ``size`` training crops of ``step`` (float32, on the device): ``blurred``, ``first``, ``sharp`` (and
        ``blurred_clean`` with ``noise_free``), the same crop and orientation of each."""
        g = step_generator(self.seed, step, self.device)
        side, p = self.images["sharp"].shape[-1], self.patch
        index = torch.randint(self.train_count, (size,), generator=g, device=self.device)
        top = torch.randint(side - p + 1, (size,), generator=g, device=self.device)
        left = torch.randint(side - p + 1, (size,), generator=g, device=self.device)
        orientation = torch.randint(8, (size,), generator=g, device=self.device)
        r = torch.arange(p, device=self.device)
        rows, cols = (top[:, None] + r)[:, :, None], (left[:, None] + r)[:, None, :]  # (B, p, 1), (B, 1, p)
        out = {}
        for key in self.images:
            # one gather: sample index[b], pixel (rows[b, i], cols[b, j]) → (B, p, p) by broadcasting
            x = as_float(self.images[key][index[:, None, None], 0, rows, cols])[:, None]
            # the square's 8 symmetries, the same for all three images: bit 0 flips rows, bit 1 columns, bit 2 transposes
            x = torch.where((orientation & 1).bool()[:, None, None, None], x.flip(-2), x)
            x = torch.where((orientation & 2).bool()[:, None, None, None], x.flip(-1), x)
            out[key] = torch.where((orientation & 4).bool()[:, None, None, None], x.transpose(-2, -1), x)
        return out

    def held_out(self, size: int) -> dict[str, torch.Tensor]:
        """The first ``size`` held-out samples, centre crops (the validation batch; at most ``holdout`` of them)."""
        size = min(size, self.holdout)
        side, p = self.images["sharp"].shape[-1], self.patch
        a = (side - p) // 2
        return {key: as_float(v[self.train_count:self.train_count + size, :, a:a + p, a:a + p])
                for key, v in self.images.items()}
