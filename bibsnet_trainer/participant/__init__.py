"""Participant level: the pipeline (`pipeline.py`), T2w-T1w registration, brain mask, volumes, QC flags, and nipype for many sessions (`workflow.py`)."""
