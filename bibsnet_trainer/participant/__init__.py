"""Participant level: the pipeline (`pipeline.py`), T2w-T1w registration, brain mask, QC flags and page, and nipype for many sessions (`workflow.py`)."""
