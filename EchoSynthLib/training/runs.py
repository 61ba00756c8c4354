"""What every trainer shares: settings files, per-step seeding, batches by step, checkpoints and logs.

A run folder holds ``config.json`` (the family's config: fixed for the run), ``run.json`` (the run
settings: length, workers, schedules; free to change on resume), ``checkpoint/`` (safetensors for
networks, optimizer state as plain tensors, the step; replaced whole), and ``log.jsonl``. Every random
draw of step ``s`` comes from a generator seeded with (seed, s, stream), and batches are drawn per step
too, so a resumed run continues exactly as an uninterrupted one would.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from EchoSynthLib.data.atomic import recover_directory, staged_directory, write_atomically
from EchoSynthLib.engine.device import pick_device
from EchoSynthLib.engine.settings import NO_INIT, RUN_SETTING_NAMES, RunSettings, Settings
from EchoSynthLib.errors import InputError
from EchoSynthLib.training import distributed
from EchoSynthLib.training.distributed import Rank


def step_generator(seed: int, step: int, stream: int) -> torch.Generator:
    """A CPU generator for one purpose (``stream``) at one step."""
    return torch.Generator().manual_seed(
        int(np.random.SeedSequence([seed, step, stream]).generate_state(1)[0])
    )


MAIN = "model"  # the network of a one-network family
INIT_RECORD = "init.json"


def package_trained_steps(header: dict[str, Any]) -> int:
    """The training steps a package's header records (0 where it records none)."""
    return int(header.get("provenance", {}).get("trained_steps", 0))


def ema_average(decay: float):
    """EMA with warm-up: the rate min(decay, (1 + n) / (10 + n)) after n updates, so short runs and the
    first steps of long ones are not dominated by the random initial weights."""

    def average(averaged: torch.Tensor, current: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
        rate = min(decay, (1.0 + float(count)) / (10.0 + float(count)))
        return averaged + (current - averaged) * (1.0 - rate)

    return average


def require_pixel_cache(data: str | Path, manifest: Any, size: int) -> None:
    """InputError unless the cache at ``data`` (its ``CacheManifest``) holds 2D images of ``size`` x
    ``size`` with a sector class: what the pixel-space 2D families (SDM, adversarial) train on."""
    from EchoSynthLib.data.labels import Structure

    if manifest.spatial_dims != 2 or manifest.shape != (size, size):
        raise InputError(
            f"{data}: cache images are {'x'.join(map(str, manifest.shape))}; this model needs "
            f"{size}x{size} (prepare with --size {size}, or --set image_size=...)"
        )
    if not manifest.layout.has(Structure.SECTOR):
        raise InputError(f"{data}: the cache has no sector class (prepare with --layout echosynth)")


def package_label(model: str, folder: Path) -> str:
    """How a run records its ``init`` package: the model's name when it was given by name (an installed
    model's folder is where this machine keeps it, which means nothing elsewhere), else the folder."""
    return str(folder) if Path(model).expanduser().is_dir() else str(model)


class StepBatches(torch.utils.data.Sampler):
    """Batch indices for steps ``start``..``stop - 1``: the global batch of a step is drawn from a generator
    seeded (seed, step), and this process gets its share of it (``rank``)."""

    def __init__(
        self, size: int, batch: int, seed: int, start: int, stop: int, rank: Rank | None = None
    ) -> None:
        self.size, self.batch, self.seed, self.start, self.stop = size, batch, seed, start, stop
        self.rank = rank or Rank()

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.stop):
            rng = np.random.default_rng([self.seed, step])
            indices = rng.choice(self.size, self.batch, replace=self.size < self.batch).tolist()
            yield self.rank.part(indices)

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


