"""Command lines: the BIDS App (`run.py`, with its parser, environment and the two levels as typed
entry points) and `bibsnet-models` (`models.py`)."""
