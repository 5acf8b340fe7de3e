"""Group level: the stages (`plan`, `dataset`, `train`, `evaluate`, `package`; their records in
`stages`), run in order by `pipeline.py`, and the subject split (`splits.py`)."""
