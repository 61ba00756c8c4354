"""Phantom anatomy: seeded, plausible label maps of the left heart seen from the apex."""

from EchoSynthLib.anatomy.parameters import VIEWS, HeartParameters, sample_heart
from EchoSynthLib.anatomy.phantom import PhantomGrid, phantom_label_map

__all__ = ["VIEWS", "HeartParameters", "PhantomGrid", "phantom_label_map", "sample_heart"]
