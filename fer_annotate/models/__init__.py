"""Models: the multitask networks, their weights bundles, the ensemble and temporal smoothing."""
