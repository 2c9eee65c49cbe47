"""Classical (model-based) deconvolution: inverse filter, Wiener/Tikhonov, Richardson–Lucy,
TV by ADMM and the hyper-Laplacian prior; and blind deconvolution (the kernel estimated from y)."""

from .blind_deconvolution import blind_deconvolve, estimate_kernel, estimate_noise_level
from .hyper_laplacian import hyper_laplacian
from .inverse import inverse_filter
from .richardson_lucy import i_divergence, richardson_lucy
from .tv_admm import admm_deconvolve, tv_admm
from .wiener import edgetaper, tikhonov_inverse, tikhonov_start, wiener, wiener_padded

__all__ = [
    "admm_deconvolve",
    "blind_deconvolve",
    "edgetaper",
    "estimate_kernel",
    "estimate_noise_level",
    "hyper_laplacian",
    "i_divergence",
    "inverse_filter",
    "richardson_lucy",
    "tikhonov_inverse",
    "tikhonov_start",
    "tv_admm",
    "wiener",
    "wiener_padded",
]
