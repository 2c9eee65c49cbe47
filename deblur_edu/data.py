"""Images and where they come from: the data directory and its downloads, offline samples, Set12,
Levin et al.'s kernels, training photographs, dead leaves. (Training batches are made from them in
:mod:`deblur_edu.synthesis`.)

Data directory lookup order (:func:`data_dir`): an explicit argument → the environment
variable ``DEBLUR_EDU_DATA`` → the user cache directory (``$XDG_CACHE_HOME/deblur_edu`` or
``~/.cache/deblur_edu``), where ``python -m deblur_edu.data download`` stores the original
benchmark files, each checked against its sha256.

Layout inside it::

    levin09/Levin09.mat            (original, MATLAB v7.3)
    levin09/levin09_kernels.npz    (optional: the same kernels as arrays k1…k8)
    set12/01.png … set12/12.png
    photos/*.png|jpg               natural photographs for *training* (never test images)

``photos/`` is filled by ``python -m deblur_edu.data download-photos`` (the 300 train + val
images of BSDS500, online) or by hand with any photographs you may train on; the project's
own collection lives in its shared data folder. :func:`load_photos` refuses a file that is
one of the benchmark's test images.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import torch

from .checks import check_image
from .kernels import normalise

ENV_VAR = "DEBLUR_EDU_DATA"
#: Commit of the public KAIR repository (Kai Zhang) whose files we download.
KAIR_COMMIT = "fc1732f4a4514e42ce15e5b3a1e18c828af47a1e"
BASE_URL = f"https://raw.githubusercontent.com/cszn/KAIR/{KAIR_COMMIT}"

#: relative path → (path in the KAIR repository, sha256)
REMOTE_FILES: dict[str, tuple[str, str]] = {
    "levin09/Levin09.mat": (
        "kernels/Levin09.mat",
        "377ce2fa5c95784cf454eb1c6e286038dc2ace76fb94a15ba6383a8f7b48aa1d",
    ),
    **{
        f"set12/{name}.png": (f"testsets/set12/{name}.png", sha)
        for name, sha in [
            ("01", "079229e13faff0a262a9d3eb9a7fa60868203f9b8545de6fb75aadf6fbca4296"),
            ("02", "576b2b3b6ff4d7e6c8ddccb0df645774f9b986c81219c28e16ba1935990a0b29"),
            ("03", "92de94d7b8ef9e645546821150eff5c765d0d29666f9bc7d20b61063f35c3305"),
            ("04", "839fb4770a5a71ab80f18b04a3521b7464451bb3d3e3c6555d538247599fe843"),
            ("05", "1707ee6fd18fe7d55a1ac7a2cc8818b1e5d5c4a1d6974d8cd4acc9e0f11025fc"),
            ("06", "02d125470b396b2c63fa428e65920a88e721d5558c54a5c0d25075c934bd0469"),
            ("07", "83d42aae735bde17c8e92e5c2544b07dd4ff2b77caaa64f5d3bcc34668f79597"),
            ("08", "f07124a0b4bb493660210c209070aa9c9187e9e085a9f026a51a2b9f57e25f15"),
            ("09", "764b8a2748cc7ad381cccc047c5e512cb528c197ba86adb83aa339e8932e66c0"),
            ("10", "18bea4de1634456f5791d16301863fc974401d144cd6afb86f09a6be4620fe54"),
            ("11", "a8791afbd2af4f977f30c3a9a72a50204264440c27b1f4bb282a085eb680abe1"),
            ("12", "f6acd12953db8c1f5a0dda53fef4233be37a61702cd22d5be742cf7c039021f2"),
        ]
    },
}

DOWNLOAD_HINT = (
    f"Set the environment variable {ENV_VAR} to a folder with this layout, pass "
    f"data_dir=..., or download the originals (online) with: python -m deblur_edu.data download"
)


# ----- the data directory -------------------------------------------------------------
def cache_dir() -> Path:
    """The per-user cache folder where downloads go."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "deblur_edu"


def data_dir(path: str | Path | None = None) -> Path:
    """Resolve the data directory: ``path`` → ``$DEBLUR_EDU_DATA`` → :func:`cache_dir`.

    An explicitly given folder (argument or environment variable) must exist.
    """
    for source, candidate in (("data_dir argument", path), (ENV_VAR, os.environ.get(ENV_VAR))):
        if candidate:
            p = Path(candidate).expanduser()
            if not p.is_dir():
                raise FileNotFoundError(f"data directory {p} (from {source}) does not exist. {DOWNLOAD_HINT}")
            return p
    return cache_dir()


