"""A stand-in second scanner: CAMUS images given another look (coarser speckle, another dynamic range,
another gain), for the source-image guide of the adversarial model and for measuring translation where no
second scanner's data is at hand. It is a stand-in, stated as such wherever it is used: a real second
scanner differs in more ways (beam pattern, frequency-dependent attenuation, processing, sector shape).

On model images (tensors in [-1, 1], (B, 1, H, W)): a Gaussian blur of ``blur`` pixels (lower transmit
frequency: wider speckle; MONAI's ``GaussianFilter``), a power law on the grey levels (another log
compression / dynamic range), then a gain and offset; black stays black outside the sector.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ScannerLook:
    """The stand-in scanner's settings (defaults: visibly another scanner, anatomy intact)."""

    blur: float = 1.2  # pixels (sigma), on the model grid
    gamma: float = 0.6  # grey ** gamma on [0, 1]: below 1 lifts the dark grey levels (less contrast)
    gain: float = 0.85
    offset: float = 0.08

    def __call__(self, images: torch.Tensor, inside: torch.Tensor | None = None) -> torch.Tensor:
        """The images (B, 1, H, W) in [-1, 1] as the stand-in scanner would show them; ``inside``: the
        sector (bool, like the images; default: every pixel brighter than black)."""
        from monai.networks.layers import GaussianFilter

        unit = (images.float() + 1.0) / 2.0
        inside = unit > 0 if inside is None else inside
        blurred = GaussianFilter(spatial_dims=2, sigma=self.blur).to(images.device)(unit).clamp(0, 1)
        looked = (self.gain * blurred.pow(self.gamma) + self.offset).clamp(0, 1)
        return torch.where(inside, looked, torch.zeros_like(looked)) * 2.0 - 1.0


STAND_IN = ScannerLook()
