"""Shared fixtures: small phantoms made by the library itself."""

from __future__ import annotations

import pytest

from EchoSynthLib.anatomy import PhantomGrid, phantom_label_map
from EchoSynthLib.cache.store import build_cache
from EchoSynthLib.data.io import write_image, write_label_map
from EchoSynthLib.datasets import scan_dataset
from EchoSynthLib.preprocessing.prepare import PrepareSettings
from EchoSynthLib.simulation import simulate_bmode


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
    cache = root / "cache"
    build_cache(scan_dataset("folder", root), cache, PrepareSettings(size=(32, 32)))
    return cache
