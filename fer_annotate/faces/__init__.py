"""Faces: detect, track, align and crop every face, and measure its geometry (pose, blendshapes)."""
