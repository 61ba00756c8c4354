"""Evaluation: Dice per structure and the label-adherence report (torch, MONAI metrics)."""