def run_config(run: Path, config: Settings) -> Settings:
    """The run's model config, checked against its ``config.json`` if the run was started before (it must
    not change; run settings live in ``run.json`` and may). Nothing is written here: ``save_run_files``
    does that once the trainer has checked the data and built everything, so a failed start leaves no
    run folder behind."""
    path = run / "config.json"
    if not path.is_file():
        return config
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise InputError(
            f"{path}: cannot be read ({error}); fix it or start a new run with another --out"
        ) from None
    if not isinstance(document, dict):
        raise InputError(f"{path}: not a settings file; fix it or start a new run with another --out")
    # Runs started before run settings had their own file kept them in config.json: they are run.json's now.
    document = {k: v for k, v in document.items() if k not in RUN_SETTING_NAMES}
    saved = type(config).from_dict(document).as_dict()
    mine = config.as_dict()
    changed = sorted(k for k in mine if mine[k] != saved[k])
    if changed:
        raise InputError(
            f"{run} was started with other settings ("
            + ", ".join(f"{k}: {saved[k]} -> {mine[k]}" for k in changed)
            + "); resume with the same settings or use a new --out"
        )
    return config


def save_run_files(run: Path, config: Settings, settings: RunSettings) -> None:
    """Write (or update) the run's ``config.json`` and ``run.json``; creates the run folder."""
    for name, values in (("config.json", config), ("run.json", settings)):
        path = run / name
        text = json.dumps(values.as_dict(), indent=1)
        if not path.is_file() or path.read_text() != text:
            write_atomically(path, lambda tmp, text=text: tmp.write_text(text))


def save_checkpoint(run: Path, state: TrainState) -> None:
    """Every network and EMA (safetensors), optimizer and scheduler state (plain tensors and numbers) and
    the step, replacing the previous checkpoint whole."""
    from safetensors.torch import save_file

    with staged_directory(run / "checkpoint") as staging:
        for name, network in state.weight_files().items():
            tensors = {k: v.detach().contiguous() for k, v in network.state_dict().items()}
            save_file(tensors, str(staging / f"{name}.safetensors"))
        for file, holder in state.state_files().items():
            torch.save(holder.state_dict(), staging / file)
        (staging / "state.json").write_text(json.dumps({"step": state.step}))


def load_checkpoint(run: Path, state: TrainState, device: torch.device) -> int:
    """Restore everything ``save_checkpoint`` stored (tensors only, never pickled objects); the step."""
    from safetensors.torch import load_file

    folder = run / "checkpoint"
    try:
        for name, network in state.weight_files().items():
            network.load_state_dict(load_file(str(folder / f"{name}.safetensors"), device=str(device)))
        for file, holder in state.state_files().items():
            holder.load_state_dict(torch.load(folder / file, map_location=device, weights_only=True))
        return int(json.loads((folder / "state.json").read_text())["step"])
    except Exception as error:  # safetensors, torch.load and JSON raise many types for damaged files
        first = (str(error).splitlines() or [type(error).__name__])[0]
        raise InputError(
            f"{folder}: checkpoint cannot be restored ({type(error).__name__}: {first}); delete the "
            "checkpoint folder to start again from step 0, or use another --out"
        ) from None


def has_checkpoint(run: Path) -> bool:
    """True if the run folder holds a checkpoint to resume from (after recovering one that a kill left
    in the middle of its replacement)."""
    recover_directory(run / "checkpoint")
    return (run / "checkpoint" / "state.json").is_file()


def append_log(run: Path, record: dict[str, Any]) -> None:
    """One JSON line in ``run/log.jsonl``."""
    with open(run / "log.jsonl", "a") as handle:
        handle.write(json.dumps(record) + "\n")


