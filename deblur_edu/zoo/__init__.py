"""The model zoo: every trainable model by name (:mod:`.registry`), checkpoints with verified
metadata (:mod:`.checkpoints`), and the shipped ones (:mod:`.shipped`, in ``weights/``)."""

from .shipped import WEIGHTS_DIR, available, metadata, pretrained
from .registry import MODELS

__all__ = ["MODELS", "WEIGHTS_DIR", "available", "metadata", "pretrained"]
