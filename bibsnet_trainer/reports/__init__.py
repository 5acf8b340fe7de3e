"""What reports share: figures, provenance, the QC page, the output index page."""
