"""Shape statistics of label maps: drawn hearts of known geometry measure what they were drawn with."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from scipy.spatial import cKDTree

from EchoSynthLib.anatomy import PhantomGrid, phantom_label_map
from EchoSynthLib.data.labels import Structure
from EchoSynthLib.data.volume import Volume
from EchoSynthLib.errors import InputError
from EchoSynthLib.evaluation.shapes import (
    SHAPE_STATISTICS,
    ejection_fraction,
    shape_distance,
    shape_statistics,
    statistics_table,
)

CAVITY, MYO, ATRIUM, SECTOR = (
    s.label for s in (Structure.LV_CAVITY, Structure.LV_MYOCARDIUM, Structure.LEFT_ATRIUM, Structure.SECTOR)
)
SPACING = (0.5, 0.3)  # (column, row) mm: pixels 0.5 mm wide and 0.3 mm deep


@functools.cache
def _heart(
    semi_long: float = 30.0,
    semi_wide: float = 18.0,
    wall: float = 8.0,
    angle_deg: float = 0.0,
    atrium: tuple[float, float] | None = (16.0, 13.0),
    spacing: tuple[float, float] = SPACING,
) -> Volume:
    """A 140 x 140 mm map: an elliptic cavity (semi-axes ``semi_long`` along the long axis, ``semi_wide``
    across), wrapped in a myocardium of constant thickness ``wall`` (the points within ``wall`` of the
    ellipse), and an elliptic atrium (semi-axes ``atrium``) 3 mm beyond its base; the long axis leans
    ``angle_deg`` from the depth axis. Cached: callers must not change the array."""
    columns, rows = round(140 / spacing[0]), round(140 / spacing[1])
    y, x = np.meshgrid(np.arange(rows) * spacing[1] - 65, np.arange(columns) * spacing[0] - 70, indexing="ij")
    turn = math.radians(angle_deg)
    u, v = y * math.cos(turn) - x * math.sin(turn), y * math.sin(turn) + x * math.cos(turn)
    cavity = (u / semi_long) ** 2 + (v / semi_wide) ** 2 <= 1
    around = np.linspace(0, 2 * math.pi, 5000, endpoint=False)
    ellipse = cKDTree(np.column_stack([semi_long * np.cos(around), semi_wide * np.sin(around)]))
    distance = ellipse.query(np.column_stack([u.ravel(), v.ravel()]))[0].reshape(u.shape)
    labels = np.full(u.shape, SECTOR, np.uint8)
    if atrium is not None:
        centre = semi_long + wall + 3 + atrium[0]
        labels[((u - centre) / atrium[0]) ** 2 + (v / atrium[1]) ** 2 <= 1] = ATRIUM
    labels[distance <= wall] = MYO
    labels[cavity] = CAVITY
    return Volume.from_2d(labels, spacing)


@pytest.fixture(scope="module")
def drawn() -> dict[str, float]:
    return shape_statistics(_heart())


def test_a_drawn_heart_measures_its_analytic_area_length_sphericity_thickness_and_atrium(drawn):
    assert set(drawn) == set(SHAPE_STATISTICS)
    assert drawn["lv_area_mm2"] == pytest.approx(math.pi * 30 * 18, rel=0.01)
    assert drawn["lv_length_mm"] == pytest.approx(60.0, rel=0.02)
    assert drawn["lv_sphericity"] == pytest.approx(18 / 30, rel=0.02)
    assert drawn["myocardial_thickness_mm"] == pytest.approx(8.0, rel=0.03)
    assert drawn["la_lv_area_ratio"] == pytest.approx(16 * 13 / (30 * 18), rel=0.02)


def test_thickness_follows_the_wall_and_not_the_pixel_grid():
    """Contour lengths counted on the pixel staircase (or unsmoothed) run 6-8 % long: thickness too thin."""
    for wall, spacing in ((5.0, (1.75, 1.75)), (11.0, (1.2, 0.8))):
        measured = shape_statistics(_heart(wall=wall, angle_deg=20, spacing=spacing))
        assert measured["myocardial_thickness_mm"] == pytest.approx(wall, rel=0.04)


def test_rotating_the_heart_keeps_its_length_and_sphericity(drawn):
    """Extents along the principal axes, not along the pixel grid (that would give 55 mm and 0.79 here)."""
    turned = shape_statistics(_heart(angle_deg=30))
    for name in ("lv_area_mm2", "lv_length_mm", "lv_sphericity", "myocardial_thickness_mm"):
        assert turned[name] == pytest.approx(drawn[name], rel=0.03), name
    assert turned["lv_length_mm"] == pytest.approx(60.0, rel=0.02)
    assert turned["lv_sphericity"] == pytest.approx(0.6, rel=0.02)


def test_stray_pixels_of_a_structure_are_left_out():
    """Each structure is its largest connected piece: a speck of cavity far away changes nothing."""
    labels = _heart(atrium=None)
    speckled = labels.array.copy()
    speckled[0, 10:14, 10:14] = CAVITY
    clean, noisy = shape_statistics(labels), shape_statistics(labels.with_array(speckled))
    assert noisy["lv_length_mm"] == pytest.approx(clean["lv_length_mm"], rel=1e-9)
    assert noisy["lv_area_mm2"] == clean["lv_area_mm2"]


def test_ejection_fraction_of_a_known_pair():
    """Area-length volume of an ellipse (A = pi a b, L = 2a): V = 8 A^2 / (3 pi L) = 4/3 pi a b^2."""
    diastole, systole = _heart(40, 22, 8, atrium=None), _heart(34, 15, 10, atrium=None)
    expected = 1 - (34 * 15**2) / (40 * 22**2)
    assert ejection_fraction(diastole, systole) == pytest.approx(expected, abs=0.02)
    assert ejection_fraction(diastole, diastole) == 0.0


def test_missing_structures_give_nan_not_an_error():
    no_atrium = shape_statistics(_heart(atrium=None))
    assert math.isnan(no_atrium["la_lv_area_ratio"])
    assert all(math.isfinite(no_atrium[name]) for name in SHAPE_STATISTICS if name != "la_lv_area_ratio")
    only_sector = Volume.from_2d(np.full((40, 40), SECTOR, np.uint8), SPACING)
    assert all(math.isnan(value) for value in shape_statistics(only_sector).values())
    assert math.isnan(ejection_fraction(only_sector, _heart()))


def test_a_3d_map_is_refused():
    with pytest.raises(InputError, match="2D label map"):
        shape_statistics(Volume(np.full((2, 20, 20), CAVITY, np.uint8)))


def test_shape_distance_is_zero_for_one_set_and_counts_shifts_in_reference_spreads():
    rng = np.random.default_rng(0)
    reference = rng.normal([1500, 80, 0.55, 9, 0.4], [300, 8, 0.06, 1.5, 0.1], (200, len(SHAPE_STATISTICS)))
    itself = shape_distance(reference, reference)
    assert set(itself) == {*SHAPE_STATISTICS, "mean"} and all(value == 0 for value in itself.values())
    spread = reference.std(axis=0, ddof=1)
    distances = [shape_distance(reference + k * spread, reference)["mean"] for k in (0.25, 1.0, 3.0)]
    assert distances == pytest.approx([0.25, 1.0, 3.0])
    holes = reference.copy()
    holes[::3, 4] = np.nan  # maps without an atrium: left out of that statistic only
    assert shape_distance(holes, reference)["la_lv_area_ratio"] < 0.2
    assert shape_distance(holes, reference)["lv_area_mm2"] == 0
    with pytest.raises(InputError, match="table"):
        shape_distance(reference[:, :3], reference)


@pytest.mark.parametrize("view", ["4CH", "2CH"])
def test_phantom_maps_have_plausible_statistics(view):
    grid = PhantomGrid.for_view(view, size=128)
    ed, es = (phantom_label_map(view, phase, seed=3, grid=grid) for phase in ("ED", "ES"))
    table = statistics_table([ed.labels, es.labels])
    assert table.shape == (2, len(SHAPE_STATISTICS)) and np.isfinite(table).all()
    diastole, systole = (dict(zip(SHAPE_STATISTICS, row, strict=True)) for row in table)
    assert 40 < systole["lv_length_mm"] < diastole["lv_length_mm"] < 120
    assert diastole["lv_length_mm"] == pytest.approx(ed.heart.lv_length_mm, rel=0.05)
    assert diastole["lv_area_mm2"] > systole["lv_area_mm2"]
    assert 0.3 < diastole["lv_sphericity"] < 0.8 and 0.1 < diastole["la_lv_area_ratio"] < 1.5
    for phantom, measured in ((ed, diastole), (es, systole)):
        wall = phantom.heart.at_phase(phantom.phase).wall_mm
        # the phantom's wall is a pixel-centre distance shell: about half a pixel (0.6 mm) thinner
        assert 0.8 * wall < measured["myocardial_thickness_mm"] < 1.02 * wall
    assert 0.2 < ejection_fraction(ed.labels, es.labels) < 0.8
