"""Inference: ``Synthesizer`` turns label maps into images with a trained model (torch)."""
