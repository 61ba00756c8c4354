"""A random chain of scanner degradations: the looks of many real scanners made from one scanner's images.

A real scanner differs from CAMUS's in far more than the five numbers of ``scanner_look.ScannerLook``. As
blind real-world image restoration builds its training pairs (a clean image, the same image through a
random chain of degradations), a source-guided translator learns here to undo a chain drawn per image from
``KINDS``, each kind applied with probability ``APPLY`` and its settings drawn uniformly:

- ``blur``: the point spread, anisotropic (wider across the beams than along them) and growing with depth;
- ``speckle``: another speckle grain (the image's speckle multiplied by a fresh Rayleigh field of another
  size: another transmit frequency and aperture);
- ``tgc``: another time-gain compensation (gain changing with depth);
- ``grey_map``: a random monotone grey map and dynamic range (another log compression and post-processing);
- ``resample``: the image taken to another grid (down to EchoNet's 112 of 224, each axis its own factor,
  area, bilinear or nearest) and back (scan conversion, video resolution);
- ``haze``: a noise floor and near-field clutter: smooth, low-frequency haze strongest in the dark
  cavities and near the probe;
- ``noise``: an electronic noise floor (Rayleigh, inside the sector);
- ``sharpen``: edge enhancement (an unsharp mask);
- ``compression``: JPEG compression at a low quality (OpenCV's encoder; video codecs block and blur alike);
- ``scanner_look``: the earlier five-number look family (``scanner_look.LOOK_RANGES``: blur, gamma, gain,
  offset, depth gain, lateral blur, a coarser grid) at a random point, so that a translator trained on the
  chain keeps the looks it was trained on before;
- ``persistence`` (cine loops only, ``persist``): each frame mixed with the one before it.

``HELD_OUT`` kinds are never drawn in training (``TRAINING``): measuring a translator on them tells how it
copes with a kind of degradation it never saw (not only values it never saw), as a real scanner will bring.

Everything runs on model images: tensors (B, 1, H, W) in [-1, 1], black outside the sector. Each image's
chain is drawn from its own seed, so a training step's looks are reproducible and a resumed run draws them
again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from EchoSynthLib.errors import InputError

KINDS = (
    "blur",
    "speckle",
    "tgc",
    "grey_map",
    "resample",
    "haze",
    "noise",
    "sharpen",
    "compression",
    "scanner_look",
)
HELD_OUT = ("speckle", "sharpen")  # kinds a translator never sees in training, for measuring generalisation
TRAINING = tuple(kind for kind in KINDS if kind not in HELD_OUT)
APPLY = 0.6  # the chance each kind of a chain is applied to an image

Kind = Callable[[torch.Tensor, torch.Tensor, np.random.Generator, torch.Generator], torch.Tensor]


def _gaussian(unit: torch.Tensor, rows: float, columns: float) -> torch.Tensor:
    from monai.networks.layers import GaussianFilter

    return GaussianFilter(spatial_dims=2, sigma=(max(rows, 1e-3), max(columns, 1e-3)))(unit)


def _depth(unit: torch.Tensor) -> torch.Tensor:
    """0 at the probe (top row) to 1 at the deepest row, shaped to broadcast over (B, 1, H, W)."""
    return torch.linspace(0.0, 1.0, unit.shape[-2]).view(1, 1, -1, 1)


def _smooth_field(unit: torch.Tensor, grain: float, noise: torch.Generator) -> torch.Tensor:
    """A random field of the image's size, features about ``grain`` pixels wide (Rayleigh, mean 1)."""
    height, width = unit.shape[-2:]
    coarse = (max(2, round(height / grain)), max(2, round(width / grain)))
    parts = torch.randn((2, 1, *coarse), generator=noise)
    rayleigh = parts.pow(2).sum(0, keepdim=True).sqrt()  # the envelope of a complex Gaussian signal
    field = torch.nn.functional.interpolate(rayleigh, (height, width), mode="bilinear", align_corners=False)
    return field / field.mean().clamp_min(1e-6)


def blur(unit, inside, draw, noise):
    axial = draw.uniform(0.4, 1.5)
    lateral = axial + draw.uniform(0.3, 1.5)
    deep = draw.uniform(1.0, 1.8)  # how much wider the point spread is at the deepest row
    near = _gaussian(unit, axial, lateral)
    far = _gaussian(unit, axial * deep, lateral * deep)
    depth = _depth(unit)
    return (1 - depth) * near + depth * far


def speckle(unit, inside, draw, noise):
    grain = draw.uniform(1.5, 4.0)
    strength = draw.uniform(0.3, 0.8)
    smoothed = _gaussian(unit, grain / 2, grain / 2)
    return smoothed * (1 - strength + strength * _smooth_field(unit, grain, noise))


def tgc(unit, inside, draw, noise):
    slope = draw.uniform(-0.6, 0.5)
    return unit * (1 + slope * (_depth(unit) - 0.5))


