"""Run: the per-video pipeline, the job plan for folders, locks, threads and scale-out workers."""
