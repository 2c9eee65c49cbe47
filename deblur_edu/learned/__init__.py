"""Learned deconvolution: networks that use the blur operator inside their computation."""

from .rgdn import RGDN

__all__ = ["RGDN"]
