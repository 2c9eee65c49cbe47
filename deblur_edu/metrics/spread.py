r"""How sure is a difference between two methods? A paired bootstrap interval.

Two deblurrers run on the same ``n`` test cases give paired scores ``a_i`` and ``b_i``. Their
mean difference ``d̄ = mean(b_i − a_i)`` is one number from one set of cases; a different set
of images and kernels would give another. The bootstrap (Efron & Tibshirani, *An Introduction
to the Bootstrap*, 1993, ch. 13) estimates that spread from the cases themselves: draw ``n``
cases with replacement, ``R`` times, recompute ``d̄`` on each draw, and take the 2.5th and
97.5th percentiles of the ``R`` values as a 95 % interval. *Paired*: a draw keeps each case's
two scores together, so the variation between images (large) cancels and only the variation
of the difference (small) is left.

An interval that excludes 0 says that, on cases like these, the sign of the difference is not
an accident of which cases were drawn. It says nothing about cases unlike them (another blur,
another camera).

    >>> a = torch.tensor([0.50, 0.52, 0.47, 0.55])
    >>> spread = paired_bootstrap(a, a - 0.01)
    >>> round(spread.mean, 3), spread.excludes_zero
    (-0.01, True)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

#: the book's defaults: 1,000 resamples, a 95 % interval, one seed (every interval is reproducible)
RESAMPLES, LEVEL, SEED = 1000, 0.95, 0


@dataclass(frozen=True)
class Spread:
    """A mean paired difference ``b − a`` and its bootstrap interval ``[low, high]``."""

    mean: float
    low: float
    high: float
    cases: int
    resamples: int
    level: float

    @property
    def excludes_zero(self) -> bool:
        """The whole interval on one side of 0."""
        return self.low > 0 or self.high < 0

    def as_dict(self) -> dict:
        return {**asdict(self), "excludes_zero": self.excludes_zero}

    def __str__(self) -> str:
        return f"{self.mean:+.4g} [{self.low:+.4g}, {self.high:+.4g}]"


def paired_bootstrap(a: torch.Tensor | list[float], b: torch.Tensor | list[float], resamples: int = RESAMPLES,
                     level: float = LEVEL, seed: int = SEED) -> Spread:
    """The mean of ``b − a`` over paired cases and its percentile bootstrap interval (module docstring).

    Args:
        a, b: one score per case, in the same case order (1-D, same length ≥ 2).
        resamples: bootstrap draws ``R``; level: the interval's coverage, in (0, 1); seed: of the draws.
    """
    a, b = torch.as_tensor(a, dtype=torch.float64).flatten(), torch.as_tensor(b, dtype=torch.float64).flatten()
    if a.shape != b.shape:
        raise ValueError(f"paired scores need one of each per case: got {a.numel()} and {b.numel()} values.")
    if a.numel() < 2:
        raise ValueError(f"a bootstrap interval needs at least 2 cases, got {a.numel()}.")
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        raise ValueError("the scores contain NaN or Inf: fix the method that produced them before comparing.")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), e.g. 0.95, got {level}.")
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 1:
        raise ValueError(f"resamples must be an integer >= 1, got {resamples!r}.")
    d = b - a
    g = torch.Generator().manual_seed(seed)
    draws = torch.randint(d.numel(), (resamples, d.numel()), generator=g)  # every draw at once: (R, n) case indices
    means = d[draws].mean(dim=1)
    tail = (1 - level) / 2
    low, high = torch.quantile(means, torch.tensor([tail, 1 - tail], dtype=torch.float64)).tolist()
    return Spread(float(d.mean()), low, high, d.numel(), resamples, level)
