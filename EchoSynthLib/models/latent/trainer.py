"""Training a latent diffusion model on a cache, with a trained autoencoder, resumable exactly.

The autoencoder's posterior (mean and standard deviation of every training and validation case) is
computed once and stored in the run folder (``latents.safetensors``, with the scale factor 1 / std of the
training latents); every step re-draws each latent from its stored posterior and scales it, as DIFF-3
does, so the denoiser sees the autoencoder's spread without the encoder in the loop. Each step's draws
(posterior, timesteps, noise, label dropout) come from generators seeded by (seed, step).
"""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel

from EchoSynthLib.cache.dataset import CachedPairs
from EchoSynthLib.cache.store import CacheIndex
from EchoSynthLib.data.atomic import write_atomically
from EchoSynthLib.engine.device import bf16_autocast, uses_bf16
from EchoSynthLib.engine.settings import RunSettings
from EchoSynthLib.errors import InputError
from EchoSynthLib.models.autoencoder.network import Autoencoder
from EchoSynthLib.models.latent.config import NO_AUTOENCODER, RUN_DEFAULTS, LatentConfig
from EchoSynthLib.models.latent.network import Denoiser
from EchoSynthLib.models.latent.pipeline import AUTOENCODER, denoise, noise_process
from EchoSynthLib.store.families import LATENT, LATENT_PAIRS
from EchoSynthLib.store.package import save_package
from EchoSynthLib.training.cards import model_card
from EchoSynthLib.training.runs import (
    MAIN,
    StepTrainer,
    TrainState,
    ema_average,
    run_config,
    step_generator,
)

VAL_CASES = 32
GRID_CASES = 8
LATENTS = "latents.safetensors"