def grey_map(unit, inside, draw, noise):
    knots = 6
    steps = draw.uniform(0.2, 1.0, size=knots - 1)
    curve = np.concatenate([[0.0], np.cumsum(steps) / steps.sum()])  # monotone, 0 to 1
    curve = curve ** draw.uniform(0.5, 1.8)  # another dynamic range (log compression)
    low, high = draw.uniform(-0.05, 0.1), draw.uniform(0.75, 1.1)
    curve = torch.from_numpy(low + (high - low) * curve).float()
    position = unit.clamp(0, 1) * (knots - 1)
    index = position.floor().long().clamp(max=knots - 2)
    fraction = position - index
    return curve[index] * (1 - fraction) + curve[index + 1] * fraction


def resample(unit, inside, draw, noise):
    height, width = unit.shape[-2:]
    factors = draw.uniform(0.4, 1.0, size=2)
    if draw.random() < 0.5:  # as often the same factor for both axes (square pixels, EchoNet's 112x112)
        factors[1] = factors[0]
    coarse = (max(8, round(height * factors[0])), max(8, round(width * factors[1])))
    mode = draw.choice(["area", "bilinear", "nearest"])
    down = torch.nn.functional.interpolate(
        unit, size=coarse, mode=str(mode), **({} if mode in ("area", "nearest") else {"antialias": True})
    )
    up = str(draw.choice(["bilinear", "bicubic"]))
    return torch.nn.functional.interpolate(down, size=(height, width), mode=up, align_corners=False)


def haze(unit, inside, draw, noise):
    level = draw.uniform(0.04, 0.3)
    grain = draw.uniform(8.0, 30.0)
    field = _gaussian(_smooth_field(unit, grain, noise), grain / 3, grain / 3)
    darkness = 1 - _gaussian(unit, 4.0, 4.0).clamp(0, 1)  # strongest in the dark cavities
    near = torch.exp(-_depth(unit) / draw.uniform(0.1, 0.4))  # and near the probe (clutter)
    return unit + level * field * darkness * (0.5 + near)


def noise_floor(unit, inside, draw, noise):
    level = draw.uniform(0.02, 0.12)
    parts = torch.randn((2, *unit.shape), generator=noise)
    return unit + level * parts.pow(2).sum(0).sqrt() / 1.25  # Rayleigh of mean about ``level``


def sharpen(unit, inside, draw, noise):
    sigma = draw.uniform(0.8, 2.5)
    amount = draw.uniform(0.4, 1.5)
    return unit + amount * (unit - _gaussian(unit, sigma, sigma))


