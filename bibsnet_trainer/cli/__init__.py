"""Command lines: the BIDS App (`app.py`) and `bibsnet-models` (`models.py`)."""
