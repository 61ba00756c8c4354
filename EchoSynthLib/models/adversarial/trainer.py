"""Training the few-step adversarial diffusion model on a cache, resumable exactly (two networks, two
optimizers, the generator's EMA, optional cosine schedules).

Each step (after SynDiff / DDGAN, written from the papers): draw t in 0 .. T - 1 and the real pair
(x^(t), x^(t + 1)); the generator predicts x_0 from x^(t + 1), t, noise maps z and the guides, and its
x^(t) is drawn from the posterior q(x^(t) | x^(t + 1), x_0). The discriminator learns real from
generated pairs with the non-saturating loss and, every ``r1_every`` steps, the R1 penalty gamma / 2 *
|grad D(real)|^2; then the generator learns to fool it, plus ``l1_weight`` * L1 on x_0. Every draw comes
from generators seeded by (seed, step), for the step's global batch, so a resumed run continues exactly.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel

from EchoSynthLib.augmentation.degradations import degrade
from EchoSynthLib.augmentation.scanner_look import LOOK_RANGES, STAND_IN, random_looks
from EchoSynthLib.cache.dataset import CachedPairs
from EchoSynthLib.cache.store import CacheIndex
from EchoSynthLib.data.labels import Structure
from EchoSynthLib.engine.device import bf16_autocast, uses_bf16
from EchoSynthLib.engine.settings import NO_INIT, RunSettings
from EchoSynthLib.errors import InputError
from EchoSynthLib.models.adversarial.config import (
    RUN_DEFAULTS,
    SIMULATOR_GUIDE,
    SOURCE_GUIDE,
    AdversarialConfig,
    image_guides_of,
)
from EchoSynthLib.models.adversarial.from_sdm import load_sdm, sdm_package, settings_from_sdm
from EchoSynthLib.models.adversarial.network import DISCRIMINATOR, Discriminator, GanGenerator
from EchoSynthLib.models.adversarial.process import build_process
from EchoSynthLib.store.families import ADVERSARIAL
from EchoSynthLib.store.package import save_package
from EchoSynthLib.training.cards import model_card
from EchoSynthLib.training.runs import (
    MAIN,
    StepTrainer,
    TrainState,
    ema_average,
    package_label,
    package_trained_steps,
    require_pixel_cache,
    run_config,
    step_generator,
)

KIND = ADVERSARIAL.kind
VAL_CASES = 32
GRID_CASES = 8


# What defines the networks and the process of a package, taken from it by a run that continues it (the
# recipe, learning rates and losses stay the run's own). The grid is the run's (its cache's): the generator
# is convolutional throughout, so a package trained on 64x64 images goes on at 128x128 (as diffusion models
# are fine-tuned to a larger resolution); only the discriminator's classifier head is sized by the grid.
MODEL_SETTINGS = (
    "guide",
    "channels",
    "attention_levels",
    "num_res_blocks",
    "num_head_channels",
    "spade_channels",
    "norm_groups",
    "noise_channels",
    "fold",
    "prediction",
    "timesteps",
    "discriminator_channels",
    "steps",
    "beta_min",
    "beta_max",
    "variance",
)


def _model_settings(init: str, guide: str, steps: int) -> dict:
    """The networks' and process settings of the adversarial package ``init`` (a name or a folder). The
    run's own ``guide`` stays where it gives as many image channels as the package's: a simulator-guided
    model can go on as a source-guided one (its image channel then takes the source image). The run's own
    ``steps`` stay where they are fewer than the package's (distilling it into fewer network calls): each
    of the run's steps is embedded as the package's step at the nearest noise level."""
    from EchoSynthLib.store.package import read_package_config
    from EchoSynthLib.store.registry import resolve_model

    settings = read_package_config(resolve_model(init), KIND)
    taken = {name: settings[name] for name in MODEL_SETTINGS if name in settings}
    taken.setdefault("fold", 1)  # packages from before the setting: unfolded
    if image_guides_of(taken.get("guide", "labels")) == image_guides_of(guide):
        taken.pop("guide", None)
    theirs = int(taken.get("steps", steps))
    if steps < theirs:
        longer = AdversarialConfig(steps=theirs, timesteps=tuple(taken.get("timesteps", ())))
        taken["timesteps"] = fewer_steps(longer.embedded_steps, steps)
        taken["steps"] = steps
    return taken


def fewer_steps(embedded: tuple[int, ...], steps: int) -> tuple[int, ...]:
    """The embedded timesteps of a ``steps``-step chain made from a longer one's (``embedded``, one per
    step): step k ends at the level s = (k + 1) / steps of the same VP schedule; it takes the embedding
    of the longer chain's step ending nearest that level (its noise level: abar is monotone in s)."""
    longer = len(embedded)
    return tuple(
        int(embedded[min(range(longer), key=lambda j: abs((j + 1) / longer - (k + 1) / steps))])
        for k in range(steps)
    )


