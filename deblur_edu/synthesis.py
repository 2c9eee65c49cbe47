r"""Training data made in batches on the training device: crops, kernels, blur, noise.

A network learns what natural images look like only from the images it is shown. This
module turns a folder of photographs (and, as a minority, synthetic dead-leaves images) into
an endless, reproducible stream of training batches — fast enough that a GPU never waits:

1. :class:`ImageBank` holds every training image in *one* tensor on the training device and
   cuts a whole batch of random crops with a single gather, each crop flipped and rotated by
   a random element of the square's symmetry group (8 ways: 4 rotations × mirror).
2. :func:`~deblur_edu.kernels.camera_shakes` draws a batch of camera-shake kernels at once.
3. The ``valid`` blur of the crops (one batched FFT, one kernel per image), Gaussian noise of
   a random σ per sample, and 8-bit quantisation, as a camera stores it.

Everything a batch contains is a pure function of ``(seed, step)`` on a given device
(:func:`step_generator`), so a run resumes exactly and a data-parallel run draws the same
global batch on every process and keeps its own slice.

Dead leaves (:func:`dead_leaves_batch`) are rendered without a loop over disks or pixels:
disks are grouped by radius into octaves, each disk visits only the pixels of a box that fits
its octave, and every pixel keeps the topmost disk that covers it (``scatter_reduce`` with
``amax`` over disk indices). Enough disks fall to cover the canvas, so no flat background is left.
"""

from __future__ import annotations

import hashlib
import math

import torch
import torch.nn.functional as F

from .checks import check_image
from .data import SAMPLE_NAMES, dead_leaves, load_photos, photo_files, sample_image, sha256
from .kernels import camera_shake, camera_shakes, centre_kernel
from .physics import Blur, add_noise, crop