def fetch(relative: str, path: str | Path | None = None) -> Path:
    """Path of a data file inside the data directory; a clear error if it is missing."""
    root = data_dir(path)
    f = root / relative
    if not f.is_file():
        raise FileNotFoundError(f"missing data file {relative!r} in {root}. {DOWNLOAD_HINT}")
    return f


def sha256(path: str | Path) -> str:
    """Hex sha256 digest of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def offline_hint(root: Path) -> str:
    """What to do without the network: put the files in place by hand."""
    return (f"This machine seems to be offline (or the server cannot be reached). Copy the files instead into "
            f"{root} in the layout levin09/Levin09.mat, set12/01.png … set12/12.png, or set {ENV_VAR} to a folder "
            f"that holds them.")


def copy_url(url: str, out, hint: str) -> None:
    """Copy what ``url`` serves into the open binary file ``out``. When it cannot be reached, a
    ``ConnectionError`` names the address, the reason, and ``hint`` (what to do offline)."""
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            shutil.copyfileobj(response, out)
    except OSError as err:  # urllib.error.URLError is an OSError
        reason = err.reason if isinstance(err, urllib.error.URLError) else err
        raise ConnectionError(f"cannot download {url} ({reason}). {hint}") from err


def download(
    relative: str, root: str | Path | None = None, base_url: str = BASE_URL, force: bool = False
) -> Path:
    """Download one file of :data:`REMOTE_FILES` into ``root``, verifying its sha256.

    The file is written to a temporary name and moved into place only if the hash
    matches; on any failure (offline, interrupted, tampered) the temporary file and the
    folders made for it are removed, so nothing is left behind. Offline, the
    ``ConnectionError`` says so and how to install the files by hand. ``base_url`` may be a
    ``file://`` URL (that is how the tests exercise this code).
    """
    if relative not in REMOTE_FILES:
        raise ValueError(f"unknown data file {relative!r}; known: {sorted(REMOTE_FILES)}")
    remote, expected = REMOTE_FILES[relative]
    root = Path(root) if root is not None else cache_dir()
    target = root / relative
    if target.is_file() and not force and sha256(target) == expected:
        return target
    new_dirs = [d for d in (target.parent, *target.parent.parents) if not d.exists()]
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", suffix=".part", delete=False)
    try:
        with tmp:
            copy_url(f"{base_url}/{remote}", tmp, offline_hint(root))
        got = sha256(tmp.name)
        if got != expected:
            raise OSError(f"sha256 mismatch for {relative}: expected {expected}, got {got}; not saved.")
        os.replace(tmp.name, target)
    finally:
        if os.path.exists(tmp.name):
            os.unlink(tmp.name)
        for d in new_dirs:  # deepest first; only the ones this call made, and only if still empty
            if not target.is_file() and d.is_dir() and not any(d.iterdir()):
                d.rmdir()
    return target


def download_all(root: str | Path | None = None, base_url: str = BASE_URL) -> list[Path]:
    """Download every benchmark file (Levin 2009 kernels, Set12)."""
    return [download(rel, root, base_url) for rel in REMOTE_FILES]


# ----- images -------------------------------------------------------------------------
def to_gray(rgb: np.ndarray) -> np.ndarray:
    """Luminance ``0.2125 R + 0.7154 G + 0.0721 B`` (ITU-R BT.709, as scikit-image's rgb2gray)."""
    return rgb[..., :3] @ np.array([0.2125, 0.7154, 0.0721])


def unit_range(a: np.ndarray, name: str = "image") -> np.ndarray:
    """Pixel values → float64 in [0, 1], by what the dtype says about their range.

    Integers are scaled by their type's maximum — uint8 by 255, uint16 by 65535 (16-bit PNGs,
    which would otherwise arrive as 0–65535 and score −92 dB) — bool is 0/1, and float must
    already lie in [0, 1]. Other dtypes have no known range and are refused.

    Example:
        >>> unit_range(np.array([0, 32768, 65535], dtype=np.uint16)).round(3).tolist()
        [0.0, 0.5, 1.0]
    """
    if a.dtype == np.bool_:
        return a.astype(np.float64)
    if a.dtype in (np.uint8, np.uint16):
        return a / float(np.iinfo(a.dtype).max)
    if np.issubdtype(a.dtype, np.floating):
        lo, hi = float(np.min(a)), float(np.max(a))
        if not (0 <= lo and hi <= 1):  # also NaN
            raise ValueError(f"{name} is {a.dtype} with values in [{lo:g}, {hi:g}]; float images must lie in [0, 1].")
        return a.astype(np.float64)
    raise ValueError(f"{name} has {a.dtype} pixels, whose range is unknown; images are uint8, uint16, bool or "
                     f"float in [0, 1].")


def image_to_tensor(image: np.ndarray, gray: bool = True, name: str = "image") -> torch.Tensor:
    """An image array → float32 (1, C, H, W) in [0, 1] (RGB → gray if ``gray``).

    Takes what PNG/JPEG readers return: ``(H, W)`` gray, ``(H, W, 2)`` gray + alpha,
    ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA — alpha is dropped, not composited — with values
    scaled by :func:`unit_range`. Any other shape cannot be an image and is refused, naming
    ``name`` (the file, when loading).
    """
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[-1] in (2, 4):
        a = a[..., :-1]  # drop alpha
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] != 3) or a.size == 0:
        raise ValueError(f"{name} has shape {np.shape(image)}; an image is (H, W) gray or (H, W, C) with C = 2 "
                         f"(gray + alpha), 3 (RGB) or 4 (RGBA).")
    a = unit_range(a, name)
    if a.ndim == 3 and gray:
        a = to_gray(a)
    t = torch.from_numpy(np.ascontiguousarray(a)).float()
    return t[None, None] if t.dim() == 2 else t.permute(2, 0, 1)[None]


