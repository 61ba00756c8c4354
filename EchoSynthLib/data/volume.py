"""One image type for the whole library: a voxel array with its physical geometry.

Arrays are indexed (k, j, i) like SimpleITK's ``GetArrayFromImage`` and Slicer's ``arrayFromVolume``;
spacing and origin are (i, j, k) in millimetres, direction is the 3x3 LPS direction matrix, row-major,
as in SimpleITK. A 2D image is a single-slice volume (array shape ``(1, rows, cols)``), as Slicer holds it.
For echo images the row axis ``j`` is depth (probe at the top) and ``i`` is lateral.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from EchoSynthLib.errors import InputError

IDENTITY_DIRECTION = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


# Voxel sizes an image can have (0.1 micrometre to 100 m): beyond them a physical grid computed from the
# spacing has no sensible size (1e-30 mm asked scipy for an array past its limit, 1e30 overflowed).
SPACING_RANGE = (1e-4, 1e5)


@dataclass(frozen=True, eq=False)
class Volume:
    """Voxel array (k, j, i) plus spacing/origin (i, j, k) and a row-major 3x3 direction matrix."""

    array: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = field(default=IDENTITY_DIRECTION)

    def __post_init__(self) -> None:
        array = np.asarray(self.array)
        if array.ndim != 3:
            raise InputError(f"a Volume array must have 3 axes (k, j, i), got shape {array.shape}")
        spacing = tuple(float(s) for s in self.spacing)
        if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
            raise InputError(f"spacing must be three positive numbers, got {self.spacing}")
        low, high = SPACING_RANGE
        if not all(low <= s <= high for s in spacing):
            shown = ", ".join(f"{s:.3g}" for s in spacing)
            raise InputError(f"spacing ({shown}) mm is outside {low:g}..{high:g} mm (no image has voxels so)")
        origin = tuple(float(o) for o in self.origin)
        direction = tuple(float(d) for d in self.direction)
        if len(origin) != 3 or len(direction) != 9:
            raise InputError("origin needs 3 values and direction 9 (a row-major 3x3 matrix)")
        if not all(np.isfinite(v) for v in origin + direction):
            raise InputError(f"origin and direction must be finite numbers, got {origin} and {direction}")
        if abs(np.linalg.det(np.reshape(direction, (3, 3)))) < 1e-6:
            raise InputError(f"the direction matrix must be invertible (axes not parallel), got {direction}")
        object.__setattr__(self, "array", array)
        object.__setattr__(self, "spacing", spacing)
        object.__setattr__(self, "origin", origin)
        object.__setattr__(self, "direction", direction)

    @classmethod
    def from_2d(
        cls,
        array2d: np.ndarray,
        spacing: tuple[float, float] = (1.0, 1.0),
        origin: tuple[float, float] = (0.0, 0.0),
    ) -> Volume:
        """A single-slice volume from a (rows, cols) array with (col, row) spacing and origin."""
        array2d = np.asarray(array2d)
        if array2d.ndim != 2:
            raise InputError(f"expected a 2D array (rows, cols), got shape {array2d.shape}")
        return cls(array2d[np.newaxis], (*spacing, 1.0), (*origin, 0.0))

    @classmethod
    def of(cls, data: Volume | np.ndarray) -> Volume:
        """A Volume as it is; a 2D (rows, cols) or 3D (k, j, i) array on a unit grid; booleans as 0/1."""
        if isinstance(data, Volume):
            return data
        if not isinstance(data, np.ndarray):
            raise InputError(f"expected a Volume or a numpy array, got {type(data).__name__}")
        if data.dtype == bool:
            data = data.astype(np.uint8)
        if data.ndim == 2:
            return cls.from_2d(data)
        if data.ndim == 3:
            return cls(data)
        raise InputError(f"expected a 2D or 3D array, got shape {data.shape}")

    @property
    def is_2d(self) -> bool:
        """True for a single-slice volume (a 2D image)."""
        return self.array.shape[0] == 1

    @property
    def size(self) -> tuple[int, int, int]:
        """Number of voxels along (i, j, k)."""
        k, j, i = self.array.shape
        return (i, j, k)

    @property
    def direction_matrix(self) -> np.ndarray:
        """The 3x3 direction matrix."""
        return np.array(self.direction, dtype=float).reshape(3, 3)

    def ijk_to_lps(self) -> np.ndarray:
        """4x4 homogeneous matrix from voxel index (i, j, k) to physical LPS millimetres."""
        matrix = np.eye(4)
        matrix[:3, :3] = self.direction_matrix @ np.diag(self.spacing)
        matrix[:3, 3] = self.origin
        return matrix

    @classmethod
    def from_ijk_to_lps(cls, array: np.ndarray, ijk_to_lps: np.ndarray) -> Volume:
        """Build a volume from a (k, j, i) array and a 4x4 IJK-to-LPS matrix."""
        linear = np.asarray(ijk_to_lps, dtype=float)[:3, :3]
        spacing = np.linalg.norm(linear, axis=0)
        if np.any(spacing <= 0):
            raise InputError("the IJK-to-LPS matrix has a zero-length axis")
        direction = linear / spacing
        return cls(array, tuple(spacing), tuple(np.asarray(ijk_to_lps)[:3, 3]), tuple(direction.ravel()))

    def with_array(self, array: np.ndarray) -> Volume:
        """A new volume with this geometry and another array of the same shape."""
        array = np.asarray(array)
        if array.shape != self.array.shape:
            raise InputError(f"array shape {array.shape} does not match the volume's {self.array.shape}")
        return Volume(array, self.spacing, self.origin, self.direction)

    def same_geometry(self, other: Volume, tolerance: float = 1e-6) -> bool:
        """True if both volumes have the same grid size, spacing, origin and direction."""
        return (
            self.array.shape == other.array.shape
            and np.allclose(self.spacing, other.spacing, atol=tolerance)
            and np.allclose(self.origin, other.origin, atol=tolerance)
            and np.allclose(self.direction, other.direction, atol=tolerance)
        )

    def describe_geometry(self) -> str:
        """A one-line human-readable summary of the grid."""
        size = "x".join(str(n) for n in self.size)
        spacing = ", ".join(f"{s:.4g}" for s in self.spacing)
        origin = ", ".join(f"{o:.4g}" for o in self.origin)
        kind = "2D (single slice)" if self.is_2d else "3D"
        return f"{kind} {size} voxels, spacing ({spacing}) mm, origin ({origin}) mm"
