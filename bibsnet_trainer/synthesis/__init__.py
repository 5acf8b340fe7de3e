"""SynthSeg-style synthesis of training images from label maps (cornucopia)."""
from .generator import SynthesisConfig, LabelSynthesizer  # noqa: F401