def load_image(path: str | Path, gray: bool = True) -> torch.Tensor:
    """Read a PNG/JPEG of any bit depth as a float32 (1, C, H, W) tensor in [0, 1] (RGB → gray
    if ``gray``; see :func:`image_to_tensor`). A file that cannot be decoded — corrupt,
    truncated, not an image — is a ``ValueError`` that names it."""
    from skimage import io

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no image file {path}.")
    try:
        image = io.imread(path)
    except (OSError, ValueError, SyntaxError, RuntimeError, EOFError) as err:  # what Pillow/imageio raise
        raise ValueError(f"cannot read the image {path} ({type(err).__name__}: {err}); is the file corrupt or "
                         f"truncated?") from err
    return image_to_tensor(image, gray, name=str(path))


def centre_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """The central size×size window of the last two axes."""
    H, W = x.shape[-2:]
    if H < size or W < size:
        raise ValueError(f"cannot crop {size}×{size} from a {H}×{W} image; use a smaller crop.")
    top, left = (H - size) // 2, (W - size) // 2
    return x[..., top : top + size, left : left + size]


#: scikit-image images that ship with the package (no download needed).
SAMPLE_NAMES = ("camera", "astronaut", "coffee", "chelsea", "rocket", "brick", "grass", "gravel", "moon")


def sample_image(name: str = "camera", gray: bool = True) -> torch.Tensor:
    """One of scikit-image's bundled images, float32 (1, C, H, W) in [0, 1] — works offline."""
    import skimage.data

    if name not in SAMPLE_NAMES:
        raise ValueError(f"unknown sample image {name!r}; choose one of {SAMPLE_NAMES}.")
    return image_to_tensor(getattr(skimage.data, name)(), gray)


def set12(names: list[str], data_dir_: str | Path | None = None) -> dict[str, torch.Tensor]:
    """Set12 images by name ('01'…'12') from the data directory, as (1, 1, H, W) tensors."""
    return {n: load_image(fetch(f"set12/{n}.png", data_dir_)) for n in names}


def dead_leaves(
    size: int = 128,
    generator: torch.Generator | None = None,
    n_disks: int = 2000,
    r_min: float = 1.0,
    r_max: float | None = None,
    chunk: int = 256,
) -> torch.Tensor:
    r"""A dead-leaves image: occluding disks with radii ∝ r⁻³ — natural-image statistics.

    Disks fall one after another on the canvas, each hiding what lies below. With the
    radius density p(r) ∝ r⁻³ on [r_min, r_max] the image is scale-invariant and has
    heavy-tailed gradients, like photographs (Lee, Mumford & Huang, IJCV 2001), which
    makes it a good synthetic training image that shares nothing with any test set.

    The last disk covering a pixel is found for chunks of disks at once (no per-pixel
    loop): ``top[p] = max{ i : p ∈ disk_i }``.

    Returns:
        float32 (1, 1, size, size) in [0, 1].
    Example:
        >>> x = dead_leaves(64, torch.Generator().manual_seed(0))
        >>> x.shape
        torch.Size([1, 1, 64, 64])
    """
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    r_max = r_max or size / 4
    u = torch.rand(n_disks, generator=g, dtype=torch.float64)
    # inverse CDF of p(r) ∝ r^-3 on [r_min, r_max]
    radius = (r_min**-2 - u * (r_min**-2 - r_max**-2)) ** -0.5
    centre = torch.rand(n_disks, 2, generator=g, dtype=torch.float64) * (size + 2 * r_max) - r_max
    value = torch.rand(n_disks + 1, generator=g, dtype=torch.float64)  # last = background
    rows, cols = torch.meshgrid(torch.arange(size, dtype=torch.float64), torch.arange(size, dtype=torch.float64), indexing="ij")
    top = torch.full((size, size), -1, dtype=torch.long)
    for start in range(0, n_disks, chunk):
        c = centre[start : start + chunk]
        r = radius[start : start + chunk]
        inside = (rows - c[:, 0, None, None]) ** 2 + (cols - c[:, 1, None, None]) ** 2 <= r[:, None, None] ** 2
        ids = torch.arange(start, start + len(r))[:, None, None]
        top = torch.maximum(top, torch.where(inside, ids, -1).max(0).values)
    img = value[top]  # index -1 picks the background value
    return img.float()[None, None]


