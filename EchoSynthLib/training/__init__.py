"""Trainers: the semantic diffusion model and the label-adherence segmenter (torch)."""
