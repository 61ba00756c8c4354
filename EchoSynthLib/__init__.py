"""EchoSynth headless library: labelled synthetic echocardiography.

Sub-packages, in the direction data flows:
``data`` (image type, IO, label schema, sector geometry) -> ``anatomy`` (phantom label maps)
-> ``simulation`` (training-free B-mode simulator) -> ``cli`` (the ``echosynth`` command).
Nothing here imports slicer or qt; importing the package is cheap (no torch at import).
"""

from EchoSynthLib.errors import EchoSynthError, InputError, UnknownLabelError

__version__ = "0.1.0"
__all__ = ["EchoSynthError", "InputError", "UnknownLabelError", "__version__"]
