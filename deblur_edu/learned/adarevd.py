r"""AdaRevD in miniature: a frozen U-Net encoder, reversible sub-decoders and a classifier.

Mao, Li & Wang, "AdaRevD: Adaptive Patch Exiting Reversible Decoder Pushes the Limit of
Image Deblurring" (CVPR 2024) in three parts, each in its own module:

* :mod:`.reversible` — N sub-decoders on the frozen encoder's features, trained with
  activations recomputed in backward; estimate ``x̂_i = y + head_i(c_0)`` after each;
* :mod:`.patch_exit` — a classifier on the encoder's bottleneck that predicts a patch's
  degradation class (from the blurry patch's PSNR), and the class → exit mapping;
* this module — the two trained together by the one training loop, with the loss

    L = (1/N) Σ_i [ ‖x̂_i − x‖₁ + 0.01·mean|FFT(x̂_i) − FFT(x)| ]  +  w_c · CE(classifier(e_L), class(y, x))

The encoder is the end-to-end L1-trained blind U-Net (its config's ``encoder: reblur-l1-cpu`` copies that
checkpoint's deblurrer in when training starts, :mod:`deblur_edu.zoo.shipped`): its decoder is
dropped, its encoder frozen (AdaRevD freezes a trained UFPNet/NAFNet encoder).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .patch_exit import DegradationClassifier, degradation_class
from .reversible import ReversibleDecoder, multi_decoder_loss
from .unet import UNet


class AdaRevD(nn.Module):
    """Reversible sub-decoders + degradation classifier on a frozen U-Net encoder.

    Args:
        encoder: the U-Net whose encoder is frozen (None: a fresh one of ``width``/``levels``/``blocks``).
        width, levels, blocks: that U-Net's architecture.
        columns, reversible, alpha_min, dropout: the :class:`~.reversible.ReversibleDecoder`.
        classifier_hidden: the classifier's hidden width.
        classifier_weight: ``w_c`` of the loss (module docstring).
        fft_weight: the FFT term's weight.

    Calling it deblurs with every sub-decoder (the last estimate); with ``sharp`` it returns
    the training loss; :meth:`estimates` gives every sub-decoder's estimate.

    Example:
        >>> model = AdaRevD(width=4, levels=2, columns=2)
        >>> y, x = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
        >>> model(y).shape
        torch.Size([2, 1, 16, 16])
        >>> model(y, sharp=x).backward()
    """

    def __init__(self, encoder: UNet | None = None, width: int = 16, levels: int = 3, blocks: int = 1,
                 columns: int = 4, reversible: bool = True, alpha_min: float = 0.1, dropout: float = 0.0,
                 classifier_hidden: int = 32, classifier_weight: float = 0.1, fft_weight: float = 0.01,
                 channels: int = 1):
        super().__init__()
        if channels != 1:
            raise ValueError(f"the encoders are grey-scale: channels must be 1, got {channels}.")
        self.channels = channels
        unet = encoder if encoder is not None else UNet(1, width, levels, blocks)
        self.decoder = ReversibleDecoder(unet, columns, reversible,
                                         alpha_min, dropout)
        self.classifier = DegradationClassifier(width * 2 ** levels, hidden=classifier_hidden)
        self.classifier_weight, self.fft_weight = classifier_weight, fft_weight

    def estimates(self, y: torch.Tensor, n: int | None = None) -> list[torch.Tensor]:
        """``[x̂_1, …, x̂_n]`` (all sub-decoders by default)."""
        return self.decoder(y, n)

    def forward(self, y: torch.Tensor, k: torch.Tensor | None = None,
                sharp: torch.Tensor | None = None) -> torch.Tensor:
        """Deblur ``y`` (``k`` ignored: blind), or with ``sharp`` return the training loss."""
        if sharp is None:
            return self.decoder(y)[-1]
        encoded = self.decoder.encode(y)
        loss = multi_decoder_loss(self.decoder(y, encoded=encoded), sharp, self.fft_weight)
        if self.classifier_weight > 0:
            logits = self.classifier(encoded[1][-1])
            loss = loss + self.classifier_weight * F.cross_entropy(logits, degradation_class(y, sharp))
        return loss
