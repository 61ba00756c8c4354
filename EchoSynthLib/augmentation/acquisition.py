"""Another acquisition of the same heart: the probe's imaging depth (zoom) and sector opening changed.

Scanners and sonographers set the depth and the sector width differently from CAMUS's: a deeper setting
shows the heart smaller near the probe with tissue below it, a shallower one (zoom) shows it larger and cut
at the bottom, a narrower sector cuts its sides. ``acquire`` makes that view of a label map (or image): the
map scaled about the probe (the sector's apex, fitted from the map) by ``zoom``, inside a sector of the
same depth whose opening is ``opening`` of the map's. Tissue the new view reaches that the map did not
show is the sector class (unlabelled tissue); an image there is black (nothing was acquired there).

The scaling is one SimpleITK resampling (a ``ScaleTransform`` about the apex): nearest neighbour for label
maps, linear for images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from EchoSynthLib.data.labels import Structure
from EchoSynthLib.data.sector import SectorGeometry
from EchoSynthLib.data.volume import Volume
from EchoSynthLib.errors import InputError

NOT_SEEN = 255  # the resampling's value where the new view reaches beyond the map's grid
# The ranges ``varied`` acquisitions are drawn from: from 25 % deeper to 30 % zoomed in, and sectors from
# 65 % of the map's opening to all of it (CAMUS's maps open by 40 to 75 degrees, scanners by 60 to 90).
VARIED_ZOOM = (0.75, 1.3)
VARIED_OPENING = (0.65, 1.0)


@dataclass(frozen=True)
class Acquisition:
    """``zoom``: above 1 the heart is shown larger (a shallower depth), below 1 smaller (a deeper one);
    ``opening``: the sector's opening as a fraction of the map's (1: the same)."""

    zoom: float = 1.0
    opening: float = 1.0

    def __post_init__(self) -> None:
        if not 0.25 <= self.zoom <= 4.0:
            raise InputError(f"zoom must lie in [0.25, 4], got {self.zoom}")
        if not 0.1 <= self.opening <= 1.0:
            raise InputError(f"opening must lie in [0.1, 1], got {self.opening}")

    @property
    def unchanged(self) -> bool:
        """True when this acquisition is the map's own."""
        return self.zoom == 1.0 and self.opening == 1.0


def random_acquisition(
    draw: np.random.Generator, zoom: tuple[float, float], opening: tuple[float, float]
) -> Acquisition:
    """An acquisition with zoom and opening uniform in the given ranges (zoom uniform in its logarithm, so
    that deeper and shallower settings are drawn alike)."""
    log_zoom = draw.uniform(np.log(zoom[0]), np.log(zoom[1])) if zoom[0] != zoom[1] else np.log(zoom[0])
    return Acquisition(float(np.exp(log_zoom)), float(draw.uniform(*opening)))


def sector_of(labels: Volume) -> SectorGeometry:
    """The sector a label map is drawn in: fitted to every voxel that is not background where the map draws
    a sector class, else the widest default sector of its grid."""
    if not (labels.array == Structure.SECTOR.label).any():
        return SectorGeometry.default_for(labels)
    drawn = labels.array != Structure.BACKGROUND.label
    return SectorGeometry.fit(labels.with_array(drawn.astype(np.uint8)))


def acquire(volume: Volume, acquisition: Acquisition, sector: SectorGeometry, labels: bool) -> Volume:
    """``volume`` (a label map, or an image of one, in ``sector``) as the probe at ``sector``'s apex shows it
    with ``acquisition``'s zoom and opening, on the same grid."""
    if acquisition.unchanged:
        return volume
    import SimpleITK as sitk

    from EchoSynthLib.data.io import to_sitk

    image = to_sitk(volume)
    if not labels:
        image = sitk.Cast(image, sitk.sitkFloat32)
    apex = volume.ijk_to_lps() @ np.append(np.asarray(sector.apex_index, dtype=float), 1.0)
    shrink = 1.0 / acquisition.zoom  # the transform maps a shown point to the map's point
    # Isotropic in physical space: the apex lies in a 2D map's plane, so the scale across it changes nothing
    # (and a plane that is not axis-aligned, e.g. a kj cut or a Slicer label map, is zoomed in its own axes).
    scale = sitk.ScaleTransform(3, (shrink, shrink, shrink))
    scale.SetCenter(tuple(float(c) for c in apex[:3]))
    interpolator = sitk.sitkNearestNeighbor if labels else sitk.sitkLinear
    resampled = sitk.Resample(image, image, scale, interpolator, float(NOT_SEEN if labels else 0))
    array = sitk.GetArrayFromImage(resampled)
    centre = sum(sector.azimuth_deg) / 2.0
    half = acquisition.opening * (sector.azimuth_deg[1] - sector.azimuth_deg[0]) / 2.0
    elevation = sector.elevation_deg
    if sector.is_3d:
        middle, half_el = sum(elevation) / 2.0, acquisition.opening * (elevation[1] - elevation[0]) / 2.0
        elevation = (middle - half_el, middle + half_el)
    shown = SectorGeometry(sector.apex_index, sector.depth_mm, (centre - half, centre + half), elevation)
    # Opening at most 1 and the same depth: the view's sector lies in the map's (exactly the map's drawn
    # sector where it has one, not the fitted lines' version of it).
    drawn = labels and (volume.array == Structure.SECTOR.label).any()
    before = volume.array != Structure.BACKGROUND.label if drawn else sector.mask(volume)
    inside = before if acquisition.opening == 1.0 else shown.mask(volume) & before
    if labels:
        # What the view reaches beyond the map: unlabelled tissue (the sector class) where the map draws
        # its sector; background where it draws none (it gains no class it did not have).
        unseen = (array == NOT_SEEN) | (array == Structure.BACKGROUND.label)
        array = np.where(unseen, Structure.SECTOR.label if drawn else Structure.BACKGROUND.label, array)
        shown_map = np.where(inside, array, Structure.BACKGROUND.label)
        return volume.with_array(shown_map.astype(volume.array.dtype))
    if np.issubdtype(volume.array.dtype, np.integer):
        limits = np.iinfo(volume.array.dtype)
        array = np.clip(np.rint(array), limits.min, limits.max)
    return volume.with_array(np.where(inside, array, 0).astype(volume.array.dtype))
