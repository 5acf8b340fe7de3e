"""SynthSeg-style synthesis of training images from label maps (cornucopia)."""
from ..config import SynthesisConfig
from .generator import LabelSynthesizer

__all__ = ["LabelSynthesizer", "SynthesisConfig"]
