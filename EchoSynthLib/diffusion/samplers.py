"""Samplers of the diffusion families: the semantic diffusion model's (``denoise``: a label map in, images
out) and the integrators every noise-predicting or flow model shares (``solve``, ``solve_flow``).

- ``ddpm``: ancestral sampling with the learned variance (the paper's 1000-step reference), on respaced
  timesteps when fewer steps are asked for;
- ``ddim``: MONAI's ``DDIMScheduler`` (eta 0, deterministic given the starting noise);
- ``dpm++``: diffusers' ``DPMSolverMultistepScheduler`` (DPM-Solver++ 2M), a second-order solver that
  needs far fewer steps;
- ``dpm++sde``: the same scheduler's stochastic variant (SDE-DPM-Solver++ 2M), which, like ancestral
  sampling, forgives an imperfect noise predictor better than the deterministic solvers;
- ``rflow``: Euler steps of a rectified-flow (flow-matching) model with MONAI's ``RFlowScheduler``.
Every image has its own seeded CPU generator (image b of a call with ``seed`` s uses s + b), so an
image does not depend on the batch it was drawn in or on the device (up to floating-point differences).

Any epsilon sampler can also start from an image instead of pure noise (``init``, ``strength``; SDEdit,
Meng et al. 2022): the image is noised to the timestep ``strength`` of the way along the chain and only the
remaining steps run. With the simulator's image of the same map as ``init`` the model keeps the simulator's
layout and brightness and re-draws the texture, and skips the near-zero-SNR first steps where a weak model
goes wrong.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from EchoSynthLib.checks import check_number
from EchoSynthLib.diffusion import EPSILON_SAMPLERS, SDM_SAMPLERS
from EchoSynthLib.diffusion.gaussian import GaussianDiffusion
from EchoSynthLib.diffusion.schedules import BetaSchedule
from EchoSynthLib.diffusion.spade_terms import reused_map_terms
from EchoSynthLib.errors import InputError


def check_guidance(guidance_scale: float, label_dropout: float) -> None:
    """InputError unless ``guidance_scale`` is 1 (off) or the model learnt to predict without its map
    (trained with ``label_dropout`` > 0): guidance extrapolates away from that prediction, so a model that
    never made one gives noise, not a sharper image."""
    check_number(guidance_scale, "guidance scale", minimum=0.0)
    if guidance_scale != 1.0 and not label_dropout > 0:
        raise InputError(
            f"guidance scale {guidance_scale:g} needs a label-conditioned model trained with "
            "label_dropout > 0 (classifier-free guidance); this one was not: use guidance 1"
        )


def with_and_without_map(
    model: torch.nn.Module, x: Tensor, steps: Tensor, seg: Tensor
) -> tuple[Tensor, Tensor]:
    """The network's output for ``x`` with its map and with an empty map (the trainers' label dropout), in
    one batch: the two terms of classifier-free guidance."""
    both = model(torch.cat([x, x]), torch.cat([steps, steps]), torch.cat([seg, torch.zeros_like(seg)]))
    conditional, unconditional = both.chunk(2)
    return conditional, unconditional


def _denoiser(
    model: torch.nn.Module, seg: Tensor, guidance_scale: float
) -> Callable[[Tensor, Tensor], Tensor]:
    """x_t, t -> the network's two output channels; classifier-free guidance mixes the noise channel."""

    def predict(x: Tensor, t: Tensor) -> Tensor:
        steps = torch.full((x.shape[0],), int(t), device=x.device, dtype=torch.long)
        if guidance_scale == 1.0:
            return model(x, steps, seg)
        conditional, unconditional = with_and_without_map(model, x, steps, seg)
        eps_c, v = conditional.chunk(2, dim=1)
        eps_u = unconditional[:, :1]
        return torch.cat([eps_u + guidance_scale * (eps_c - eps_u), v], dim=1)

    return predict


def seeded_noise(shape: tuple[int, ...], generators: list[torch.Generator], device: torch.device) -> Tensor:
    """One (1, ...) draw per image from its own generator, stacked along the batch."""
    return torch.cat([torch.randn((1, *shape[1:]), generator=g, dtype=torch.float32) for g in generators]).to(
        device
    )


