"""Training the echo encoder on the real images of a cache: SimCLR's contrastive objective (MONAI's
``ContrastiveLoss``) between two crops of each image, resumable like every trainer.

Every step's crop places and flips come from a generator seeded by (seed, step), drawn for the step's
global batch, so a resumed run continues exactly. Under torchrun each process contrasts its own share of
the pairs (the negatives of a pair are the other pairs on its process), as SimCLR does per device.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from EchoSynthLib.cache.dataset import CachedPairs
from EchoSynthLib.cache.store import CacheIndex
from EchoSynthLib.engine.settings import RunSettings
from EchoSynthLib.errors import InputError
from EchoSynthLib.models.features.config import RUN_DEFAULTS, EncoderConfig
from EchoSynthLib.models.features.network import KIND, PROJECTION, build_encoder, build_projection
from EchoSynthLib.store.package import save_package
from EchoSynthLib.training.cards import model_card
from EchoSynthLib.training.runs import MAIN, StepTrainer, TrainState, run_config, step_generator

VAL_CASES = 64
ENCODER_USE = (
    "A feature space for comparing sets of echo images (`echosynth evaluate`: Fréchet distance, KID, "
    "precision / recall, memorisation). Trained without labels on crops of real images, so its features "
    "follow texture, speckle and grey levels as well as anatomy. Distances in it are comparable only "
    "between reports made with the same encoder. Not for clinical use."
)


class _Pair(torch.nn.Module):
    """Encoder + projection head as one module, so DDP synchronises both in one backward."""

    def __init__(self, encoder: torch.nn.Module, head: torch.nn.Module) -> None:
        super().__init__()
        self.encoder, self.head = encoder, head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(images))


def crop_views(
    images: torch.Tensor, labels: torch.Tensor, crop: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two ``crop``-pixel views of each image (N, 1, H, W), centred on random pixels inside the sector or
    the heart (label > 0; the padding around the sector carries no texture), each flipped at random."""
    views: list[list[torch.Tensor]] = [[], []]
    height, width = images.shape[-2:]
    half = crop // 2
    for image, label in zip(images, labels, strict=True):
        inside = torch.nonzero(label[0] > 0)
        if len(inside) == 0:
            inside = torch.nonzero(torch.ones_like(label[0], dtype=torch.bool))
        for view in views:
            row, col = inside[int(torch.randint(len(inside), (1,), generator=generator))].tolist()
            top = min(max(row - half, 0), height - crop)
            left = min(max(col - half, 0), width - crop)
            patch = image[:, top : top + crop, left : left + crop]
            view.append(patch.flip(-1) if torch.rand(1, generator=generator) < 0.5 else patch)
    return torch.stack(views[0]), torch.stack(views[1])


class EncoderTrainer(StepTrainer):
    """Trains the echo encoder; ``fit`` as in ``StepTrainer``."""

    kind = KIND

    def __init__(
        self,
        data: str | Path,
        run: str | Path,
        config: EncoderConfig,
        device: str | torch.device = "auto",
        settings: RunSettings | None = None,
    ) -> None:
        from monai.losses import ContrastiveLoss

        self.cache = CacheIndex.open(data)
        manifest = self.cache.manifest
        if manifest.spatial_dims != 2:
            raise InputError(
                f"{data}: the echo encoder trains on 2D caches (3D sets are read slice by slice)"
            )
        if min(manifest.shape) < config.crop:
            raise InputError(f"{data}: images of {list(manifest.shape)} are smaller than crop={config.crop}")
        self.run = Path(run)
        self.settings = settings or RunSettings.from_dict(RUN_DEFAULTS)
        self.device = self.start_processes(device, config.batch_size)
        self.config = run_config(self.run, config)
        self.train_set = CachedPairs(self.cache, "train")
        self.val_set = CachedPairs(self.cache, "val") if self.cache.cases("val") else None
        torch.manual_seed(self.config.seed)
        encoder, head = (
            build_encoder(self.config).to(self.device),
            build_projection(self.config).to(self.device),
        )
        parameters = [*encoder.parameters(), *head.parameters()]
        optimizer = torch.optim.AdamW(
            parameters, lr=self.config.learning_rate, weight_decay=self.config.weight_decay
        )
        self.state = TrainState({MAIN: encoder, PROJECTION: head}, {MAIN: optimizer})
        self.loss = ContrastiveLoss(temperature=self.config.temperature)
        self.open_run()  # everything checked: the run folder may appear
        self.train_model = self.training_network(_Pair(encoder, head))

    def _views(self, batch: dict, step: int, stream: int) -> tuple[torch.Tensor, torch.Tensor]:
        generator = step_generator(self.config.seed, step, stream)
        first, second = crop_views(batch["image"], batch["labels"], self.config.crop, generator)
        return first.to(self.device), second.to(self.device)

    def train_step(self, batch: dict, step: int) -> dict[str, float]:
        """NT-Xent between the two views' projections, AdamW step."""
        if self.rank.distributed:  # this process's share of the step's draws: reseed by its place
            step = int(np.random.SeedSequence([step, self.rank.index]).generate_state(1)[0])
        first, second = self._views(batch, step, 0)
        loss = self.loss(self.train_model(first), self.train_model(second))
        optimizer = self.state.optimizer
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"loss": loss.item()}

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Contrastive loss and top-1 view retrieval (each view's nearest other view is its partner) on up
        to VAL_CASES validation images, with fixed crops."""
        if self.val_set is None:
            return {}
        pair = _Pair(self.state.model, self.state.networks[PROJECTION]).eval()
        count = min(VAL_CASES, len(self.val_set))
        items = [self.val_set[i] for i in range(count)]
        batch = {
            "image": torch.stack([x["image"] for x in items]),
            "labels": torch.stack([x["labels"] for x in items]),
        }
        first, second = self._views(batch, 0, 99)
        a, b = pair(first), pair(second)
        similarity = torch.nn.functional.normalize(a, dim=1) @ torch.nn.functional.normalize(b, dim=1).T
        top1 = (similarity.argmax(1) == torch.arange(count, device=similarity.device)).float().mean()
        return {"val_loss": float(self.loss(a, b)), "val_top1": float(top1)}

    def export(self) -> Path:
        """The encoder (without its projection head) as a package in ``RUN/model``."""
        card = model_card(
            self.config,
            self.cache.manifest,
            self.trained_steps,
            "echo encoder (self-supervised)",
            ENCODER_USE,
        )
        provenance = self.provenance()
        return save_package(
            self.run / "model", KIND, self.config.as_dict(), self.state.model.state_dict(), card, provenance
        )
