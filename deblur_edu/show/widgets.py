"""Interactive explorations that also work in a static book.

Each exploration is one ``render(**params) → image`` function and a list of values per
parameter. :func:`explorer` makes it live (sliders in Jupyter/Colab; the published book
embeds a snapshot of the widget state); :func:`parameter_grid` draws the same function
over every slider value, so a reader without a running kernel still sees the effect.
"""

from __future__ import annotations

import itertools
from typing import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from .plot import to_numpy

Render = Callable[..., "torch.Tensor | np.ndarray"]


def _label(name: str, value) -> str:
    return f"{name}={value:.3g}" if isinstance(value, float) else f"{name}={value}"


def explorer(render: Render, params: dict[str, Sequence], size: float = 4.0):
    """Sliders over ``params`` (name → allowed values) that re-draw ``render(**values)``.

    Returns an ``ipywidgets`` box; display it as a cell's last expression.
    """
    import ipywidgets as widgets

    sliders = {
        name: widgets.SelectionSlider(options=list(values), value=values[len(values) // 2], description=name,
                                      continuous_update=False)
        for name, values in params.items()
    }
    out = widgets.Output()

    def redraw(*_):
        values = {name: s.value for name, s in sliders.items()}
        with out:
            out.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(size, size))
            ax.imshow(np.clip(to_numpy(render(**values)), 0, 1), cmap="gray", vmin=0, vmax=1)
            ax.set_title(", ".join(_label(n, v) for n, v in values.items()))
            ax.axis("off")
            plt.show()

    for s in sliders.values():
        s.observe(redraw, names="value")
    redraw()
    return widgets.VBox([*sliders.values(), out])


def parameter_grid(render: Render, params: dict[str, Sequence], size: float = 2.6) -> plt.Figure:
    """The static counterpart of :func:`explorer`: ``render`` at every combination of values
    (one parameter: a row; two: rows × columns)."""
    names = list(params)
    if len(names) > 2:
        raise ValueError("parameter_grid draws one or two parameters; fix the others in render.")
    rows = params[names[0]] if len(names) == 2 else [None]
    cols = params[names[-1]]
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(size * len(cols), size * len(rows)), squeeze=False)
    for (i, r), (j, c) in itertools.product(enumerate(rows), enumerate(cols)):
        values = {names[-1]: c} if r is None else {names[0]: r, names[1]: c}
        ax = axes[i, j]
        ax.imshow(np.clip(to_numpy(render(**values)), 0, 1), cmap="gray", vmin=0, vmax=1)
        ax.set_title(", ".join(_label(n, v) for n, v in values.items()), fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    return fig
