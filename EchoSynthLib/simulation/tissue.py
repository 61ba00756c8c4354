"""Acoustic properties of each structure, as the simulator sees them."""

from __future__ import annotations

from dataclasses import dataclass

from EchoSynthLib.data.labels import Structure


@dataclass(frozen=True)
class Tissue:
    """Backscatter amplitude (1 = myocardium), scatterers per resolution sample (1 = fully developed
    speckle), relative acoustic impedance (jumps make specular echoes) and the log-amplitude spread of
    smooth echogenicity variation (0 = homogeneous)."""

    echogenicity: float
    density: float
    impedance: float
    heterogeneity: float


BLOOD = Tissue(echogenicity=0.03, density=0.08, impedance=1.00, heterogeneity=0.5)
DEFAULT_TISSUES: dict[Structure, Tissue] = {
    Structure.LV_CAVITY: BLOOD,
    Structure.LEFT_ATRIUM: BLOOD,
    Structure.LV_MYOCARDIUM: Tissue(echogenicity=0.55, density=1.0, impedance=1.45, heterogeneity=0.35),
    # Unlabelled anatomy inside the sector: a mix of tissue, other chambers and lung, hence the spread.
    Structure.SECTOR: Tissue(echogenicity=0.14, density=1.0, impedance=1.25, heterogeneity=0.9),
    Structure.BACKGROUND: Tissue(echogenicity=0.14, density=1.0, impedance=1.25, heterogeneity=0.9),
}
