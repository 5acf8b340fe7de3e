"""What reports share: figures, provenance, the output index page."""
