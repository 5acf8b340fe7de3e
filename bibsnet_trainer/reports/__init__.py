"""What reports share: figures, the page template, provenance, the output index page."""
