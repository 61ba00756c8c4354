"""Samplers for the semantic diffusion model: a label map in, images out.

- ``ddpm``: ancestral sampling with the learned variance (the paper's 1000-step reference), on respaced
  timesteps when fewer steps are asked for;
- ``ddim``: MONAI's ``DDIMScheduler`` (eta 0, deterministic given the starting noise);
- ``dpm++``: diffusers' ``DPMSolverMultistepScheduler`` (DPM-Solver++ 2M), a second-order solver that
  needs far fewer steps;
- ``dpm++sde``: the same scheduler's stochastic variant (SDE-DPM-Solver++ 2M), which, like ancestral
  sampling, forgives an imperfect noise predictor better than the deterministic solvers.
Every image has its own seeded CPU generator (image b of a call with ``seed`` s uses s + b), so an
image does not depend on the batch it was drawn in or on the device (up to floating-point differences).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from EchoSynthLib.diffusion import SAMPLERS
from EchoSynthLib.diffusion.gaussian import GaussianDiffusion
from EchoSynthLib.errors import InputError


def _denoiser(
    model: torch.nn.Module, seg: Tensor, guidance_scale: float
) -> Callable[[Tensor, Tensor], Tensor]:
    """x_t, t -> the network's two output channels; classifier-free guidance mixes the noise channel."""

    def predict(x: Tensor, t: Tensor) -> Tensor:
        steps = torch.full((x.shape[0],), int(t), device=x.device, dtype=torch.long)
        if guidance_scale == 1.0:
            return model(x, steps, seg)
        both = model(torch.cat([x, x]), torch.cat([steps, steps]), torch.cat([seg, torch.zeros_like(seg)]))
        conditional, unconditional = both.chunk(2)
        eps_c, v = conditional.chunk(2, dim=1)
        eps_u = unconditional[:, :1]
        return torch.cat([eps_u + guidance_scale * (eps_c - eps_u), v], dim=1)

    return predict


def _noise(shape: tuple[int, ...], generators: list[torch.Generator], device: torch.device) -> Tensor:
    """One (1, ...) draw per image from its own generator, stacked along the batch."""
    return torch.cat([torch.randn((1, *shape[1:]), generator=g, dtype=torch.float32) for g in generators]).to(
        device
    )


@torch.no_grad()
def sample(
    model: torch.nn.Module,
    seg: Tensor,
    diffusion: GaussianDiffusion,
    *,
    sampler: str = "dpm++sde",
    steps: int = 25,
    seed: int = 0,
    guidance_scale: float = 1.0,
    progress: Callable[[int, int], None] | None = None,
) -> Tensor:
    """Images (B, 1, H, W) in [-1, 1] for one-hot label maps ``seg`` (B, C, H, W); image b uses seed + b."""
    if sampler not in SAMPLERS:
        raise InputError(f"unknown sampler '{sampler}' (known: {', '.join(SAMPLERS)})")
    if not 1 <= steps <= diffusion.num_timesteps:
        raise InputError(f"steps must be in 1..{diffusion.num_timesteps}, got {steps}")
    generators = [torch.Generator().manual_seed(int(seed) + b) for b in range(seg.shape[0])]
    device = seg.device
    x = _noise((seg.shape[0], 1, *seg.shape[2:]), generators, device)
    predict = _denoiser(model, seg, guidance_scale)
    if sampler == "ddpm":
        x = _ancestral(predict, x, diffusion, steps, generators, progress)
    else:
        x = _solver(predict, x, diffusion, sampler, steps, generators, progress)
    return x.clamp(-1.0, 1.0)


def _ancestral(predict, x: Tensor, diffusion: GaussianDiffusion, steps: int, generators, progress) -> Tensor:
    schedule = diffusion.schedule if steps == diffusion.num_timesteps else diffusion.schedule.respaced(steps)
    count = len(schedule.betas)
    for done, index in enumerate(reversed(range(count))):
        output = predict(x, schedule.timesteps[index]).float()
        position = torch.full((x.shape[0],), index, dtype=torch.long)
        mean, log_variance, _ = diffusion.p_mean_log_variance(schedule, output, x, position, clip=True)
        x = (
            mean + torch.exp(0.5 * log_variance) * _noise(x.shape, generators, x.device)
            if index > 0
            else mean
        )
        if progress is not None:
            progress(done + 1, count)
    return x


def _solver(
    predict, x: Tensor, diffusion: GaussianDiffusion, sampler: str, steps: int, generators, progress
) -> Tensor:
    betas = diffusion.schedule.betas.float()
    if sampler == "ddim":
        from monai.networks.schedulers import DDIMScheduler

        scheduler = DDIMScheduler(diffusion.num_timesteps, schedule=diffusion.schedule_name, clip_sample=True)
        scheduler.set_timesteps(steps)

        def step(eps: Tensor, t: Tensor, sample: Tensor) -> Tensor:
            return scheduler.step(eps, int(t), sample)[0]
    else:
        from diffusers import DPMSolverMultistepScheduler

        scheduler = DPMSolverMultistepScheduler(
            num_train_timesteps=diffusion.num_timesteps,
            trained_betas=betas.numpy(),
            algorithm_type="sde-dpmsolver++" if sampler == "dpm++sde" else "dpmsolver++",
            solver_order=2,
            prediction_type="epsilon",
            lower_order_final=True,
            # Clip the predicted x_0 to the data range at every step, as the DDPM and DDIM paths do: the
            # cosine schedule's last alpha-bar is ~1e-8, so unclipped x_0 estimates explode there.
            thresholding=True,
            dynamic_thresholding_ratio=1.0,
            sample_max_value=1.0,
        )
        with warnings.catch_warnings():  # diffusers' own np.array(tensor) call; nothing our users can fix
            warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
            scheduler.set_timesteps(steps)

        def step(eps: Tensor, t: Tensor, sample: Tensor) -> Tensor:
            noise = _noise(sample.shape, generators, sample.device) if sampler == "dpm++sde" else None
            return scheduler.step(eps, t, sample, variance_noise=noise).prev_sample

    timesteps = list(scheduler.timesteps)
    for done, t in enumerate(timesteps):
        eps = predict(x, t)[:, :1].float()
        x = step(eps, t, x)
        if progress is not None:
            progress(done + 1, len(timesteps))
    return x
