"""Phantom anatomy: plausibility of the generated label maps."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from EchoSynthLib.anatomy import PhantomGrid, phantom_label_map
from EchoSynthLib.data.labels import Structure
from EchoSynthLib.errors import InputError

CAVITY, MYO, ATRIUM, SECTOR = (
    s.label for s in (Structure.LV_CAVITY, Structure.LV_MYOCARDIUM, Structure.LEFT_ATRIUM, Structure.SECTOR)
)
GRID_2D = PhantomGrid.for_view("4CH", size=128)
CASES_2D = [(view, phase, seed) for view in ("4CH", "2CH") for phase in ("ED", "ES") for seed in (0, 1, 2, 3)]


def _components(mask: np.ndarray) -> int:
    return ndimage.label(mask)[1]


@pytest.mark.parametrize(("view", "phase", "seed"), CASES_2D)
def test_2d_structures_present_connected_inside_sector(view, phase, seed):
    phantom = phantom_label_map(view, phase, seed, GRID_2D)
    labels = phantom.labels.array[0]
    for value in (CAVITY, MYO, ATRIUM):
        assert _components(labels == value) == 1, f"structure {value} is missing or split"
    inside = phantom.sector.mask(phantom.labels)[0]
    assert not (labels[~inside]).any(), "labels outside the sector"
    assert (labels[inside] != 0).all(), "sector voxels left as outside-background"


@pytest.mark.parametrize(("view", "phase", "seed"), CASES_2D)
def test_2d_myocardium_encloses_cavity_except_at_base_where_atrium_sits(view, phase, seed):
    labels = phantom_label_map(view, phase, seed, GRID_2D).labels.array[0]
    cavity = labels == CAVITY
    ring = ndimage.binary_dilation(cavity) & ~cavity
    neighbours = labels[ring]
    assert np.isin(neighbours, (MYO, ATRIUM)).mean() > 0.97
    assert (neighbours == MYO).mean() > 0.6
    # Where the cavity meets the atrium it is at the base: the deepest part of the cavity.
    rows = np.nonzero(ring & (labels == ATRIUM))[0]
    cavity_rows = np.nonzero(cavity)[0]
    assert rows.size > 0
    assert rows.min() > cavity_rows.min() + 0.6 * (cavity_rows.max() - cavity_rows.min())


@pytest.mark.parametrize(("view", "seed"), [(v, s) for v in ("4CH", "2CH") for s in range(4)])
def test_2d_atrium_below_ventricle_and_ed_cavity_larger(view, seed):
    ed = phantom_label_map(view, "ED", seed, GRID_2D).labels.array[0]
    es = phantom_label_map(view, "ES", seed, GRID_2D).labels.array[0]
    for labels in (ed, es):
        atrium_row = ndimage.center_of_mass(labels == ATRIUM)[0]
        cavity_row = ndimage.center_of_mass(labels == CAVITY)[0]
        assert atrium_row > cavity_row
    assert (ed == CAVITY).sum() > 1.2 * (es == CAVITY).sum()
    assert (es == ATRIUM).sum() > (ed == ATRIUM).sum()


def test_3d_shells_and_sector():
    grid = PhantomGrid.for_view("3D", size=48)
    ed = phantom_label_map("3D", "ED", seed=4, grid=grid)
    es = phantom_label_map("3D", "ES", seed=4, grid=grid)
    labels = ed.labels.array
    assert labels.shape == (48, 48, 48)
    assert _components(labels == CAVITY) == 1 and _components(labels == MYO) == 1
    assert not (labels == ATRIUM).any()
    assert not labels[~ed.sector.mask(ed.labels)].any()
    cavity = labels == CAVITY
    ring = ndimage.binary_dilation(cavity) & ~cavity
    assert (labels[ring] == MYO).mean() > 0.8  # closed except the mitral plane
    assert cavity.sum() > 1.2 * (es.labels.array == CAVITY).sum()


def test_same_seed_same_map_and_other_seed_differs():
    a = phantom_label_map("2CH", "ES", 11, GRID_2D).labels.array
    b = phantom_label_map("2CH", "ES", 11, GRID_2D).labels.array
    c = phantom_label_map("2CH", "ES", 12, GRID_2D).labels.array
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()


def test_fixed_parameters_are_used():
    short = phantom_label_map("4CH", "ED", 0, GRID_2D, lv_length_mm=70.0)
    long = phantom_label_map("4CH", "ED", 0, GRID_2D, lv_length_mm=92.0)
    assert short.heart.lv_length_mm == 70.0
    rows = [np.nonzero(p.labels.array[0] == CAVITY)[0] for p in (short, long)]
    assert np.ptp(rows[1]) > np.ptp(rows[0])


def test_geometry_is_isotropic_with_probe_at_origin():
    phantom = phantom_label_map("4CH", "ED", 0, GRID_2D)
    sx, sy, _ = phantom.labels.spacing
    assert sx == pytest.approx(sy)
    apex = phantom.labels.ijk_to_lps() @ np.array([*phantom.sector.apex_index, 1.0])
    np.testing.assert_allclose(apex[:3], 0.0, atol=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"view": "PLAX"}, "unknown view"),
        ({"phase": "MID"}, "unknown cardiac phase"),
        ({"lv_length_mm": -5.0}, "positive"),
        ({"not_a_parameter": 1.0}, "not_a_parameter"),
        ({"lv_length_mm": 160.0}, "fits in"),
    ],
)
def test_bad_requests_are_explained(kwargs, message):
    with pytest.raises(InputError, match=message):
        phantom_label_map(**{"grid": GRID_2D, **kwargs})
