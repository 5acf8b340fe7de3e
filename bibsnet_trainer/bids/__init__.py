"""BIDS inputs and outputs: finding and validating the inputs (pybids), ages at scan, derivatives."""
