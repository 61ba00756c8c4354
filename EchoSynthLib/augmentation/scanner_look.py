"""A stand-in second scanner: CAMUS images given another look (coarser speckle, another dynamic range,
another gain), for the source-image guide of the adversarial model and for measuring translation where no
second scanner's data is at hand. It is a stand-in, stated as such wherever it is used: a real second
scanner differs in more ways (beam pattern, frequency-dependent attenuation, processing, sector shape).

On model images (tensors in [-1, 1], (B, 1, H, W)): a Gaussian blur of ``blur`` pixels (lower transmit
frequency: wider speckle; MONAI's ``GaussianFilter``), ``lateral_blur`` more across the beams than along
them (a wider lateral than axial point spread), a scanner's coarser grid (``resample``: the image taken
down to that fraction of its grid and back up, as EchoNet's 112x112 frames are to CAMUS's 224x224), a
power law on the grey levels (another log compression / dynamic range), then a gain (optionally changing
with depth: another time-gain compensation) and offset; black stays black outside the sector.

A source-guided model trains on *random* looks (``random_looks``: each setting uniform in ``LOOK_RANGES``,
which hold CAMUS's own look and the stand-in's), so that it learns to bring many looks to the training
scanner's rather than to undo one fixed degradation; it is measured on the fixed ``STAND_IN``.
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
    depth_gain: float = 0.0  # another time-gain compensation: the gain changes by this much, top to bottom
    lateral_blur: float = 0.0  # pixels (sigma) of blur across the beams (along image rows) on top of ``blur``
    resample: float = 1.0  # the scanner's grid as a fraction of the model grid (1: the same grid)

    def __call__(self, images: torch.Tensor, inside: torch.Tensor | None = None) -> torch.Tensor:
        """The images (B, 1, H, W) in [-1, 1] as the stand-in scanner would show them; ``inside``: the
        sector (bool, like the images; default: every pixel brighter than black)."""
        from monai.networks.layers import GaussianFilter

        unit = (images.float() + 1.0) / 2.0
        inside = unit > 0 if inside is None else inside
        blurred = unit
        if self.blur > 0 or self.lateral_blur > 0:
            sigma = (max(self.blur, 1e-3), max(self.blur, 1e-3) + self.lateral_blur)  # (rows, columns)
            blurred = GaussianFilter(spatial_dims=2, sigma=sigma).to(images.device)(unit).clamp(0, 1)
        if self.resample < 1.0:
            grid = unit.shape[-2:]
            coarse = [max(1, round(n * self.resample)) for n in grid]
            down = torch.nn.functional.interpolate(blurred, size=coarse, mode="area")
            blurred = torch.nn.functional.interpolate(down, size=grid, mode="bilinear", align_corners=False)
        gain: float | torch.Tensor = self.gain
        if self.depth_gain:  # rows run from the probe (top) to the deepest point
            depth = torch.linspace(-0.5, 0.5, unit.shape[-2], device=images.device).view(1, 1, -1, 1)
            gain = self.gain + self.depth_gain * depth
        looked = (gain * blurred.pow(self.gamma) + self.offset).clamp(0, 1)
        return torch.where(inside, looked, torch.zeros_like(looked)) * 2.0 - 1.0


STAND_IN = ScannerLook()

# A look outside the training family (``LOOK_RANGES``): wider speckle, harder contrast, darker, and a
# steeper depth-dependent gain than any training look has; for measuring how far translation carries
# beyond what it was trained on (a stand-in still, not a real scanner).
UNSEEN = ScannerLook(blur=2.6, gamma=1.9, gain=0.8, offset=-0.02, depth_gain=-0.5)

# The range each setting of a random look is drawn from (uniformly): CAMUS's own look (blur 0, gamma 1,
# gain 1, offset 0, no depth gain, the same grid) and the stand-in's are inside, with darker, brighter,
# softer and harder looks around them, other time-gain compensations (brighter or darker with depth),
# wider lateral than axial speckle, and coarser scanner grids (down to EchoNet's 112 of 224).
LOOK_RANGES: dict[str, tuple[float, float]] = {
    "blur": (0.0, 2.0),
    "gamma": (0.5, 1.6),
    "gain": (0.7, 1.15),
    "offset": (-0.05, 0.12),
    "depth_gain": (-0.35, 0.35),
    "lateral_blur": (0.0, 1.5),
    "resample": (0.45, 1.0),
}


def look_at(uniforms: torch.Tensor) -> ScannerLook:
    """The look at a point of ``LOOK_RANGES`` (``uniforms``: one number in [0, 1] per setting, in order)."""
    points = zip(LOOK_RANGES.items(), uniforms, strict=True)
    return ScannerLook(**{name: low + float(u) * (high - low) for (name, (low, high)), u in points})


def random_looks(images: torch.Tensor, inside: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    """Each image (B, 1, H, W) in [-1, 1] in a look of its own: row b of ``uniforms`` (B, len(LOOK_RANGES))
    places image b's look in ``LOOK_RANGES``."""
    if uniforms.shape != (images.shape[0], len(LOOK_RANGES)):
        expected = (images.shape[0], len(LOOK_RANGES))
        raise ValueError(f"uniforms must be {expected}, got {tuple(uniforms.shape)}")
    return torch.cat([look_at(u)(images[b : b + 1], inside[b : b + 1]) for b, u in enumerate(uniforms.cpu())])
