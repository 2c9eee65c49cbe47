r"""A small U-Net: the blind deblurrer of chapter 5 (and the encoder of chapter 6).

Dynamic-scene deblurring (Nah et al. 2017; 2022) is *blind*: the network sees only the
blurry image ``y``, never the kernel. The standard shape for it is an encoder–decoder
with skip connections (Ronneberger, Fischer & Brox 2015, "U-Net"), predicting a residual:

    x̂ = y + U(y)

The encoder halves the resolution ``levels`` times (a strided 3×3 convolution doubling the
width), so a pixel at the bottom sees a large window — what undoing a long blur needs.
The decoder doubles it back (a transposed 2×2 convolution), adding the encoder's feature
of the same size (the skip), so fine detail need not pass through the bottleneck. Every
stage is ``blocks`` residual blocks ``h + conv(ReLU(conv(h)))``; no normalisation.

:meth:`UNet.encode` and :meth:`UNet.decode` are separate so that chapter 6 can freeze the
encoder and train new decoders on its features.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import check_channels, check_model_dtype, check_image


class ResBlock(nn.Module):
    """``h + conv3×3(ReLU(conv3×3(h)))``, width kept."""

    def __init__(self, width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.conv2(F.relu(self.conv1(h)))


def stage(width: int, blocks: int) -> nn.Sequential:
    return nn.Sequential(*[ResBlock(width) for _ in range(blocks)])


class UNet(nn.Module):
    """Blind deblurrer ``x̂ = y + U(y)`` (see the module docstring).

    Args:
        channels: image channels (of the output, and of the input unless ``in_channels``).
        width: features at full resolution (doubled at each level).
        levels: number of halvings.
        blocks: residual blocks per stage.
        in_channels: input channels when they differ from the output's (e.g. an image plus a
            noise-level map, :class:`~deblur_edu.learned.denoiser.GaussianDenoiser`).

    Example:
        >>> net = UNet(width=8, levels=2)
        >>> net(torch.rand(2, 1, 30, 33)).shape  # any size: padded to a multiple of 4, cropped back
        torch.Size([2, 1, 30, 33])
    """

    def __init__(self, channels: int = 1, width: int = 16, levels: int = 2, blocks: int = 1,
                 in_channels: int | None = None):
        super().__init__()
        self.channels, self.levels = channels, levels
        widths = [width * 2 ** i for i in range(levels + 1)]
        self.stem = nn.Conv2d(in_channels or channels, width, 3, padding=1)
        self.encoders = nn.ModuleList(stage(w, blocks) for w in widths[:-1])
        self.downs = nn.ModuleList(nn.Conv2d(w, 2 * w, 3, stride=2, padding=1) for w in widths[:-1])
        self.bottleneck = stage(widths[-1], blocks)
        self.ups = nn.ModuleList(nn.ConvTranspose2d(2 * w, w, 2, stride=2) for w in reversed(widths[:-1]))
        self.decoders = nn.ModuleList(stage(w, blocks) for w in reversed(widths[:-1]))
        self.head = nn.Conv2d(width, channels, 3, padding=1)

    def encode(self, y: torch.Tensor) -> list[torch.Tensor]:
        """Features at every level, full resolution first, the bottleneck last."""
        h = self.stem(y)
        features = []
        for encoder, down in zip(self.encoders, self.downs):
            h = encoder(h)
            features.append(h)
            h = down(h)
        features.append(self.bottleneck(h))
        return features

    def decode(self, features: list[torch.Tensor]) -> torch.Tensor:
        """The residual ``U(y)`` from :meth:`encode`'s features."""
        h = features[-1]
        for up, decoder, skip in zip(self.ups, self.decoders, reversed(features[:-1])):
            h = decoder(up(h) + skip)
        return self.head(h)

    def residual(self, y: torch.Tensor) -> torch.Tensor:
        """``U(y)`` at any size: ``y`` is replicate-padded to a multiple of ``2**levels`` and
        the result cropped back (no input checks: for use inside other models)."""
        H, W = y.shape[-2:]
        m = 2 ** self.levels
        padded = F.pad(y, (0, -W % m, 0, -H % m), mode="replicate")
        return self.decode(self.encode(padded))[..., :H, :W]

    def forward(self, y: torch.Tensor, k: torch.Tensor | None = None) -> torch.Tensor:
        """Deblur ``y`` (B, C, H, W). ``k`` is accepted and ignored: the network is blind."""
        y = check_image(y, "y")
        check_channels(y, self.channels, "UNet")
        check_model_dtype(y, self, "UNet")
        return y + self.residual(y)