def step_generator(seed: int, step: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded by ``(seed, step)``: the first 15 hex digits of
    ``sha256(f"{seed}|{step}")``. Each training step draws its batch from its own generator.

    Example:
        >>> a = torch.rand(2, generator=step_generator(0, 5))
        >>> torch.equal(a, torch.rand(2, generator=step_generator(0, 5)))
        True
    """
    key = hashlib.sha256(f"{seed}|{step}".encode()).hexdigest()[:15]
    return torch.Generator(device=device).manual_seed(int(key, 16))


def quantise_8bit(y: torch.Tensor) -> torch.Tensor:
    """What a camera stores: clipped to [0, 1] and rounded to 256 levels."""
    return y.clamp(0, 1).mul_(255).round_().div_(255)  # in place on clamp's copy: one allocation


class ImageBank:
    """Gray training images stored back to back in one flat tensor, cropped in batches.

    Image ``i`` (height ``H_i``, width ``W_i``) starts at ``offsets[i]``; pixel ``(r, c)`` of it
    is ``pixels[offsets[i] + r·W_i + c]``. A batch of crops is then one index computation and
    one gather, whatever the images' sizes — no padding to a common size, no Python loop.

    Args:
        images: gray images, each (H, W) or with leading axes of size 1, values in [0, 1].
        device: where the bank (and every crop) lives.
        weights: how often each image is drawn (default: by area, so every pixel of the
            collection is equally likely to be seen).

    Example:
        >>> bank = ImageBank([torch.rand(1, 1, 40, 50), torch.rand(1, 1, 64, 32)])
        >>> bank.crops(3, 24, torch.Generator().manual_seed(0)).shape
        torch.Size([3, 1, 24, 24])
    """

    def __init__(self, images: list[torch.Tensor], device: torch.device | str = "cpu",
                 weights: torch.Tensor | None = None):
        if not images:
            raise ValueError("an ImageBank needs at least one image.")
        for i, img in enumerate(images):
            if img.dim() < 2 or img.shape[-2:].numel() != img.numel():
                raise ValueError(f"image {i} must be one gray image, (H, W) or (1, 1, H, W); got shape {tuple(img.shape)}.")
        planes = [img.reshape(img.shape[-2:]) for img in images]
        self.device = torch.device(device)
        self.sizes = torch.tensor([p.shape for p in planes], device=self.device)
        self._smallest_side = min(min(p.shape) for p in planes)  # a Python int: no device read per batch
        lengths = self.sizes.prod(1)
        self.offsets = torch.cumsum(lengths, 0) - lengths
        self.pixels = torch.cat([p.reshape(-1).float() for p in planes]).to(self.device)
        self.weights = (lengths.double() if weights is None else torch.as_tensor(weights, dtype=torch.float64)).to(
            self.device)
        if self.weights.shape != (len(planes),) or not bool((self.weights >= 0).all()) or float(self.weights.sum()) <= 0:
            raise ValueError(f"weights must be {len(planes)} non-negative numbers, not all zero.")

    def __len__(self) -> int:
        return len(self.sizes)

    def smallest_side(self) -> int:
        return self._smallest_side

    def crops(self, n: int, size: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` random ``size``×``size`` crops, each in one of the 8 orientations of the square.

        The image is drawn by ``weights``, the corner uniformly among the positions where the
        crop fits; then the crop's local grid is transposed and/or mirrored (a rotation by a
        multiple of 90° is a transpose followed by a mirror). Returns (n, 1, size, size).
        """
        return gather_crops(self.pixels, *self.crop_index(n, size, generator))

    def crop_index(self, n: int, size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Where :meth:`crops` reads: ``(corner, along_i, along_j)``, (n,), (n, size), (n, size).

        Pixel (i, j) of crop b is ``pixels[corner[b] + along_i[b, i] + along_j[b, j]]``: the crop's
        pixel (i, j) reads the image at (R, C) with R = f1(j), C = f2(i) when transposed, else
        R = f1(i), C = f2(j) (f1, f2 the row / column mirrors), so R·W + C is a term in i plus a
        term in j — two (n, size) vectors instead of an (n, size, size) index.
        """
        if size > self.smallest_side():
            raise ValueError(f"crops of {size} px do not fit the smallest bank image "
                             f"({self.smallest_side()} px); use smaller patches or larger images.")
        opts = {"generator": generator, "device": self.device}
        image = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        H, W = self.sizes[image, 0], self.sizes[image, 1]
        top = (torch.rand(n, **opts, dtype=torch.float64) * (H - size + 1)).long()
        left = (torch.rand(n, **opts, dtype=torch.float64) * (W - size + 1)).long()
        orientation = torch.randint(8, (n,), **opts)
        r = torch.arange(size, device=self.device).expand(n, size)
        f1 = torch.where((orientation & 1).bool()[:, None], size - 1 - r, r)
        f2 = torch.where((orientation & 2).bool()[:, None], size - 1 - r, r)
        transpose = (orientation & 4).bool()[:, None]
        along_i = torch.where(transpose, f2, f1 * W[:, None])
        along_j = torch.where(transpose, f1 * W[:, None], f2)
        return self.offsets[image] + top * W + left, along_i, along_j


def gather_crops(pixels: torch.Tensor, corner: torch.Tensor, along_i: torch.Tensor, along_j: torch.Tensor) -> torch.Tensor:
    """The crops an :meth:`ImageBank.crop_index` describes: one broadcast sum and one gather, (n, 1, size, size)."""
    n, size = along_i.shape
    index = (corner[:, None] + along_i)[:, :, None] + along_j[:, None, :]  # (n, size, size): one large sum
    return pixels.index_select(0, index.flatten()).view(n, 1, size, size)


def dead_leaves_batch(n: int, size: int, generator: torch.Generator, r_min: float = 1.0,
                      r_max: float | None = None, coverage: float = 0.999,
                      device: torch.device | str | None = None) -> torch.Tensor:
    r"""``n`` dead-leaves images that the disks cover completely, rendered in one batch.

    The model of :func:`deblur_edu.data.dead_leaves` — disks with radius density
    ``p(r) ∝ r⁻³`` on [r_min, r_max] (scale-invariant, like photographs), uniform grey levels,
    each disk hiding what lies below — with as many disks as it takes for a pixel to be left
    uncovered with probability ``1 − coverage``:  ``N = −ln(1 − coverage) · A / (π E[r²])``
    with ``A`` the area centres fall on and ``E[r²] = 2 r_min² ln(r_max / r_min) / (1 − (r_min/r_max)²)``.

    Rendering: a disk of radius r in the octave [2ʲ r_min, 2ʲ⁺¹ r_min) touches only the
    pixels of a box of side ``2⌈2ʲ⁺¹ r_min⌉ + 1`` around its centre, so the work per disk
    is bounded by its own size, not the canvas's. Each covered pixel keeps the largest disk
    index among the disks covering it (``scatter_reduce(..., "amax")``): the last to fall.

    Returns:
        float32 (n, 1, size, size) in [0, 1] on ``device`` (default: the generator's).
    Example:
        >>> x = dead_leaves_batch(2, 48, torch.Generator().manual_seed(0))
        >>> x.shape, bool(x.min() >= 0) and bool(x.max() <= 1)
        (torch.Size([2, 1, 48, 48]), True)
    """
    if not 0 < coverage < 1:
        raise ValueError(f"coverage must lie in (0, 1), got {coverage}.")
    device = torch.device(device) if device is not None else generator.device
    r_max = r_max or size / 4
    if not 0 < r_min < r_max:
        raise ValueError(f"radii must satisfy 0 < r_min < r_max, got r_min={r_min}, r_max={r_max}.")
    side = size + 2 * r_max  # centres fall on the canvas widened by r_max on every side
    mean_r2 = 2 * r_min**2 * math.log(r_max / r_min) / (1 - (r_min / r_max) ** 2)
    per_image = math.ceil(-math.log(1 - coverage) * side**2 / (math.pi * mean_r2))
    opts = {"generator": generator, "device": device, "dtype": torch.float64}
    u = torch.rand(n, per_image, **opts)
    radius = (r_min**-2 - u * (r_min**-2 - r_max**-2)) ** -0.5  # inverse CDF of p(r) ∝ r⁻³
    centre = torch.rand(n, per_image, 2, **opts) * side - r_max
    value = torch.rand(n, per_image + 1, **opts).float()  # the last one: where no disk fell
    top = torch.full((n * size * size + 1,), -1, dtype=torch.long, device=device)  # + a slot for misses
    ids = torch.arange(per_image, device=device).expand(n, per_image)
    first = (torch.arange(n, device=device) * size * size)[:, None]
    octave = torch.floor(torch.log2(radius / r_min)).long()
    for j in range(int(math.log2(r_max / r_min)) + 1):
        chosen = octave == j
        if not bool(chosen.any()):
            continue
        c, r, d = centre[chosen], radius[chosen], ids[chosen]
        f = first.expand(n, per_image)[chosen]
        half = math.ceil(2 ** (j + 1) * r_min)
        offsets = torch.arange(-half, half + 1, device=device, dtype=torch.float64)
        rows = torch.round(c[:, 0, None, None]) + offsets[None, :, None]  # (disks, box, 1)
        cols = torch.round(c[:, 1, None, None]) + offsets[None, None, :]  # (disks, 1, box)
        inside = ((rows - c[:, 0, None, None]) ** 2 + (cols - c[:, 1, None, None]) ** 2 <= r[:, None, None] ** 2)
        inside &= (rows >= 0) & (rows < size) & (cols >= 0) & (cols < size)
        index = f[:, None, None] + rows.clamp(0, size - 1).long() * size + cols.clamp(0, size - 1).long()
        index = torch.where(inside, index, torch.full_like(index, n * size * size))
        top.scatter_reduce_(0, index.flatten(), d[:, None, None].expand_as(index).flatten(), "amax")
    top = top[:-1].reshape(n, size * size)
    top = torch.where(top < 0, per_image, top)
    return torch.gather(value, 1, top).reshape(n, 1, size, size)


def dead_leaves_bank(count: int, size: int, seed: int, device: torch.device | str = "cpu") -> list[torch.Tensor]:
    """``count`` dead-leaves images of ``size``² rendered once (to be cropped from, like photos)."""
    generator = torch.Generator(device=device).manual_seed(seed)
    return list(dead_leaves_batch(count, size, generator, device=device).unbind(0))


class BlurSynthesis:
    r"""Batches of (blurred, sharp, kernel, σ) made on the training device.

    For every sample: a sharp scene cropped from the photo bank (or, with probability
    ``dead_leaves_fraction``, from a bank of dead-leaves images), a camera-shake kernel of
    ``kernel_size``² whose path spans ``extent_range``·(kernel_size − 2) pixels, the ``valid``
    blur ``y = k ⊛ scene`` (the scene is ``kernel_size − 1`` pixels larger than ``y``; one
    batched FFT), noise ``σ ~ U(sigma_range)``, and 8-bit quantisation (``quantise``). The
    target is the scene's centre, which has ``y``'s size.

    Args:
        photos: the photo bank (an :class:`ImageBank`).
        dead_leaves: the dead-leaves bank, or None.
        patch: side of ``y`` and of the target.
        kernel_size, extent_range, sigma_range, quantise, dead_leaves_fraction: see above.
        seed: with the step, fixes every draw (:func:`step_generator`).
        centre_kernels: move each kernel's centre of mass onto its centre pixel
            (:func:`~deblur_edu.kernels.centre_kernel`), so that the target is in the
            frame a blind method can recover: a shake and its shifted copy blur to the same y, up to a shift.
            The kernels then come on a wider grid (:meth:`support`).

    Example:
        >>> bank = ImageBank([torch.rand(1, 1, 80, 80)])
        >>> synth = BlurSynthesis(bank, patch=32, kernel_size=9)
        >>> b = synth.batch(step=0, size=4)
        >>> b["blurred"].shape, b["sharp"].shape, b["kernel"].shape, b["sigma"].shape
        (torch.Size([4, 1, 32, 32]), torch.Size([4, 1, 32, 32]), torch.Size([4, 1, 9, 9]), torch.Size([4]))
    """

    def __init__(self, photos: ImageBank, dead_leaves: ImageBank | None = None, patch: int = 64,
                 kernel_size: int = 31, extent_range: tuple[float, float] = (0.15, 0.95),
                 sigma_range: tuple[float, float] = (0.0, 0.04), quantise: bool = True,
                 dead_leaves_fraction: float = 0.0, seed: int = 0, centre_kernels: bool = False):
        if dead_leaves_fraction > 0 and dead_leaves is None:
            raise ValueError("dead_leaves_fraction > 0 needs a dead-leaves bank.")
        if not 0 <= dead_leaves_fraction <= 1:
            raise ValueError(f"dead_leaves_fraction must lie in [0, 1], got {dead_leaves_fraction}.")
        lo, hi = sigma_range
        if not 0 <= lo <= hi:
            raise ValueError(f"sigma_range must satisfy 0 <= low <= high, got {sigma_range}.")
        self.photos, self.dead_leaves = photos, dead_leaves
        self.patch, self.kernel_size, self.extent_range = patch, kernel_size, tuple(extent_range)
        self.sigma_range, self.quantise = (float(lo), float(hi)), quantise
        self.dead_leaves_fraction, self.seed = dead_leaves_fraction, seed
        self.centre_kernels = centre_kernels
        self.device = photos.device
        # both banks back to back, so that a batch mixing them is one gather (None: photos only)
        self._pixels = (torch.cat([photos.pixels, dead_leaves.pixels.to(self.device)])
                        if dead_leaves is not None and dead_leaves_fraction > 0 else None)

    def support(self) -> int:
        """Side of the kernels' grid: ``kernel_size``, or ``kernel_size + 2·(kernel_size // 2)`` with
        ``centre_kernels`` (a shake's centre of mass can sit up to half its span from the grid's centre)."""
        return self.kernel_size + 2 * (self.kernel_size // 2) if self.centre_kernels else self.kernel_size

    def scenes(self, n: int, side: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` sharp crops of ``side``²: photos, and dead leaves with probability ``dead_leaves_fraction``."""
        photo = self.photos.crop_index(n, side, generator)
        if self._pixels is None:
            return gather_crops(self.photos.pixels, *photo)
        leaf = self.dead_leaves.crop_index(n, side, generator)
        use = torch.rand(n, generator=generator, device=self.device) < self.dead_leaves_fraction
        # choose each sample's bank on its (n,) and (n, side) index vectors, then gather once from both banks
        corner = torch.where(use, leaf[0] + self.photos.pixels.numel(), photo[0])
        along_i = torch.where(use[:, None], leaf[1], photo[1])
        along_j = torch.where(use[:, None], leaf[2], photo[2])
        return gather_crops(self._pixels, corner, along_i, along_j)

    def batch(self, step: int, size: int) -> dict[str, torch.Tensor]:
        """The ``size`` samples of training step ``step`` (a pure function of seed and step)."""
        g = step_generator(self.seed, step, self.device)
        scene = self.scenes(size, self.patch + self.support() - 1, g)
        k = camera_shakes(size, self.kernel_size, g, self.extent_range, device=self.device)
        if self.centre_kernels:  # on a grid wide enough that the roll to the centre of mass never wraps
            k = centre_kernel(F.pad(k, [self.kernel_size // 2] * 4))
        A = Blur(k, "valid", check_inputs=False)
        lo, hi = self.sigma_range
        sigma = lo + (hi - lo) * torch.rand(size, generator=g, device=self.device)
        noise = torch.randn(size, 1, self.patch, self.patch, generator=g, device=self.device)
        y = A(scene)
        y.addcmul_(sigma[:, None, None, None], noise)  # y += σ·n in place: the batch is made, not differentiated
        if self.quantise:
            y = quantise_8bit(y)
        return {"blurred": y, "sharp": crop(scene, A.pads), "kernel": k, "sigma": sigma}


class DenoisingSynthesis(BlurSynthesis):
    r"""Batches of (noisy, sharp, σ) for training a Gaussian denoiser: ``x + σ·n``.

    The same photo and dead-leaves crops as :class:`BlurSynthesis`, no blur and no
    quantisation (a prior step in plug-and-play sees Gaussian-like errors of any size).
    σ is log-uniform on ``sigma_range`` (``0 < low``): plug-and-play lowers its denoising
    level geometrically (:func:`~deblur_edu.learned.pnp.dpir_schedule`), so every octave of σ
    matters alike — and the last, weakest steps decide the fine detail.

    Example:
        >>> synth = DenoisingSynthesis(ImageBank([torch.rand(1, 1, 80, 80)]), patch=32, sigma_range=(0.002, 0.2))
        >>> sorted(synth.batch(step=0, size=2))
        ['noisy', 'sharp', 'sigma']
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.sigma_range[0] > 0:
            raise ValueError(f"a denoiser's sigma_range must start above 0 (σ is drawn log-uniformly), "
                             f"got {self.sigma_range}.")

    def batch(self, step: int, size: int) -> dict[str, torch.Tensor]:
        g = step_generator(self.seed, step, self.device)
        x = self.scenes(size, self.patch, g)
        lo, hi = self.sigma_range
        sigma = lo * (hi / lo) ** torch.rand(size, generator=g, device=self.device)
        noise = torch.randn(x.shape, generator=g, device=self.device)
        return {"noisy": x + sigma[:, None, None, None] * noise, "sharp": x, "sigma": sigma}


# ----- per-sample training data (the chapters' earlier recipe) -----------------------
def valid_blur_pair(
    scene: torch.Tensor, k: torch.Tensor, sigma: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Blur a scene with the ``valid`` model: returns (y, x) with x the scene's centre.

    ``y = valid(k ⊛ scene) + n`` has the shape of ``x = crop(scene)``: the pixels of the
    scene outside ``x`` were blurred into ``y`` but are never seen sharp.
    """
    A = Blur(k, "valid")
    y = add_noise(A(scene), sigma, generator)
    return y, crop(scene, A.pads)


class BlurDataset(torch.utils.data.Dataset):
    """On-the-fly blur pairs: sharp crop, random camera-shake kernel, random σ.

    Sample ``i`` is a pure function of ``(seed, i)``: its own ``torch.Generator`` picks a
    source (dead leaves, or a random crop of one of the offline sample images), a
    camera-shake kernel and a noise level ``σ ~ U[sigma_min, sigma_max]``; the blurred
    image is made with the physically right ``valid`` model, optionally quantised to
    8 bits like a real camera. Nothing here touches the benchmark's test images or kernels.

    Returns a dict: ``blurred`` (1, P, P), ``sharp`` (1, P, P), ``kernel`` (1, K, K),
    ``sigma`` (scalar tensor).

    Example:
        >>> ds = BlurDataset(length=8, patch=64, kernel_size=15)
        >>> sorted(ds[0])
        ['blurred', 'kernel', 'sharp', 'sigma']
    """

    def __init__(
        self,
        length: int = 1000,
        patch: int = 128,
        kernel_size: int = 25,
        sigma_range: tuple[float, float] = (0.0, 0.04),
        dead_leaves_fraction: float = 0.5,
        images: list[torch.Tensor] | None = None,
        quantise: bool = True,
        seed: int = 0,
    ):
        self.length = length
        self.patch = patch
        self.kernel_size = kernel_size
        self.sigma_range = sigma_range
        self.dead_leaves_fraction = dead_leaves_fraction
        self.images = images if images is not None else [sample_image(n) for n in SAMPLE_NAMES]
        for i, img in enumerate(self.images):
            check_image(img, f"images[{i}]")
        self.quantise = quantise
        self.seed = seed

    def __len__(self) -> int:
        return self.length

    def _scene(self, g: torch.Generator) -> torch.Tensor:
        side = self.patch + self.kernel_size - 1
        if float(torch.rand(1, generator=g)) < self.dead_leaves_fraction:
            return dead_leaves(side, g, n_disks=max(500, side * 8))
        img = self.images[int(torch.randint(len(self.images), (1,), generator=g))]
        H, W = img.shape[-2:]
        top = int(torch.randint(H - side + 1, (1,), generator=g))
        left = int(torch.randint(W - side + 1, (1,), generator=g))
        return img[..., top : top + side, left : left + side].mean(1, keepdim=True)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if not 0 <= i < self.length:
            raise IndexError(i)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        scene = self._scene(g)
        k = camera_shake(self.kernel_size, g)
        lo, hi = self.sigma_range
        sigma = lo + (hi - lo) * float(torch.rand(1, generator=g))
        y, x = valid_blur_pair(scene, k, sigma, g)
        if self.quantise:
            y = quantise_8bit(y)
        return {"blurred": y[0], "sharp": x[0], "kernel": k[0], "sigma": torch.tensor(sigma)}



# ----- from a training config --------------------------------------------------------------
TASKS = ("deblur", "denoise")
#: the dead-leaves bank a config's ``dead_leaves_fraction`` draws from: 16 images of 256²
DEAD_LEAVES_BANK = {"count": 16, "size": 256}


def from_config(data: dict, device: torch.device | str = "cpu") -> BlurSynthesis:
    """The synthesis a training config's ``data`` section describes (``task: deblur|denoise``).

    Keys: ``task``; ``photos`` (a folder, default the data directory's ``photos/``);
    ``patch``; ``sigma_range``; ``dead_leaves_fraction``; ``seed``; for ``deblur`` also
    ``kernel_size``, ``extent_range`` and ``quantise``. The dead-leaves bank is rendered
    once, seeded by ``seed``.
    """
    data = dict(data)
    task = data.pop("task", None)
    if task not in TASKS:
        raise ValueError(f"data.task must be one of {TASKS}, got {task!r}.")
    if not isinstance(data.get("patch"), int) or data["patch"] < 1:
        raise ValueError(f"data.patch must be a number of pixels >= 1, got {data.get('patch')!r}.")
    folder = data.pop("photos", None)
    side = data["patch"] + (data.get("kernel_size", 1) - 1 if task == "deblur" else 0)
    photos = ImageBank(list(load_photos(folder, min_side=side).values()), device)
    leaves = None
    if data.get("dead_leaves_fraction", 0) > 0:
        leaves = ImageBank(dead_leaves_bank(DEAD_LEAVES_BANK["count"], DEAD_LEAVES_BANK["size"],
                                            data.get("seed", 0), device), device)
    cls = BlurSynthesis if task == "deblur" else DenoisingSynthesis
    try:
        return cls(photos, leaves, **data)
    except TypeError as err:
        raise ValueError(f"data section of a {task} config: {err}") from None


def describe(data: dict) -> str:
    """The data recipe of a config, for a checkpoint's metadata: what was drawn, from which
    photographs (the ones a crop fits in: names and one sha256 over their files)."""
    patch = data["bank_patch"] if data["task"] == "refine" else data["patch"]
    side = (patch + data["kernel_size"] - 1 if data["task"] == "deblur" else
            patch + 2 * data["kernel_size"] if data["task"] == "refine" else patch)
    used = load_photos(data.get("photos"), min_side=side)
    files = [f for f in photo_files(data.get("photos")) if f.stem in used]
    digest = hashlib.sha256("".join(f"{f.name}:{sha256(f)}\n" for f in files).encode()).hexdigest()
    if data["task"] == "deblur":
        what = ("camera-shake kernels, valid blur, noise sigma ~ U(sigma_range)"
                + (", 8-bit quantised" if data.get("quantise", True) else ""))
    elif data["task"] == "refine":
        what = (f"built into a bank of {data['bank_size']} samples of {patch}² by python -m deblur_edu.bench.first_stage "
                f"(camera-shake kernels moved onto their centre of mass, valid blur, one noise sigma ~ U(sigma_range) "
                f"per bank batch, 8-bit quantised, with blind TV's estimate of each), read by "
                f"deblur_edu.first_stage.FirstStageBank as {data['patch']}² crops"
                + (f" drawn from seed {data['draw_seed']}" if "draw_seed" in data else "")
                + (", with each blurry image's noise-free version (recomputed from the recipe) as the reblurring "
                   "module's target" if data.get("reblur_target") == "noise-free" else "")
                + (" of the samples whose blind TV estimate beats the blurry input" if data.get("keep") == "usable"
                   else ""))
    else:
        what = "Gaussian noise, sigma log-uniform on sigma_range"
    source = "" if data["task"] == "refine" else "deblur_edu.synthesis.from_config(config['data']): "
    return (f"{source}crops of {len(files)} photographs "
            f"({', '.join(f.stem for f in files)}; sha256 of their files {digest}), "
            f"dead leaves as a fraction {data.get('dead_leaves_fraction', 0)}, {what}; "
            f"no benchmark images or Levin kernels")
