"""Scene side of the EchoSynth module: everything that touches MRML nodes, and nothing that needs Qt.

``geometry`` (volume nodes <-> library Volumes), ``labels`` (segmentation / labelmap nodes <-> canonical
label maps), ``nodes`` (new nodes in the input's study, helper nodes removed), ``sequences`` (2D+t inputs
and outputs in a sequence browser), ``synthesis`` (a job folder from scene nodes, its results back as
nodes), ``models`` (what the Generator list offers: models by task), ``adaptation`` (an adapted model
from a volume or sequence of the user's scanner) and ``dependencies`` (first-use installs of only what a
run needs). It runs in Slicer and, for the tests, against the MRML library of the
``slicer-core`` wheel.
"""
