"""The few-step diffusion process of the adversarial model: T large steps of a variance-preserving
schedule, the forward draws for a training pair and the reverse (posterior) step.

The schedule is the discretised VP SDE of DDGAN / SynDiff: abar(s) = exp(-beta_min s - (beta_max -
beta_min) s^2 / 2) at s = k / T, and beta_k = 1 - abar(k / T) / abar((k - 1) / T). It is registered in
MONAI's ``NoiseSchedules`` and used through MONAI's ``DDPMScheduler`` (forward noising, and the posterior
coefficients and variances it holds). The per-sample posterior draw is written here because MONAI's
``DDPMScheduler.step`` takes one timestep and one generator for a whole batch, and training needs a
different t per sample (and sampling a seeded generator per image); a test checks it against ``step``.

Indexing follows MONAI: timestep j in 0 .. T - 1 turns x^(j) into x^(j + 1), where x^(0) is the clean
image; the reverse step at j draws x^(j) from q(x^(j) | x^(j + 1), x_0), exactly x_0 at j = 0.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from EchoSynthLib.errors import InputError
from EchoSynthLib.models.adversarial.config import AdversarialConfig

SCHEDULE = "echosynth_vp"


def vp_betas(num_train_timesteps: int, beta_min: float = 0.1, beta_max: float = 20.0) -> Tensor:
    """The betas of T steps of the variance-preserving SDE with a linear beta(s) on s in [0, 1]."""
    s = torch.arange(num_train_timesteps + 1, dtype=torch.float64) / num_train_timesteps
    log_alpha_bar = -(beta_min * s + 0.5 * (beta_max - beta_min) * s**2)
    return (1.0 - torch.exp(log_alpha_bar[1:] - log_alpha_bar[:-1])).float()


def vp_alpha_bar(num_train_timesteps: int, beta_min: float = 0.1, beta_max: float = 20.0) -> Tensor:
    """abar of x^(1) .. x^(T) (float64), the products of ``vp_betas``' 1 - beta."""
    return torch.cumprod(1 - vp_betas(num_train_timesteps, beta_min, beta_max).double(), 0)


def _register() -> None:
    from monai.networks.schedulers.scheduler import NoiseSchedules

    if SCHEDULE not in NoiseSchedules.names:
        NoiseSchedules.add_def(SCHEDULE, "variance-preserving SDE, discretised in T steps (DDGAN)")(vp_betas)


def _per_sample(values: Tensor, t: Tensor, like: Tensor) -> Tensor:
    return values.to(like.device)[t].view(-1, *[1] * (like.ndim - 1)).to(like.dtype)


class FewStepProcess:
    """Forward and reverse steps of a T-step VP process (see the module docstring)."""

    def __init__(self, steps: int, beta_min: float, beta_max: float, variance: str = "posterior") -> None:
        from monai.networks.schedulers import DDPMScheduler

        _register()
        if variance not in ("posterior", "beta"):
            raise InputError(f"variance must be 'posterior' or 'beta', got '{variance}'")
        self.steps = steps
        self.scheduler = DDPMScheduler(
            steps,
            schedule=SCHEDULE,
            beta_min=beta_min,
            beta_max=beta_max,
            variance_type="fixed_small" if variance == "posterior" else "fixed_large",
            prediction_type="sample",
            clip_sample=True,
        )
        betas = self.scheduler.betas.double()
        alpha_bar = self.scheduler.alphas_cumprod.double()
        previous = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
        self.betas = betas.float()
        self.x0_coefficient = (previous.sqrt() * betas / (1 - alpha_bar)).float()
        self.xt_coefficient = ((1 - betas).sqrt() * (1 - previous) / (1 - alpha_bar)).float()
        lower = ((1 - previous) / (1 - alpha_bar) * betas).clamp(min=1e-20)
        self.std = (lower if variance == "posterior" else betas).sqrt().float()
        self.std[0] = 0.0  # the last reverse step returns x_0 itself

    def noisy(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """x^(t + 1) drawn from q(. | x_0) (MONAI ``add_noise``)."""
        return self.scheduler.add_noise(x0, noise, t.to(x0.device))

    def training_pair(
        self, x0: Tensor, t: Tensor, noise: Tensor, step_noise: Tensor
    ) -> tuple[Tensor, Tensor]:
        """(x^(t), x^(t + 1)) for per-sample t: x^(t) from q(. | x_0) (x_0 itself at t = 0), then one
        forward step of variance beta_t."""
        earlier = self.noisy(x0, (t - 1).clamp(min=0), noise)
        clean = (t == 0).to(x0.device).view(-1, *[1] * (x0.ndim - 1))
        earlier = torch.where(clean, x0, earlier)
        beta = _per_sample(self.betas, t, x0)
        return earlier, (1 - beta).sqrt() * earlier + beta.sqrt() * step_noise

    def posterior(self, x0: Tensor, x_t: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """x^(t) drawn from q(. | x^(t + 1) = x_t, x_0) for per-sample t (noise: unit Gaussian)."""
        mean = _per_sample(self.x0_coefficient, t, x_t) * x0 + _per_sample(self.xt_coefficient, t, x_t) * x_t
        return mean + _per_sample(self.std, t, x_t) * noise

    def denoise(
        self,
        predict_x0: Callable[[Tensor, Tensor], Tensor],
        x: Tensor,
        noises: Callable[[int], Tensor],
        progress: Callable[[int, int], None] | None = None,
        start: int | None = None,
    ) -> Tensor:
        """The reverse steps from ``x`` = x^(start) (default T: pure noise) down to x_0: x_0 =
        predict_x0(x, t), then the posterior draw with ``noises(j)`` (a unit Gaussian like ``x``, for
        reverse step j)."""
        count = self.steps if start is None else start
        if not 1 <= count <= self.steps:
            raise InputError(f"a reverse chain starts at step 1..{self.steps}, got {count}")
        for done, j in enumerate(range(count - 1, -1, -1)):
            t = torch.full((x.shape[0],), j, dtype=torch.long, device=x.device)
            x0 = predict_x0(x, t).clamp(-1, 1)
            x = x0 if j == 0 else self.posterior(x0, x, t, noises(j))
            if progress is not None:
                progress(done + 1, count)
        return x


def build_process(config: AdversarialConfig) -> FewStepProcess:
    """A model's T-step process, from its settings (training and inference alike)."""
    return FewStepProcess(config.steps, config.beta_min, config.beta_max, config.variance)
