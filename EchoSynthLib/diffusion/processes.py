"""The noise processes of the latent diffusion models, for training and sampling alike.

- ``ddpm``: x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) noise on a MONAI beta schedule; the network
  predicts the noise; sampled with DDIM (MONAI) or DPM-Solver++ (diffusers), see ``samplers.solve``;
- ``rflow``: rectified flow with MONAI's ``RFlowScheduler`` (x_t = (1 - t/T) x_0 + t/T noise); the network
  predicts the velocity x_0 - noise (flow matching); sampled with Euler steps (``samplers.solve_flow``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from EchoSynthLib.diffusion import EPSILON_SAMPLERS
from EchoSynthLib.diffusion.samplers import BetaSchedule, solve, solve_flow
from EchoSynthLib.errors import InputError


class NoiseProcess:
    """Forward noising, the training target and the samplers of one process."""

    def __init__(self, kind: str, schedule: BetaSchedule) -> None:
        from monai.networks.schedulers import DDPMScheduler, RFlowScheduler

        self.kind, self.schedule = kind, schedule
        if kind == "ddpm":
            self.scheduler = schedule.scheduler(DDPMScheduler)
        elif kind == "rflow":
            self.scheduler = RFlowScheduler(schedule.timesteps, use_discrete_timesteps=True)
        else:
            raise InputError(f"unknown noise process '{kind}' (known: ddpm, rflow)")

    @property
    def samplers(self) -> tuple[str, ...]:
        """The samplers this process's models can use, the default first."""
        return EPSILON_SAMPLERS if self.kind == "ddpm" else ("rflow",)

    def draw_timesteps(self, count: int, generator: torch.Generator) -> Tensor:
        """Uniform training timesteps in 0..T-1 (MONAI's uniform draw, from a seeded generator)."""
        return torch.randint(0, self.schedule.timesteps, (count,), generator=generator)

    def noisy(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """x_t for clean ``x0``, timesteps ``t`` and ``noise``."""
        return self.scheduler.add_noise(x0, noise, t.to(x0.device))

    def target(self, x0: Tensor, noise: Tensor) -> Tensor:
        """What the network learns to predict."""
        return noise if self.kind == "ddpm" else x0 - noise

    def check(self, sampler: str, steps: int) -> None:
        """InputError for a sampler this process cannot use or a step count out of 1..T."""
        if sampler not in self.samplers:
            raise InputError(
                f"a '{self.kind}' model cannot sample with '{sampler}' (it can: {', '.join(self.samplers)})"
            )
        if not 1 <= steps <= self.schedule.timesteps:
            raise InputError(f"steps must be in 1..{self.schedule.timesteps}, got {steps}")

    def integrate(
        self,
        predict: Callable[[Tensor, Tensor], Tensor],
        noise: Tensor,
        sampler: str,
        steps: int,
        generators: list[torch.Generator],
        progress: Callable[[int, int], None] | None = None,
    ) -> Tensor:
        """Clean samples from ``noise`` with ``steps`` of ``sampler``."""
        self.check(sampler, steps)
        if self.kind == "rflow":
            return solve_flow(predict, noise, self.schedule.timesteps, steps, progress)
        return solve(predict, noise, self.schedule, sampler, steps, generators, progress, clip=False)