def check_sampler(sampler: str) -> None:
    """InputError unless the semantic diffusion model has ``sampler``."""
    if sampler not in SDM_SAMPLERS:
        raise InputError(
            f"unknown sampler '{sampler}' for semantic diffusion (it has: {', '.join(SDM_SAMPLERS)})"
        )


@torch.no_grad()
def denoise(
    model: torch.nn.Module,
    seg: Tensor,
    diffusion: GaussianDiffusion,
    *,
    sampler: str = "dpm++sde",
    steps: int = 25,
    seed: int = 0,
    guidance_scale: float = 1.0,
    progress: Callable[[int, int], None] | None = None,
    init: Tensor | None = None,
    strength: float = 1.0,
) -> Tensor:
    """Images (B, 1, H, W) in [-1, 1] for one-hot label maps ``seg`` (B, C, H, W); image b uses seed + b.
    ``init`` (B, 1, H, W) in [-1, 1]: start from these images noised ``strength`` of the way (see above)."""
    check_sampler(sampler)
    if not 1 <= steps <= diffusion.num_timesteps:
        raise InputError(f"steps must be in 1..{diffusion.num_timesteps}, got {steps}")
    generators = [torch.Generator().manual_seed(int(seed) + b) for b in range(seg.shape[0])]
    device = seg.device
    x = seeded_noise((seg.shape[0], 1, *seg.shape[2:]), generators, device)
    predict = _denoiser(model, seg, guidance_scale)
    start = None if init is None else (init.to(device), strength)
    with reused_map_terms(model):
        if sampler == "ddpm":
            x = _ancestral(predict, x, diffusion, steps, generators, progress, start)
        else:
            x = _solver(predict, x, diffusion, sampler, steps, generators, progress, start)
    return x.clamp(-1.0, 1.0)


def steps_from(count: int, strength: float) -> int:
    """How many of ``count`` sampler steps run when starting ``strength`` of the way (at least one)."""
    check_number(strength, "strength", above=0.0, maximum=1.0)
    return max(1, round(strength * count))


def noised(init: Tensor, noise: Tensor, alpha_bar: Tensor | float) -> Tensor:
    """x_t of ``init`` with ``noise`` at cumulative alpha ``alpha_bar`` (the forward process)."""
    alpha_bar = torch.as_tensor(alpha_bar, dtype=torch.float64)
    return (alpha_bar.sqrt() * init.double() + (1.0 - alpha_bar).sqrt() * noise.double()).float()


def _ancestral(
    predict, x: Tensor, diffusion: GaussianDiffusion, steps: int, generators, progress, start=None
) -> Tensor:
    schedule = diffusion.schedule if steps == diffusion.num_timesteps else diffusion.schedule.respaced(steps)
    count = len(schedule.betas)
    if start is not None:
        init, strength = start
        count = steps_from(count, strength)
        x = noised(init, x, schedule.alphas_cumprod[count - 1])
    for done, index in enumerate(reversed(range(count))):
        output = predict(x, schedule.timesteps[index]).float()
        position = torch.full((x.shape[0],), index, dtype=torch.long)
        mean, log_variance, _ = diffusion.p_mean_log_variance(schedule, output, x, position, clip=True)
        x = (
            mean + torch.exp(0.5 * log_variance) * seeded_noise(x.shape, generators, x.device)
            if index > 0
            else mean
        )
        if progress is not None:
            progress(done + 1, count)
    return x


def _solver(
    predict, x: Tensor, diffusion: GaussianDiffusion, sampler: str, steps: int, generators, progress, start
) -> Tensor:
    def eps(x: Tensor, t: Tensor) -> Tensor:
        return predict(x, t)[:, :1].float()

    init, strength = (None, 1.0) if start is None else start
    return solve(eps, x, diffusion.beta_schedule, sampler, steps, generators, progress, True, init, strength)