def compression(unit, inside, draw, noise):
    import cv2

    quality = int(draw.integers(8, 60))
    grey = np.rint(unit.clamp(0, 1).numpy() * 255).astype(np.uint8)
    out = np.empty(grey.shape, np.float32)
    for b in range(grey.shape[0]):
        ok, encoded = cv2.imencode(".jpg", grey[b, 0], [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:  # pragma: no cover (OpenCV's encoder does not fail on a uint8 image)
            raise RuntimeError("JPEG encoding failed")
        out[b, 0] = cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255
    return torch.from_numpy(out)


def scanner_look(unit, inside, draw, noise):
    from EchoSynthLib.augmentation.scanner_look import LOOK_RANGES, look_at

    uniforms = torch.from_numpy(draw.random(len(LOOK_RANGES)))
    return (look_at(uniforms)(unit * 2.0 - 1.0, inside) + 1.0) / 2.0


# In the order a scanner applies them (beam, gain, grey map, scan conversion, ...); a kind added later goes
# last, so that the chains drawn for the kinds before it stay the same.
CHAIN: dict[str, Kind] = {
    "blur": blur,
    "speckle": speckle,
    "tgc": tgc,
    "grey_map": grey_map,
    "resample": resample,
    "haze": haze,
    "noise": noise_floor,
    "sharpen": sharpen,
    "compression": compression,
    "scanner_look": scanner_look,
}
assert tuple(CHAIN) == KINDS


def check_kinds(kinds: Sequence[str]) -> tuple[str, ...]:
    """``kinds`` as a tuple, refused with one line when one is not a kind of degradation."""
    unknown = [kind for kind in kinds if kind not in KINDS]
    if unknown:
        raise InputError(f"unknown degradation kind(s) {', '.join(unknown)}: choose from {', '.join(KINDS)}")
    return tuple(kinds)


def degrade_one(
    image: torch.Tensor,
    inside: torch.Tensor,
    seed: int,
    kinds: Sequence[str] = TRAINING,
    always: Sequence[str] = (),
) -> torch.Tensor:
    """One image (1, 1, H, W) in [-1, 1] through a chain drawn from ``seed``: each of ``kinds`` applied with
    probability ``APPLY``, each of ``always`` applied for sure; black stays black outside ``inside``."""
    draw = np.random.default_rng(seed)
    noise = torch.Generator().manual_seed(int(draw.integers(2**62)))
    unit, mask = (image.detach().float().cpu() + 1.0) / 2.0, inside.cpu().bool()
    for name, kind in CHAIN.items():
        chosen = draw.random() < APPLY  # drawn for every kind, so a chain's draws do not depend on ``kinds``
        if name in always or (name in kinds and chosen):
            unit = kind(unit, mask, draw, noise).clamp(0, 1)
    return _in_sector(unit, mask).to(image.device)


def _in_sector(unit: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A chain's result in [0, 1] back in [-1, 1], black outside the sector."""
    return torch.where(mask, unit, torch.zeros_like(unit)) * 2.0 - 1.0


SETTINGS_PER_KIND = 8  # the most uniforms a kind draws (``grey_map``: 8)


class FixedDraws:
    """Stands in for the random generator a kind draws its settings from: each draw takes the next of
    given numbers in [0, 1], mapped onto the range the kind asks for. A kind's settings are then a point
    in [0, 1]^8 (its ranges written once, in the kind), which a search can move in (``echosynth adapt``)."""

    def __init__(self, values: Sequence[float]) -> None:
        self.values = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)
        self.used = 0

    def _next(self, size: int | None) -> np.ndarray:
        count = 1 if size is None else int(size)
        if self.used + count > len(self.values):
            raise ValueError(f"a kind drew more than the {len(self.values)} settings it was given")
        taken = self.values[self.used : self.used + count]
        self.used += count
        return taken

    def random(self, size: int | None = None) -> float | np.ndarray:
        taken = self._next(size)
        return float(taken[0]) if size is None else taken.copy()

    def uniform(self, low: float = 0.0, high: float = 1.0, size: int | None = None) -> float | np.ndarray:
        taken = low + (high - low) * self._next(size)
        return float(taken[0]) if size is None else taken

    def choice(self, options: Sequence) -> object:
        return options[min(int(self._next(None)[0] * len(options)), len(options) - 1)]

    def integers(self, low: int, high: int) -> int:
        return low + min(int(self._next(None)[0] * (high - low)), high - low - 1)


def degrade_fixed(
    images: torch.Tensor,
    inside: torch.Tensor,
    kinds: Sequence[str],
    settings: np.ndarray,
    seeds: Sequence[int],
) -> torch.Tensor:
    """Each image (B, 1, H, W) in [-1, 1] through one fixed chain: ``kinds`` (applied in the chain's order)
    with ``settings[KINDS.index(kind)]`` each (``FixedDraws``); a look, the same for every image. ``seeds``
    (one per image) draw only the noise fields (speckle, haze, noise floor)."""
    check_kinds(kinds)
    settings = np.asarray(settings, dtype=np.float64)
    if settings.shape != (len(KINDS), SETTINGS_PER_KIND):
        raise ValueError(f"settings must be {(len(KINDS), SETTINGS_PER_KIND)}, got {settings.shape}")
    seeds = [int(s) for s in seeds]
    if len(seeds) != images.shape[0]:
        raise ValueError(f"one seed per image: {images.shape[0]} images, {len(seeds)} seeds")
    out = []
    for b, seed in enumerate(seeds):
        noise = torch.Generator().manual_seed(seed)
        unit, mask = (images[b : b + 1].detach().float().cpu() + 1.0) / 2.0, inside[b : b + 1].cpu().bool()
        for index, (name, kind) in enumerate(CHAIN.items()):
            if name in kinds:
                unit = kind(unit, mask, FixedDraws(settings[index]), noise).clamp(0, 1)
        out.append(_in_sector(unit, mask))
    return torch.cat(out).to(images.device)


def degrade(
    images: torch.Tensor,
    inside: torch.Tensor,
    seeds: torch.Tensor | Sequence[int],
    kinds: Sequence[str] = TRAINING,
    always: Sequence[str] = (),
) -> torch.Tensor:
    """Each image (B, 1, H, W) in [-1, 1] through a chain of its own (``seeds``: one per image)."""
    seeds = [int(s) for s in seeds]
    if len(seeds) != images.shape[0]:
        raise ValueError(f"one seed per image: {images.shape[0]} images, {len(seeds)} seeds")
    check_kinds([*kinds, *always])
    return torch.cat(
        [degrade_one(images[b : b + 1], inside[b : b + 1], s, kinds, always) for b, s in enumerate(seeds)]
    )


def persist(frames: torch.Tensor, keep: float) -> torch.Tensor:
    """A cine loop (T, 1, H, W) in [-1, 1] with a scanner's persistence: each shown frame is ``keep`` of the
    acquired frame and ``1 - keep`` of the frame shown before it (``keep`` 1: no persistence)."""
    if not 0 < keep <= 1:
        raise ValueError(f"keep must lie in (0, 1], got {keep}")
    shown = [frames[0]]
    for frame in frames[1:]:
        shown.append(keep * frame + (1 - keep) * shown[-1])
    return torch.stack(shown)