class LatentCases(torch.utils.data.Dataset):
    """Stored posteriors of one split (and the one-hot label maps, for conditioned models)."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, maps: CachedPairs | None) -> None:
        self.mean, self.std, self.maps = mean, std, maps

    def __len__(self) -> int:
        return len(self.mean)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = {"mean": self.mean[index], "std": self.std[index]}
        if self.maps is not None:
            item["labels"] = self.maps[index]["labels"]
        return item


def _training_spacing(cache: CacheIndex) -> tuple[float, float, float]:
    """The median grid spacing of the training cases (mm, x y z): the grid generated pairs get."""
    grids = [entry["metadata"].get("grid", {}) for entry in cache.cases("train")]
    spacings = [g["spacing"] for g in grids if "spacing" in g] or [[1.0, 1.0, 1.0]]
    return tuple(float(statistics.median(s[axis] for s in spacings)) for axis in range(3))


class LatentTrainer(StepTrainer):
    """Trains the denoiser on the autoencoder's latents; ``fit`` as in ``StepTrainer``."""

    def __init__(
        self,
        data: str | Path,
        run: str | Path,
        config: LatentConfig,
        device: str | torch.device = "auto",
        settings: RunSettings | None = None,
    ) -> None:
        self.cache = CacheIndex.open(data)
        self.run = Path(run)
        self.settings = settings or RunSettings.from_dict(RUN_DEFAULTS)
        if config.autoencoder == NO_AUTOENCODER:
            raise InputError(
                "a latent model needs a trained autoencoder: --set autoencoder=FOLDER_OR_NAME "
                "(echosynth train autoencoder ...)"
            )
        manifest = self.cache.manifest
        self.device = self.start_processes(device, config.batch_size)
        autoencoder = Autoencoder.load(config.autoencoder, self.device)
        coder = autoencoder.config
        if coder.spatial_dims != manifest.spatial_dims:
            raise InputError(
                f"{config.autoencoder} is a {coder.spatial_dims}D autoencoder; {data} is a "
                f"{manifest.spatial_dims}D cache"
            )
        if coder.with_labels == config.conditioned:
            need = "an image-only" if config.conditioned else "an image + label (with_labels)"
            raise InputError(
                f"{config.autoencoder}: a {'label-conditioned' if config.conditioned else 'paired'} "
                f"latent model needs {need} autoencoder"
            )
        if coder.with_labels and coder.classes != manifest.layout:
            raise InputError(f"{config.autoencoder} was trained on other classes than {data}")
        if any(n % coder.downsampling for n in manifest.shape):
            raise InputError(
                f"{data}: image sides {list(manifest.shape)} are not multiples of {coder.downsampling}"
            )
        self.autoencoder = autoencoder
        self.train_maps = CachedPairs(self.cache, "train", one_hot=True)
        self.val_maps = CachedPairs(self.cache, "val", one_hot=True) if self.cache.cases("val") else None
        posteriors = self._posteriors(config.seed)
        config = config.with_overrides(
            {
                "spatial_dims": manifest.spatial_dims,
                "image_shape": tuple(manifest.shape),
                "spacing": _training_spacing(self.cache),
                "latent_channels": coder.latent_channels,
                "downsampling": coder.downsampling,
                "scale_factor": float(posteriors["scale"]),
                "latent_clip": float(posteriors["clip"]) if "clip" in posteriors else 0.0,
                "classes": manifest.layout,
                "autoencoder_settings": coder.as_dict(),
            }
        )
        self.config = run_config(self.run, config)
        self.posteriors = posteriors
        conditioned = self.config.conditioned
        self.train_set = LatentCases(
            posteriors["train_mean"], posteriors["train_std"], self.train_maps if conditioned else None
        )
        self.val_set = (
            LatentCases(posteriors["val_mean"], posteriors["val_std"], self.val_maps if conditioned else None)
            if "val_mean" in posteriors
            else None
        )
        self.process = noise_process(self.config)
        torch.manual_seed(self.config.seed)
        model = Denoiser(self.config).to(self.device)
        ema = AveragedModel(model, avg_fn=ema_average(self.config.ema_decay), use_buffers=True)
        optimizer = torch.optim.AdamW(model.parameters(), lr=self.config.learning_rate)
        self.state = TrainState.single(model, optimizer, ema)
        self.kind = (LATENT if self.config.conditioned else LATENT_PAIRS).kind
        self.open_run()  # everything checked: the run folder may appear
        if self.rank.main and not (self.run / LATENTS).is_file():
            self._save_posteriors()
        self.train_model = self.training_network(model)

    @torch.no_grad()
    def _encode(self, maps: CachedPairs, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and std of the first ``count`` cases of a split."""
        means, stds = [], []
        for start in range(0, count, 16):
            items = [maps[i] for i in range(start, min(count, start + 16))]
            image = torch.stack([x["image"] for x in items]).float()
            labels = torch.stack([x["labels"] for x in items]).float()
            inputs = torch.cat([image, labels], 1) if self.autoencoder.config.with_labels else image
            mean, std = self.autoencoder.encode(inputs)
            means.append(mean.cpu())
            stds.append(std.cpu())
        return torch.cat(means), torch.cat(stds)

    def _posteriors(self, seed: int) -> dict[str, torch.Tensor]:
        """The run's stored posteriors, or the autoencoder's for the cache (computed once per run)."""
        from safetensors.torch import load_file

        path = self.run / LATENTS
        if path.is_file():
            return load_file(str(path))
        result = {}
        result["train_mean"], result["train_std"] = self._encode(self.train_maps, len(self.train_maps))
        if self.val_maps is not None:
            result["val_mean"], result["val_std"] = self._encode(
                self.val_maps, min(VAL_CASES, len(self.val_maps))
            )
        generator = torch.Generator().manual_seed(seed)
        drawn = result["train_mean"] + result["train_std"] * torch.randn(
            result["train_mean"].shape, generator=generator
        )
        scale = 1.0 / max(float(drawn.std()), 1e-6)
        result["scale"] = torch.tensor(scale)
        result["clip"] = torch.tensor(float(drawn.abs().max()) * scale)
        return result

    def _save_posteriors(self) -> None:
        from safetensors.torch import save_file

        tensors = {k: v.contiguous() for k, v in self.posteriors.items()}
        write_atomically(self.run / LATENTS, lambda tmp: save_file(tensors, str(tmp)))

    def _draws(self, step: int, stream: int, count: int, train: bool) -> list[torch.Tensor]:
        """Posterior, timestep, noise and label-dropout draws for ``count`` samples of one step (``train``:
        the step's global batch, of which this process keeps its share)."""
        generator = step_generator(self.config.seed, step, stream)
        shape = self.config.latent_shape
        posterior = torch.randn((count, *shape), generator=generator)
        t = self.process.draw_timesteps(count, generator)
        noise = torch.randn((count, *shape), generator=generator)
        drop = torch.rand(count, generator=generator) < (self.config.label_dropout if train else 0.0)
        draws = [posterior, t, noise, drop]
        if train:
            draws = [self.rank.part(x) for x in draws]
        return [x.to(self.device) for x in draws]

    def _loss(self, model: torch.nn.Module, batch: dict, draws: list[torch.Tensor]) -> torch.Tensor:
        posterior, t, noise, drop = draws
        mean, std = batch["mean"].to(self.device), batch["std"].to(self.device)
        latents = (mean + std * posterior) * self.config.scale_factor
        seg = None
        if self.config.conditioned:
            seg = batch["labels"].to(self.device)
            seg = torch.where(drop.view(-1, *([1] * (seg.ndim - 1))), torch.zeros_like(seg), seg)
        x_t = self.process.noisy(latents, t, noise)
        with bf16_autocast(self.device, uses_bf16(self.device, self.config.mixed_precision)):
            output = model(x_t, t, seg)
        return torch.nn.functional.mse_loss(output.float(), self.process.target(latents, noise))

    def train_step(self, batch: dict, step: int) -> dict[str, float]:
        """MSE on the noise (or velocity), clipped AdamW step, EMA update."""
        draws = self._draws(step, 0, self.config.batch_size, train=True)
        loss = self._loss(self.train_model, batch, draws)
        state = self.state
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(state.model.parameters(), self.config.grad_clip)
        state.optimizer.step()
        state.ema.update_parameters(state.model)
        return {"loss": float(loss.detach())}

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """The EMA network's loss on the stored validation posteriors, with fixed draws."""
        if self.val_set is None:
            return {}
        model = self.state.ema.module.eval()
        losses = []
        for start in range(0, len(self.val_set), self.config.batch_size):
            items = [
                self.val_set[i] for i in range(start, min(len(self.val_set), start + self.config.batch_size))
            ]
            batch = {k: torch.stack([x[k] for x in items]) for k in items[0]}
            draws = self._draws(start, 99, len(items), train=False)
            losses.append(float(self._loss(model, batch, draws)))
        return {"val_loss": float(np.mean(losses))}

    @torch.no_grad()
    def sample_grid(self, path: Path) -> Path:
        """Conditioned: real images, their maps and samples for the first validation maps; paired: samples
        and their decoded label maps. A 3D case shows its middle slice."""
        from EchoSynthLib.visualization import grey_of, overlay, real_and_label_rows, save_grid

        layout = self.config.classes
        model = self.state.ema.module.eval()

        def labels_of(channels: torch.Tensor) -> np.ndarray:
            labels = layout.to_canonical(layout.channel_values[channels.argmax(0).cpu().numpy()])
            return labels if labels.ndim == 2 else labels[labels.shape[0] // 2]

        steps, sampler = self.settings.sample_steps, self.process.samplers[0]
        steps = min(steps, self.config.timesteps)
        if self.config.conditioned:
            source = self.val_maps or self.train_maps
            items = [source[i] for i in range(min(GRID_CASES, len(source)))]
            latents = torch.cat(
                [
                    denoise(
                        model,
                        self.process,
                        self.config,
                        1,
                        x["labels"][None],
                        sampler=sampler,
                        steps=steps,
                        seed=0,
                    )
                    for x in items
                ]
            )
            images = self.autoencoder.decode(latents)
            rows = real_and_label_rows(items, layout)
            rows.append((f"synthetic ({sampler} {steps} steps)", [grey_of(x[0]) for x in images]))
        else:
            latents = denoise(
                model, self.process, self.config, GRID_CASES, None, sampler=sampler, steps=steps, seed=0
            )
            outputs = self.autoencoder.decode(latents)
            images = [grey_of(x[0]) for x in outputs]
            rows = [
                (f"generated image ({sampler} {steps} steps)", images),
                (
                    "generated labels",
                    [overlay(i, labels_of(x[1:])) for i, x in zip(images, outputs, strict=True)],
                ),
            ]
        return save_grid(rows, path)

    def export(self) -> Path:
        """The EMA denoiser and the autoencoder as one package in ``RUN/model``."""
        what = "label-conditioned" if self.config.conditioned else "paired image + label (DIFF-3)"
        card = model_card(
            self.config,
            self.cache.manifest,
            self.trained_steps,
            f"{self.config.spatial_dims}D {what} latent diffusion model",
        )
        components = {
            MAIN: self.state.ema.module.state_dict(),
            AUTOENCODER: self.autoencoder.model.state_dict(),
        }
        return save_package(
            self.run / "model",
            self.kind,
            self.config.as_dict(),
            None,
            card,
            self.provenance(),
            components=components,
        )
