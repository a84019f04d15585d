"""Media: read video frames (decord, PyAV fallback) and still images as RGB batches with container times."""