@dataclass
class TrainState:
    """What a checkpoint restores: named networks with their optimizers, learning-rate schedulers and EMA
    copies (a GAN or a VAE with a discriminator has two of each), and the step. One-network families use
    the name ``model``; ``model``, ``optimizer`` and ``ema`` are shortcuts to it."""

    networks: dict[str, torch.nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    step: int = 0
    emas: dict[str, torch.nn.Module] = field(default_factory=dict)
    schedulers: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def single(
        cls, model: torch.nn.Module, optimizer: torch.optim.Optimizer, ema: torch.nn.Module | None = None
    ) -> TrainState:
        """The state of a one-network family."""
        return cls({MAIN: model}, {MAIN: optimizer}, 0, {MAIN: ema} if ema is not None else {})

    @property
    def model(self) -> torch.nn.Module:
        return self.networks[MAIN]

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.optimizers[MAIN]

    @property
    def ema(self) -> torch.nn.Module | None:
        return self.emas.get(MAIN)

    def weight_files(self) -> dict[str, torch.nn.Module]:
        """Checkpoint file stem -> module: networks; EMAs as ``<name>_ema`` (``ema`` for ``model``)."""
        emas = {("ema" if name == MAIN else f"{name}_ema"): module for name, module in self.emas.items()}
        return dict(self.networks) | emas

    def state_files(self) -> dict[str, Any]:
        """Checkpoint file -> object with a state dict: optimizers (``optimizer.pt`` for ``model``,
        ``optimizer_<name>.pt`` otherwise) and schedulers (``scheduler_<name>.pt``)."""
        optimizers = {
            ("optimizer.pt" if name == MAIN else f"optimizer_{name}.pt"): o
            for name, o in self.optimizers.items()
        }
        return optimizers | {f"scheduler_{name}.pt": s for name, s in self.schedulers.items()}


class StepTrainer:
    """The training loop shared by the trainers: batches by step, logs, validation, checkpoints, export.

    Subclasses set ``run``, ``config`` (the family's, with batch_size and seed), ``settings`` (the run's),
    ``device``, ``train_set`` and ``state``, and implement ``train_step``, ``validate`` and ``export``, and
    ``sample_grid`` if they draw one; ``periodic`` is the hook after every step (sample grids).
    """

    run: Path
    config: Any
    settings: RunSettings = RunSettings()
    device: torch.device
    train_set: torch.utils.data.Dataset
    state: TrainState
    rank: Rank = Rank()
    kind: str = ""  # the package kind the trainer makes (``init`` packages must be of it)
    cache: Any = None
    initialised_from: dict[str, Any] | None = None  # the ``init`` package, for a run that started from one

    def start_processes(self, device: str | torch.device, batch_size: int) -> torch.device:
        """Pick the device, join torchrun's process group if there is one, check the batch splits evenly;
        sets ``rank`` and returns this process's device."""
        chosen = pick_device(device)
        self.rank = distributed.start(chosen)
        self.rank.check_batch(batch_size)
        return distributed.local_device(chosen, self.rank)

    def resume(self) -> None:
        """Continue from the run's checkpoint, if it has one (every process reads it; the main process
        first recovers one a kill left in the middle of its replacement); a new run with the ``init`` run
        setting starts from that package's weights instead."""
        if self.rank.main:
            recover_directory(self.run / "checkpoint")
        distributed.barrier(self.rank)
        if (self.run / "checkpoint" / "state.json").is_file():
            self.state.step = load_checkpoint(self.run, self.state, self.device)
        elif self.settings.init != NO_INIT:
            self.initialise(self.settings.init)

    def initialise(self, model: str, skip: tuple[str, ...] = ()) -> None:
        """Every network of the state with a component of the same name in package ``model`` (a name or a
        folder; it must be of this run's kind) takes its weights, and so does its EMA copy; the others
        (a discriminator a package does not hold, those in ``skip``) keep their initialisation.
        Optimizers start fresh."""
        from EchoSynthLib.store.package import load_weights, read_package_header
        from EchoSynthLib.store.registry import resolve_model

        folder = resolve_model(model)
        header = read_package_header(folder)
        if header["kind"] != self.kind:
            raise InputError(f"init: {folder} is a '{header['kind']}' model; this run trains '{self.kind}'")
        names = {c["name"] for c in header["components"]}
        loaded = [name for name in self.state.networks if name in names and name not in skip]
        if not loaded:
            networks = ", ".join(self.state.networks)
            raise InputError(f"init: {folder} holds none of this run's networks ({networks})")
        for name in loaded:
            load_weights(folder, self.state.networks[name], name)
            if name in self.state.emas:
                self.state.emas[name].module.load_state_dict(self.state.networks[name].state_dict())
        steps = package_trained_steps(header)
        self.initialised_from = {
            "package": package_label(model, folder),
            "trained_steps": steps,
            "networks": loaded,
        }

    @property
    def trained_steps(self) -> int:
        """Steps in all: this run's and those the ``init`` package had been trained for."""
        return int((self.initialised_from or {}).get("trained_steps", 0)) + self.state.step

    def provenance(self) -> dict[str, Any]:
        """What the run's package records about its training (``cards.training_provenance``): steps in all,
        the ``init`` package's included, and where the run started from."""
        from EchoSynthLib.training.cards import training_provenance

        record = training_provenance(self.cache, self.trained_steps)
        return record | ({"initialised_from": self.initialised_from} if self.initialised_from else {})

    def open_run(self) -> None:
        """Resume, then write the run's settings (main process): called last in a trainer's set-up, once
        data, settings and networks are known good. Where the run started from is kept in ``init.json``."""
        record = self.run / INIT_RECORD
        if record.is_file():
            self.initialised_from = json.loads(record.read_text())
        self.resume()
        if self.rank.main:
            save_run_files(self.run, self.config, self.settings)
            if self.initialised_from and not record.is_file():
                text = json.dumps(self.initialised_from, indent=1)
                write_atomically(record, lambda tmp: tmp.write_text(text))

    def training_network(self, network: torch.nn.Module) -> torch.nn.Module:
        """What the training step calls: ``network`` under DDP when distributed, compiled when the run
        settings ask (``torch.compile`` after the DDP wrap, as PyTorch's DDP notes recommend, so the
        compiled graph breaks at the gradient buckets)."""
        wrapped = distributed.wrap(network, self.rank, self.device)
        return torch.compile(wrapped) if self.settings.compile else wrapped

    def train_step(self, batch: dict[str, Any], step: int) -> dict[str, float]:
        """One optimisation step on ``batch``; returns the losses to log."""
        raise NotImplementedError

    def validate(self) -> dict[str, float]:
        """Validation numbers for the log."""
        return {}

    def export(self) -> Path:
        """Write the trained model package."""
        raise NotImplementedError

    def sample_grid(self, path: Path) -> Path | None:
        """Draw the family's sample grid (real and generated or reconstructed images) to ``path``; none
        by default."""
        return None

    def periodic(self, step: int, stop: int) -> None:
        """Called after every step: a sample grid every ``sample_every`` steps and at the end."""
        path = self.run / "samples" / f"step_{step:06d}.png"
        if (step % self.settings.sample_every == 0 or step == stop) and not path.is_file():
            self.sample_grid(path)

    def _batches(self, stop: int) -> torch.utils.data.DataLoader:
        sampler = StepBatches(
            len(self.train_set), self.config.batch_size, self.config.seed, self.state.step, stop, self.rank
        )
        return torch.utils.data.DataLoader(
            self.train_set,
            batch_sampler=sampler,
            num_workers=self.settings.workers,
            pin_memory=self.device.type == "cuda",
        )

    def fit(
        self, stop_at: int | None = None, progress: Callable[[int, dict[str, float]], None] | None = None
    ) -> int:
        """Train up to ``max_steps`` (or ``stop_at``): log, validate, checkpoint and export on the way."""
        settings, state = self.settings, self.state
        stop = min(settings.max_steps, stop_at if stop_at is not None else settings.max_steps)
        state.model.train()
        started, window = time.perf_counter(), []
        for batch in self._batches(stop):
            losses = self.train_step(batch, state.step)
            window.append(distributed.mean_over_processes(losses, self.rank, self.device))
            state.step += 1
            if not self.rank.main:  # the others only train: logs, checkpoints, grids and the package are one
                continue
            if progress is not None:
                progress(state.step, window[-1])
            if state.step % settings.log_every == 0 or state.step == stop:
                elapsed = time.perf_counter() - started
                record = {"step": state.step, "seconds": round(elapsed, 2)}
                # A loss some steps lack (an R1 penalty every few steps) is averaged over the steps with it.
                keys = dict.fromkeys(k for w in window for k in w)
                record |= {k: float(np.mean([w[k] for w in window if k in w])) for k in keys}
                record["steps_per_second"] = len(window) / max(elapsed, 1e-9)
                if state.step % settings.val_every == 0 or state.step == stop:
                    record |= self.validate()
                    state.model.train()
                append_log(self.run, record)
                started, window = time.perf_counter(), []
            if state.step % settings.checkpoint_every == 0 or state.step == stop:
                save_checkpoint(self.run, state)
            self.periodic(state.step, stop)
            state.model.train()
        if state.step >= stop and self.rank.main:
            self.periodic(state.step, stop)  # a run killed after its last checkpoint still gets its grid
            self.export()
        distributed.barrier(self.rank)
        return state.step
