"""Shape statistics of 2D label maps: is the anatomy a label map draws realistic?

Image metrics judge pictures; a label-map generator must also draw hearts of plausible size and shape.
``shape_statistics`` reduces one canonical 2D map to a few clinical numbers (LV cavity area, long-axis
length, sphericity, mean myocardial thickness, LA/LV area ratio; ``ejection_fraction`` of an ED/ES pair),
so that sets of maps (generated, CAMUS's real ones, the phantom generator's) can be compared statistic by
statistic: ``shape_distance`` is the 1-D Wasserstein distance of each statistic in units of the reference
set's spread. Each structure is its largest connected component; a missing structure gives NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage, stats

from EchoSynthLib.data.labels import Structure
from EchoSynthLib.data.volume import Volume
from EchoSynthLib.errors import InputError

SHAPE_STATISTICS = (
    "lv_area_mm2",
    "lv_length_mm",
    "lv_sphericity",
    "myocardial_thickness_mm",
    "la_lv_area_ratio",
)

_EIGHT_CONNECTED = np.ones((3, 3), bool)
_CROFTON_DIRECTIONS = 8  # line directions of the contour-length estimate
_SMOOTHING = 1.0  # pixels: removes the pixel staircase, shifts contours by ~ sigma^2 / (2 radius)
_OTHER, _CAVITY, _MYOCARDIUM, _ATRIUM = range(4)  # sample classes of the contour-length estimate


def _plane(labels: Volume) -> tuple[np.ndarray, tuple[float, float]]:
    """The (rows, cols) label array and its (row, col) spacing in mm; an InputError for a 3D map."""
    labels = Volume.of(labels)
    if not labels.is_2d:
        raise InputError(
            f"shape statistics need a 2D label map (one slice), got {labels.array.shape[0]} slices"
        )
    return labels.array[0], (labels.spacing[1], labels.spacing[0])


def _largest(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected component of ``mask`` (all False if it is empty)."""
    components, count = ndimage.label(mask, structure=_EIGHT_CONNECTED)
    if count <= 1:
        return components > 0
    return components == 1 + int(np.argmax(np.bincount(components.ravel())[1:]))


def _principal_extents(mask: np.ndarray, spacing: tuple[float, float]) -> tuple[float, float]:
    """Extents (mm) of a region along its first and second principal axes (of its pixel centres, in mm):
    the spread of the centres projected on the axis plus one pixel's width projected on it."""
    points = np.column_stack(np.nonzero(mask)) * np.asarray(spacing)
    centred = points - points.mean(axis=0)
    covariance = np.cov(centred.T) if len(points) > 1 else np.zeros((2, 2))
    _, vectors = np.linalg.eigh(covariance)  # eigenvalues ascending: the last vector is the long axis
    extents = []
    for axis in (vectors[:, 1], vectors[:, 0]):
        projected = centred @ axis
        pixel = abs(axis[0]) * spacing[0] + abs(axis[1]) * spacing[1]
        extents.append(float(projected.max() - projected.min() + pixel))
    return extents[0], extents[1]


def _contour_lengths(classes: np.ndarray, spacing: tuple[float, float]) -> tuple[float, float]:
    """Lengths (mm) of the endocardial (cavity | myocardium) and epicardial (myocardium | neither cavity
    nor atrium) contours in a map of ``_OTHER``.. ``_ATRIUM`` classes, by the Cauchy-Crofton formula
    L = 1/2 ∫∫ crossings dp dθ: parallel lines in ``_CROFTON_DIRECTIONS`` directions sample the class
    indicators, smoothed by ``_SMOOTHING`` pixels and bilinearly interpolated (a sample takes the class of
    the largest), and count the interfaces they cross. Written here because scipy has no contour length;
    counting pixel edges would measure the staircase (up to 4/pi too long), and so, up to 8 % too long,
    would the unsmoothed interpolation (marching squares' contour)."""
    indicators = [ndimage.gaussian_filter((classes == c).astype(np.float32), _SMOOTHING) for c in range(4)]
    step = min(spacing)
    high = (np.array(classes.shape) - 1) * spacing
    corners = np.array([[0.0, 0.0], [0.0, high[1]], [high[0], 0.0], [high[0], high[1]]])
    crossings = np.zeros(2)
    for angle in np.arange(_CROFTON_DIRECTIONS) * math.pi / _CROFTON_DIRECTIONS:
        along = np.array([math.sin(angle), math.cos(angle)])  # (row, col) components in mm
        across = np.array([along[1], -along[0]])
        offsets = np.arange((corners @ across).min(), (corners @ across).max() + step, step)
        positions = np.arange((corners @ along).min(), (corners @ along).max() + step, step / 2)
        points = offsets[:, None, None] * across + positions[None, :, None] * along
        coordinates = np.moveaxis(points / np.asarray(spacing), -1, 0)
        sampled = np.stack([ndimage.map_coordinates(i, coordinates, order=1) for i in indicators]).argmax(0)
        before, after = sampled[:, :-1], sampled[:, 1:]
        crossings += [
            np.count_nonzero(_meets(before, after, _CAVITY, _MYOCARDIUM)),
            np.count_nonzero(_meets(before, after, _MYOCARDIUM, _OTHER)),
        ]
    endocardium, epicardium = crossings * math.pi * step / (2 * _CROFTON_DIRECTIONS)
    return float(endocardium), float(epicardium)


