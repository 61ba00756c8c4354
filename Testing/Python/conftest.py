"""Shared fixtures: small phantoms made by the library itself.

Tests (and the worker processes they start, which inherit the environment) use one thread per process
for OpenMP (torch), BLAS and ITK: the networks and images are tiny, and with one core busy elsewhere,
threads that spin waiting for each other made the suite 8x slower. Set a variable to override.
"""

from __future__ import annotations

import os

for _variable in (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS",
):
    os.environ.setdefault(_variable, "1")

import pytest

from EchoSynthLib.anatomy import PhantomGrid, phantom_label_map
from EchoSynthLib.cache.store import build_cache
from EchoSynthLib.data.io import write_image, write_label_map
from EchoSynthLib.datasets import scan_dataset
from EchoSynthLib.preprocessing.prepare import PrepareSettings
from EchoSynthLib.simulation import simulate_bmode


def assert_within_one_grey_level(a, b) -> None:
    """The product's promise across batch sizes, thread counts and CPUs (docs/CLI.md, "Reproducibility"): the
    same seed gives the same image within one grey level (at under 5 % of its pixels). A network run at
    another batch size, or on other float kernels (AVX2, AVX-512), sums in another order, so some pixels
    may differ by one level; a wrong seed or a batching bug changes the whole image. (Same seed, batch size
    and machine: identical bytes.)"""
    import numpy as np

    difference = np.abs(np.asarray(a).astype(int) - np.asarray(b).astype(int))
    assert difference.max() <= 1 and (difference > 0).mean() < 0.05, (
        difference.max(),
        (difference > 0).mean(),
    )


def write_phantom_maps(folder, views, phase: str = "ED", size: int = 40):
    """Phantom label maps of ``views`` (heart seed: the position), written as ``folder/m<i>.nii.gz``."""
    maps = []
    for index, view in enumerate(views):
        grid = PhantomGrid.for_view(view, size=size)
        maps.append(phantom_label_map(view, phase, seed=index, grid=grid).labels)
        write_label_map(maps[-1], folder / f"m{index}.nii.gz")
    return maps


def package_with_settings(package, folder, **settings):
    """A copy of the model package ``package`` in ``folder`` with ``settings`` changed in its config (as a
    shipped package may carry a sampling default such as ``start_strength``); the copy's path."""
    import shutil

    shutil.copytree(package, folder)
    return edit_package_settings(folder, lambda document: document.update(settings))


def edit_package_settings(folder, edit):
    """Change a package's settings in place (``edit`` gets the settings dict) and re-seal them, as a
    package saved with those settings would be; the folder."""
    import json

    from EchoSynthLib.store.package import CONFIG, SETTINGS_SHA256, settings_sha256

    document = json.loads((folder / CONFIG).read_text())
    edit(document["settings"])
    document["classes"] = document["settings"].get("classes", {})
    document[SETTINGS_SHA256] = settings_sha256(document["settings"])
    (folder / CONFIG).write_text(json.dumps(document))
    return folder


@pytest.fixture(scope="session", autouse=True)
def feature_cache(tmp_path_factory):
    """``evaluate`` keeps features in a folder of the test session, never in the user's cache."""
    folder = tmp_path_factory.mktemp("features")
    previous = os.environ.get("ECHOSYNTH_FEATURE_CACHE")
    os.environ["ECHOSYNTH_FEATURE_CACHE"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("ECHOSYNTH_FEATURE_CACHE", None)
    else:
        os.environ["ECHOSYNTH_FEATURE_CACHE"] = previous


@pytest.fixture(scope="session")
def small_grid_2d() -> PhantomGrid:
    return PhantomGrid.for_view("4CH", size=128)


@pytest.fixture(scope="session")
def phantom_2d(small_grid_2d):
    return phantom_label_map("4CH", "ED", seed=3, grid=small_grid_2d)


@pytest.fixture(scope="session")
def phantom_3d():
    return phantom_label_map("3D", "ED", seed=2, grid=PhantomGrid.for_view("3D", size=48))


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory):
    """Six phantom patients (ED + ES) simulated, prepared to 32x32 (a cache for tiny models)."""
    root = tmp_path_factory.mktemp("phantoms")
    grid = PhantomGrid.for_view("4CH", size=64)
    for patient in range(6):
        for phase in ("ED", "ES"):
            phantom = phantom_label_map("4CH", phase, seed=patient, grid=grid)
            write_image(simulate_bmode(phantom.labels, seed=patient), root / f"pt{patient}_{phase}.nii.gz")
            write_label_map(phantom.labels, root / f"pt{patient}_{phase}_label.nii.gz")
    cache = tmp_path_factory.mktemp("caches") / "cache"  # never inside the dataset folder
    build_cache(scan_dataset("folder", root), cache, PrepareSettings(size=(32, 32)))
    return cache


