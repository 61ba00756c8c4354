"""Gaussian diffusion with a learned variance (Nichol & Dhariwal's improved DDPM, as Echo from noise uses).

The beta schedule comes from MONAI's scheduler. What is written here by hand, because neither MONAI nor
diffusers provides it: the hybrid loss (MSE on the noise + the variational bound with the learned
log-variance interpolated between beta_t and the posterior variance), and ancestral sampling with that
learned variance on respaced timesteps (MONAI's DDPM step interpolates variances, not log-variances, and
assumes consecutive timesteps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from EchoSynthLib.diffusion.schedules import BetaSchedule


def _normal_kl(mean1: Tensor, logvar1: Tensor, mean2: Tensor, logvar2: Tensor) -> Tensor:
    return 0.5 * (
        -1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2)
    )


def _discretized_gaussian_log_likelihood(x: Tensor, mean: Tensor, log_scale: Tensor) -> Tensor:
    """log p(x) of 8-bit data in [-1, 1] (bins of width 2/255) under N(mean, exp(log_scale)^2)."""
    normal = torch.distributions.Normal(0.0, 1.0)
    centred = x - mean
    inv_std = torch.exp(-log_scale)
    cdf_plus = normal.cdf(inv_std * (centred + 1.0 / 255.0))
    cdf_min = normal.cdf(inv_std * (centred - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_delta))


def _mean_flat(x: Tensor) -> Tensor:
    return x.mean(dim=tuple(range(1, x.ndim)))


@dataclass
class Schedule:
    """Betas and the derived quantities of one (possibly respaced) chain; ``timesteps`` are model inputs."""

    betas: Tensor  # float64
    timesteps: Tensor  # original-chain indices fed to the network

    def __post_init__(self) -> None:
        betas = self.betas
        self.alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        self.alphas_cumprod_prev = torch.cat([torch.ones(1, dtype=betas.dtype), self.alphas_cumprod[:-1]])
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        # log of the posterior variance, with its first (zero) entry replaced by the second
        self.posterior_log_variance = torch.log(
            torch.cat([self.posterior_variance[1:2], self.posterior_variance[1:]])
        )
        self.posterior_mean_coef1 = betas * torch.sqrt(self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef2 = (
            (1.0 - self.alphas_cumprod_prev) * torch.sqrt(1.0 - betas) / (1.0 - self.alphas_cumprod)
        )

    def respaced(self, steps: int) -> Schedule:
        """The chain on ``steps`` evenly spaced timesteps (betas recomputed from the kept alpha-bars)."""
        total = len(self.betas)
        if not 1 <= steps <= total:
            raise ValueError(f"steps must be in 1..{total}, got {steps}")
        keep = torch.unique(torch.round(torch.linspace(0, total - 1, steps, dtype=torch.float64)).long())
        kept = self.alphas_cumprod[keep]
        previous = torch.cat([torch.ones(1, dtype=kept.dtype), kept[:-1]])
        return Schedule(1.0 - kept / previous, self.timesteps[keep])


def _at(values: Tensor, index: Tensor, like: Tensor) -> Tensor:
    out = values.to(like.device)[index].to(like.dtype)
    return out.view(-1, *([1] * (like.ndim - 1)))


class GaussianDiffusion:
    """Forward noising, the hybrid training loss and learned-variance ancestral sampling."""

    def __init__(self, timesteps: int = 1000, schedule: str = "cosine") -> None:
        from monai.networks.schedulers import DDPMScheduler

        self.beta_schedule = BetaSchedule(timesteps, schedule)
        monai_scheduler = self.beta_schedule.scheduler(DDPMScheduler)
        self.num_timesteps = timesteps
        self.schedule = Schedule(monai_scheduler.betas.double(), torch.arange(timesteps))

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """x_t given x_0 and the noise."""
        abar = _at(self.schedule.alphas_cumprod, t, x0)
        return torch.sqrt(abar) * x0 + torch.sqrt(1.0 - abar) * noise

    @staticmethod
    def p_mean_log_variance(
        schedule: Schedule, output: Tensor, x_t: Tensor, index: Tensor, clip: bool
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Mean, log-variance and predicted x_0 of p(x_{t-1} | x_t) from the network's two channels."""
        eps, v = output.chunk(2, dim=1)
        min_log = _at(schedule.posterior_log_variance, index, x_t)
        max_log = _at(torch.log(schedule.betas), index, x_t)
        frac = (v + 1.0) / 2.0
        log_variance = frac * max_log + (1.0 - frac) * min_log
        abar = _at(schedule.alphas_cumprod, index, x_t)
        x0 = (x_t - torch.sqrt(1.0 - abar) * eps) / torch.sqrt(abar)
        if clip:
            x0 = x0.clamp(-1.0, 1.0)
        mean = (
            _at(schedule.posterior_mean_coef1, index, x_t) * x0
            + _at(schedule.posterior_mean_coef2, index, x_t) * x_t
        )
        return mean, log_variance, x0

    def training_losses(
        self, output: Tensor, x0: Tensor, x_t: Tensor, t: Tensor, noise: Tensor, vlb_weight: float
    ) -> dict[str, Tensor]:
        """Per-sample losses: ``mse`` (noise), ``vlb`` (bits per dim at t) and ``loss`` = mse + w * T * vlb.

        The paper's L = MSE + 0.001 * L_vlb has L_vlb summed over the T steps; one uniformly drawn t
        estimates it as T * L_t. The VLB term does not train the mean (the noise output is detached
        there), only the variance, as in improved DDPM.
        """
        eps, v = output.chunk(2, dim=1)
        mse = _mean_flat((noise - eps) ** 2)
        frozen = torch.cat([eps.detach(), v], dim=1)
        mean, log_variance, _ = self.p_mean_log_variance(self.schedule, frozen, x_t, t, clip=False)
        s = self.schedule
        true_mean = _at(s.posterior_mean_coef1, t, x_t) * x0 + _at(s.posterior_mean_coef2, t, x_t) * x_t
        true_log_variance = _at(s.posterior_log_variance, t, x_t)
        kl = _mean_flat(_normal_kl(true_mean, true_log_variance, mean, log_variance)) / math.log(2.0)
        nll = -_mean_flat(_discretized_gaussian_log_likelihood(x0, mean, 0.5 * log_variance)) / math.log(2.0)
        vlb = torch.where(t == 0, nll, kl)
        return {"mse": mse, "vlb": vlb, "loss": mse + vlb_weight * self.num_timesteps * vlb}