def _load_all_but_head(folder: Path, discriminator: Discriminator) -> None:
    """The package's discriminator weights into ``discriminator`` of another grid: every tensor but
    the classifier head's (MONAI's ``DiffusionModelEncoder.out``, whose first layer takes the flattened
    last feature map), which keeps its initialisation."""
    from EchoSynthLib.store.package import read_weights

    head = "encoder.out."
    weights = {k: v for k, v in read_weights(folder, DISCRIMINATOR).items() if not k.startswith(head)}
    own = discriminator.state_dict()
    discriminator.load_state_dict(weights | {k: v for k, v in own.items() if k.startswith(head)})


def _cosine(optimizer: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LRScheduler:
    """The learning rate along a cosine from 100 % to 1 % over ``steps``, then held (Python floats, so the
    scheduler's state loads with ``weights_only``)."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps))
    )


class AdversarialTrainer(StepTrainer):
    """Trains the generator and discriminator of one run; ``fit`` as in ``StepTrainer``."""

    kind = KIND

    def __init__(
        self,
        data: str | Path,
        run: str | Path,
        config: AdversarialConfig,
        device: str | torch.device = "auto",
        settings: RunSettings | None = None,
    ) -> None:
        from EchoSynthLib.training import distributed

        self.cache = CacheIndex.open(data)
        self.run = Path(run)
        self.settings = settings or RunSettings.from_dict(RUN_DEFAULTS)
        manifest = self.cache.manifest
        require_pixel_cache(data, manifest, config.image_size)
        config = config.with_overrides({"classes": manifest.layout})
        self.teacher = sdm_package(self.settings.init)
        if self.teacher is not None:
            if config.fold != 1:
                raise InputError(
                    "a folded generator (fold above 1) starts from scratch: its first and last "
                    "layers are not the SDM's"
                )
            config = config.with_overrides(settings_from_sdm(self.teacher, config))
        elif self.settings.init != NO_INIT:  # continuing an adversarial package: its networks and process
            config = config.with_overrides(_model_settings(self.settings.init, config.guide, config.steps))
        self.device = self.start_processes(device, config.batch_size)
        self.config = run_config(self.run, config)
        self.process = build_process(self.config)
        self.train_set = CachedPairs(self.cache, "train", one_hot=True)
        self.val_set = CachedPairs(self.cache, "val", one_hot=True) if self.cache.cases("val") else None
        torch.manual_seed(self.config.seed)
        generator = GanGenerator(self.config).to(self.device)
        discriminator = Discriminator(self.config).to(self.device)
        betas = (self.config.adam_beta1, self.config.adam_beta2)
        optimizers = {
            MAIN: torch.optim.Adam(generator.parameters(), lr=self.config.learning_rate, betas=betas),
            DISCRIMINATOR: torch.optim.Adam(
                discriminator.parameters(), lr=self.config.discriminator_learning_rate, betas=betas
            ),
        }
        ema = AveragedModel(generator, avg_fn=ema_average(self.config.ema_decay), use_buffers=True)
        schedulers = {}
        if self.config.cosine_steps:
            schedulers = {name: _cosine(o, self.config.cosine_steps) for name, o in optimizers.items()}
        self.state = TrainState(
            {MAIN: generator, DISCRIMINATOR: discriminator}, optimizers, 0, {MAIN: ema}, schedulers
        )
        self.open_run()  # everything checked: the run folder may appear
        self.guides = self._guides()
        self.train_generator = self.training_network(generator)
        self.train_discriminator = distributed.wrap(discriminator, self.rank, self.device)

    def initialise(self, model: str) -> None:
        """A new run's start from package ``model``: an adversarial package (``StepTrainer.initialise``;
        from a package of another grid, the discriminator's head, sized by the grid, starts afresh), or an
        SDM, whose network the generator takes (``from_sdm``)."""
        from EchoSynthLib.store.package import read_package_header

        if self.teacher is None:
            from EchoSynthLib.store.registry import resolve_model

            folder = resolve_model(model)
            header = read_package_header(folder)  # its kind: checked in _model_settings
            other_grid = header["settings"]["image_size"] != self.config.image_size
            super().initialise(model, skip=(DISCRIMINATOR,) if other_grid else ())
            if other_grid and DISCRIMINATOR in {c["name"] for c in header["components"]}:
                _load_all_but_head(folder, self.state.networks[DISCRIMINATOR])
                self.initialised_from["networks"].append(f"{DISCRIMINATOR} (its head afresh)")
            return
        generator = self.state.networks[MAIN]
        load_sdm(self.teacher, generator)
        self.state.emas[MAIN].module.load_state_dict(generator.state_dict())
        steps = package_trained_steps(read_package_header(self.teacher))
        label = package_label(model, self.teacher)
        self.initialised_from = {"package": label, "trained_steps": steps, "networks": [MAIN]}

    def _guides(self) -> dict[str, dict[str, torch.Tensor]]:
        """split -> case_id -> simulator image, for a simulator-guided model (empty otherwise)."""
        if self.config.guide != SIMULATOR_GUIDE:
            return {}
        from EchoSynthLib.models.adversarial.guides import split_guides

        splits = ["train"] + (["val"] if self.val_set is not None else [])
        return {split: split_guides(self.cache, split, self.run) for split in splits}

    def _image_guides(self, batch: dict, split: str, draws: dict | None = None) -> torch.Tensor:
        """(B, G, H, W): the batch's image guides (G = 0 for a labels-only model; the source guide is each
        image in a random look of the ``draws`` (training: through a chain of the config's degradations, or
        placed in the look family), else in the stand-in scanner's look)."""
        image = batch["image"]
        if self.config.guide == "labels":
            return image.new_zeros((image.shape[0], 0, *image.shape[2:])).to(self.device)
        if self.config.guide == SOURCE_GUIDE:
            image, inside = self._source(batch)
            if draws is None:
                return STAND_IN(image, inside)
            if self.config.degradations:
                return degrade(image, inside, draws["look_seed"].tolist(), self.config.degradations)
            return random_looks(image, inside, draws["look"])
        table = self.guides[split]
        return torch.stack([table[c] for c in batch["case_id"]]).to(self.device)

    def _source(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's images (on the device) and their sectors (heart included), for source guides."""
        background = self.config.classes.structures.index(Structure.BACKGROUND)
        inside = (batch["labels"][:, background : background + 1] < 0.5).to(self.device)
        return batch["image"].to(self.device).float(), inside

    def _draws(self, step: int, stream: int, count: int, train: bool) -> dict[str, torch.Tensor]:
        """Every random draw of ``count`` samples of one step: flips, t, the forward and posterior noises,
        the noise maps z (``train``: the step's global batch, of which this process keeps its share)."""
        config = self.config
        generator = step_generator(config.seed, step, stream)
        shape = (count, 1, config.image_size, config.image_size)
        draws = {
            "flip": torch.rand(count, generator=generator) < (config.flip_prob if train else 0.0),
            "t": torch.randint(0, config.steps, (count,), generator=generator),
            "noise": torch.randn(shape, generator=generator),
            "step_noise": torch.randn(shape, generator=generator),
            "posterior_noise": torch.randn(shape, generator=generator),
            "z": torch.randn((count, config.noise_channels, *shape[2:]), generator=generator),
            "look": torch.rand((count, len(LOOK_RANGES)), generator=generator),  # a source guide's look
            "look_seed": torch.randint(0, 2**62, (count,), generator=generator),  # its chain of degradations
        }
        if train:
            draws = {k: self.rank.part(v) for k, v in draws.items()}
        return {k: v.to(self.device) for k, v in draws.items()}

    def _inputs(
        self, batch: dict, draws: dict[str, torch.Tensor], split: str, training: bool = False
    ) -> tuple[torch.Tensor, ...]:
        """The batch's images, one-hot maps and image guides, flipped where the draws say (``training``:
        source guides in the draws' random looks)."""
        tensors = [
            batch["image"].to(self.device).float(),
            batch["labels"].to(self.device).float(),
            self._image_guides(batch, split, draws if training else None),
        ]
        flip = draws["flip"].view(-1, 1, 1, 1)
        return tuple(torch.where(flip, x.flip(-1), x) for x in tensors)

    def _fake(self, generator, x_t, draws, guides, seg) -> tuple[torch.Tensor, torch.Tensor]:
        """The generator's x_0 and its posterior draw of x^(t)."""
        x0 = generator(x_t, draws["t"], draws["z"], guides, seg)
        return x0, self.process.posterior(x0, x_t, draws["t"], draws["posterior_noise"])

    def train_step(self, batch: dict, step: int) -> dict[str, float]:
        """The discriminator's step (non-saturating loss, R1 every ``r1_every`` steps), then the
        generator's (adversarial + L1 on x_0), then the EMA."""
        config, state = self.config, self.state
        draws = self._draws(step, 0, config.batch_size, train=True)
        x0, seg, guides = self._inputs(batch, draws, "train", training=True)
        earlier, x_t = self.process.training_pair(x0, draws["t"], draws["noise"], draws["step_noise"])
        use_bf16 = uses_bf16(self.device, config.mixed_precision)
        autocast = bf16_autocast(self.device, use_bf16)
        regularise = config.r1_gamma > 0 and step % config.r1_every == 0
        with autocast:
            predicted, fake_earlier = self._fake(self.train_generator, x_t, draws, guides, seg)
        # Discriminator: real and generated pairs in one forward (one DDP reduction).
        real_earlier = earlier.detach().requires_grad_(regularise)
        both = torch.cat([real_earlier, fake_earlier.detach().float()])
        twice = [torch.cat([x, x]) for x in (x_t, draws["t"], guides, seg)]
        with bf16_autocast(self.device, use_bf16 and not regularise):
            scores = self.train_discriminator(both, *twice).float()
        real_scores, fake_scores = scores.chunk(2)
        losses = {"d_real": F.softplus(-real_scores).mean(), "d_fake": F.softplus(fake_scores).mean()}
        total_d = losses["d_real"] + losses["d_fake"]
        if regularise:
            (gradient,) = torch.autograd.grad(real_scores.sum(), real_earlier, create_graph=True)
            losses["r1"] = gradient.pow(2).flatten(1).sum(1).mean()
            total_d = total_d + 0.5 * config.r1_gamma * losses["r1"]
        critic = state.optimizers[DISCRIMINATOR]
        critic.zero_grad(set_to_none=True)
        total_d.backward()
        critic.step()
        # Generator: fool the (fixed) discriminator, stay close to x_0.
        discriminator = state.networks[DISCRIMINATOR]
        discriminator.requires_grad_(False)
        with autocast:
            fooled = discriminator(fake_earlier, x_t, draws["t"], guides, seg).float()
        discriminator.requires_grad_(True)
        losses["g_adversarial"] = F.softplus(-fooled).mean()
        losses["l1"] = (predicted.float() - x0).abs().mean()
        total_g = losses["g_adversarial"] + config.l1_weight * losses["l1"]
        state.optimizer.zero_grad(set_to_none=True)
        total_g.backward()
        state.optimizer.step()
        for scheduler in state.schedulers.values():
            scheduler.step()
        state.ema.update_parameters(state.model)
        return {k: float(v.detach()) for k, v in losses.items()} | {"loss": float(total_g.detach())}

    def _val_batches(self):
        count = min(VAL_CASES, len(self.val_set))
        for start in range(0, count, self.config.batch_size):
            items = [self.val_set[i] for i in range(start, min(count, start + self.config.batch_size))]
            batch = {k: torch.stack([x[k] for x in items]) for k in ("image", "labels")}
            yield start, batch | {"case_id": [x["case_id"] for x in items]}

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """L1 of the EMA generator's x_0 at random steps, and of its full T-step samples, on up to VAL_CASES
        validation cases (fixed draws)."""
        if self.val_set is None:
            return {}
        generator = self.state.ema.module.eval()
        one_step, sampled = [], []
        for start, batch in self._val_batches():
            draws = self._draws(start, 99, len(batch["case_id"]), train=False)
            x0, seg, guides = self._inputs(batch, draws, "val")
            x_t = self.process.noisy(x0, draws["t"], draws["noise"])
            one_step.append((generator(x_t, draws["t"], draws["z"], guides, seg) - x0).abs().mean().item())
            images = self.denoise(generator, seg, guides, seed=start)
            sampled.append((images - x0).abs().mean().item())
        return {"val_l1_x0": float(np.mean(one_step)), "val_l1_sample": float(np.mean(sampled))}

    def denoise(self, generator, seg: torch.Tensor, guides: torch.Tensor, seed: int) -> torch.Tensor:
        """T-step samples (B, 1, H, W) for one-hot maps; image b uses seed + b (``pipeline.denoise``)."""
        from EchoSynthLib.models.adversarial.pipeline import denoise

        return denoise(generator, self.process, self.config, seg, guides, seed)

    @torch.no_grad()
    def sample_grid(self, path: Path) -> Path:
        """Real images, their label maps (and simulator guides) and EMA samples for the first GRID_CASES
        validation maps."""
        from EchoSynthLib.visualization import grey_of, real_and_label_rows, save_grid

        source, split = (self.val_set, "val") if self.val_set is not None else (self.train_set, "train")
        items = [source[i] for i in range(min(GRID_CASES, len(source)))]
        batch = {k: torch.stack([x[k] for x in items]) for k in ("image", "labels")}
        batch["case_id"] = [x["case_id"] for x in items]
        draws = self._draws(0, 98, len(items), train=False)
        _, seg, guides = self._inputs(batch, draws, split)
        images = self.denoise(self.state.ema.module.eval(), seg, guides, seed=0)

        rows = real_and_label_rows(items, self.config.classes)
        if self.config.image_guides:
            rows.append((f"{self.config.guide.removeprefix('labels+')} guide", [grey_of(g) for g in guides]))
        rows.append((f"synthetic ({self.config.steps} adversarial steps)", [grey_of(x) for x in images]))
        return save_grid(rows, path)

    def export(self) -> Path:
        """The EMA generator and the discriminator (to continue from) as a package in ``RUN/model``."""
        card = model_card(self.config, self.cache.manifest, self.trained_steps, "adversarial diffusion model")
        components = {
            MAIN: self.state.ema.module.state_dict(),
            DISCRIMINATOR: self.state.networks[DISCRIMINATOR].state_dict(),
        }
        return save_package(
            self.run / "model",
            KIND,
            self.config.as_dict(),
            None,
            card,
            self.provenance(),
            components=components,
        )
