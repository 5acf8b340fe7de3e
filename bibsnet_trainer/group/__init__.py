"""Group level: the pipeline of stages (`pipeline.py`) and the subject split (`splits.py`)."""
