"""Settings of a tiny 2D semantic diffusion model for tests that train through the command line."""

from __future__ import annotations

import json

TINY_SDM = {
    "channels": [32, 32, 32],
    "attention_levels": [False, False, True],
    "num_head_channels": 32,
    "spade_channels": 16,
    "workers": 0,
    "sample_every": 1000,
    "sample_steps": 2,
    "checkpoint_every": 1,
}


def cli_settings(**overrides: object) -> list[str]:
    """``--set=NAME=VALUE`` arguments of the tiny model with ``overrides``."""
    return [f"--set={k}={json.dumps(v)}" for k, v in (TINY_SDM | overrides).items()]
