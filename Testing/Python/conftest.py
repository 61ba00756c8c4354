"""Shared fixtures: small phantoms made by the library itself."""

from __future__ import annotations

import pytest

from EchoSynthLib.anatomy import PhantomGrid, phantom_label_map


@pytest.fixture(scope="session")
def small_grid_2d() -> PhantomGrid:
    return PhantomGrid.for_view("4CH", size=128)


@pytest.fixture(scope="session")
def phantom_2d(small_grid_2d):
    return phantom_label_map("4CH", "ED", seed=3, grid=small_grid_2d)


@pytest.fixture(scope="session")
def phantom_3d():
    return phantom_label_map("3D", "ED", seed=2, grid=PhantomGrid.for_view("3D", size=48))
