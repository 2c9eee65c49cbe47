"""Plotting helpers shared by the book: image grids, spectra, convergence curves."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch


def to_numpy(img: torch.Tensor | np.ndarray) -> np.ndarray:
    """(B, C, H, W)/(C, H, W)/(H, W) tensor → (H, W) or (H, W, 3) array of the first image."""
    a = img.detach().cpu().numpy() if isinstance(img, torch.Tensor) else np.asarray(img)
    while a.ndim > 3:
        a = a[0]
    if a.ndim == 3:
        a = a[0] if a.shape[0] == 1 else np.moveaxis(a, 0, -1)
    return a


def show_images(
    images: Sequence[torch.Tensor | np.ndarray],
    titles: Sequence[str] | None = None,
    cols: int | None = None,
    size: float = 3.0,
    clip: bool = True,
    cmap: str = "gray",
) -> plt.Figure:
    """A row (or grid) of images with titles; values clipped to [0, 1] unless ``clip=False``."""
    n = len(images)
    cols = cols or n
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        a = to_numpy(images[i])
        kw = {"vmin": 0, "vmax": 1} if clip else {}
        ax.imshow(np.clip(a, 0, 1) if clip else a, cmap=cmap, **kw)
        if titles is not None:
            ax.set_title(titles[i], fontsize=10)
    fig.tight_layout()
    return fig


def full_spectrum_magnitude(half: torch.Tensor) -> np.ndarray:
    """``|X|`` on the whole (H, W) grid from the ``rfft2`` half-spectrum of a real image of
    even width W: the missing columns follow from ``|X[u, v]| = |X[−u mod H, W − v]|``."""
    mag = half.detach().abs().cpu().reshape(-1, *half.shape[-2:])[0].numpy()
    H, half_w = mag.shape
    W = 2 * (half_w - 1)
    rows = (-np.arange(H)) % H
    cols = W - np.arange(half_w, W)
    return np.concatenate([mag, mag[rows][:, cols]], axis=1)


def show_spectrum(otf: torch.Tensor, ax: plt.Axes | None = None, title: str = "|K| (log scale)") -> plt.Axes:
    """The magnitude of a half-spectrum (``rfft2`` of an even-width image), log scale,
    zero frequency centred."""
    ax = ax or plt.gca()
    ax.imshow(np.fft.fftshift(np.log10(full_spectrum_magnitude(otf) + 1e-8)), cmap="magma")
    ax.set_title(title)
    ax.axis("off")
    return ax


def plot_curves(curves: dict[str, Sequence[float]], xlabel: str, ylabel: str, log: bool = False,
                ax: plt.Axes | None = None) -> plt.Axes:
    """Several named curves against iteration number."""
    ax = ax or plt.gca()
    for name, ys in curves.items():
        ax.plot(np.arange(1, len(ys) + 1), ys, label=name)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend()
    ax.grid(alpha=0.3)
    return ax
