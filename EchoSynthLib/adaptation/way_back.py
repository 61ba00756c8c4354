"""The way back (``adapt --way-back STEPS``): from the user's scanner's look to the base model's.

A source-guided translator (default ``adapt.DEFAULT_TRANSLATOR``, trained to undo random chains of
degradations) is fine-tuned on pairs made with the fitted look: each of the base's images of phantom maps
(already drawn for the fit) is the target, the same image in the fitted look (fresh noise per step) the
source. The translator then undoes this scanner's look in particular, and ``translate --model
OUT/way-back`` takes the scanner's images to the base's look. The run lives in the adapt work folder (a
stopped run resumes at its last checkpoint) and its package is copied into the adapted model.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from EchoSynthLib.models.adapted.look import FittedLook
from EchoSynthLib.models.adversarial.trainer import AdversarialTrainer

FOLDER = "way-back"  # the translator's package inside the adapted model
# The fine-tune's recipe (the translator relay's: a strong L1 keeps the anatomy, a slow generator keeps
# what the translator knew, a quick discriminator learns the base's look).
RECIPE = {
    "guide": "labels+source",
    "l1_weight": 5.0,
    "learning_rate": 5e-5,
    "discriminator_learning_rate": 3e-4,
    "r1_gamma": 0.05,
    "batch_size": 8,
}
CHECKPOINT_EVERY = 10


class WayBackTrainer(AdversarialTrainer):
    """An adversarial trainer whose source guides are the targets in one fitted look (training and
    validation alike), not random chains."""

    def __init__(self, data, run, config, look: FittedLook, device, settings) -> None:
        self.look = look
        super().__init__(data, run, config, device, settings)

    def _image_guides(self, batch: dict, split: str, draws: dict | None = None) -> torch.Tensor:
        """Each image in the fitted look (training: noise from the step's draws; else from its place)."""
        image, inside = self._source(batch)
        seeds = draws["look_seed"].tolist() if draws is not None else range(image.shape[0])
        looked = [self.look(image[b : b + 1], inside[b : b + 1], int(s) % 2**31) for b, s in enumerate(seeds)]
        return torch.cat(looked).to(self.device)


def training_cache(folder: Path, images: torch.Tensor, labels: np.ndarray, size: int):
    """The base's images (B, 1, H, W) and their label maps (B, H, W) as a training cache of ``size`` pixels
    (``write_prepared_cache``; a complete one left by a stopped run is kept)."""
    from EchoSynthLib.cache.store import CacheIndex, write_prepared_cache
    from EchoSynthLib.errors import InputError

    try:
        kept = CacheIndex.open(folder)
        if len(kept.cases("train")) == images.shape[0] and tuple(kept.manifest.shape) == (size, size):
            return kept
    except InputError:
        pass  # none yet, or a part: written (whole) below
    from EchoSynthLib.preprocessing.prepare import PreparedCase, PrepareSettings

    if images.shape[-1] != size:
        images = torch.nn.functional.interpolate(images, size=(size, size), mode="area")
        picked = torch.nn.functional.interpolate(
            torch.from_numpy(labels[:, None].astype(np.float32)), size=(size, size), mode="nearest"
        )
        labels = picked[:, 0].numpy().astype(np.uint8)
    cases = [
        PreparedCase(f"phantom{k:04d}", f"phantom{k:04d}", images[k, 0].numpy(), labels[k], {})
        for k in range(images.shape[0])
    ]
    return write_prepared_cache(folder, {"train": cases}, PrepareSettings(size=(size, size)), "adapt")


def fine_tune(
    translator: str,
    look: FittedLook,
    images: torch.Tensor,
    labels: np.ndarray,
    work: Path,
    steps: int,
    device: str,
    progress: Callable[[int, int], None] | None = None,
    seed: int = 0,
) -> tuple[Path, int]:
    """Fine-tune ``translator`` for ``steps`` steps to undo ``look`` on the base's ``images`` (``seed``: the
    run's draws); its package (``work/way-back-run/model``) and the steps it was trained. Resumes a stopped
    run of the same work folder (up to ``steps``, or as far as it went)."""
    from EchoSynthLib.engine.settings import RunSettings
    from EchoSynthLib.models.adversarial.config import AdversarialConfig
    from EchoSynthLib.store.package import read_package_header
    from EchoSynthLib.store.registry import resolve_model

    size = int(read_package_header(resolve_model(translator))["settings"]["image_size"])
    data = training_cache(work / "way-back-data", images, labels, size)
    settings = RunSettings(
        max_steps=steps,
        workers=0,
        log_every=CHECKPOINT_EVERY,
        val_every=10**9,
        sample_every=10**9,
        checkpoint_every=CHECKPOINT_EVERY,
        init=translator,
    )
    config = AdversarialConfig.from_dict({**RECIPE, "image_size": size, "seed": seed})
    trainer = WayBackTrainer(data.path, work / "way-back-run", config, look, device, settings)
    trainer.fit(progress=None if progress is None else lambda step, _: progress(step, steps))
    return trainer.run / "model", trainer.state.step
