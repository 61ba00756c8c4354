"""Inputs under parent transforms (issue 31 §3): outputs go under the input's parent transform, so they
stay on the input in world coordinates and follow it when the transform changes; a reference volume or a
label map under another transform is brought into the frame of the grid the outputs take."""

from __future__ import annotations

import numpy as np
import pytest
import slicer
import test_slicer_scene as scene_tests
import vtk

from EchoSynthLib.data.io import read_label_map
from EchoSynthLib.data.volume import Volume
from EchoSynthLib.simulation import simulate_bmode
from EchoSynthScene import synthesis, translation
from EchoSynthScene.geometry import LPS_TO_RAS, ijk_to_ras
from EchoSynthScene.nodes import add_image_node

scene = scene_tests.scene
phantom = scene_tests.phantom


def _array(matrix) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def _rigid(
    degrees: float, axis: tuple[float, float, float], offset: tuple[float, float, float]
) -> np.ndarray:
    """A 4x4 rotation about ``axis`` followed by a translation of ``offset`` mm."""
    matrix = vtk.vtkTransform()
    matrix.Translate(*offset)
    matrix.RotateWXYZ(degrees, *axis)
    return _array(matrix.GetMatrix())


ROTATE_AND_SHIFT = _rigid(30.0, (1.0, 2.0, 3.0), (50.0, 0.0, 0.0))  # the 50 mm, and a rotation
OTHER = _rigid(-20.0, (0.0, 0.0, 1.0), (0.0, -50.0, 10.0))


def _transform(scene, matrix: np.ndarray, name: str = "tracking"):
    node = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", name)
    _set_matrix(node, matrix)
    return node


def _set_matrix(node, matrix: np.ndarray) -> None:
    from EchoSynthScene.geometry import vtk_matrix

    node.SetMatrixTransformToParent(vtk_matrix(matrix))


def _world_ijk_to_ras(node) -> np.ndarray:
    """IJK -> world RAS of a volume node: its local IJK-to-RAS through its parent transforms."""
    to_world = vtk.vtkMatrix4x4()
    assert slicer.vtkMRMLTransformNode.GetMatrixTransformBetweenNodes(
        node.GetParentTransformNode(), None, to_world
    )
    return _array(to_world) @ ijk_to_ras(node)


def _moved(volume: Volume, matrix: np.ndarray) -> Volume:
    """``volume`` with its grid moved by the RAS matrix ``matrix``."""
    return Volume.from_ijk_to_lps(volume.array, LPS_TO_RAS @ matrix @ LPS_TO_RAS @ volume.ijk_to_lps())


VOXELS = np.array([[0, 0, 0, 1], [47, 0, 0, 1], [0, 47, 0, 1], [20, 30, 0, 1]], dtype=float).T


def assert_same_world_place(node, other) -> None:
    """A few voxels of ``node`` sit where ``other``'s sit, in world RAS; so do their world bounds."""
    np.testing.assert_allclose(_world_ijk_to_ras(node) @ VOXELS, _world_ijk_to_ras(other) @ VOXELS, atol=1e-4)
    bounds, other_bounds = np.zeros(6), np.zeros(6)
    node.GetRASBounds(bounds)
    other.GetRASBounds(other_bounds)
    np.testing.assert_allclose(bounds, other_bounds, atol=1e-4)


def test_outputs_of_a_transformed_labelmap_stay_on_it_and_follow_its_transform(scene, phantom):
    tracking = _transform(scene, ROTATE_AND_SHIFT)
    labelmap = scene_tests._labelmap(scene, phantom, "A4C")
    labelmap.SetAndObserveTransformNodeID(tracking.GetID())
    (image, anatomy, anatomy_image) = synthesis.synthesize(labelmap, augment=1, seed=1)
    for node in (image, anatomy, anatomy_image):
        assert node.GetTransformNodeID() == tracking.GetID()
    assert_same_world_place(image, labelmap)
    assert_same_world_place(anatomy_image, labelmap)
    _set_matrix(tracking, OTHER)  # the probe moves: the outputs move with the input
    assert_same_world_place(image, labelmap)


def test_outputs_of_a_transformed_segmentation_stay_on_it(scene, phantom, tmp_path):
    tracking = _transform(scene, ROTATE_AND_SHIFT)
    segmentation = scene_tests._segmentation_from_file(scene, phantom, tmp_path / "a4c.seg.nrrd")
    segmentation.SetAndObserveTransformNodeID(tracking.GetID())
    (image,) = synthesis.synthesize(segmentation, seed=1)
    assert image.GetTransformNodeID() == tracking.GetID()
    labelmap = scene_tests._labelmap(scene, phantom)
    labelmap.SetAndObserveTransformNodeID(tracking.GetID())
    assert_same_world_place(image, labelmap)  # where the segments are
    np.testing.assert_allclose(_world_ijk_to_ras(image), ROTATE_AND_SHIFT @ LPS_TO_RAS @ phantom.ijk_to_lps())


