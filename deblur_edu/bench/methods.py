"""The benchmark's method registry: every deconvolution method as ``f(y, k, σ) → x̂``.

A method receives the blurry batch ``y`` (N, 1, H, W), one kernel ``k`` (1, 1, h, w) shared
by the batch, and the noise level σ — never the boundary mode that made ``y``. Classical
methods may set their weights from σ (non-blind deconvolution knows its noise level).

σ-dependent weights come from ``tuned_defaults.json``, written by
``python -m deblur_edu.bench.tune`` on the *tune* split only. Between and beyond the tuned
noise levels a weight follows the power law through its two tuned values:
``w(σ) = w₁·(σ/σ₁)^p`` with ``p = log(w₂/w₁) / log(σ₂/σ₁)``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..classical import hyper_laplacian, inverse_filter, richardson_lucy, tv_admm, wiener, wiener_padded
from ..classical.blind_deconvolution import blind_deconvolve
from ..learned import adapt_at_test_time
from ..learned.pnp import pnp_hqs
from ..zoo import available, pretrained

DEFAULTS_FILE = Path(__file__).with_name("tuned_defaults.json")
SIGMA_FLOOR = 1e-3  # below this, weights are those of σ = 1e-3 (no log of 0)


def load_defaults(path: str | Path = DEFAULTS_FILE) -> dict:
    """The tuned hyper-parameters; a clear error when the file is missing."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; recreate it with: python -m deblur_edu.bench.tune")
    return json.loads(path.read_text())


def weight_at(sigma: float, sigmas: list[float], values: list[float]) -> float:
    """Power-law interpolation of a tuned weight (see module docstring)."""
    s = max(float(sigma), SIGMA_FLOOR)
    if len(values) == 1:
        return values[0]
    (s1, s2), (w1, w2) = sigmas[:2], values[:2]
    p = math.log(w2 / w1) / math.log(s2 / s1)
    return w1 * (s / s1) ** p


#: ``run(y, k, sigma, weight, defaults) → x̂``
Deconvolver = Callable[[torch.Tensor, torch.Tensor, float, float | None, dict], torch.Tensor]


@dataclass
class Method:
    """A benchmark method: ``run(y, k, sigma, weight)`` plus what its weight is called."""

    name: str
    run: Deconvolver
    weight: str | None = None  # name of the σ-dependent parameter, tuned on the tune split
    grid: list[float] = field(default_factory=list)  # candidate weights for the tuner
    description: str = ""
    checkpoint: str | None = None  # learned methods: the shipped weights they need
    blind: bool = False  # told nothing but y (the kernel and σ it is handed are not used)
    runs: str | None = None  # a blind method built on a non-blind one: that method's name (its needs are ours)

    def available(self) -> bool:
        """False for a learned method whose shipped checkpoint is not there."""
        return self.checkpoint is None or available(self.checkpoint)

    def __call__(self, y: torch.Tensor, k: torch.Tensor, sigma: float, defaults: dict | None = None) -> torch.Tensor:
        d = defaults if defaults is not None else load_defaults()
        return self.run(y, k, sigma, tuned_weight(self.name, sigma, d), d)


def tuned_weight(name: str, sigma: float, defaults: dict) -> float | None:
    """The tuned σ-dependent weight of method ``name`` at ``sigma`` (None if it has none)."""
    method = METHODS[name]
    if method.weight is None:
        return None
    if name not in defaults["methods"]:
        raise KeyError(f"no tuned {method.weight} for {name!r}; rerun python -m deblur_edu.bench.tune")
    return weight_at(sigma, defaults["sigmas"], defaults["methods"][name][method.weight])


# ----- scikit-image baselines (per image on the CPU, as a user would call them) --------
def _skimage_per_image(y: torch.Tensor, fn: Callable[[np.ndarray], np.ndarray]) -> torch.Tensor:
    out = [fn(img[0].detach().cpu().double().numpy()) for img in y]
    return torch.from_numpy(np.stack(out)[:, None]).to(device=y.device, dtype=y.dtype)


def _skimage_wiener(y, k, sigma, balance, defaults):
    from skimage.restoration import wiener as sk_wiener

    psf = k[0, 0].cpu().double().numpy()
    return _skimage_per_image(y, lambda a: sk_wiener(a, psf, balance, clip=False))


def _skimage_rl(iterations: int):
    def run(y, k, sigma, weight, defaults):
        from skimage.restoration import richardson_lucy as sk_rl

        psf = k[0, 0].cpu().double().numpy()
        return _skimage_per_image(y, lambda a: sk_rl(np.clip(a, 0, 1), psf, num_iter=iterations, clip=True))

    return run


