"""Training the label-adherence segmenter on the real images of a cache (MONAI U-Net, Dice + cross-entropy).

The paired augmentation (flip, small affine, gamma, intensity, noise) runs in the main process, reseeded
per step, so resumed runs are exact like the diffusion trainer's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from EchoSynthLib.cache.dataset import CachedPairs
from EchoSynthLib.cache.store import CacheIndex
from EchoSynthLib.engine.settings import RunSettings
from EchoSynthLib.errors import InputError
from EchoSynthLib.metrics.dice import HEART_STRUCTURES, dice_per_structure
from EchoSynthLib.models.segmenter.network import KIND, RUN_DEFAULTS, SegmenterConfig, build_segmenter
from EchoSynthLib.store.package import save_package
from EchoSynthLib.training.cards import model_card
from EchoSynthLib.training.runs import StepTrainer, TrainState, run_config


class SegmenterTrainer(StepTrainer):
    """Trains the adherence segmenter; ``fit`` as in ``StepTrainer``."""

    kind = KIND

    def __init__(
        self,
        data: str | Path,
        run: str | Path,
        config: SegmenterConfig,
        device: str | torch.device = "auto",
        settings: RunSettings | None = None,
    ) -> None:
        from monai.losses import DiceCELoss

        from EchoSynthLib.augmentation import paired_augmentation

        self.cache = CacheIndex.open(data)
        if self.cache.manifest.spatial_dims != 2:
            raise InputError(f"{data}: the segmenter trains on 2D caches")
        self.run = Path(run)
        self.settings = settings or RunSettings.from_dict(RUN_DEFAULTS)
        config = config.with_overrides({"classes": self.cache.manifest.layout})
        self.device = self.start_processes(device, config.batch_size)
        self.config = run_config(self.run, config)
        self.train_set = CachedPairs(self.cache, "train")
        self.val_set = CachedPairs(self.cache, "val") if self.cache.cases("val") else None
        torch.manual_seed(self.config.seed)
        model = build_segmenter(self.config).to(self.device)
        optimizer = torch.optim.Adam(model.parameters(), lr=self.config.learning_rate)
        self.state = TrainState.single(model, optimizer)
        self.loss = DiceCELoss(to_onehot_y=True, softmax=True)
        self.augment = paired_augmentation(spatial_dims=2) if self.config.augment else None
        self.open_run()  # everything checked: the run folder may appear
        self.train_model = self.training_network(self.state.model)

    def train_step(self, batch: dict, step: int) -> dict[str, float]:
        """Augment (each sample seeded by step and its place in the global batch), Dice + CE, Adam step."""
        images, labels = batch["image"], batch["labels"]
        if self.augment is not None:
            pairs = []
            for j, (image, label) in enumerate(zip(images, labels, strict=True)):
                place = self.rank.index + j * self.rank.world
                seed = np.random.SeedSequence([self.config.seed, step, place]).generate_state(1)[0]
                self.augment.set_random_state(seed=int(seed))
                pairs.append(self.augment({"image": image, "labels": label}))
            images = torch.stack([torch.as_tensor(p["image"]) for p in pairs])
            labels = torch.stack([torch.as_tensor(p["labels"]) for p in pairs])
        images = images.float().to(self.device)
        targets = torch.from_numpy(self.config.classes.channels_of(labels.numpy())).to(self.device)
        loss = self.loss(self.train_model(images), targets)
        self.state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.state.optimizer.step()
        return {"loss": loss.item()}

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Mean Dice per heart structure on the validation split."""
        if self.val_set is None:
            return {}
        self.state.model.eval()
        values = self.config.classes.channel_values
        predicted, truth = [], []
        for start in range(0, len(self.val_set), 32):
            items = [self.val_set[i] for i in range(start, min(len(self.val_set), start + 32))]
            images = torch.stack([x["image"] for x in items]).to(self.device)
            predicted.append(values[self.state.model(images).argmax(1).cpu().numpy()])
            truth.append(np.stack([x["labels"][0].numpy() for x in items]))
        scores = dice_per_structure(np.concatenate(predicted), np.concatenate(truth), self.config.classes)
        return {
            f"val_dice_{name}": float(np.nanmean(scores[name])) for name in HEART_STRUCTURES if name in scores
        }

    def export(self) -> Path:
        """The network as a model package in ``RUN/model``."""
        use = (
            "Measuring label adherence and the downstream value of synthetic images (`echosynth validate`, "
            "`echosynth evaluate --segmenter`). A small network trained briefly: not a clinical segmenter."
        )
        card = model_card(
            self.config, self.cache.manifest, self.trained_steps, "label-adherence segmenter", use
        )
        provenance = self.provenance()
        return save_package(
            self.run / "model", KIND, self.config.as_dict(), self.state.model.state_dict(), card, provenance
        )
