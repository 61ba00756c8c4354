"""Settings of the few-step adversarial diffusion model (Tiago et al., after SynDiff / DDGAN): network,
the 4-step process and the two-player recipe (saved with every run and package; how a run goes is
``RunSettings``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from EchoSynthLib.checks import SEED_MAX
from EchoSynthLib.data.labels import ClassLayout
from EchoSynthLib.engine.settings import SettingsMixin
from EchoSynthLib.errors import InputError
from EchoSynthLib.store.families import ADVERSARIAL

RUN_DEFAULTS: dict[str, Any] = {
    "max_steps": 50_000,
    "val_every": 500,
    "sample_every": 2000,
    "checkpoint_every": 500,
}
# What guides the generator besides x_t: the one-hot label map (sector included; Tiago's setting), and
# optionally an image: the training-free simulator's image of the same map (sim-to-real, paired by
# construction), or the source image itself (SynDiff's setting; as no paired second scanner is at hand,
# trained on each training image in a random look, ``augmentation.scanner_look``).
SIMULATOR_GUIDE = "labels+simulator"
# A model with this guide translates images only: it needs a source image (declared with the family).
SOURCE_GUIDE = ADVERSARIAL.source_guided[1]
GUIDES = ("labels", SIMULATOR_GUIDE, SOURCE_GUIDE)
VARIANCES = ("posterior", "beta")  # the lower and upper bound of the reverse step's variance
# What the generator's U-Net puts out: x_0 itself (through tanh; DDGAN), or the noise in x_t, turned into
# x_0 with the step's abar: the parameterisation of a trained diffusion model, so that a run can start
# from one (``init`` = an SDM package: ``models.adversarial.from_sdm``).
PREDICTIONS = ("x0", "epsilon")
# By default step j is embedded as timestep j * TIME_SCALE / T, spread like a 1000-step model's.
TIME_SCALE = 1000


@dataclass(frozen=True)
class AdversarialConfig(SettingsMixin):
    """Everything that defines an adversarial diffusion model and its training."""

    image_size: int = 64
    guide: str = "labels"
    # Generator: MONAI's SPADE diffusion U-Net predicting x_0 from x_t, t and z (noise maps beside x_t).
    channels: tuple[int, ...] = (32, 64, 128)
    attention_levels: tuple[bool, ...] = (False, False, True)
    num_res_blocks: int = 1
    num_head_channels: int = 32
    spade_channels: int = 32
    norm_groups: int = 32
    noise_channels: int = 1
    # The U-Net works on the image folded r x r into channels (PyTorch's pixel_unshuffle), on a grid r times
    # smaller: about r^2 less work per layer (the CPU speed that one call per 224x224 image needs); its r^2
    # output channels unfold back (pixel_shuffle). The map reaches every SPADE block at full size (MONAI's
    # SPADE resamples it to each level). 1: the U-Net on the image grid.
    fold: int = 1
    prediction: str = "x0"
    # The timestep each of the T steps is embedded as (empty: j * TIME_SCALE / T); a run started from an SDM
    # embeds step j as the SDM's timestep with the nearest abar.
    timesteps: tuple[int, ...] = ()
    # Discriminator: MONAI's time-conditioned encoder on (x_{t-1}, x_t, t, guide), one level per entry, each
    # halving the image.
    discriminator_channels: tuple[int, ...] = (32, 64, 64, 64)
    # Process: T large steps of the variance-preserving schedule beta(s) = beta_min + s (beta_max - beta_min).
    steps: int = 4
    beta_min: float = 0.1
    beta_max: float = 20.0
    variance: str = "posterior"
    # Sampling default (``--strength`` overrides): 1 runs all T steps from pure noise; below 1 the chain
    # starts from the simulator's image of the map (a translation: its source image) drawn into x^(k) with
    # k = round(strength * T) (at least 1), and only those k steps run (SDEdit on the few-step chain).
    start_strength: float = 1.0
    # Recipe (SynDiff): non-saturating loss + l1_weight * L1 on x_0, R1 (gamma) every r1_every steps.
    l1_weight: float = 0.5
    r1_gamma: float = 1.0
    r1_every: int = 10
    learning_rate: float = 1.6e-4
    discriminator_learning_rate: float = 1e-4
    adam_beta1: float = 0.5
    adam_beta2: float = 0.9
    cosine_steps: int = 0  # > 0: both learning rates decay to 1 % along a cosine over this many steps
    ema_decay: float = 0.999
    batch_size: int = 16  # the global batch of a step, over every process under torchrun
    flip_prob: float = 0.5
    # A source-guided model's training looks: empty, the five-number look family (earlier models:
    # ``scanner_look.LOOK_RANGES``); else the kinds of ``augmentation.degradations`` each source is drawn
    # through (a random chain per image; ``degradations.TRAINING``: every kind but the held-out ones).
    degradations: tuple[str, ...] = ()
    mixed_precision: bool = True  # bf16 autocast on GPU (the R1 penalty stays in float32)
    seed: int = 0
    classes: ClassLayout = field(default_factory=lambda: ClassLayout("classes", {}))  # from the cache

    MAY_BE_EMPTY: ClassVar[frozenset[str]] = frozenset({"timesteps", "degradations"})
    LIMITS: ClassVar[dict[str, tuple[float | None, float | None]]] = {
        "image_size": (8, None),
        "channels": (1, None),
        "num_res_blocks": (1, None),
        "num_head_channels": (1, None),
        "spade_channels": (1, None),
        "norm_groups": (1, None),
        "noise_channels": (0, None),
        "fold": (1, 8),
        "discriminator_channels": (1, None),
        "steps": (1, 100),
        "start_strength": (0.01, 1.0),
        "beta_min": (1e-6, None),
        "beta_max": (1e-6, None),
        "l1_weight": (0.0, None),
        "r1_gamma": (0.0, None),
        "r1_every": (1, None),
        "learning_rate": (1e-12, 10.0),
        "discriminator_learning_rate": (1e-12, 10.0),
        "adam_beta1": (0.0, 0.999),
        "adam_beta2": (0.0, 0.9999),
        "cosine_steps": (0, None),
        "ema_decay": (0.0, 1.0),
        "batch_size": (1, None),
        "flip_prob": (0.0, 1.0),
        "seed": (0, SEED_MAX),
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.guide not in GUIDES:
            raise InputError(f"guide must be one of {', '.join(GUIDES)}, got '{self.guide}'")
        if self.prediction not in PREDICTIONS:
            raise InputError(f"prediction must be one of {', '.join(PREDICTIONS)}, got '{self.prediction}'")
        if self.timesteps and len(self.timesteps) != self.steps:
            raise InputError(
                f"timesteps must give one timestep per step ({self.steps}), got {self.timesteps}"
            )
        if self.degradations:  # settings stay torch-free: the degradations (torch, MONAI) only when named
            from EchoSynthLib.augmentation.degradations import check_kinds

            check_kinds(self.degradations)
        if self.variance not in VARIANCES:
            raise InputError(f"variance must be one of {', '.join(VARIANCES)}, got '{self.variance}'")
        if self.beta_max <= self.beta_min:
            raise InputError(f"beta_max ({self.beta_max}) must be above beta_min ({self.beta_min})")
        if len(self.channels) != len(self.attention_levels):
            raise InputError("channels and attention_levels need one entry per resolution level")
        if any(c % self.norm_groups for c in (*self.channels, *self.discriminator_channels)):
            raise InputError(f"every channel count must be a multiple of norm_groups={self.norm_groups}")
        divisor = self.fold * 2 ** (len(self.channels) - 1)  # the fold, then a halving per level
        if self.image_size % divisor:
            raise InputError(f"image_size {self.image_size} must be divisible by {divisor}")

    @property
    def embedded_steps(self) -> tuple[int, ...]:
        """The timestep the network embeds for each of the T steps."""
        return self.timesteps or tuple(j * (TIME_SCALE // self.steps) for j in range(self.steps))

    @property
    def image_guides(self) -> int:
        """Image channels given to both networks besides x_t (the simulator's or the source image)."""
        return image_guides_of(self.guide)


def image_guides_of(guide: str) -> int:
    """How many image channels ``guide`` gives the networks besides x_t."""
    return 0 if guide == "labels" else 1