# ----- the benchmark's kernels -----------------------------------------------------
def levin09(data_dir: str | Path | None = None, dtype=torch.float32) -> list[torch.Tensor]:
    """The 8 motion-blur kernels of Levin, Weiss, Durand & Freeman, CVPR 2009.

    Reads ``levin09/levin09_kernels.npz`` (arrays ``k1``…``k8``) or, failing that, the
    original ``levin09/Levin09.mat`` (MATLAB v7.3 = HDF5, read with h5py and transposed
    back to MATLAB orientation) from the data directory (see :func:`data_dir`).
    Sizes 19, 17, 15, 27, 13, 21, 23, 23; each renormalised to sum to 1.

    These are the *test* kernels of the standard benchmark: never train on them.
    """
    try:
        path = fetch("levin09/levin09_kernels.npz", data_dir)
        arrays = np.load(path)
        kernels = [arrays[f"k{i}"] for i in range(1, 9)]
    except FileNotFoundError:
        kernels = read_levin09_mat(fetch("levin09/Levin09.mat", data_dir))
    return [normalise(torch.from_numpy(np.ascontiguousarray(k)).to(torch.float64)).to(dtype) for k in kernels]


def read_levin09_mat(path: str | Path) -> list[np.ndarray]:
    """Read the 8 kernels from Levin09.mat (HDF5 cell array ``kernels``), MATLAB orientation."""
    import h5py

    with h5py.File(path, "r") as f:
        refs = f["kernels"]
        return [np.array(f[refs[i, 0]]).T for i in range(refs.shape[0])]



# ----- training photographs ------------------------------------------------------------
PHOTOS = "photos"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
#: sha256 of every benchmark image file: a training source with one of these is refused
BENCHMARK_SHA256 = frozenset(sha for rel, (_, sha) in REMOTE_FILES.items() if rel.startswith("set12/"))


def photo_files(folder: str | Path | None = None, data_dir_: str | Path | None = None) -> list[Path]:
    """The image files of a training-photo folder (default: the data directory's ``photos/``), sorted."""
    root = Path(folder) if folder is not None else data_dir(data_dir_) / PHOTOS
    files = sorted(f for f in root.glob("*") if f.suffix.lower() in IMAGE_SUFFIXES) if root.is_dir() else []
    if not files:
        raise FileNotFoundError(
            f"no training photographs (.png/.jpg) in {root}. Download BSDS500's 300 train + val images with "
            f"'python -m deblur_edu.data download-photos' (online), or put photographs you may train on there.")
    return files


def load_photos(folder: str | Path | None = None, data_dir_: str | Path | None = None,
                min_side: int = 0) -> dict[str, torch.Tensor]:
    """Training photographs as gray (1, 1, H, W) tensors in [0, 1], keyed by file stem.

    A file whose sha256 is that of a benchmark image (Set12) is refused: the benchmark must
    measure images the models never saw. Images with a side below ``min_side`` are skipped
    (they cannot give a training crop of that size).
    """
    photos = {}
    for f in photo_files(folder, data_dir_):
        if sha256(f) in BENCHMARK_SHA256:
            raise ValueError(f"{f} is a benchmark test image (its sha256 is that of a Set12 file); "
                             f"remove it from the training photographs.")
        img = load_image(f)
        if min(img.shape[-2:]) >= min_side:
            photos[f.stem] = img
    if not photos:
        raise ValueError(f"no training photograph in {photo_files(folder, data_dir_)[0].parent} has both sides "
                         f">= {min_side} px; use smaller patches or larger photographs.")
    return photos