@pytest.fixture(scope="session")
def tiny_cache_3d(tmp_path_factory):
    """Three simulated 16^3 phantom volumes prepared to 16x16x16 (two train, one val)."""
    root = tmp_path_factory.mktemp("volumes")
    for seed in range(3):
        phantom = phantom_label_map("3D", "ED", seed=seed, grid=PhantomGrid.for_view("3D", size=16))
        write_image(simulate_bmode(phantom.labels, seed=seed), root / f"v{seed}.nii.gz")
        write_label_map(phantom.labels, root / f"v{seed}_label.nii.gz")
    cache = tmp_path_factory.mktemp("caches3d") / "cache"
    fractions = {"train": 0.67, "val": 0.33, "test": 0.0}
    build_cache(
        scan_dataset("folder", root), cache, PrepareSettings(size=(16, 16, 16), split_fractions=fractions)
    )
    return cache


@pytest.fixture(scope="session")
def tiny_autoencoders(tiny_cache, tmp_path_factory):
    """Two tiny autoencoders run folders on ``tiny_cache`` (60 steps each): image only ('image') and image
    + labels ('pairs'); their packages are ``RUN/model``."""
    from EchoSynthLib.engine.settings import RunSettings
    from EchoSynthLib.models.autoencoder.config import AutoencoderConfig
    from EchoSynthLib.models.autoencoder.trainer import AutoencoderTrainer

    config = AutoencoderConfig(
        channels=(8, 16),
        norm_groups=8,
        latent_channels=2,
        phase_one_steps=1000,
        discriminator_channels=8,
        discriminator_layers=2,
        batch_size=4,
        learning_rate=3e-3,
    )
    run = RunSettings(
        max_steps=60, workers=0, log_every=20, val_every=60, checkpoint_every=60, sample_every=60
    )
    root = tmp_path_factory.mktemp("autoencoders")
    runs = {}
    for name, with_labels in (("image", False), ("pairs", True)):
        trainer = AutoencoderTrainer(
            tiny_cache, root / name, config.with_overrides({"with_labels": with_labels}), "cpu", run
        )
        trainer.fit()
        runs[name] = root / name
    return runs


TINY_DENOISER = {
    "channels": [16, 32],
    "attention_levels": [False, False],
    "num_head_channels": 8,
    "spade_channels": 8,
    "norm_groups": 8,
    "batch_size": 4,
    "timesteps": 50,
}


@pytest.fixture(scope="session")
def tiny_paired_model(tiny_cache, tiny_autoencoders, tmp_path_factory):
    """A tiny paired-generation (latent-pairs) package trained 4 steps on ``tiny_cache``."""
    from EchoSynthLib.engine.settings import RunSettings
    from EchoSynthLib.models.latent.config import LatentConfig
    from EchoSynthLib.models.latent.trainer import LatentTrainer

    coder = str(tiny_autoencoders["pairs"] / "model")
    config = LatentConfig.from_dict({**TINY_DENOISER, "autoencoder": coder, "conditioned": False})
    run = tmp_path_factory.mktemp("paired") / "run"
    settings = RunSettings(max_steps=4, workers=0, checkpoint_every=4, sample_every=4, sample_steps=3)
    LatentTrainer(tiny_cache, run, config, "cpu", settings).fit()
    return run / "model"


TINY_ADVERSARIAL = {
    "image_size": 32,
    "channels": [8, 16],
    "attention_levels": [False, False],
    "num_head_channels": 8,
    "spade_channels": 8,
    "norm_groups": 8,
    "discriminator_channels": [8, 8],
    "batch_size": 4,
    "r1_every": 2,
    "cosine_steps": 20,
}
ADVERSARIAL_RUN = {
    "max_steps": 6,
    "workers": 0,
    "log_every": 1,
    "val_every": 6,
    "checkpoint_every": 3,
    "sample_every": 6,
}


@pytest.fixture(scope="session")
def tiny_adversarial(tiny_cache, tmp_path_factory):
    """A tiny adversarial diffusion model trained 6 steps on ``tiny_cache`` (the trainer; its package is
    ``trainer.run / 'model'``)."""
    from EchoSynthLib.engine.settings import RunSettings
    from EchoSynthLib.models.adversarial.config import AdversarialConfig
    from EchoSynthLib.models.adversarial.trainer import AdversarialTrainer

    config = AdversarialConfig.from_dict(TINY_ADVERSARIAL)
    run = tmp_path_factory.mktemp("adversarial") / "run"
    trainer = AdversarialTrainer(tiny_cache, run, config, "cpu", RunSettings(**ADVERSARIAL_RUN))
    trainer.fit()
    return trainer
