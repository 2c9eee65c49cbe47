r"""Tiled inference with overlap blending: the frame for AdaRevD's patch exiting (chapter 6).

AdaRevD (Mao, Li & Wang, CVPR 2024) deblurs a large image tile by tile, so that each tile
can stop after as many sub-decoders as its blur needs. Tiles overlap by ``overlap`` pixels
and are blended with a weight that falls linearly to the tile's edge (where a network sees
the least context):

    x̂ = Σ_t w_t · f(y_t) / Σ_t w_t        (sums over the tiles covering a pixel)

The tiles are gathered into one batch (no Python loop over pixels), run through ``f``
group by group (one group per exit point), and scattered back.
"""

from __future__ import annotations

from typing import Callable

import torch

from ..checks import check_image


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` with at least ``overlap`` shared pixels,
    covering ``[0, length)``; the last tile ends at ``length``."""
    if tile > length:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] != length - tile:
        starts.append(length - tile)
    return starts


def blend_window(tile: int, overlap: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A (tile, tile) weight: 1 in the middle, a linear ramp over ``overlap`` pixels at each edge
    (never 0, so that an image corner covered by one tile keeps its value)."""
    ramp = torch.ones(tile, dtype=dtype)
    if overlap > 0:
        up = torch.arange(1, overlap + 1, dtype=dtype) / (overlap + 1)
        ramp[:overlap] = up
        ramp[-overlap:] = up.flip(0)
    return ramp[:, None] * ramp[None, :]


def check_tiling(tile: int, overlap: int) -> None:
    """Tiles must be at least 1 pixel and overlap by less than their size (else they never advance)."""
    if tile < 1 or not 0 <= overlap < tile:
        raise ValueError(f"need tile >= 1 and 0 <= overlap < tile, got tile={tile}, overlap={overlap}.")


def gather_tiles(y: torch.Tensor, tile: int, overlap: int) -> tuple[torch.Tensor, list[int], list[int]]:
    """All tiles of ``y`` as one batch (B·R·Q, C, tile, tile), image-major then row-major, with
    the tiles' row and column starts."""
    B, C, H, W = y.shape
    rows, cols = tile_starts(H, tile, overlap), tile_starts(W, tile, overlap)
    th, tw = min(tile, H), min(tile, W)
    r_idx = torch.tensor(rows, device=y.device)[:, None] + torch.arange(th, device=y.device)[None, :]  # (R, th)
    c_idx = torch.tensor(cols, device=y.device)[:, None] + torch.arange(tw, device=y.device)[None, :]  # (Q, tw)
    tiles = y[:, :, r_idx[:, None, :, None], c_idx[None, :, None, :]]  # (B, C, R, Q, th, tw)
    return tiles.permute(0, 2, 3, 1, 4, 5).reshape(-1, C, th, tw), rows, cols


def tiled_apply(f: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], y: torch.Tensor, tile: int, overlap: int,
                groups: torch.Tensor | None = None) -> torch.Tensor:
    """Apply ``f(tiles, group_ids)`` tile by tile and blend (module docstring).

    Args:
        f: maps a batch of tiles (T, C, tile, tile) and their group ids (T,) to outputs of
            the same shape; called once per group, with the tiles of that group.
        y: images (B, C, H, W).
        tile, overlap: tile size and overlap in pixels (``0 <= overlap < tile``).
        groups: (B, n_rows, n_cols) integer group per tile (e.g. the exit point); default all 0.

    Example:
        >>> y = torch.rand(1, 1, 40, 50)
        >>> torch.allclose(tiled_apply(lambda t, g: 2 * t, y, tile=16, overlap=4), 2 * y)
        True
    """
    y = check_image(y, "y", value_range=False)
    check_tiling(tile, overlap)
    tiles, rows, cols = gather_tiles(y, tile, overlap)
    B = y.shape[0]
    if groups is None:
        groups = torch.zeros(B, len(rows), len(cols), dtype=torch.long)
    if groups.shape != (B, len(rows), len(cols)):
        raise ValueError(f"groups must have shape {(B, len(rows), len(cols))} (images, tile rows, tile columns), "
                         f"got {tuple(groups.shape)}.")
    ids = groups.reshape(-1).to(y.device)
    out = torch.empty_like(tiles)
    for g in torch.unique(ids).tolist():
        sel = ids == g
        out[sel] = f(tiles[sel], ids[sel])
    return blend_tiles(out, y.shape, rows, cols, tile, overlap)


def blend_tiles(out: torch.Tensor, shape: torch.Size, rows: list[int], cols: list[int], tile: int,
                overlap: int) -> torch.Tensor:
    """Put processed tiles (B·R·Q, C, th, tw), ordered like :func:`gather_tiles`, back into
    images of ``shape``: ``Σ_t w_t · out_t / Σ_t w_t`` with :func:`blend_window`'s weights."""
    B, C, H, W = shape
    th, tw = out.shape[-2:]
    full = th == tile and tw == tile  # an image smaller than a tile is one tile: nothing to blend
    w = (blend_window(tile, overlap, out.dtype) if full else torch.ones(th, tw, dtype=out.dtype)).to(out.device)
    out = out.reshape(B, len(rows), len(cols), C, th, tw) * w
    acc = torch.zeros(B, C, H, W, dtype=out.dtype, device=out.device)
    norm = torch.zeros(1, 1, H, W, dtype=out.dtype, device=out.device)
    for i, r in enumerate(rows):  # a loop over tile positions, not pixels: each adds a whole tile batch
        for j, c in enumerate(cols):
            acc[..., r : r + th, c : c + tw] += out[:, i, j]
            norm[..., r : r + th, c : c + tw] += w
    return acc / norm
