"""The autoencoder family (issue 14, first stage of the latent models): trains in two phases, resumes
exactly with both networks and both optimizers, packages both components, refuses a cache of the wrong
dimensions."""

from __future__ import annotations

import json

import pytest
import torch

from EchoSynthLib.engine.settings import RunSettings
from EchoSynthLib.errors import InputError
from EchoSynthLib.models.autoencoder.config import AutoencoderConfig
from EchoSynthLib.models.autoencoder.network import Autoencoder
from EchoSynthLib.models.autoencoder.trainer import AutoencoderTrainer

TINY = AutoencoderConfig(
    channels=(8, 16),
    norm_groups=8,
    latent_channels=2,
    with_labels=True,
    phase_one_steps=2,
    discriminator_channels=8,
    discriminator_layers=2,
    batch_size=4,
)
RUN = RunSettings(max_steps=4, workers=0, log_every=1, val_every=4, checkpoint_every=2)


@pytest.mark.numerics  # compares float results: run again with lower CPU kernels (.ci/run)
def test_two_phases_exact_resume_and_a_package_of_two_components(tiny_cache, tmp_path):
    straight = AutoencoderTrainer(tiny_cache, tmp_path / "straight", TINY, "cpu", RUN)
    straight.fit()
    log = [json.loads(line) for line in (tmp_path / "straight" / "log.jsonl").read_text().splitlines()]
    assert "adversarial" not in log[1] and {"adversarial", "ssim", "discriminator"} <= set(log[2])
    assert {"val_ssim", "val_spectrum", "val_dice_lv_cavity"} <= set(log[-1]) and log[-1]["val_spectrum"] > 0
    assert (tmp_path / "straight" / "samples" / "step_000004.png").is_file()  # real and reconstructed
    resumed = AutoencoderTrainer(tiny_cache, tmp_path / "resumed", TINY, "cpu", RUN)
    resumed.fit(stop_at=2)
    resumed = AutoencoderTrainer(tiny_cache, tmp_path / "resumed", TINY, "cpu", RUN)
    assert resumed.state.step == 2
    resumed.fit()
    for name in ("model", "discriminator"):
        expected = straight.state.networks[name].state_dict()
        for key, value in resumed.state.networks[name].state_dict().items():
            torch.testing.assert_close(value, expected[key], rtol=0, atol=0, msg=f"{name}.{key}")
    package = json.loads((tmp_path / "straight" / "model" / "config.json").read_text())
    assert [c["name"] for c in package["components"]] == ["model", "discriminator"]
    loaded = Autoencoder.load(tmp_path / "straight" / "model", device="cpu")
    inputs = torch.zeros((1, 6, 32, 32))
    mu, sigma = loaded.encode(inputs)
    assert mu.shape == sigma.shape == (1, 2, 16, 16) and loaded.decode(mu).shape == inputs.shape


def test_the_loss_falls(tiny_cache, tmp_path):
    config = TINY.with_overrides({"with_labels": False, "phase_one_steps": 1000, "learning_rate": 3e-3})
    trainer = AutoencoderTrainer(
        tiny_cache, tmp_path / "run", config, "cpu", RUN.with_overrides({"max_steps": 30})
    )
    trainer.fit()
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert sum(r["l1"] for r in log[-5:]) < 0.7 * sum(r["l1"] for r in log[:5])
    # The reconstructions' power spectrum comes closer to the images' as the autoencoder learns.
    spectra = [r["val_spectrum"] for r in log if "val_spectrum" in r]
    assert spectra[-1] < 0.7 * spectra[0], spectra


def test_a_cache_of_other_dimensions_or_sides_is_refused(tiny_cache, tmp_path):
    with pytest.raises(InputError, match="2D cache cannot train a 3D autoencoder"):
        AutoencoderTrainer(tiny_cache, tmp_path / "a", TINY.with_overrides({"spatial_dims": 3}), "cpu", RUN)
    deep = TINY.with_overrides({"channels": (8,) * 7})
    with pytest.raises(InputError, match="multiples of 64"):
        AutoencoderTrainer(tiny_cache, tmp_path / "b", deep, "cpu", RUN)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_3d_autoencoder_trains_on_a_3d_cache(tiny_cache_3d, tmp_path):
    cache = tiny_cache_3d
    config = TINY.with_overrides({"spatial_dims": 3, "batch_size": 2})
    trainer = AutoencoderTrainer(cache, tmp_path / "run", config, "cpu", RUN.with_overrides({"max_steps": 3}))
    trainer.fit()
    loaded = Autoencoder.load(tmp_path / "run" / "model", device="cpu")
    mu, _ = loaded.encode(torch.zeros((1, 6, 16, 16, 16)))
    assert mu.shape == (1, 2, 8, 8, 8)
    assert (tmp_path / "run" / "samples" / "step_000003.png").is_file()