#: BSDS500 (Arbeláez, Maire, Fowlkes & Malik, "Contour detection and hierarchical image
#: segmentation", IEEE TPAMI 2011): its 200 train + 100 val images, the part of the Berkeley images
#: that denoisers train on (DnCNN's "BSD400", Zhang et al. 2017, adds Berkeley test images; BSDS500's
#: test set holds the BSD68 benchmark, so it is left out here). No checksum of the archive is
#: published, so the first download records its sha256 and later ones must match it.
BSDS500_URL = "https://www2.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/BSR/BSR_bsds500.tgz"
BSDS500_SPLITS = ("train", "val")
BSDS500_PREFIX = "BSR/BSDS500/data/images/"


def download_photos(root: str | Path | None = None, url: str = BSDS500_URL) -> list[Path]:
    """Download BSDS500 and write its train + val images into ``root/photos`` as 8-bit gray PNGs.

    Trust on first use: BSDS500 publishes no checksum, so the archive's sha256 is recorded in
    ``photos/bsds500.sha256`` the first time and every later download must match it. The archive
    and the converted images go to a temporary folder; the images move into ``photos/`` only when
    all of them were converted, and the folder is deleted whatever happens — a failure leaves
    nothing behind. The images are named ``bsds500-<split>-<id>.png``.
    """
    import tarfile

    from skimage import io

    photos = Path(root if root is not None else data_dir()) / PHOTOS
    new_dirs = [d for d in (photos, *photos.parents) if not d.exists()]
    photos.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=photos, prefix=".bsds500."))
    try:
        archive_path = staging / "BSR_bsds500.tgz"
        with open(archive_path, "wb") as out:
            copy_url(url, out, f"This machine seems to be offline (or the server cannot be reached). Put photographs "
                               f"you may train on (.png/.jpg) into {photos} instead, or set {ENV_VAR} to a folder whose "
                               f"photos/ holds them.")
        got = sha256(archive_path)
        record = photos / "bsds500.sha256"
        if record.is_file() and record.read_text().split()[0] != got:
            raise OSError(f"sha256 mismatch for {url}: this archive is {got}, the first download was "
                          f"{record.read_text().split()[0]} ({record}); nothing was written.")
        converted = []
        with tarfile.open(archive_path) as archive:
            for member in archive.getmembers():
                parts = member.name.removeprefix(BSDS500_PREFIX).split("/")
                if not member.name.startswith(BSDS500_PREFIX) or len(parts) != 2 or parts[0] not in BSDS500_SPLITS \
                        or not parts[1].lower().endswith(".jpg") or not member.isfile():
                    continue
                image = io.imread(archive.extractfile(member))
                gray = np.clip(np.round(to_gray(image / 255.0) * 255), 0, 255).astype(np.uint8)
                converted.append(staging / f"bsds500-{parts[0]}-{Path(parts[1]).stem}.png")
                io.imsave(converted[-1], gray, check_contrast=False)
        if not converted:
            raise OSError(f"{url} holds no {BSDS500_PREFIX}{{train,val}}/*.jpg images; is it BSR_bsds500.tgz?")
        written = [Path(shutil.move(str(f), photos / f.name)) for f in converted]
        if not record.is_file():
            record.write_text(f"{got}  {url}\n")
            print(f"recorded the archive's sha256 (no published checksum exists) in {record}")
        return written
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        for d in new_dirs:  # deepest first; only the ones this call made, and only if still empty
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()


# ----- command line -------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deblur_edu.data", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    dl = sub.add_parser("download", help="download Levin 2009 kernels and Set12 (needs the network)")
    dl.add_argument("--dir", default=None, help="target folder (default: the user cache directory)")
    dl.add_argument("--base-url", default=BASE_URL)
    sub.add_parser("where", help="print the data directory in use")
    ph = sub.add_parser("download-photos", help="download BSDS500's 300 train + val images for training (network)")
    ph.add_argument("--dir", default=None, help="data folder; photos go to DIR/photos (default: the data directory)")
    ph.add_argument("--url", default=BSDS500_URL)
    args = parser.parse_args(argv)
    try:
        if args.command == "where":
            print(data_dir())
            return 0
        if args.command == "download-photos":
            written = download_photos(args.dir, args.url)
            print(f"wrote {len(written)} training photographs to {written[0].parent}")
            return 0
        paths = download_all(args.dir or data_dir(), args.base_url)
    except (OSError, ValueError) as err:  # offline, a bad hash, a missing folder: one line, exit 2
        parser.error(str(err))
    for p in paths:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
