"""EchoSynth: labelled synthetic echocardiography in 3D Slicer.

This module file stays light: it imports only Slicer's own modules at load time. The headless library
(``EchoSynthLib``) and its heavy dependencies (torch, MONAI) are imported inside the logic, on first use.
"""

import logging

import slicer
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)


class EchoSynth(ScriptedLoadableModule):
    """Module metadata."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "EchoSynth"
        self.parent.categories = ["Ultrasound"]
        self.parent.dependencies = []
        self.parent.contributors = ["EchoSynth developers"]
        self.parent.helpText = (
            "Turn label maps (LV cavity, myocardium, left atrium) into synthetic echocardiography: "
            "a training-free B-mode simulator now, learned generators to follow."
        )
        self.parent.acknowledgementText = "Uses MONAI, SimpleITK and slicerio."


class EchoSynthWidget(ScriptedLoadableModuleWidget):
    """Panel. The full Generate workflow arrives with the Slicer-module issue; for now it explains itself."""

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        import qt  # Slicer's Qt binding, available only inside Slicer

        label = qt.QLabel(
            "EchoSynth synthesizes echo images from segmentations. Use the Python console for now:\n"
            "EchoSynthLogic().simulate(segmentationNode)"
        )
        label.setWordWrap(True)
        self.layout.addWidget(label)
        self.layout.addStretch(1)


class EchoSynthLogic(ScriptedLoadableModuleLogic):
    """Headless-usable logic; raises ValueError on bad input."""

    def simulate(self, labelVolumeNode, seed=0):
        """Simulate a B-mode image from a labelmap volume node (canonical EchoSynth label values)."""
        import numpy as np
        import vtk

        from EchoSynthLib.data.volume import Volume
        from EchoSynthLib.simulation import simulate_bmode

        if labelVolumeNode is None:
            raise ValueError("no input labelmap volume")
        array = slicer.util.arrayFromVolume(labelVolumeNode)
        matrix = vtk.vtkMatrix4x4()
        labelVolumeNode.GetIJKToRASMatrix(matrix)
        ijkToRas = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
        rasToLps = np.diag([-1.0, -1.0, 1.0, 1.0])
        labels = Volume.from_ijk_to_lps(array.copy(), rasToLps @ ijkToRas)
        image = simulate_bmode(labels, seed=seed)
        outputNode = slicer.mrmlScene.AddNewNodeByClass(
            "vtkMRMLScalarVolumeNode", f"{labelVolumeNode.GetName()} echo"
        )
        outputNode.CopyOrientation(labelVolumeNode)
        slicer.util.updateVolumeFromArray(outputNode, image.array)
        logging.info("EchoSynth: simulated %s", outputNode.GetName())
        return outputNode


class EchoSynthTest(ScriptedLoadableModuleTest):
    """Self-test, run inside Slicer (Reload and Test)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_simulate_from_phantom()

    def test_simulate_from_phantom(self):
        from EchoSynthLib.anatomy import PhantomGrid, phantom_label_map

        phantom = phantom_label_map("4CH", "ED", seed=0, grid=PhantomGrid.for_view("4CH", size=96))
        labelNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "phantom")
        slicer.util.updateVolumeFromArray(labelNode, phantom.labels.array)
        outputNode = EchoSynthLogic().simulate(labelNode)
        self.assertEqual(slicer.util.arrayFromVolume(outputNode).shape, phantom.labels.array.shape)
        self.delayDisplay("EchoSynth simulate test passed")