def test_a_reference_volume_under_another_transform_gives_its_grid_and_its_transform(
    scene, phantom, tmp_path
):
    """The segmentation sits under one transform, the reference volume (on the same world grid) under
    another: the outputs take the reference's grid and parent transform, and the map lands on it."""
    segmentation = scene_tests._segmentation_from_file(scene, phantom, tmp_path / "a4c.seg.nrrd")
    segmentation.SetAndObserveTransformNodeID(_transform(scene, ROTATE_AND_SHIFT).GetID())
    other = _transform(scene, OTHER, "other")
    world = _moved(phantom, ROTATE_AND_SHIFT)
    reference = add_image_node(
        scene, _moved(world, np.linalg.inv(OTHER)).with_array(phantom.array * 0), "ref"
    )
    reference.SetAndObserveTransformNodeID(other.GetID())
    (image,) = synthesis.synthesize(segmentation, reference, seed=1)
    assert image.GetTransformNodeID() == other.GetID()
    assert_same_world_place(image, reference)
    pixels = slicer.util.arrayFromVolume(image)
    assert pixels[phantom.array == 0].max() == 0 and pixels.max() > 0  # the sector, where it is in world


def test_a_transformed_sequence_gives_sequences_under_its_transform(scene, phantom):
    tracking = _transform(scene, ROTATE_AND_SHIFT)
    browser, _, proxy = scene_tests._sequence_of_frames(scene, [phantom, phantom])
    proxy.SetAndObserveTransformNodeID(tracking.GetID())
    outputs = synthesis.synthesize(proxy, seed=1)
    (output,) = [n for n in outputs if n.IsA("vtkMRMLSequenceNode")]
    output_proxy = browser.GetProxyNode(output)
    assert output_proxy.GetTransformNodeID() == tracking.GetID()
    browser.SetSelectedItemNumber(1)  # a new frame keeps the proxy's transform
    assert output_proxy.GetTransformNodeID() == tracking.GetID()
    assert_same_world_place(output_proxy, proxy)


def test_translate_brings_the_label_map_into_the_volume_frame(scene, phantom, tmp_path):
    """Translate: an echo volume under one transform, its label map (labelmap volume or segmentation)
    under another, both on the same place in world. The label map written for the worker lies on the
    volume's grid, and the translation goes under the volume's transform."""
    world = _moved(phantom, ROTATE_AND_SHIFT)
    volume = add_image_node(scene, _moved(simulate_bmode(world, seed=2), np.linalg.inv(OTHER)), "Vscan A4C")
    volume.SetAndObserveTransformNodeID(_transform(scene, OTHER, "probe").GetID())
    labelmap = scene_tests._labelmap(scene, phantom, "A4C labels")
    labelmap.SetAndObserveTransformNodeID(_transform(scene, ROTATE_AND_SHIFT).GetID())
    segmentation = scene_tests._segmentation_from_file(scene, phantom, tmp_path / "a4c.seg.nrrd")
    segmentation.SetAndObserveTransformNodeID(labelmap.GetTransformNodeID())
    for index, labels in enumerate((labelmap, segmentation)):
        folder = tmp_path / f"job{index}"
        translation.prepare_translation(volume, folder, synthesis.SynthesisOptions(), labels)
        written = read_label_map(folder / "inputs" / "labels0000.nrrd")
        np.testing.assert_array_equal(written.array, phantom.array)
    (translated,) = translation.translate(volume, labelmap, generator="simulator", seed=3)
    assert translated.GetTransformNodeID() == volume.GetTransformNodeID()
    assert_same_world_place(translated, volume)


def test_a_warp_between_label_map_and_volume_is_refused_by_name(scene, phantom, tmp_path):
    """A Volume has one linear grid: a warping transform between the label map and the grid the outputs
    take is refused, naming both, before any work (a warp over both is fine: they share it)."""
    volume = add_image_node(scene, simulate_bmode(phantom, seed=2), "Vscan A4C")
    labelmap = scene_tests._labelmap(scene, phantom, "A4C labels")
    segmentation = scene_tests._segmentation_from_file(scene, phantom, tmp_path / "a4c.seg.nrrd", "A4C seg")
    warp = scene.AddNewNodeByClass("vtkMRMLGridTransformNode", "warp")
    grid = slicer.vtkOrientedGridTransform()
    field = vtk.vtkImageData()
    field.SetDimensions(2, 2, 2)
    field.AllocateScalars(vtk.VTK_DOUBLE, 3)
    field.GetPointData().GetScalars().Fill(0.0)
    grid.SetDisplacementGridData(field)
    warp.SetAndObserveTransformToParent(grid)
    for node in (labelmap, segmentation):
        node.SetAndObserveTransformNodeID(warp.GetID())
    options = synthesis.SynthesisOptions()
    with pytest.raises(ValueError, match=r"'A4C labels' and 'Vscan A4C'.*not linear"):
        translation.prepare_translation(volume, tmp_path / "translate", options, labelmap)
    with pytest.raises(ValueError, match=r"'Vscan A4C' and 'A4C seg'.*not linear"):
        synthesis.prepare_job(segmentation, tmp_path / "synthesize", options, volume)
    volume.SetAndObserveTransformNodeID(warp.GetID())
    (image,) = synthesis.synthesize(labelmap, seed=1)
    assert image.GetTransformNodeID() == warp.GetID()
