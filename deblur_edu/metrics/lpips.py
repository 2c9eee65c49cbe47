r"""LPIPS — a learned perceptual distance, as an optional extra that needs local weights.

Zhang, Isola, Efros, Shechtman & Wang, "The Unreasonable Effectiveness of Deep Features as
a Perceptual Metric", CVPR 2018. Two images are compared through the features of an image
classifier (here AlexNet's five ReLU stages). At each stage ``l`` the features are
normalised to unit length along the channels, their squared difference is weighted per
channel by a learned, non-negative vector ``w_l`` and averaged over the pixels:

    d(x, x₀) = Σ_l  mean_{h,w}  Σ_c  w_{l,c} · ( f̂_{l,c,h,w}(x) − f̂_{l,c,h,w}(x₀) )²,
    f̂_l = f_l / ‖f_l‖₂ (over channels)

Lower is closer; 0 for identical images. The inputs are mapped from [0, 1] to [−1, 1] and
standardised by the per-channel shift and scale the LPIPS authors use; grey images are
repeated on three channels.

**Weights are not downloaded here.** LPIPS needs two files this machine cannot fetch:
torchvision's ImageNet AlexNet (``alexnet-owt-7be5be79.pth``; only its ``features.*``
tensors are read) and the LPIPS linear layers (``alex.pth`` from the authors' repository,
keys ``lin0.model.1.weight`` … ``lin4.model.1.weight``). Put both in one folder and pass
it to :func:`load_lpips` (or set ``DEBLUR_EDU_LPIPS``). Every evaluation in this package
works without them; with them, the reblurring evaluation adds an LPIPS column. The code
path is tested with a randomly initialised stand-in of the same layout.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_image

ENV_VAR = "DEBLUR_EDU_LPIPS"
BACKBONE_FILE = "alexnet-owt-7be5be79.pth"
LINEAR_FILE = "alex.pth"
#: the input standardisation of the LPIPS authors (after mapping [0, 1] → [−1, 1])
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
#: AlexNet's convolutions: (in, out, kernel, stride, padding); a 3×3/2 max-pool follows the
#: first two; LPIPS reads the ReLU after each convolution
ALEXNET_CONVS = ((3, 64, 11, 4, 2), (64, 192, 5, 1, 2), (192, 384, 3, 1, 1), (384, 256, 3, 1, 1), (256, 256, 3, 1, 1))
#: positions of the convolutions in torchvision's ``alexnet.features`` (the state-dict keys)
TORCHVISION_INDEX = (0, 3, 6, 8, 10)


class AlexNetFeatures(nn.Module):
    """AlexNet's convolutional part; returns the five ReLU outputs LPIPS compares."""

    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(i, o, k, stride=s, padding=p) for i, o, k, s, p in ALEXNET_CONVS)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for i, conv in enumerate(self.convs):
            if i in (1, 2):
                x = F.max_pool2d(x, 3, 2)
            x = F.relu(conv(x))
            features.append(x)
        return features


class LPIPS(nn.Module):
    """The LPIPS distance (module docstring) between batches of images in [0, 1].

    Example (random weights: a stand-in, not the real metric):
        >>> metric = LPIPS(AlexNetFeatures(), [torch.rand(c) for c in (64, 192, 384, 256, 256)])
        >>> x = torch.rand(2, 1, 64, 64)
        >>> metric(x, x)
        tensor([0., 0.])
    """

    def __init__(self, backbone: AlexNetFeatures, linear: list[torch.Tensor]):
        super().__init__()
        widths = [conv.out_channels for conv in backbone.convs]
        if [w.numel() for w in linear] != widths:
            raise ValueError(f"LPIPS needs one weight per channel of each stage {widths}; "
                             f"got sizes {[w.numel() for w in linear]}.")
        if any((w < 0).any() for w in linear):
            raise ValueError("LPIPS channel weights must be non-negative (the published ones are).")
        self.backbone = backbone.eval().requires_grad_(False)
        for i, w in enumerate(linear):
            self.register_buffer(f"w{i}", w.reshape(1, -1, 1, 1).float())
        self.register_buffer("shift", torch.tensor(SHIFT).reshape(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).reshape(1, 3, 1, 1))

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = check_image(x, "image")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[1] != 3:
            raise ValueError(f"LPIPS takes grey (1) or RGB (3) images, got {x.shape[1]} channels.")
        x = ((2 * x - 1) - self.shift) / self.scale
        return [f / (f.pow(2).sum(1, keepdim=True).sqrt() + 1e-10) for f in self.backbone(x)]

    def forward(self, x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """Per-image distance, shape (B,)."""
        if x.shape != x0.shape:
            raise ValueError(f"LPIPS compares images of one shape, got {tuple(x.shape)} and {tuple(x0.shape)}.")
        weights = [getattr(self, f"w{i}") for i in range(len(ALEXNET_CONVS))]
        stages = zip(self._features(x), self._features(x0), weights)
        return sum(((a - b) ** 2 * w).sum(1).mean(dim=(1, 2)) for a, b, w in stages)


def lpips_dir(path: str | Path | None = None) -> Path | None:
    """The folder holding the two LPIPS files: ``path``, else ``$DEBLUR_EDU_LPIPS``, else None."""
    path = path or os.environ.get(ENV_VAR)
    return Path(path) if path else None


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_lpips(folder: str | Path, sha256: dict[str, str] | None = None) -> LPIPS:
    """LPIPS from ``folder/alexnet-owt-7be5be79.pth`` and ``folder/alex.pth`` (module docstring),
    read with ``weights_only=True``. ``sha256`` may map a file name to its expected hash.

    torchvision names its file after its hash: the SHA-256 of ``alexnet-owt-7be5be79.pth``
    begins with ``7be5be79``, checked whenever the file carries that name.
    """
    folder = Path(folder)
    backbone_path, linear_path = folder / BACKBONE_FILE, folder / LINEAR_FILE
    for p in (backbone_path, linear_path):
        if not p.is_file():
            raise FileNotFoundError(
                f"LPIPS weight file {p} is missing. LPIPS is optional: fetch torchvision's {BACKBONE_FILE} "
                f"and the LPIPS authors' {LINEAR_FILE} (v0.1) on a machine with network access, put both "
                f"in one folder and pass it (or set ${ENV_VAR}); without them, leave LPIPS out."
            )
    expected = {BACKBONE_FILE: BACKBONE_FILE.split("-")[-1].split(".")[0], **(sha256 or {})}
    for p in (backbone_path, linear_path):
        want = expected.get(p.name)
        if want is not None and not _sha256(p).startswith(want):
            raise ValueError(f"{p} does not match its SHA-256 ({want}…): a corrupted or different file.")
    state = torch.load(backbone_path, map_location="cpu", weights_only=True)
    backbone = AlexNetFeatures()
    try:
        backbone.load_state_dict({f"convs.{n}.{kind}": state[f"features.{i}.{kind}"]
                                  for n, i in enumerate(TORCHVISION_INDEX) for kind in ("weight", "bias")})
    except KeyError as err:
        raise ValueError(f"{backbone_path} is not torchvision's AlexNet state dict (no key {err}).") from None
    linear_state = torch.load(linear_path, map_location="cpu", weights_only=True)
    try:
        linear = [linear_state[f"lin{i}.model.1.weight"] for i in range(len(ALEXNET_CONVS))]
    except KeyError as err:
        raise ValueError(f"{linear_path} is not the LPIPS linear-layer file (no key {err}).") from None
    return LPIPS(backbone, linear)
