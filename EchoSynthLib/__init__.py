"""EchoSynth headless library: labelled synthetic echocardiography.

Sub-packages, in the direction data flows: ``data`` (image type, IO, label schema, sector geometry)
-> ``datasets`` -> ``preprocessing`` -> ``cache`` (training data); ``anatomy`` (phantom label maps) ->
``simulation`` (the training-free simulator); ``models`` (one folder per model family, the family registry,
packages and the model manager, on ``diffusion`` and ``training``) -> ``sampling`` (generators, file-level
synthesis) -> ``jobs`` (worker processes) and ``evaluation``; ``cli`` (the ``echosynth`` command) on top.
Nothing here imports slicer or qt; importing the package is cheap (no torch at import).
"""

from EchoSynthLib.errors import EchoSynthError, InputError, UnknownLabelError

__version__ = "0.1.0"
__all__ = ["EchoSynthError", "InputError", "UnknownLabelError", "__version__"]
