r"""Reversible sub-decoders: more decoding on a frozen encoder, without more activation memory.

AdaRevD (Mao, Li & Wang, "AdaRevD: Adaptive Patch Exiting Reversible Decoder Pushes the
Limit of Image Deblurring", CVPR 2024) keeps a trained deblurrer's encoder frozen and
replaces its single decoder by N *reversible sub-decoders*, columns in the style of RevCol
(Cai et al., "Reversible Column Networks", ICLR 2023).

A column holds one feature per level, ``c_0`` (finest) … ``c_L`` (coarsest), shaped like the
encoder's features, which are also the first column's input state. Column ``i`` updates its
levels from fine to coarse:

    c_l ← α_l ⊙ c_l + F_l(finer_l, coarser_l)

    finer_0 = e (the encoder's finest feature), finer_l = the *new* c_{l−1}      (l ≥ 1)
    coarser_l = the *old* c_{l+1}                                                 (l < L)

with a learnable per-channel ``α_l`` whose magnitude is kept ≥ ``alpha_min``. Then the old
state follows from the new one, from the coarsest level down:

    old c_l = (new c_l − F_l(finer_l, old c_{l+1})) / α_l

so backpropagation needs **no stored activations**: :class:`ReversibleFunction` keeps only
the last column's state and, going backwards, rebuilds each column's input from its output
and recomputes that one column with autograd on. Memory does not grow with the number of
columns. Each column has its own head: sub-decoder ``i`` predicts ``x̂_i = y + head_i(c_0)`` — or, on the
encoder of a two-stage deblurrer that reads ``[y, x̂₀]`` (chapter 5's), ``x̂_i = x̂₀ + head_i(c_0)``: the
estimate starts from the input's last image, as the encoder's own decoder did.

Anything random must be drawn again identically when a column is inverted and recomputed.
Here the only randomness is the optional dropout, and its masks come from a generator
seeded per (column, level) with a seed drawn once per forward pass: the forward pass, the
inverse and the recomputation all see the same masks.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..physics import rfft2
from ..checks import check_channels, check_image, check_model_dtype
from .unet import ResBlock, UNet


class LevelUpdate(nn.Module):
    """``F_l(finer, coarser) = R(conv3×3(ReLU(down(finer) + up(coarser))))`` at level ``l``.

    ``down`` is a stride-2 3×3 convolution from the finer level (a plain 3×3 one at level 0,
    whose "finer" input is the encoder feature of the same size); ``up`` a 2×2 transposed
    convolution from the coarser level (absent at the coarsest level); ``R`` a residual
    block ``h + conv(ReLU(conv(h)))`` (AdaRevD's columns stack NAFNet blocks here). ``F_l``
    need not be invertible: the coupling around it is.
    """

    def __init__(self, widths: Sequence[int], level: int, dropout: float = 0.0):
        super().__init__()
        w = widths[level]
        self.down = nn.Conv2d(widths[0] if level == 0 else widths[level - 1], w, 3,
                              stride=1 if level == 0 else 2, padding=1)
        self.up = nn.ConvTranspose2d(widths[level + 1], w, 2, stride=2) if level + 1 < len(widths) else None
        self.conv = nn.Conv2d(w, w, 3, padding=1)
        self.block = ResBlock(w)
        self.dropout = dropout

    def forward(self, finer: torch.Tensor, coarser: torch.Tensor | None, seed: int | None = None) -> torch.Tensor:
        h = self.down(finer)
        if self.up is not None:
            h = h + self.up(coarser)
        h = F.relu(h)
        if self.training and self.dropout > 0:
            if seed is None:
                raise ValueError("dropout in a reversible column needs a seed (ReversibleDecoder draws one).")
            g = torch.Generator(device=h.device).manual_seed(seed)
            keep = torch.rand(h.shape, generator=g, device=h.device, dtype=h.dtype) >= self.dropout
            h = h * keep / (1 - self.dropout)
        return self.block(self.conv(h))


class Column(nn.Module):
    """One reversible sub-decoder: the level updates, the per-channel ``α``, and a head."""

    def __init__(self, widths: Sequence[int], channels: int = 1, alpha_min: float = 0.1, dropout: float = 0.0):
        super().__init__()
        self.updates = nn.ModuleList(LevelUpdate(widths, level, dropout) for level in range(len(widths)))
        self.raw_alpha = nn.ParameterList(nn.Parameter(torch.ones(1, w, 1, 1)) for w in widths)
        self.alpha_min = alpha_min
        self.head = nn.Conv2d(widths[0], channels, 3, padding=1)
        nn.init.zeros_(self.head.weight)  # each sub-decoder starts as the identity x̂_i = y
        nn.init.zeros_(self.head.bias)

    def alpha(self, level: int) -> torch.Tensor:
        """``α_l`` with ``|α_l| ≥ alpha_min`` (sign kept; 0 counts as positive)."""
        a = self.raw_alpha[level]
        sign = torch.where(a < 0, -1.0, 1.0).to(a.dtype)
        return sign * a.abs().clamp(min=self.alpha_min)

    def forward(self, e: torch.Tensor, state: Sequence[torch.Tensor], seed: int | None = None) -> list[torch.Tensor]:
        """The new state from the old one (module docstring), fine to coarse."""
        new: list[torch.Tensor] = []
        last = len(state) - 1
        for level, update in enumerate(self.updates):
            finer = e if level == 0 else new[level - 1]
            coarser = state[level + 1] if level < last else None
            new.append(self.alpha(level) * state[level] + update(finer, coarser, _level_seed(seed, level)))
        return new

    def inverse(self, e: torch.Tensor, new: Sequence[torch.Tensor], seed: int | None = None) -> list[torch.Tensor]:
        """The old state from the new one, coarse to fine: ``old c_l = (c_l − F_l(…)) / α_l``."""
        last = len(new) - 1
        old: list[torch.Tensor | None] = [None] * len(new)
        for level in range(last, -1, -1):
            finer = e if level == 0 else new[level - 1]
            coarser = old[level + 1] if level < last else None
            update = self.updates[level](finer, coarser, _level_seed(seed, level))
            old[level] = (new[level] - update) / self.alpha(level)
        return old  # type: ignore[return-value]


def _level_seed(seed: int | None, level: int) -> int | None:
    return None if seed is None else seed + level


def draw_seeds(n: int) -> list[int]:
    """One dropout seed per column, from the global RNG (so ``torch.manual_seed`` fixes them)."""
    return [int(s) for s in torch.randint(0, 2**62, (n,))]


class ReversibleFunction(torch.autograd.Function):
    """Run all columns without storing activations; rebuild and recompute them in backward.

    ``apply(columns, seeds, n_state, e, *state, *params)`` returns the heads' residuals, one
    per column. Kept for backward: ``e`` and the last column's state only, released as soon as
    backward has inverted it.
    """

    @staticmethod
    def forward(ctx, columns: nn.ModuleList, seeds: list[int], n_state: int, e: torch.Tensor, *tensors: torch.Tensor):
        state = list(tensors[:n_state])
        ctx.columns, ctx.seeds = columns, seeds
        residuals = []
        with torch.no_grad():
            for column, seed in zip(columns, seeds):
                state = column(e, state, seed)
                residuals.append(column.head(state[0]))
        # kept as attributes, not save_for_backward, so that backward can free each state once inverted
        ctx.e, ctx.state = e, state
        return tuple(residuals)

    @staticmethod
    def backward(ctx, *grad_residuals: torch.Tensor):
        if ctx.state is None:
            raise RuntimeError("a reversible decoder's graph can be backpropagated once (no retain_graph): "
                               "run the forward pass again.")
        e, state = ctx.e, ctx.state
        ctx.e = ctx.state = None
        n_state = len(state)
        need_e = ctx.needs_input_grad[3]
        need_first_state = any(ctx.needs_input_grad[4 : 4 + n_state])
        grad_state: list[torch.Tensor | None] = [None] * n_state  # None: no gradient reaches it (yet)
        grad_e = torch.zeros_like(e) if need_e else None
        grad_params: list[torch.Tensor] = []
        for i in range(len(ctx.columns) - 1, -1, -1):
            column, seed = ctx.columns[i], ctx.seeds[i]
            with torch.no_grad(), torch.autocast(e.device.type, enabled=False):  # no autocast, as in forward
                old = column.inverse(e, state, seed)  # rebuild this column's input …
            del state
            own = list(column.parameters())
            # gradients with respect to the column's input state are needed except for the encoder's
            # features (column 0), unless they require gradients themselves
            want_state = i > 0 or need_first_state
            # … and recompute the column, this time with a graph
            with torch.enable_grad(), torch.autocast(e.device.type, enabled=False):
                old_in = [s.detach().requires_grad_(want_state) for s in old]
                e_in = e.detach().requires_grad_(need_e)
                new = column(e_in, old_in, seed)
                outputs = [column.head(new[0])] + [c for c, g in zip(new, grad_state) if g is not None]
                grads_out = [grad_residuals[i]] + [g for g in grad_state if g is not None]
                inputs = own + (old_in if want_state else []) + ([e_in] if need_e else [])
                grads = torch.autograd.grad(outputs, inputs, grads_out, allow_unused=True)
            del new, outputs, grads_out
            grad_params = [g if g is not None else torch.zeros_like(p) for g, p in zip(grads, own)] + grad_params
            rest = grads[len(own) :]
            if want_state:
                grad_state, rest = list(rest[:n_state]), rest[n_state:]
            if need_e and rest[0] is not None:
                grad_e = grad_e + rest[0]
            state = old
        grad_first = [g if g is not None else torch.zeros_like(s) for g, s in zip(grad_state, state)] \
            if need_first_state else [None] * n_state
        return (None, None, None, grad_e, *grad_first, *grad_params)


class ReversibleDecoder(nn.Module):
    """N reversible sub-decoders on the features of a (frozen) :class:`~.unet.UNet` encoder.

    Args:
        encoder: the trained U-Net whose :meth:`~.unet.UNet.encode` feeds the columns; its
            parameters are frozen here.
        columns: number of sub-decoders N.
        reversible: recompute activations in backward (True) or store them like any network
            (False: the same computation, for comparison).
        alpha_min: the smallest allowed ``|α|``.
        dropout: dropout inside each level update (the same masks when recomputed).

    Example:
        >>> dec = ReversibleDecoder(UNet(width=4, levels=2), columns=3)
        >>> outs = dec(torch.rand(2, 1, 16, 16))
        >>> len(outs), outs[-1].shape
        (3, torch.Size([2, 1, 16, 16]))
    """

    def __init__(self, encoder: UNet, columns: int = 4, reversible: bool = True, alpha_min: float = 0.1,
                 dropout: float = 0.0):
        super().__init__()
        if columns < 1:
            raise ValueError(f"columns must be >= 1, got {columns}.")
        if not 0 < alpha_min <= 1:
            raise ValueError(f"alpha_min must be in (0, 1], got {alpha_min}: |α| ≥ alpha_min keeps the columns invertible.")
        self.encoder = encoder.requires_grad_(False).eval()
        widths = [encoder.stem.out_channels * 2 ** i for i in range(encoder.levels + 1)]
        self.columns = nn.ModuleList(Column(widths, encoder.channels, alpha_min, dropout) for _ in range(columns))
        self.reversible, self.dropout = reversible, dropout

    def train(self, mode: bool = True) -> "ReversibleDecoder":
        super().train(mode)
        self.encoder.eval()  # frozen: always in inference mode
        return self

    def decode(self, features: list[torch.Tensor], n: int | None = None) -> list[torch.Tensor]:
        """Residuals of the first ``n`` sub-decoders (all by default) from the encoder's features."""
        columns = self.columns[: n or len(self.columns)]
        seeds = draw_seeds(len(columns)) if self.training and self.dropout > 0 else [None] * len(columns)
        # The columns run in their weights' precision, also under mixed precision (autocast): backward
        # rebuilds each column's input by inverting the column, which float16's rounding would let drift.
        dtype = next(self.columns.parameters()).dtype
        e, state = features[0].to(dtype), [f.to(dtype) for f in features]
        with torch.autocast(e.device.type, enabled=False):
            if self.reversible and torch.is_grad_enabled():
                params = [p for column in columns for p in column.parameters()]
                return list(ReversibleFunction.apply(columns, seeds, len(state), e, *state, *params))
            residuals = []
            for column, seed in zip(columns, seeds):
                state = column(e, state, seed)
                residuals.append(column.head(state[0]))
            return residuals

    def encode(self, inputs: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``inputs`` padded (replicate) to a multiple of ``2^levels``, and the frozen encoder's features.
        ``inputs``: what the encoder reads — ``y``, or ``[y, x̂₀]`` stacked for a two-stage encoder."""
        inputs = check_image(inputs, "the encoder's input", value_range=False)  # a first estimate x̂₀ may overshoot …
        check_image(inputs[:, :1], "y")  # … the blurry image may not
        if inputs.shape[1] != self.encoder.stem.in_channels and self.encoder.stem.in_channels > self.encoder.channels:
            raise ValueError(f"this decoder's encoder reads {self.encoder.stem.in_channels} stacked images ([y, x̂₀] for a "
                             f"two-stage deblurrer), got {inputs.shape[1]} channel(s): pass AdaRevD.inputs(y, first).")
        check_channels(inputs, self.encoder.stem.in_channels, "ReversibleDecoder")
        check_model_dtype(inputs, self, "ReversibleDecoder")
        H, W = inputs.shape[-2:]
        m = 2 ** self.encoder.levels
        padded = F.pad(inputs, (0, -W % m, 0, -H % m), mode="replicate")
        with torch.no_grad():
            return padded, self.encoder.encode(padded)

    def forward(self, inputs: torch.Tensor, n: int | None = None,
                encoded: tuple[torch.Tensor, list[torch.Tensor]] | None = None) -> list[torch.Tensor]:
        """``[x̂_1, …, x̂_n]``: the estimate after each sub-decoder, the input's last image plus the head's
        residual — ``x̂_i = y + head_i(c_0)``, or ``x̂₀ + head_i(c_0)`` for ``inputs = [y, x̂₀]``
        (``encoded``: :meth:`encode`'s result, when the caller already has it)."""
        H, W = inputs.shape[-2:]
        padded, features = encoded if encoded is not None else self.encode(inputs)
        start = padded[:, -self.encoder.channels:]
        return [(start + r)[..., :H, :W] for r in self.decode(features, n)]


def multi_decoder_loss(estimates: Sequence[torch.Tensor], sharp: torch.Tensor, fft_weight: float = 0.01) -> torch.Tensor:
    """AdaRevD's loss: the mean over sub-decoders of ``‖x̂_i − x‖₁ + w·mean|FFT(x̂_i) − FFT(x)|``."""
    target = rfft2(sharp)  # in float32 for half precision (mixed precision)
    terms = [F.l1_loss(x_hat, sharp) + fft_weight * (rfft2(x_hat) - target).abs().mean() for x_hat in estimates]
    return torch.stack(terms).mean()
