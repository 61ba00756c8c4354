"""Training-free B-mode simulation: the embedded default generator and the baseline for learned models."""

from EchoSynthLib.simulation.bmode import SimulatorSettings, simulate_bmode, simulate_stages
from EchoSynthLib.simulation.tissue import DEFAULT_TISSUES, Tissue

__all__ = ["DEFAULT_TISSUES", "SimulatorSettings", "Tissue", "simulate_bmode", "simulate_stages"]
