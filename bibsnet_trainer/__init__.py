"""bibsnet-trainer: train nnU-Net v2 brain-segmentation models from synthetic and real MRI, and
segment BIDS datasets into Nibabies-ready derivatives."""

__version__ = "0.1.0"
