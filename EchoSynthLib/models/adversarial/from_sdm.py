"""Starting an adversarial run from a trained semantic diffusion model (``--set init=<sdm package>``).

A 4-step generator trained from scratch needs far more steps than a CPU gives; a trained SDM already
knows echo texture and how to follow a map. Adversarial Diffusion Distillation (Sauer et al. 2023) starts
its few-step student from its teacher's weights and lets the adversarial loss make the large steps sharp;
this does the same with our families: the generator takes the SDM's network (same U-Net settings),
predicts the noise as the SDM does (``prediction = "epsilon"``), and embeds each of its T steps as the
SDM's timestep with the nearest abar, so that at step 0 of the run it is the SDM, asked for x_0 in one
jump from each of the T noise levels. The extra input channels (noise maps z, the image guide) start at
zero weight, so they add nothing until training gives them a use; the SDM's variance output is dropped.
The discriminator starts from its own initialisation. Written here because no library converts between
these two models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from EchoSynthLib.errors import InputError
from EchoSynthLib.models.adversarial.config import AdversarialConfig
from EchoSynthLib.models.adversarial.process import vp_alpha_bar
from EchoSynthLib.store.families import SDM_KIND
from EchoSynthLib.training.runs import MAIN

# The U-Net settings the generator takes from the SDM (same names in both configs).
NETWORK = ("channels", "attention_levels", "num_res_blocks", "num_head_channels", "spade_channels")
INPUT_WEIGHT = "conv_in.conv.weight"
OUTPUT = ("out.2.conv.weight", "out.2.conv.bias")


def sdm_package(init: str) -> Path | None:
    """The folder of ``init`` when it names an SDM package (a name or a folder), else None."""
    from EchoSynthLib.engine.settings import NO_INIT
    from EchoSynthLib.store.package import read_package_header
    from EchoSynthLib.store.registry import resolve_model

    if init == NO_INIT:
        return None
    folder = resolve_model(init)
    return folder if read_package_header(folder)["kind"] == SDM_KIND else None


def _sdm_config(folder: Path):
    from EchoSynthLib.models.sdm.config import SDMConfig
    from EchoSynthLib.store.package import read_package_config

    return SDMConfig.from_dict(read_package_config(folder, SDM_KIND))


def nearest_timesteps(alphas_cumprod: torch.Tensor, steps: int, beta_min: float, beta_max: float) -> tuple:
    """For each of the T steps, the timestep of a chain with ``alphas_cumprod`` whose abar is nearest (in
    log) to the step's (the abar of x^(j + 1), what the generator sees at step j)."""
    mine = vp_alpha_bar(steps, beta_min, beta_max).log()
    theirs = alphas_cumprod.double().clamp(min=1e-30).log()
    return tuple(int((theirs - value).abs().argmin()) for value in mine)


def settings_from_sdm(folder: Path, config: AdversarialConfig) -> dict[str, Any]:
    """The settings a run started from the SDM in ``folder`` takes: its network, the epsilon output and
    the matched timesteps. The SDM must know the run's classes; its grid may differ from the run's (its
    U-Net is convolutional throughout: a 64x64 SDM starts a 128x128 run)."""
    from EchoSynthLib.diffusion.gaussian import GaussianDiffusion

    sdm = _sdm_config(folder)
    if sdm.classes.as_json() != config.classes.as_json():
        raise InputError(f"init: {folder} was trained on other classes than this cache's")
    diffusion = GaussianDiffusion(sdm.timesteps, sdm.schedule)
    timesteps = nearest_timesteps(
        diffusion.schedule.alphas_cumprod, config.steps, config.beta_min, config.beta_max
    )
    values = {name: getattr(sdm, name) for name in NETWORK}
    return values | {"norm_groups": sdm.norm_groups, "prediction": "epsilon", "timesteps": timesteps}


def load_sdm(folder: Path, generator: torch.nn.Module) -> None:
    """The SDM's weights into ``generator`` (built with ``settings_from_sdm``): every tensor as it is,
    but the first convolution (the SDM's x_t channel first, zeros for z and the guides) and the output
    convolution (its noise channel only)."""
    from EchoSynthLib.models.sdm.network import build_sdm
    from EchoSynthLib.store.package import load_weights

    weights = load_weights(folder, build_sdm(_sdm_config(folder)), MAIN).state_dict()
    target = generator.unet.state_dict()
    first = torch.zeros_like(target[INPUT_WEIGHT])
    first[:, : weights[INPUT_WEIGHT].shape[1]] = weights[INPUT_WEIGHT]
    weights[INPUT_WEIGHT] = first
    for name in OUTPUT:
        weights[name] = weights[name][:1]
    generator.unet.load_state_dict(weights)
