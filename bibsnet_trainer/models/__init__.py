"""Model packages: writing, verifying and unpacking them (`package.py`), choosing one (`registry.py`)."""
