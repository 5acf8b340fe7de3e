"""Participant level: the pipeline (`pipeline.py`), run as one nipype workflow (`workflow.py`),
T2w-T1w registration, brain mask, QC flags and page."""
