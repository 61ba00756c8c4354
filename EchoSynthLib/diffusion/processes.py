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
from EchoSynthLib.diffusion.samplers import solve, solve_flow
from EchoSynthLib.diffusion.schedules import BetaSchedule
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

    def clipped(
        self, predict: Callable[[Tensor, Tensor], Tensor], bound: float
    ) -> Callable[[Tensor, Tensor], Tensor]:
        """``predict`` with its implied clean sample x_0 kept in [-bound, bound] (the range of the training
        data), for every sampler alike: the prediction is turned into x_0, clamped and turned back. Latents
        have no fixed range for the samplers' own clipping (pixels' [-1, 1]); an undertrained model's x_0
        estimate at high noise, divided by sqrt(alpha-bar) ~ 0.07, otherwise drives samples far outside the
        data. ``bound`` <= 0: unchanged."""
        if bound <= 0:
            return predict
        total = self.schedule.timesteps

        def predict_clipped(x: Tensor, t: Tensor) -> Tensor:
            output = predict(x, t).float()
            if self.kind == "ddpm":
                abar = self.scheduler.alphas_cumprod[int(t)].to(x.device)
                x0 = ((x - (1 - abar).sqrt() * output) / abar.sqrt()).clamp(-bound, bound)
                return (x - abar.sqrt() * x0) / (1 - abar).sqrt()
            s = float(t) / total  # rflow: x_t = (1 - s) x_0 + s noise, output = x_0 - noise
            if s <= 0:
                return output
            x0 = (x + s * output).clamp(-bound, bound)
            return (x0 - x) / s

        return predict_clipped

    def check(self, sampler: str, steps: int) -> None:
        """InputError for a sampler this process cannot use or a step count out of 1..T."""
        if sampler not in self.samplers:
            raise InputError(
                f"a '{self.kind}' model cannot sample with '{sampler}' (it can: {', '.join(self.samplers)})"
            )
        if not 1 <= steps <= self.schedule.timesteps:
            raise InputError(f"steps must be in 1..{self.schedule.timesteps}, got {steps}")

    def denoise(
        self,
        predict: Callable[[Tensor, Tensor], Tensor],
        noise: Tensor,
        sampler: str,
        steps: int,
        generators: list[torch.Generator],
        progress: Callable[[int, int], None] | None = None,
        init: Tensor | None = None,
        strength: float = 1.0,
    ) -> Tensor:
        """Clean samples from ``noise`` with ``steps`` of ``sampler``; with ``init``, from those samples
        noised ``strength`` of the way, running only that share of the steps (SDEdit)."""
        self.check(sampler, steps)
        if self.kind == "rflow":
            return solve_flow(predict, noise, self.schedule.timesteps, steps, progress, init, strength)
        return solve(
            predict, noise, self.schedule, sampler, steps, generators, progress, init=init, strength=strength
        )
