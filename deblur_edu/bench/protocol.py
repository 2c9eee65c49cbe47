"""The benchmark protocol: splits, test cases and their reproducible noise.

Per (image, kernel, boundary, σ):

- ``x`` = the centre ``crop``×``crop`` of the image;
- ``circular``: ``y = k ⊛_circ x``;
  ``valid``: ``y = valid(k ⊛ scene)`` where the scene is x plus the ``h − 1`` rows and
  ``w − 1`` columns of real image content around it, so ``y`` has x's size but depends
  on pixels no method sees;
- ``y += σ·n`` with ``n`` drawn from a CPU ``torch.Generator`` seeded by :func:`case_seed`;
- a method receives ``(y, k, σ)`` — never the boundary mode — and is scored on
  ``clip(x̂, 0, 1)`` against ``x`` with ``r = max(h, w) // 2`` border pixels cropped.

Splits: ``test`` — Set12 09–12 (256² centre crops of the 512² originals) × Levin's 8
kernels; ``tune`` — Set12 05 and 07 (224² crops of the 256² images) × 8 seeded random
camera-shake kernels (never Levin's); ``extra`` — a second test set, Set12 01–04 and 06
(224² crops of the 256² images) × Levin's kernels, never used to tune anything; ``blind`` — the
blind deblurrers' test set, Set12 09–12 (as ``test``) × 8 seeded camera shakes of 13 to 31 px
(:func:`blind_kernels`): drawn by the same model as the blind training kernels, from seeds no
training sample uses. Hyper-parameters are chosen on ``tune`` only.

Where the data came from is part of the result (``Benchmark.data``): ``"levin09+set12"``,
``"tune-shakes+set12"``, ``"user"`` for a side the caller gave (``--images``/``--kernels``),
or ``"fallback"`` — the offline stand-ins, used only when nothing was asked for explicitly.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data import centre_crop, levin09, load_image, sample_image, set12
from ..kernels import camera_shake
from ..physics import Blur, add_noise, scene_padding

SPLITS = {
    "test": {"images": ["09", "10", "11", "12"], "crop": 256},
    "tune": {"images": ["05", "07"], "crop": 224},
    "extra": {"images": ["01", "02", "03", "04", "06"], "crop": 224},
    "blind": {"images": ["09", "10", "11", "12"], "crop": 256},
}
TUNE_KERNEL_SEED = 2009
TUNE_KERNEL_SIZE = 25


def case_seed(split: str, image: str, kernel_index: int, boundary: str, sigma: float) -> int:
    """Noise seed of one case: the first 15 hex digits of
    ``sha256(f"{split}|{image}|{kernel_index}|{boundary}|{sigma:.4f}")`` as an integer."""
    key = f"{split}|{image}|{kernel_index}|{boundary}|{sigma:.4f}".encode()
    return int(hashlib.sha256(key).hexdigest()[:15], 16)


def tune_kernels() -> list[torch.Tensor]:
    """The tune split's 8 camera-shake kernels (seeded; disjoint from Levin's)."""
    g = torch.Generator().manual_seed(TUNE_KERNEL_SEED)
    return [camera_shake(TUNE_KERNEL_SIZE, g) for _ in range(8)]


#: the blind split's kernel sides (13 to 31 px, about evenly spaced) and the seed of its first kernel
BLIND_KERNEL_SIZES = (13, 15, 19, 21, 23, 25, 29, 31)
BLIND_KERNEL_SEED = 4 * 10**9


def blind_kernels() -> list[torch.Tensor]:
    """The ``blind`` split's 8 camera shakes: side ``BLIND_KERNEL_SIZES[j]``, path spanning
    U(0.3, 0.9)·(side − 2) px (:func:`~deblur_edu.kernels.camera_shake`), seed ``BLIND_KERNEL_SEED + j``.

    The blind training recipe draws its shakes from the same random-walk model on a 31-px grid,
    with spans U(0.15, 0.95)·29 = 4.4 to 27.6 px (:class:`~deblur_edu.synthesis.BlurSynthesis`).
    These spans run from 3.3 px (the 13-px kernel's shortest) to 26 px: all but the shortest lie in
    the training range. Training draws them from each step's own generator, not from these seeds.

    Example:
        >>> [k.shape[-1] for k in blind_kernels()]
        [13, 15, 19, 21, 23, 25, 29, 31]
    """
    return [camera_shake(size, torch.Generator().manual_seed(BLIND_KERNEL_SEED + j))
            for j, size in enumerate(BLIND_KERNEL_SIZES)]


def split_kernels(split: str, data_dir: str | Path | None = None) -> list[torch.Tensor]:
    """A split's own kernels: seeded shakes for ``tune`` and ``blind``, Levin's 8 otherwise."""
    if split == "tune":
        return tune_kernels()
    if split == "blind":
        return blind_kernels()
    return levin09(data_dir)


#: what ``Benchmark.data`` names as the kernels' source, per split (Levin's otherwise)
KERNEL_SOURCES = {"tune": "tune-shakes", "blind": "blind-shakes"}


def load_kernels(path: str | Path) -> list[torch.Tensor]:
    """Kernels from an ``.npz`` of 2-D arrays (in key order) or a folder of PNG/NPY files
    (sorted by name); each made non-negative and normalised to sum 1."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"kernels {path} not found: give an .npz file or a folder of .png/.npy files.")
    if path.is_dir():
        arrays = []
        for f in sorted(path.iterdir()):
            if f.suffix == ".npy":
                arrays.append(np.load(f))
            elif f.suffix == ".png":
                arrays.append(load_image(f)[0, 0].numpy())
    elif path.suffix == ".npz":
        with np.load(path) as z:
            arrays = [z[key] for key in z.files]
    else:
        raise ValueError(f"kernels must be an .npz file or a folder of .png/.npy files, got {path}.")
    if not arrays:
        raise FileNotFoundError(f"no kernels found in {path}.")
    out = []
    for a in arrays:
        t = torch.from_numpy(np.asarray(a, dtype=np.float64)).clamp(min=0)
        if t.dim() != 2 or float(t.sum()) <= 0:
            raise ValueError(f"a kernel in {path} is not a non-zero 2-D array (shape {tuple(t.shape)}).")
        out.append((t / t.sum()).float()[None, None])
    return out


def load_images(directory: str | Path) -> dict[str, torch.Tensor]:
    """Every PNG in a folder, as gray (1, 1, H, W) tensors keyed by file stem."""
    if not Path(directory).is_dir():
        raise FileNotFoundError(f"the images folder {directory} does not exist (or is not a folder).")
    files = sorted(Path(directory).glob("*.png"))
    if not files:
        raise FileNotFoundError(f"no .png images in {directory}.")
    return {f.stem: load_image(f) for f in files}


@dataclass
class Benchmark:
    """Images, kernels and crop size of one benchmark run; ``data`` says where they came from
    (see the module docstring), ``note`` warns when it is the fallback."""

    split: str
    images: dict[str, torch.Tensor]
    kernels: list[torch.Tensor]
    crop: int
    note: str = ""
    data: str = ""

    def check_sizes(self) -> None:
        for name, img in self.images.items():
            for i, k in enumerate(self.kernels):
                need = self.crop + max(k.shape[-2:]) - 1
                if min(img.shape[-2:]) < need:
                    raise ValueError(
                        f"image {name} ({tuple(img.shape[-2:])}) is smaller than crop + kernel "
                        f"({self.crop} + {max(k.shape[-2:])} − 1 = {need}) for kernel {i}; use a smaller --crop."
                    )

    def case(self, image: str, kernel_index: int, boundary: str, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
        """``(y, x)`` for one case, following the protocol in the module docstring."""
        img = self.images[image]
        k = self.kernels[kernel_index]
        top, bottom, left, right = scene_padding(*k.shape[-2:])
        side = self.crop
        H, W = img.shape[-2:]
        r0, c0 = (H - side) // 2, (W - side) // 2
        x = img[..., r0 : r0 + side, c0 : c0 + side]
        if boundary == "circular":
            y = Blur(k, "circular")(x)
        elif boundary == "valid":
            scene = img[..., r0 - top : r0 + side + bottom, c0 - left : c0 + side + right]
            y = Blur(k, "valid")(scene)
        else:
            raise ValueError(f"benchmark boundary must be 'circular' or 'valid', got {boundary!r}.")
        g = torch.Generator().manual_seed(case_seed(self.split, image, kernel_index, boundary, sigma))
        return add_noise(y, sigma, g), x

    def batch(self, kernel_index: int, boundary: str, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
        """All images of the split for one kernel, stacked: ``(y, x)`` of shape (N, 1, crop, crop)."""
        pairs = [self.case(name, kernel_index, boundary, sigma) for name in self.images]
        return torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])


def load_benchmark(
    split: str = "test",
    images_dir: str | Path | None = None,
    kernels_path: str | Path | None = None,
    crop: int | None = None,
    data_dir: str | Path | None = None,
    fallback: bool = False,
) -> Benchmark:
    """Assemble a benchmark split. Explicit ``images_dir``/``kernels_path`` override the split's.

    A path the caller gives (``images_dir``, ``kernels_path``, ``data_dir``) must hold its
    data: missing, empty or unreadable is an error naming it, never replaced. With
    ``fallback=True`` and none of them given, a data directory without the benchmark files
    does not fail: the offline sample images and generated kernels are used instead,
    ``data`` is ``"fallback"`` and ``note`` says so.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {sorted(SPLITS)}.")
    spec = SPLITS[split]
    if crop is not None and (isinstance(crop, bool) or not isinstance(crop, int) or crop < 1):
        raise ValueError(f"crop must be a positive number of pixels (default: {spec['crop']} for {split}), got {crop!r}.")
    crop = spec["crop"] if crop is None else crop
    explicit = any(p is not None for p in (images_dir, kernels_path, data_dir))
    try:
        images = load_images(images_dir) if images_dir is not None else set12(spec["images"], data_dir)
        if kernels_path is not None:
            kernels = load_kernels(kernels_path)
        else:
            kernels = split_kernels(split, data_dir)
    except FileNotFoundError as err:
        if explicit or not fallback:
            raise
        return fallback_benchmark(split, crop, err)
    sources = ("user" if kernels_path is not None else KERNEL_SOURCES.get(split, "levin09"),
               "user" if images_dir is not None else "set12")
    bench = Benchmark(split, images, kernels, crop, data="user" if sources == ("user", "user") else "+".join(sources))
    bench.check_sizes()
    return bench


def fallback_benchmark(split: str, crop: int, reason: Exception) -> Benchmark:
    """The offline stand-in: four scikit-image photos and four seeded camera shakes, marked
    ``data="fallback"`` — never the Levin × Set12 numbers, and never written into a README."""
    note = (
        f"benchmark data not found ({reason}); FALLING BACK to offline scikit-image images "
        f"and generated kernels — these numbers are not the Levin × Set12 benchmark."
    )
    images = {n: centre_crop(sample_image(n), 300) for n in ("astronaut", "coffee", "rocket", "camera")}
    g = torch.Generator().manual_seed(7)
    kernels = [camera_shake(TUNE_KERNEL_SIZE, g) for _ in range(4)]
    bench = Benchmark(split, images, kernels, min(crop, 256), note, data="fallback")
    bench.check_sizes()
    return bench


# ----- the end-to-end U-Net's kernels (reblur-l1) ---------------------------------------------------------------
#: the end-to-end blind U-Net's kernels (reblur-l1): camera shakes of its training size, from seeds no training sample uses
SHAKE_SIZE = 13
SHAKE_SEEDS = {"test": 10**9, "tune": 2 * 10**9, "extra": 3 * 10**9}


def shake_kernels(split: str, n: int = 8) -> list[torch.Tensor]:
    """The end-to-end U-Net's kernels: ``n`` camera shakes of ``SHAKE_SIZE`` px from seeds no training sample uses."""
    return [camera_shake(SHAKE_SIZE, torch.Generator().manual_seed(SHAKE_SEEDS[split] + j)) for j in range(n)]


def chapter_benchmark(split: str = "test", kernels: str = "shakes", crop: int | None = None,
                      data_dir: str | None = None) -> Benchmark:
    """Set12 (the split's images) with the end-to-end U-Net's camera shakes (13 px), or with Levin's kernels."""
    if kernels not in ("shakes", "levin"):
        raise ValueError(f"kernels must be 'shakes' or 'levin', got {kernels!r}.")
    bench = load_benchmark(split, crop=crop, data_dir=data_dir, fallback=True)
    if kernels == "shakes":
        data = "fallback" if bench.data == "fallback" else "shakes+" + bench.data.split("+")[-1]
        bench = Benchmark(bench.split, bench.images, shake_kernels(split), bench.crop, bench.note, data)
        bench.check_sizes()
    return bench



def score_crop(k: torch.Tensor) -> int:
    """Border pixels ignored when scoring: ``r = max(h, w) // 2``."""
    return max(k.shape[-2:]) // 2


def interior(t: torch.Tensor, crop: int) -> torch.Tensor:
    """``t`` without its ``crop``-pixel border (the scored region)."""
    return t[..., crop : t.shape[-2] - crop, crop : t.shape[-1] - crop]
