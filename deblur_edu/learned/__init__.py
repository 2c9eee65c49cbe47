"""Learned models, and the solvers they run: a Gaussian denoiser and plug-and-play (chapter 2),
networks that use the blur operator inside their computation (RGDN, chapter 3; deep equilibrium
with its fixed-point solvers, chapter 4), and the blind deblurrers of chapters 5–6. Constructors
take modules and numbers, never checkpoint names (loading is :mod:`deblur_edu.zoo`'s)."""

from .adarevd import AdaRevD
from .denoiser import GaussianDenoiser
from .deq import DEQ
from .feedforward import TikhonovCNN
from .pnp import pnp_hqs
from .reblur import Reblurrer, ReblurDeblurrer, adapt_at_test_time
from .reversible import ReversibleDecoder, multi_decoder_loss
from .rgdn import RGDN
from .unet import UNet

__all__ = ["AdaRevD", "DEQ", "GaussianDenoiser", "RGDN", "ReblurDeblurrer", "Reblurrer", "ReversibleDecoder", "TikhonovCNN", "UNet",
           "adapt_at_test_time", "multi_decoder_loss", "pnp_hqs"]
