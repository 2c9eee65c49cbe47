"""Learned deconvolution: networks that use the blur operator inside their computation, and
the blind deblurrers of chapter 5."""

from .adarevd import AdaRevD
from .deq import DEQ
from .feedforward import TikhonovCNN
from .reblur import Reblurrer, ReblurDeblurrer, adapt_at_test_time
from .reversible import ReversibleDecoder, multi_decoder_loss
from .rgdn import RGDN
from .unet import UNet

__all__ = ["AdaRevD", "DEQ", "RGDN", "ReblurDeblurrer", "Reblurrer", "ReversibleDecoder", "TikhonovCNN", "UNet",
           "adapt_at_test_time", "multi_decoder_loss"]