def solve(
    predict_eps: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    schedule: BetaSchedule,
    sampler: str,
    steps: int,
    generators: list[torch.Generator],
    progress: Callable[[int, int], None] | None = None,
    clip: bool = False,
    init: Tensor | None = None,
    strength: float = 1.0,
) -> Tensor:
    """Integrate a noise-predicting (epsilon) model from the noise ``x`` with ``steps`` of ``sampler``
    (one of EPSILON_SAMPLERS); ``clip`` keeps the predicted x_0 in [-1, 1] (pixels; not for latents).
    ``init``: start from this image noised with ``x`` ``strength`` of the way, running only the last
    ``steps_from(steps, strength)`` steps."""
    if sampler not in EPSILON_SAMPLERS:
        raise InputError(f"unknown sampler '{sampler}' here (known: {', '.join(EPSILON_SAMPLERS)})")
    if sampler == "ddim":
        from monai.networks.schedulers import DDIMScheduler

        scheduler = schedule.scheduler(DDIMScheduler, clip_sample=clip)
        scheduler.set_timesteps(steps)

        def step(eps: Tensor, t: Tensor, sample: Tensor) -> Tensor:
            return scheduler.step(eps, int(t), sample)[0]
    else:
        from diffusers import DPMSolverMultistepScheduler

        scheduler = DPMSolverMultistepScheduler(
            num_train_timesteps=schedule.timesteps,
            trained_betas=schedule.betas.numpy(),
            algorithm_type="sde-dpmsolver++" if sampler == "dpm++sde" else "dpmsolver++",
            solver_order=2,
            prediction_type="epsilon",
            lower_order_final=True,
            # Clip the predicted x_0 to the data range at every step, as the DDPM and DDIM paths do: the
            # cosine schedule's last alpha-bar is ~1e-8, so unclipped x_0 estimates explode there.
            thresholding=clip,
            dynamic_thresholding_ratio=1.0,
            sample_max_value=1.0,
        )
        with warnings.catch_warnings():  # diffusers' own np.array(tensor) call; nothing our users can fix
            warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
            scheduler.set_timesteps(steps)

        def step(eps: Tensor, t: Tensor, sample: Tensor) -> Tensor:
            noise = seeded_noise(sample.shape, generators, sample.device) if sampler == "dpm++sde" else None
            return scheduler.step(eps, t, sample, variance_noise=noise).prev_sample

    timesteps = list(scheduler.timesteps)
    if init is not None:
        begin = len(timesteps) - steps_from(len(timesteps), strength)
        timesteps = timesteps[begin:]
        if hasattr(scheduler, "set_begin_index"):  # diffusers counts its steps; MONAI's DDIM reads t
            scheduler.set_begin_index(begin)
        x = noised(init, x, torch.cumprod(1.0 - schedule.betas.double(), 0)[int(timesteps[0])])
    for done, t in enumerate(timesteps):
        x = step(predict_eps(x, t).float(), t, x)
        if progress is not None:
            progress(done + 1, len(timesteps))
    return x


def solve_flow(
    predict_velocity: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    timesteps: int,
    steps: int,
    progress: Callable[[int, int], None] | None = None,
    init: Tensor | None = None,
    strength: float = 1.0,
) -> Tensor:
    """Integrate a rectified-flow model (velocity x_0 - noise, MONAI's ``RFlowScheduler`` convention) from
    the noise ``x`` at t = ``timesteps`` to t = 0 in ``steps`` Euler steps. ``init``: start from this sample
    mixed with ``x`` at the first of the last ``steps_from(steps, strength)`` steps, and run only those."""
    from monai.networks.schedulers import RFlowScheduler

    scheduler = RFlowScheduler(timesteps, use_discrete_timesteps=True)
    scheduler.set_timesteps(steps)
    times = [int(t) for t in scheduler.timesteps]
    if init is not None:
        times = times[len(times) - steps_from(len(times), strength) :]
        x = scheduler.add_noise(init.to(x.device), x, torch.full((x.shape[0],), times[0], device=x.device))
    for done, (t, following) in enumerate(zip(times, [*times[1:], 0], strict=True)):
        velocity = predict_velocity(x, torch.tensor(t)).float()
        x = scheduler.step(velocity, t, x, following)[0]
        if progress is not None:
            progress(done + 1, len(times))
    return x
