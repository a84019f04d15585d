"""Outputs: the annotation table and its sidecar, summaries, overlays and plots."""