def _logspace(lo: float, hi: float, n: int) -> list[float]:
    return [float(v) for v in np.logspace(lo, hi, n)]


#: ADMM settings, fixed (ρ relative to λ converged fastest on the tune split: 20–40 iterations)
TV_ITERATIONS = 40
TV_RHO_RATIO = 10.0
TV_RHO_DATA = 0.1


def _tv(y, k, sigma, lam, defaults):
    return tv_admm(y, k, lam=lam, rho=TV_RHO_RATIO * lam, rho_data=TV_RHO_DATA, iterations=TV_ITERATIONS)


def _blind(name: str):
    """Blind: the kernel and the noise level estimated from y alone (k and σ are not used), then the
    non-blind method ``name`` with its tuned weight at the estimated σ̂
    (:func:`~deblur_edu.classical.blind_deconvolution.blind_deconvolve`)."""

    def run(y, k, sigma, weight, defaults):
        return blind_deconvolve(y, lambda y_, k_, s_: METHODS[name](y_, k_, s_, defaults))[0]

    return run


def _hyper_laplacian(y, k, sigma, lam, defaults):
    """The non-convex prior, started from the TV solution. Its ADMM settings are the library's
    defaults (penalty 30·λ growing 8 % per iteration, 60 iterations), compared on the tune split only."""
    x_tv = _tv(y, k, sigma, tuned_weight("tv", sigma, defaults), defaults)
    return hyper_laplacian(y, k, lam=lam, x0=x_tv)

#: the benchmark's own copies of the shipped models, one per (checkpoint, device), loaded on first use
#: (so that the seconds per image measure deblurring, not loading)
_MODELS: dict[tuple[str, str], torch.nn.Module] = {}


def shipped_model(name: str, device: torch.device) -> torch.nn.Module:
    """The shipped checkpoint ``name`` on ``device``, loaded once by :func:`deblur_edu.zoo.pretrained`."""
    key = (name, str(device))
    if key not in _MODELS:
        _MODELS[key] = pretrained(name, device=device)
    return _MODELS[key]


def _shipped(name: str):
    """A blind method that runs the shipped checkpoint ``name``: ``model(y, k)`` (it estimates what it needs)."""

    def run(y, k, sigma, weight, defaults):
        return shipped_model(name, y.device)(y, k)

    return run


def _refined(name: str, first: str):
    """Two stages: the method ``first``, then the shipped checkpoint ``name`` correcting its estimate,
    ``model(y, first=x̂₀)`` (:class:`~deblur_edu.learned.blind_refiner.BlindRefiner`)."""

    def run(y, k, sigma, weight, defaults):
        return shipped_model(name, y.device)(y, first=METHODS[first](y, k, sigma, defaults))

    return run


def _non_blind(name: str):
    """A non-blind learned method, told the noise level as the classical ones are: ``model(y, k, σ)``
    (the model's ``uses_sigma`` says whether it uses it)."""

    def run(y, k, sigma, weight, defaults):
        return shipped_model(name, y.device)(y, k, sigma)

    return run


#: plug-and-play's schedule besides λ: HQS iterations, the first denoising level, the CG iterations per
#: data step, and how the denoiser is handed each estimate (``orientations`` and ``clamp`` together are
#: DPIR's x8 mode). The defaults are DPIR's plain loop; ``python -m deblur_edu.experiments.ch2_pnp_schedule``
#: chooses iterations, first level and variant per tuned σ, with λ on a coarse grid, on the *tune* split and
#: writes them into ``tuned_defaults.json`` (``schedules.pnp``, ``methods.pnp``); ``python -m deblur_edu.bench.tune
#: --methods pnp`` then refines λ for those schedules on the finer grid below (steps of ≈√2), on the same split.
PNP_SCHEDULE = {"iterations": 8, "sigma_start": 49 / 255, "cg_iterations": 10, "orientations": False, "clamp": False}


def pnp_schedule(defaults: dict, sigma: float) -> dict:
    """Plug-and-play's schedule at noise level ``sigma``: :data:`PNP_SCHEDULE` updated by the tuned
    ``schedules.pnp`` — one schedule, or one per tuned σ (``defaults["sigmas"]``), of which the one
    tuned at the σ nearest ``sigma`` (in log σ) is used."""
    tuned = defaults.get("schedules", {}).get("pnp", {})
    if isinstance(tuned, list):
        s = max(float(sigma), SIGMA_FLOOR)
        tuned = tuned[min(range(len(tuned)), key=lambda i: abs(math.log(s / defaults["sigmas"][i])))]
    return {**PNP_SCHEDULE, **tuned}


