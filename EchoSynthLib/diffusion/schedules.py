"""Discrete noise schedules by MONAI's names, shared by the Gaussian diffusion of the SDM
(``gaussian.py``), the samplers (``samplers.py``) and the latent models' noise processes."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class BetaSchedule:
    """A discrete noise schedule by MONAI's name (``linear_beta``, ``scaled_linear_beta``, ``cosine``, ...)
    and, for the linear ones, its first and last beta."""

    timesteps: int = 1000
    name: str = "cosine"
    beta_start: float | None = None
    beta_end: float | None = None

    def scheduler(self, scheduler_type: type, **kwargs):
        """A MONAI scheduler of ``scheduler_type`` on this schedule."""
        ends = {"beta_start": self.beta_start, "beta_end": self.beta_end}
        ends = {k: v for k, v in ends.items() if v is not None}
        return scheduler_type(self.timesteps, schedule=self.name, **ends, **kwargs)

    @property
    def betas(self) -> Tensor:
        """The betas (float32), from MONAI's DDPM scheduler."""
        from monai.networks.schedulers import DDPMScheduler

        return self.scheduler(DDPMScheduler).betas.float()
