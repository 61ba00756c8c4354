"""Training the semantic diffusion model on a prepared cache, resumable at any checkpoint.

The run folder (see ``training.runs``) also gets ``samples/step_NNNNNN.png`` (grids from fixed
validation label maps) and ``model/`` (the EMA network as a model package). Each step draws its batch,
flips, timesteps, noise and label dropout from generators seeded by (seed, step), so a resumed run
continues exactly as an uninterrupted one would.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel

from EchoSynthLib.cache.dataset import CachedPairs
from EchoSynthLib.cache.store import CacheIndex
from EchoSynthLib.diffusion.gaussian import GaussianDiffusion
from EchoSynthLib.diffusion.samplers import denoise
from EchoSynthLib.engine.device import bf16_autocast, uses_bf16
from EchoSynthLib.engine.settings import RunSettings
from EchoSynthLib.errors import InputError
from EchoSynthLib.models.sdm.config import RUN_DEFAULTS, SDMConfig
from EchoSynthLib.models.sdm.network import build_sdm
from EchoSynthLib.store.families import SDM_KIND
from EchoSynthLib.store.package import save_package
from EchoSynthLib.training.cards import model_card
from EchoSynthLib.training.runs import (
    StepTrainer,
    TrainState,
    ema_average,
    require_pixel_cache,
    run_config,
    step_generator,
)

KIND = SDM_KIND
VAL_CASES = 32
GRID_CASES = 8


def _new_state(config: SDMConfig, device: torch.device) -> TrainState:
    torch.manual_seed(config.seed)
    model = build_sdm(config).to(device)
    ema = AveragedModel(model, avg_fn=ema_average(config.ema_decay), use_buffers=True)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    return TrainState.single(model, optimizer, ema)


class SDMTrainer(StepTrainer):
    """Trains one run; ``fit`` runs until ``max_steps`` or ``stop_at`` and can be called on a resumed run."""

    kind = KIND

    def __init__(
        self,
        data: str | Path,
        run: str | Path,
        config: SDMConfig,
        device: str | torch.device = "auto",
        settings: RunSettings | None = None,
    ):
        self.cache = CacheIndex.open(data)
        self.run = Path(run)
        self.settings = settings or RunSettings.from_dict(RUN_DEFAULTS)
        manifest = self.cache.manifest
        require_pixel_cache(data, manifest, config.image_size)
        if self.settings.sample_steps > config.timesteps:
            raise InputError(
                f"setting sample_steps ({self.settings.sample_steps}) must be at most timesteps "
                f"({config.timesteps})"
            )
        config = config.with_overrides({"label_channels": len(manifest.layout), "classes": manifest.layout})
        self.device = self.start_processes(device, config.batch_size)
        self.config = run_config(self.run, config)
        self.diffusion = GaussianDiffusion(self.config.timesteps, self.config.schedule)
        self.train_set = CachedPairs(self.cache, "train", one_hot=True)
        self.val_set = CachedPairs(self.cache, "val", one_hot=True) if self.cache.cases("val") else None
        self.state = _new_state(self.config, self.device)
        self.open_run()  # everything checked: the run folder may appear
        self.train_model = self.training_network(self.state.model)

    def _draws(
        self, step: int, stream: int, count: int, shape: tuple[int, ...], train: bool
    ) -> list[torch.Tensor]:
        """Flip, label-dropout, timestep and noise draws for ``count`` samples of one step (``train``: the
        step's global batch, of which this process keeps its share, as it does of the images)."""
        generator = step_generator(self.config.seed, step, stream)
        flip = torch.rand(count, generator=generator) < (self.config.flip_prob if train else 0.0)
        drop = torch.rand(count, generator=generator) < (self.config.label_dropout if train else 0.0)
        t = torch.randint(0, self.config.timesteps, (count,), generator=generator)
        noise = torch.randn((count, *shape), generator=generator)
        draws = [flip, drop, t, noise]
        if train:
            draws = [self.rank.part(x) for x in draws]
        return [x.to(self.device) for x in draws]

    def _loss(
        self, model: torch.nn.Module, images: torch.Tensor, seg: torch.Tensor, draws: list[torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Per-sample hybrid losses of ``images`` with their ``draws`` (flips, label dropout, t, noise)."""
        flip, drop, t, noise = draws
        images = torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)
        seg = torch.where(flip.view(-1, 1, 1, 1), seg.flip(-1), seg)
        seg = torch.where(drop.view(-1, 1, 1, 1), torch.zeros_like(seg), seg)
        x_t = self.diffusion.q_sample(images, t, noise)
        with bf16_autocast(self.device, uses_bf16(self.device, self.config.mixed_precision)):
            output = model(x_t, t, seg)
        return self.diffusion.training_losses(output.float(), images, x_t, t, noise, self.config.vlb_weight)

    @torch.no_grad()
    def validation_loss(self) -> float | None:
        """Mean hybrid loss of the EMA network on up to VAL_CASES validation cases, fixed t and noise."""
        if self.val_set is None:
            return None
        model = self.state.ema.module.eval()
        count = min(VAL_CASES, len(self.val_set))
        losses = []
        for start in range(0, count, self.config.batch_size):
            items = [self.val_set[i] for i in range(start, min(count, start + self.config.batch_size))]
            images = torch.stack([x["image"] for x in items]).to(self.device)
            seg = torch.stack([x["labels"] for x in items]).to(self.device)
            draws = self._draws(start, 99, images.shape[0], tuple(images.shape[1:]), train=False)
            losses.append(self._loss(model, images, seg, draws)["loss"].mean().item())
        return float(np.mean(losses))

    def sample_grid(self, path: Path) -> Path:
        """Real images, their label maps and EMA samples for the first GRID_CASES validation maps."""
        from EchoSynthLib.visualization import grey_of, real_and_label_rows, save_grid

        source = self.val_set or self.train_set
        items = [source[i] for i in range(min(GRID_CASES, len(source)))]
        seg = torch.stack([x["labels"] for x in items]).to(self.device)
        model = self.state.ema.module.eval()
        images = denoise(
            model, seg, self.diffusion, sampler="dpm++sde", steps=self.settings.sample_steps, seed=0
        )

        rows = real_and_label_rows(items, self.config.classes)
        rows.append(
            (f"synthetic (SDE-DPM-Solver++ {self.settings.sample_steps} steps)", [grey_of(x) for x in images])
        )
        return save_grid(rows, path)

    def export(self) -> Path:
        """The EMA network as a model package in ``RUN/model``."""
        card = model_card(self.config, self.cache.manifest, self.trained_steps)
        state = self.state.ema.module.state_dict()
        return save_package(
            self.run / "model",
            KIND,
            self.config.as_dict(),
            state,
            card,
            self.provenance(),
        )

    def train_step(self, batch: dict, step: int) -> dict[str, float]:
        """Hybrid loss, backward (over ``accumulation_steps`` micro-batches), clipped AdamW step, EMA."""
        state = self.state
        images = batch["image"].to(self.device, non_blocking=True)
        seg = batch["labels"].to(self.device, non_blocking=True)
        draws = self._draws(step, 0, self.config.batch_size, tuple(images.shape[1:]), train=True)
        state.optimizer.zero_grad(set_to_none=True)
        parts = [
            p for p in torch.arange(images.shape[0]).tensor_split(self.settings.accumulation_steps) if len(p)
        ]
        collected: dict[str, list[torch.Tensor]] = {}
        for index, part in enumerate(parts):
            # Under DDP, gradients are averaged over processes once, at the last micro-batch.
            last = index == len(parts) - 1
            quiet = self.rank.distributed and not last
            with self.train_model.no_sync() if quiet else contextlib.nullcontext():
                losses = self._loss(self.train_model, images[part], seg[part], [d[part] for d in draws])
                (losses["loss"].sum() / images.shape[0]).backward()
            for key, value in losses.items():
                collected.setdefault(key, []).append(value.detach())
        torch.nn.utils.clip_grad_norm_(state.model.parameters(), self.config.grad_clip)
        state.optimizer.step()
        state.ema.update_parameters(state.model)
        return {k: torch.cat(v).mean().item() for k, v in collected.items()}

    def validate(self) -> dict[str, float]:
        """The EMA network's validation loss."""
        loss = self.validation_loss()
        return {} if loss is None else {"val_loss": loss}