def _pnp(y, k, sigma, lam, defaults):
    """Plug-and-play HQS with the shipped learned denoiser (:func:`deblur_edu.learned.pnp.pnp_hqs`)."""
    return pnp_hqs(y, k, sigma, shipped_model("denoiser-cpu", y.device), lam=lam, **pnp_schedule(defaults, sigma))


#: test-time adaptation of the chapter-5 deblurrer (Nah et al. 2022); the learning rate is the one
#: ``python -m deblur_edu.experiments.ch5_reblur_eval --split tune --tta-sweep ...`` chose on the *tune* split
#: (benchmarks/reblur_tta_tune.json; tests/test_shipped_reblur.py keeps the two equal)
REBLUR_TTA = {"steps": 5, "lr": 1e-4, "parameters": "all"}


def adapt_each(pair: nn.Module, y: torch.Tensor, first: torch.Tensor, tta: dict | None = None) -> torch.Tensor:
    """Per-image test-time adaptation of a two-stage pair's ``M_D`` (:func:`~deblur_edu.learned.adapt_at_test_time`,
    settings ``tta``, default :data:`REBLUR_TTA`): each image gets its own adapted copy (the algorithm adapts to
    one image, so the loop over images is the method itself)."""
    tta = REBLUR_TTA if tta is None else tta
    with torch.enable_grad():
        return torch.cat([adapt_at_test_time(pair.deblurrer, pair.reblurrer, y[i : i + 1], first=first[i : i + 1],
                                             **tta)[0] for i in range(y.shape[0])])


def _reblur_tta(y, k, sigma, weight, defaults):
    """Blind TV's estimates of the whole batch, then :func:`adapt_each` with the shipped ``reblur-cpu``."""
    return adapt_each(shipped_model("reblur-cpu", y.device), y, METHODS["blind-tv"](y, k, sigma, defaults))


METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method("blurred", lambda y, k, s, w, d: y, None, [],
               "no deblurring: the blurry input itself, the baseline every method must beat"),
        Method("inverse", lambda y, k, s, w, d: inverse_filter(y, k, threshold=w), "threshold",
               _logspace(-3, -0.5, 11), "pseudo-inverse filter Y/K where |K| > threshold"),
        Method("wiener", lambda y, k, s, w, d: wiener(y, k, balance=w), "balance",
               _logspace(-5, -1, 17), "Wiener/Tikhonov, gradient regulariser, circular"),
        Method("wiener-taper", lambda y, k, s, w, d: wiener_padded(y, k, balance=w), "balance",
               _logspace(-5, -1, 17), "Wiener/Tikhonov after reflect-padding + edgetaper"),
        Method("rl-10", lambda y, k, s, w, d: richardson_lucy(y, k, 10), None, [], "border-aware Richardson–Lucy, 10 it"),
        Method("rl-30", lambda y, k, s, w, d: richardson_lucy(y, k, 30), None, [], "border-aware Richardson–Lucy, 30 it"),
        Method("rl-100", lambda y, k, s, w, d: richardson_lucy(y, k, 100), None, [], "border-aware Richardson–Lucy, 100 it"),
        Method("tv-circular",
               lambda y, k, s, w, d: tv_admm(y, k, lam=w, rho=TV_RHO_RATIO * w, iterations=TV_ITERATIONS, boundary="circular"),
               "lam", _logspace(-4, -1.5, 16), "TV by ADMM, circular model"),
        Method("tv", _tv, "lam", _logspace(-4, -1.5, 16), "TV by ADMM, border-aware (Almeida & Figueiredo 2013)"),
        Method("blind-tv", _blind("tv"), None, [],
               "blind, classical: kernel estimated from y by an L0 gradient prior, coarse to fine (Xu et al. 2013; "
               "Pan et al. 2014), then border-aware TV with its tuned weight at the σ estimated from y; not told "
               "k or σ", blind=True, runs="tv"),
        Method("hyper-laplacian", _hyper_laplacian, "lam", _logspace(-4, -2.5, 11),
               "|∇x|^(2/3) + ½|∇²x|^(2/3) prior, border-aware ADMM from the TV solution "
               "(Krishnan & Fergus 2009; Levin et al. 2007)"),
        Method("skimage-wiener", _skimage_wiener, "balance", _logspace(-4, 1, 16), "skimage.restoration.wiener"),
        Method("skimage-rl-10", _skimage_rl(10), None, [], "skimage.restoration.richardson_lucy, 10 it"),
        Method("skimage-rl-30", _skimage_rl(30), None, [], "skimage.restoration.richardson_lucy, 30 it"),
        Method("skimage-rl-100", _skimage_rl(100), None, [], "skimage.restoration.richardson_lucy, 100 it"),
        Method("pnp", _pnp, "lam", _logspace(-1, -0.25, 6),  # 0.1 … 0.56, steps of ≈√2: refines the sweep's λ
               "plug-and-play: border-aware HQS whose prior step is the learned Gaussian denoiser "
               "(DPIR's schedule, Zhang et al. 2021), shipped checkpoint", checkpoint="denoiser-cpu"),
        Method("blind-pnp", _blind("pnp"), None, [],
               "blind, learned prior: blind-tv's kernel estimate, then plug-and-play with the learned denoiser "
               "(pnp's tuned schedule at the σ estimated from y); not told k or σ", checkpoint="denoiser-cpu",
               blind=True, runs="pnp"),
        Method("blind-refiner", _refined("blind-refiner-cpu", "blind-tv"), None, [],
               "blind, two stages: blind-tv, then a U-Net trained on photographs to correct its estimate from "
               "[y, x̂₀] (chapter 5), shipped checkpoint; not told k or σ", checkpoint="blind-refiner-cpu",
               blind=True, runs="tv"),
        Method("rgdn", _non_blind("rgdn-cpu"), None, [],
               "learned gradient descent (Gong et al. 2020), shipped checkpoint", checkpoint="rgdn-cpu"),
        Method("deq-jfb", _non_blind("deq-jfb-cpu"), None, [],
               "deep-equilibrium network trained with JFB (Fung et al. 2022), shipped checkpoint",
               checkpoint="deq-jfb-cpu"),
        Method("deq-implicit", _non_blind("deq-implicit-cpu"), None, [],
               "the same DEQ trained with implicit backprop (Anderson adjoint solve), shipped checkpoint",
               checkpoint="deq-implicit-cpu"),
        Method("feedforward", _non_blind("feedforward-cpu"), None, [],
               "CNN once on the Tikhonov start (the DEQ's size, no equilibrium), shipped checkpoint",
               checkpoint="feedforward-cpu"),
        Method("reblur-l1", _shipped("reblur-l1-cpu"), None, [],
               "end-to-end blind U-Net trained with L1 on 13-px shakes (no first stage: the one-step comparator of "
               "chapter 5's two-stage deblurrer), shipped checkpoint", checkpoint="reblur-l1-cpu", blind=True),
        Method("reblur-l1-ft", _refined("reblur-l1-ft-cpu", "blind-tv"), None, [],
               "chapter 5's two-stage deblurrer (blind-refiner) fine-tuned 600 more steps with L1 alone: the control "
               "of reblur, shipped checkpoint", checkpoint="reblur-l1-ft-cpu", blind=True),
        Method("reblur", _refined("reblur-cpu", "blind-tv"), None, [],
               "chapter 5's two-stage deblurrer (blind-refiner) fine-tuned 600 steps with L1 + supervised reblurring "
               "loss (Nah et al. 2022), a frozen reblurring module as critic, shipped checkpoint",
               checkpoint="reblur-cpu", blind=True),
        Method("reblur-tta", _reblur_tta, None, [],
               "reblur adapted per image by the self-supervised reblurring loss (its second stage only), "
               "shipped checkpoint", checkpoint="reblur-cpu", blind=True),
        Method("adarevd", _refined("adarevd-cpu", "blind-tv"), None, [],
               "chapter 5's two-stage deblurrer (blind-refiner) with its U-Net's encoder frozen and four reversible "
               "sub-decoders in place of its decoder (AdaRevD, Mao et al. 2024), whole image through every sub-decoder, "
               "shipped checkpoint", checkpoint="adarevd-cpu", blind=True),
    ]
}


def get_method(name: str) -> Method:
    """Look a method up by its benchmark name."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHODS)}.")
    return METHODS[name]


def available_methods(defaults: dict | None = None) -> list[str]:
    """Every registered method whose requirements are present: a learned one's checkpoint, a tuned
    one's weight in ``tuned_defaults.json``, a blind one's non-blind method (``runs``)."""
    d = defaults if defaults is not None else load_defaults()
    ready = {n for n, m in METHODS.items() if m.available() and (m.weight is None or n in d["methods"])}
    return [n for n in METHODS if n in ready and (METHODS[n].runs is None or METHODS[n].runs in ready)]