def _meets(before: np.ndarray, after: np.ndarray, first: int, second: int) -> np.ndarray:
    """Where consecutive samples go from class ``first`` to ``second`` or back."""
    return ((before == first) & (after == second)) | ((before == second) & (after == first))


def shape_statistics(labels: Volume) -> dict[str, float]:
    """The ``SHAPE_STATISTICS`` of one canonical 2D label map (NaN where a structure they need is missing).

    LV length and width are the cavity's extents along its principal axes (sphericity: width / length).
    Myocardial thickness is the myocardium's area over the mean of its endocardial and epicardial contour
    lengths (exact for a wall of constant thickness); the wall's border with the atrium is not contour, but
    the ends of a wall open at the base that border the background are (they make it read about 2 % thin).
    A 3D map (more than one slice) is an InputError."""
    plane, spacing = _plane(labels)
    pixel_area = spacing[0] * spacing[1]
    cavity = _largest(plane == Structure.LV_CAVITY.label)
    myocardium = _largest(plane == Structure.LV_MYOCARDIUM.label)
    atrium = _largest(plane == Structure.LEFT_ATRIUM.label)
    result = dict.fromkeys(SHAPE_STATISTICS, math.nan)
    if not cavity.any():
        return result
    area = float(cavity.sum() * pixel_area)
    length, width = _principal_extents(cavity, spacing)
    result.update(lv_area_mm2=area, lv_length_mm=length, lv_sphericity=width / length)
    if atrium.any():
        result["la_lv_area_ratio"] = float(atrium.sum() * pixel_area) / area
    if myocardium.any():
        rows, cols = np.nonzero(cavity | myocardium)
        margin = 2 + math.ceil(3 * _SMOOTHING)
        box = np.s_[
            max(int(rows.min()) - margin, 0) : int(rows.max()) + margin + 1,
            max(int(cols.min()) - margin, 0) : int(cols.max()) + margin + 1,
        ]
        classes = np.select([cavity[box], myocardium[box], atrium[box]], [_CAVITY, _MYOCARDIUM, _ATRIUM])
        endocardium, epicardium = _contour_lengths(classes, spacing)
        if endocardium + epicardium > 0:
            mean_contour = (endocardium + epicardium) / 2
            result["myocardial_thickness_mm"] = float(myocardium.sum() * pixel_area) / mean_contour
    return result


def statistics_table(maps: Sequence[Volume]) -> np.ndarray:
    """(N, S) array: the ``SHAPE_STATISTICS`` of each map, in that column order."""
    rows = [[shape_statistics(labels)[name] for name in SHAPE_STATISTICS] for labels in maps]
    return np.asarray(rows, dtype=float).reshape(len(rows), len(SHAPE_STATISTICS))


def area_length_volume(statistics: dict[str, float]) -> float:
    """Single-plane area-length LV volume (mm^3, NaN without a cavity): V = 8 A^2 / (3 pi L)."""
    return 8 * statistics["lv_area_mm2"] ** 2 / (3 * math.pi * statistics["lv_length_mm"])


def ejection_fraction(ed: Volume, es: Volume) -> float:
    """(EDV - ESV) / EDV of an end-diastolic and an end-systolic map of one view (area-length volumes)."""
    end_diastolic = area_length_volume(shape_statistics(ed))
    return (end_diastolic - area_length_volume(shape_statistics(es))) / end_diastolic


def shape_distance(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Per statistic, the 1-D Wasserstein distance between the values of ``a`` and of ``b`` (two (N, S)
    ``statistics_table`` arrays; ``b`` is the reference) over the standard deviation of ``b``'s, NaN rows
    left out per statistic (NaN when ``a`` has no value or ``b``'s values do not spread); ``mean``: the
    mean of the finite ones. Comparable across statistics: 1.0 is a shift by one spread of the reference."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    for name, table in (("a", a), ("b", b)):
        if table.ndim != 2 or table.shape[1] != len(SHAPE_STATISTICS):
            raise InputError(f"{name} must be an (N, {len(SHAPE_STATISTICS)}) table, got shape {table.shape}")
    result = {}
    for column, name in enumerate(SHAPE_STATISTICS):
        x, y = a[:, column], b[:, column]
        x, y = x[np.isfinite(x)], y[np.isfinite(y)]
        spread = float(np.std(y, ddof=1)) if len(y) > 1 else 0.0
        if len(x) == 0 or spread == 0:
            result[name] = math.nan
        else:
            result[name] = float(stats.wasserstein_distance(x, y)) / spread
    finite = [value for value in result.values() if math.isfinite(value)]
    result["mean"] = float(np.mean(finite)) if finite else math.nan
    return result
