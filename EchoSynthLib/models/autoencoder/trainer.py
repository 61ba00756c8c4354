"""Training the autoencoder on a cache, resumable exactly (two networks, two optimizers).

Phase one (``phase_one_steps``): L1 on the image, cross-entropy + Dice on the label logits (with labels),
KL to the unit Gaussian. Phase two adds the adversarial term (MONAI's least-squares patch loss; the
discriminator gets its own step), 1 - SSIM and, with ``encoder_weight``, the echo-encoder perceptual
distance (``perceptual``). The latent draw of every sample comes from a generator
seeded by (seed, step), drawn for the step's global batch, so a resumed run continues exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from EchoSynthLib.cache.dataset import CachedPairs
from EchoSynthLib.cache.store import CacheIndex
from EchoSynthLib.engine.settings import RunSettings
from EchoSynthLib.errors import InputError
from EchoSynthLib.models.autoencoder.config import RUN_DEFAULTS, AutoencoderConfig
from EchoSynthLib.models.autoencoder.network import (
    DISCRIMINATOR,
    KIND,
    build_autoencoder,
    build_discriminator,
)
from EchoSynthLib.models.autoencoder.reconstruction import autoencoder_inputs, reconstruction_scores
from EchoSynthLib.store.package import save_package
from EchoSynthLib.training.cards import model_card
from EchoSynthLib.training.runs import MAIN, StepTrainer, TrainState, run_config, step_generator

VAL_CASES = 32
AUTOENCODER_USE = (
    "The first stage of EchoSynth's latent diffusion models: it maps echo images (and their label maps) to "
    "latents and back. Check its reconstruction SSIM and label Dice in the card before building on it."
)


class _Reconstruct(torch.nn.Module):
    """Encode, draw the latents with the given noise, decode: one forward, so DDP and ``torch.compile`` see
    the whole autoencoder step."""

    def __init__(self, autoencoder: torch.nn.Module) -> None:
        super().__init__()
        self.autoencoder = autoencoder

    def forward(self, inputs: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, ...]:
        mu, sigma = self.autoencoder.encode(inputs)
        return self.autoencoder.decode(mu + noise * sigma), mu, sigma


class AutoencoderTrainer(StepTrainer):
    """Trains the autoencoder and its discriminator; ``fit`` as in ``StepTrainer``."""

    kind = KIND

    def __init__(
        self,
        data: str | Path,
        run: str | Path,
        config: AutoencoderConfig,
        device: str | torch.device = "auto",
        settings: RunSettings | None = None,
    ) -> None:
        from monai.losses import DiceCELoss, PatchAdversarialLoss, SSIMLoss

        from EchoSynthLib.training import distributed

        self.cache = CacheIndex.open(data)
        manifest = self.cache.manifest
        if manifest.spatial_dims != config.spatial_dims:
            raise InputError(
                f"{data}: a {manifest.spatial_dims}D cache cannot train a {config.spatial_dims}D autoencoder "
                f"(--set spatial_dims={manifest.spatial_dims})"
            )
        if any(n % config.downsampling for n in manifest.shape):
            raise InputError(
                f"{data}: image sides {list(manifest.shape)} must be multiples of {config.downsampling} "
                f"({len(config.channels)} levels)"
            )
        self.run = Path(run)
        self.settings = settings or RunSettings.from_dict(RUN_DEFAULTS)
        config = config.with_overrides({"classes": manifest.layout})
        self.device = self.start_processes(device, config.batch_size)
        self.config = run_config(self.run, config)
        self.train_set = CachedPairs(self.cache, "train", one_hot=True)
        self.val_set = CachedPairs(self.cache, "val", one_hot=True) if self.cache.cases("val") else None
        torch.manual_seed(self.config.seed)
        autoencoder = build_autoencoder(self.config).to(self.device)
        discriminator = build_discriminator(self.config).to(self.device)
        optimizers = {
            MAIN: torch.optim.Adam(autoencoder.parameters(), lr=self.config.learning_rate),
            DISCRIMINATOR: torch.optim.Adam(
                discriminator.parameters(), lr=self.config.discriminator_learning_rate
            ),
        }
        self.state = TrainState({MAIN: autoencoder, DISCRIMINATOR: discriminator}, optimizers)
        dims = self.config.spatial_dims
        self.labels_loss = DiceCELoss(softmax=True)
        self.adversarial = PatchAdversarialLoss(criterion="least_squares")
        self.ssim = SSIMLoss(spatial_dims=dims, data_range=2.0, win_size=7)
        self.perceptual = None
        if self.config.encoder_weight > 0:
            from EchoSynthLib.models.autoencoder.perceptual import EchoPerceptualLoss

            self.perceptual = EchoPerceptualLoss(self.config.encoder, self.device)
        self.open_run()  # everything checked: the run folder may appear
        self.train_model = self.training_network(_Reconstruct(autoencoder))
        self.train_discriminator = distributed.wrap(discriminator, self.rank, self.device)

    def _inputs(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        image = batch["image"].to(self.device).float()
        labels = batch["labels"].to(self.device).float()
        return autoencoder_inputs(self.config, image, labels), labels

    def _noise(self, step: int, shape: tuple[int, ...], count: int, train: bool) -> torch.Tensor:
        generator = step_generator(self.config.seed, step, 0 if train else 99)
        noise = torch.randn((count, *shape), generator=generator)
        if train:
            noise = self.rank.part(noise)
        return noise.to(self.device)

    def _latent_shape(self, inputs: torch.Tensor) -> tuple[int, ...]:
        return (self.config.latent_channels, *(n // self.config.downsampling for n in inputs.shape[2:]))

    def train_step(self, batch: dict, step: int) -> dict[str, float]:
        """Reconstruction, label and KL losses (plus adversarial and SSIM in phase two); the
        discriminator's own step in phase two."""
        inputs, labels = self._inputs(batch)
        noise = self._noise(step, self._latent_shape(inputs), self.config.batch_size, train=True)
        output, mu, sigma = self.train_model(inputs, noise)
        image, reconstruction = inputs[:, :1], output[:, :1]
        losses = {"l1": (reconstruction - image).abs().mean()}
        kl = 0.5 * (mu.pow(2) + sigma.pow(2) - torch.log(sigma.pow(2) + 1e-12) - 1)
        losses["kl"] = kl.sum(dim=tuple(range(1, kl.ndim))).mean()
        total = losses["l1"] + self.config.kl_weight * losses["kl"]
        if self.config.with_labels:
            losses["labels"] = self.labels_loss(output[:, 1:], labels)
            total = total + self.config.label_weight * losses["labels"]
        second_phase = step >= self.config.phase_one_steps
        if second_phase:
            fake = self.train_discriminator(reconstruction)[-1]
            losses["adversarial"] = self.adversarial(fake, target_is_real=True, for_discriminator=False)
            losses["ssim"] = self.ssim(reconstruction, image)
            total = (
                total
                + self.config.adversarial_weight * losses["adversarial"]
                + self.config.ssim_weight * losses["ssim"]
            )
            if self.perceptual is not None:
                losses["perceptual"] = self.perceptual(reconstruction, image)
                total = total + self.config.encoder_weight * losses["perceptual"]
        optimizer = self.state.optimizer
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        if second_phase:
            critic = self.state.optimizers[DISCRIMINATOR]
            critic.zero_grad(set_to_none=True)
            fake = self.train_discriminator(reconstruction.detach())[-1]
            real = self.train_discriminator(image)[-1]
            loss = 0.5 * (
                self.adversarial(fake, target_is_real=False, for_discriminator=True)
                + self.adversarial(real, target_is_real=True, for_discriminator=True)
            )
            (self.config.adversarial_weight * loss).backward()
            critic.step()
            losses["discriminator"] = loss
        return {k: float(v.detach()) for k, v in losses.items()} | {"loss": float(total.detach())}

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """SSIM of the reconstructed images (from the posterior mean), the distance of their power spectrum
        to the originals' (``val_spectrum``, decades: speckle an autoencoder smooths away shows as lost
        high-frequency power) and, with labels, Dice of the label argmax, on up to VAL_CASES validation
        cases."""
        from EchoSynthLib.metrics.image_metrics import spectrum_distance

        if self.val_set is None:
            return {}
        count = min(VAL_CASES, len(self.val_set))
        items = [self.val_set[i] for i in range(count)]
        image = torch.stack([x["image"] for x in items]).to(self.device).float()
        labels = torch.stack([x["labels"] for x in items]).to(self.device).float()
        scores, images = reconstruction_scores(self.state.model.eval(), self.config, image, labels)
        result = {
            "val_ssim": float(scores.pop("ssim").mean()),
            "val_spectrum": spectrum_distance(image[:, 0].cpu().numpy(), images),
        }
        return result | {f"val_{k}": float(np.nanmean(v)) for k, v in scores.items() if np.any(~np.isnan(v))}

    @torch.no_grad()
    def sample_grid(self, path: Path, count: int = 8) -> Path:
        """Real images and their reconstructions (posterior mean) for the first ``count`` validation cases;
        a 3D case shows its middle slice."""
        from EchoSynthLib.visualization import grey_of, save_grid

        source = self.val_set or self.train_set
        items = [source[i] for i in range(min(count, len(source)))]
        batch = {k: torch.stack([x[k] for x in items]) for k in ("image", "labels")}
        inputs, _ = self._inputs(batch)
        model = self.state.model.eval()
        output = model.decode(model.encode(inputs)[0])[:, 0].clamp(-1, 1)

        rows = [
            ("real", [grey_of(x) for x in inputs[:, 0]]),
            ("reconstruction", [grey_of(x) for x in output]),
        ]
        return save_grid(rows, path)

    def export(self) -> Path:
        """The autoencoder and its discriminator (to continue training from) as a package in ``RUN/model``."""
        card = model_card(
            self.config, self.cache.manifest, self.trained_steps, "autoencoder", AUTOENCODER_USE
        )
        components = {
            MAIN: self.state.model.state_dict(),
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
