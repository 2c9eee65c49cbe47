"""Learned deconvolution: networks that use the blur operator inside their computation."""

from .deq import DEQ
from .feedforward import TikhonovCNN
from .rgdn import RGDN

__all__ = ["DEQ", "RGDN", "TikhonovCNN"]
