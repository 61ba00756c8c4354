"""The echo encoder family: crops inside the sector, seeded views, exact resume, package, features."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from EchoSynthLib.cli.main import main
from EchoSynthLib.engine.settings import RunSettings
from EchoSynthLib.errors import InputError
from EchoSynthLib.models.features.config import EncoderConfig
from EchoSynthLib.models.features.network import EchoEncoder
from EchoSynthLib.models.features.trainer import EncoderTrainer, crop_views
from EchoSynthLib.training.runs import step_generator

TINY = EncoderConfig(channels=(4, 8, 8, 16), blocks=(1, 1, 1, 1), projection=8, crop=16, batch_size=4)
RUN = RunSettings(max_steps=4, workers=0, log_every=2, val_every=4, checkpoint_every=2)


def test_views_are_crops_inside_the_sector_and_seeded():
    images = torch.arange(2 * 32 * 32, dtype=torch.float32).reshape(2, 1, 32, 32)
    labels = torch.zeros((2, 1, 32, 32), dtype=torch.int64)
    labels[:, :, 20:28, 4:10] = 4  # only this block is inside the sector
    first, second = crop_views(images, labels, 8, step_generator(0, 5, 0))
    again, _ = crop_views(images, labels, 8, step_generator(0, 5, 0))
    other, _ = crop_views(images, labels, 8, step_generator(0, 6, 0))
    assert first.shape == second.shape == (2, 1, 8, 8) and torch.equal(first, again)
    assert not torch.equal(first, other)
    for view in (first, second):
        for image, crop in zip(images, view, strict=True):
            rows, cols = np.nonzero(np.isin(image[0].numpy(), crop.numpy()))
            assert 16 <= rows.mean() <= 31 and cols.mean() <= 14  # centred on the sector block


@pytest.mark.numerics  # compares float results: run again with lower CPU kernels (.ci/run)
def test_the_encoder_trains_resumes_exports_and_embeds(tiny_cache, tmp_path):
    straight = EncoderTrainer(tiny_cache, tmp_path / "straight", TINY, "cpu", RUN)
    straight.fit()
    resumed = EncoderTrainer(tiny_cache, tmp_path / "resumed", TINY, "cpu", RUN)
    resumed.fit(stop_at=2)
    resumed = EncoderTrainer(tiny_cache, tmp_path / "resumed", TINY, "cpu", RUN)
    assert resumed.state.step == 2
    resumed.fit()
    for name, value in straight.state.model.state_dict().items():
        torch.testing.assert_close(resumed.state.model.state_dict()[name], value, rtol=0, atol=0)
    log = [json.loads(line) for line in (tmp_path / "straight" / "log.jsonl").read_text().splitlines()]
    assert {"val_loss", "val_top1"} <= set(log[-1])
    package = json.loads((tmp_path / "straight" / "model" / "config.json").read_text())
    assert package["kind"] == "echoencoder2d" and package["task"] == "image -> features"
    encoder = EchoEncoder.load(tmp_path / "straight" / "model", device="cpu")
    images = np.random.default_rng(0).uniform(-1, 1, (5, 40, 48)).astype(np.float32)
    features = encoder.embed(images, batch_size=2)
    assert features.shape == (5, 16) and np.isfinite(features).all()
    np.testing.assert_allclose(encoder.embed(images[:2]), features[:2], rtol=1e-5, atol=1e-6)


def test_the_encoder_cli_and_its_refusals(tiny_cache, tmp_path, capsys):
    settings = ["--set=channels=[4, 8, 8, 16]", "--set=batch_size=4", "--set=crop=16"]
    run = ["train", "features", "--data", str(tiny_cache), "--out", str(tmp_path / "run"), *settings]
    assert main([*run, "--set=max_steps=1", "--set=workers=0"]) == 0
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
    assert main([*run[:-1], "--set=crop=64"]) == 2
    assert "smaller than crop=64" in capsys.readouterr().err
    with pytest.raises(InputError, match="4 entries, one per stage"):
        EncoderConfig(channels=(8, 16), blocks=(1, 1))


def test_the_shipped_echo_encoder_loads_and_carries_its_terms(monkeypatch):
    """The bundled CAMUS encoder: a format-2 package under the 16 MB limit, the CC BY-NC-SA terms and the
    evaluation numbers in its card, features for a 128x128 image."""
    from EchoSynthLib.evaluation.feature_spaces import DEFAULT_ENCODER
    from EchoSynthLib.store.registry import MODELS_DIR, resolve_model

    monkeypatch.delenv("ECHOSYNTH_BUNDLED_MODELS", raising=False)
    folder = resolve_model(DEFAULT_ENCODER, kind="echoencoder2d")
    assert folder == MODELS_DIR / DEFAULT_ENCODER
    assert all(p.stat().st_size <= 16 * 2**20 for p in folder.iterdir())
    card = (folder / "MODEL_CARD.md").read_text()
    assert "CC BY-NC-SA 4.0" in card and "Trained steps: 4000" in card and "Fréchet distance" in card
    encoder = EchoEncoder.load(folder, device="cpu")
    image = np.full((1, 128, 128), -1.0, np.float32)
    image[0, 20:100, 30:98] = np.random.default_rng(0).uniform(-0.8, 0.6, (80, 68))
    features = encoder.embed(image)
    assert features.shape == (1, 256) and np.isfinite(features).all() and features.any()
