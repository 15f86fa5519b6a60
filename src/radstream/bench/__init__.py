"""Measurement: outcomes, percentiles, (later) cost model and SLO verdicts."""