def test_the_echo_encoder_perceptual_term_measures_lost_speckle_and_trains(tiny_cache, tmp_path):
    """The offline perceptual term (shipped echo encoder): zero for the same images, larger for a blurred
    copy than for a slightly noisier one, gradients reach the images, and phase two logs it."""
    from EchoSynthLib.cache.dataset import CachedPairs
    from EchoSynthLib.models.autoencoder.perceptual import EchoPerceptualLoss

    loss = EchoPerceptualLoss("echo-encoder-camus")
    images = torch.stack([CachedPairs(tiny_cache, "train")[i]["image"] for i in range(4)])
    blurred = torch.nn.functional.avg_pool2d(images, 5, stride=1, padding=2)
    noisy = images + 0.02 * torch.randn(images.shape, generator=torch.Generator().manual_seed(0))
    assert float(loss(images, images)) == 0.0
    assert float(loss(blurred, images)) > float(loss(noisy, images)) > 0.0
    moving = blurred.clone().requires_grad_(True)
    loss(moving, images).backward()
    assert moving.grad is not None and moving.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in loss.net.parameters())
    config = TINY.with_overrides({"encoder_weight": 0.1, "phase_one_steps": 1})
    AutoencoderTrainer(
        tiny_cache, tmp_path / "run", config, "cpu", RUN.with_overrides({"max_steps": 2})
    ).fit()
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert "perceptual" in log[-1] and "perceptual" not in log[0]
    with pytest.raises(InputError, match="needs a 2D autoencoder"):
        TINY.with_overrides({"encoder_weight": 0.1, "spatial_dims": 3})


class _Exact(torch.nn.Module):
    """An autoencoder that gives back exactly what it is given (the latents are the inputs)."""

    def encode(self, inputs):
        return inputs, torch.zeros_like(inputs)

    def decode(self, latents):
        return latents


def test_reconstruction_scores_are_perfect_for_an_exact_autoencoder_and_see_a_wrong_label():
    from EchoSynthLib.data.labels import ClassLayout, schema_named
    from EchoSynthLib.models.autoencoder.reconstruction import reconstruction_scores

    layout = ClassLayout.of(schema_named("echosynth"))
    config = TINY.with_overrides({"classes": layout})
    image = torch.rand((2, 1, 32, 32)) * 2 - 1
    values = torch.zeros((2, 32, 32), dtype=torch.long)
    values[:, 8:24, 8:24] = 1  # cavity in both cases
    values[0, 2:6, 2:6] = 3  # an atrium in the first case only
    labels = torch.nn.functional.one_hot(values, len(layout)).permute(0, 3, 1, 2).float()
    scores, images = reconstruction_scores(_Exact(), config, image, labels)
    assert images.shape == (2, 32, 32)
    torch.testing.assert_close(torch.from_numpy(scores["ssim"]), torch.ones(2))
    assert list(scores["dice_lv_cavity"]) == [1.0, 1.0]
    assert scores["dice_left_atrium"][0] == 1.0 and torch.isnan(torch.tensor(scores["dice_left_atrium"][1]))

    class Swapped(_Exact):
        """Gives the cavity back as myocardium in half the cavity, and a noisy image."""

        def decode(self, latents):
            out = latents.clone()
            out[:, 0] += 0.5 * torch.randn_like(out[:, 0])
            out[:, 1, 8:16], out[:, 2, 8:16] = latents[:, 2, 8:16], latents[:, 1, 8:16]
            return out

    scores, _ = reconstruction_scores(Swapped(), config, image, labels)
    assert (scores["ssim"] < 0.9).all() and (scores["dice_lv_cavity"] < 0.8).all()
    assert scores["dice_left_atrium"][0] == 1.0
    # The image-only autoencoder: no label scores, the image is all it gets.
    scores, _ = reconstruction_scores(_Exact(), config.with_overrides({"with_labels": False}), image, labels)
    assert set(scores) == {"ssim"}
