r"""Adaptive patch exiting (AdaRevD, Mao, Li & Wang, CVPR 2024): easy patches stop early.

A patch that is hardly blurred needs little decoding. AdaRevD labels each training patch
with a **degradation class** from the PSNR of its blurry version against the sharp one,

    class = #{ τ ∈ thresholds : PSNR(y, x) < τ }

(the paper's thresholds are 20, 25, 30, 35, 40 dB, the default here; a model takes its own, e.g. chapter 6's
23 and 28 dB, which cut its training crops into thirds), so class 0 is almost clean and the last class badly
blurred. On a two-stage deblurrer the class still reads the blurry input, not the first stage's error: how far y
is from x says how much a tile has to be restored, whatever stage does it. A small classifier learns to predict
the class from the frozen encoder's deepest features; and at test time each tile of the
image leaves the decoder after the number of sub-decoders its predicted class maps to
(:func:`exit_after`), with a knob that trades speed for quality.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from ..metrics import psnr
from ..runtime import synchronize
from .reversible import ReversibleDecoder
from ..checks import check_image
from .tiling import blend_tiles, check_tiling, gather_tiles

THRESHOLDS = (20.0, 25.0, 30.0, 35.0, 40.0)


def degradation_class(blurred: torch.Tensor, sharp: torch.Tensor, thresholds=THRESHOLDS) -> torch.Tensor:
    """Per patch: how many thresholds the blurry patch's PSNR falls below (0 = nearly clean).

    Example:
        >>> x = torch.full((2, 1, 8, 8), 0.5)
        >>> degradation_class(torch.stack([x[0], x[1] + 0.2]), x)   # ∞ dB, then 14 dB
        tensor([0, 5])
    """
    p = psnr(blurred.clamp(0, 1), sharp)
    return (p[:, None] < torch.tensor(thresholds, device=p.device, dtype=p.dtype)[None, :]).sum(1)


class DegradationClassifier(nn.Module):
    """Logits over the degradation classes from the encoder's deepest feature map:
    conv3×3 → ReLU → global average pool → linear."""

    def __init__(self, in_channels: int, classes: int = len(THRESHOLDS) + 1, hidden: int = 32):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, hidden, 3, padding=1)
        self.fc = nn.Linear(hidden, classes)

    def forward(self, bottleneck: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.conv(bottleneck)).mean(dim=(2, 3)))


def exit_after(classes: torch.Tensor, n_columns: int, n_classes: int = len(THRESHOLDS) + 1, knob: int = 0) -> torch.Tensor:
    """Sub-decoders to run per patch: linear in the class, from 1 (class 0) to ``n_columns``
    (the hardest class), shifted by ``knob`` (+: more decoding, higher quality; −: faster)."""
    base = 1 + torch.round(classes.float() * (n_columns - 1) / max(n_classes - 1, 1)).long()
    return (base + knob).clamp(1, n_columns)


def check_tile_sides(sides: tuple[int, ...], levels: int) -> None:
    """Tiles go through the encoder whole: each side must be a multiple of ``2^levels``."""
    m = 2 ** levels
    if any(side % m for side in sides):
        raise ValueError(f"tile sides must be multiples of {m} (the encoder's {levels} halvings); got {tuple(sides)}.")


@torch.no_grad()
def adaptive_deblur(decoder: ReversibleDecoder, classifier: DegradationClassifier, y: torch.Tensor, tile: int,
                    overlap: int, knob: int = 0, exits: torch.Tensor | None = None,
                    timings: dict[str, float] | None = None, chunk: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Deblur ``y`` tile by tile, each tile exiting after its predicted number of sub-decoders.

    The tiles are encoded once, as one batch; the classifier reads their bottleneck features;
    each group of tiles with the same exit point runs that many sub-decoders; the outputs are
    blended (:mod:`.tiling`). ``y`` is what the encoder reads: the blurry image, or ``[y, x̂₀]`` stacked for
    a two-stage encoder (the output then has one channel). Tiles are decoded ``chunk`` at a time, so that memory stays
    bounded on large images and every setting decodes in batches of the same size (one huge
    batch runs slower per tile on a CPU, which would flatter any method that splits it).
    ``exits`` (B, rows, cols) overrides the classifier (e.g. all
    ``N``: plain tiled inference). Returns the image and the exit point of every tile; a
    ``timings`` dict receives the seconds spent encoding (+ classifying), decoding, blending.

    Example:
        >>> from deblur_edu.learned import UNet
        >>> dec = ReversibleDecoder(UNet(width=4, levels=2), columns=3).eval()
        >>> out, exits = adaptive_deblur(dec, DegradationClassifier(16), torch.rand(1, 1, 40, 40), tile=16, overlap=4)
        >>> out.shape, exits.shape     # 3×3 tiles of 16 px cover 40 px
        (torch.Size([1, 1, 40, 40]), torch.Size([1, 3, 3]))
    """
    y = check_image(y, "y", value_range=False)
    check_tiling(tile, overlap)
    tiles, rows, cols = gather_tiles(y, tile, overlap)
    check_tile_sides(tuple(tiles.shape[-2:]), decoder.encoder.levels)
    clock = Stopwatch(y.device, timings)
    padded, features = decoder.encode(tiles)
    if exits is None:
        classes = classifier(features[-1]).argmax(1)
        exits = exit_after(classes, len(decoder.columns), classifier.fc.out_features, knob)
    exits = exits.reshape(y.shape[0], len(rows), len(cols))
    clock.lap("encode")
    ids = exits.reshape(-1).to(y.device)
    out = torch.empty_like(tiles[:, -decoder.encoder.channels:])
    for n in torch.unique(ids).tolist():
        for part in torch.nonzero(ids == n).flatten().split(chunk):  # at most `chunk` tiles at a time
            out[part] = decoder(tiles[part], n=n, encoded=(padded[part], [f[part] for f in features]))[-1]
    clock.lap("decode")
    blended = blend_tiles(out, (y.shape[0], out.shape[1], *y.shape[2:]), rows, cols, tile, overlap)
    clock.lap("blend")
    return blended, exits


class Stopwatch:
    """Adds the seconds since the last lap to ``timings[name]`` (nothing when ``timings`` is None);
    waits for the GPU first, so that a lap measures the work, not its launch."""

    def __init__(self, device: torch.device, timings: dict[str, float] | None):
        self.device, self.timings = device, timings
        self.last = self.now()

    def now(self) -> float:
        if self.timings is not None:
            synchronize(self.device)
        return time.perf_counter()

    def lap(self, name: str) -> None:
        if self.timings is not None:
            t = self.now()
            self.timings[name] = self.timings.get(name, 0.0) + t - self.last
            self.last = t


def decoder_cost(exits: torch.Tensor, n_columns: int) -> float:
    """Fraction of the full decoding work done: mean exit point / number of sub-decoders."""
    return float(exits.float().mean()) / n_columns if exits.numel() else math.nan
