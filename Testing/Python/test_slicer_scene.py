"""The module's scene code against Slicer's real MRML library (the slicer-core wheel), with real workers."""

from __future__ import annotations

import time

import numpy as np
import pytest
import slicer

from EchoSynthLib.anatomy import PhantomGrid, phantom_label_map
from EchoSynthLib.data.io import write_label_map
from EchoSynthLib.data.volume import Volume
from EchoSynthLib.errors import UnknownLabelError
from EchoSynthLib.jobs.launcher import JobFailed
from EchoSynthScene import synthesis
from EchoSynthScene.geometry import fill_volume_node, same_geometry, volume_from_node
from EchoSynthScene.labels import add_segmentation_node, label_map_from_node
from EchoSynthScene.nodes import hierarchy_item, node_ids
from EchoSynthScene.sequences import sequence_of, sequences_logic

ROTATION = (0.8, -0.6, 0.0, 0.6, 0.8, 0.0, 0.0, 0.0, 1.0)


@pytest.fixture
def scene():
    scene = slicer.vtkMRMLScene()
    slicer.mrmlScene = scene
    sequences_logic(scene)  # registers the sequence node classes, as Slicer's module does
    yield scene
    scene.Clear(True)


@pytest.fixture(scope="module")
def phantom() -> Volume:
    """A small A4C map on an anisotropic, rotated, offset grid."""
    labels = phantom_label_map("4CH", "ED", seed=1, grid=PhantomGrid.for_view("4CH", size=48)).labels
    return Volume(labels.array, (0.9, 0.6, 2.0), (5.0, -3.0, 7.0), ROTATION)


def _segmentation_from_file(scene, labels: Volume, path, name="A4C"):
    write_label_map(labels, path)
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    storage = slicer.vtkMRMLSegmentationStorageNode()
    storage.SetFileName(str(path))
    assert storage.ReadData(node)
    return node


def _labelmap(scene, labels: Volume, name="labels"):
    node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", name)
    fill_volume_node(node, labels)
    return node


def _snapshot(node):
    return slicer.util.arrayFromVolume(node).copy(), volume_from_node(node)


def test_segmentation_node_to_label_map_and_back(scene, phantom, tmp_path):
    node = _segmentation_from_file(scene, phantom, tmp_path / "a4c.seg.nrrd")
    labels = label_map_from_node(node)
    assert labels.same_geometry(phantom)
    np.testing.assert_array_equal(labels.array, phantom.array)
    copy = add_segmentation_node(scene, labels, "copy")
    segmentation = copy.GetSegmentation()
    names = {segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())}
    assert names == {"LV cavity", "LV myocardium", "Left atrium", "Ultrasound sector"}
    again = label_map_from_node(copy)
    assert again.same_geometry(phantom)
    np.testing.assert_array_equal(again.array, phantom.array)


def test_labelmap_node_and_reference_volume(scene, phantom):
    labelmap = _labelmap(scene, phantom)
    labels = label_map_from_node(labelmap)
    assert labels.same_geometry(phantom)
    np.testing.assert_array_equal(labels.array, phantom.array)
    segmentation = add_segmentation_node(scene, phantom, "seg")
    reference = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "reference")
    fill_volume_node(reference, phantom.with_array(np.zeros(phantom.array.shape, np.int16)))
    assert label_map_from_node(segmentation, reference).same_geometry(phantom)


def test_bad_inputs_are_named_and_leave_the_scene_alone(scene, phantom, tmp_path):
    odd = add_segmentation_node(scene, phantom, "odd")
    odd.GetSegmentation().GetNthSegment(0).SetName("Right ventricle")
    before = node_ids(scene)
    with pytest.raises(UnknownLabelError, match="Right ventricle"):
        label_map_from_node(odd)
    empty = _labelmap(scene, phantom.with_array(np.zeros_like(phantom.array)), "empty")
    before = node_ids(scene)
    with pytest.raises(ValueError, match=r"'empty'.*no heart structure"):
        synthesis.prepare_job(empty, tmp_path / "job", synthesis.SynthesisOptions())
    with pytest.raises(ValueError, match="segmentation or a labelmap"):
        synthesis.prepare_job(None, tmp_path / "job", synthesis.SynthesisOptions())
    with pytest.raises(ValueError, match="unknown setting"):
        synthesis.synthesize(empty, frames=3)
    assert node_ids(scene) == before


def test_synthesis_keeps_the_input_geometry_and_leaves_inputs_unchanged(scene, phantom, tmp_path):
    segmentation = _segmentation_from_file(scene, phantom, tmp_path / "a4c.seg.nrrd")
    labelmap = _labelmap(scene, phantom, "A2C")
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    study = hierarchy.CreateFolderItem(hierarchy.GetSceneItemID(), "Study 1")
    hierarchy.SetItemParent(hierarchy_item(labelmap), study)
    labelmap_before = _snapshot(labelmap)
    segment_count = segmentation.GetSegmentation().GetNumberOfSegments()
    mtime = segmentation.GetMTime()

    outputs = synthesis.synthesize(labelmap, n=2, seed=3)
    assert [n.GetName() for n in outputs] == ["A2C echo 1", "A2C echo 2"]
    for node in outputs:
        assert node.IsA("vtkMRMLScalarVolumeNode") and same_geometry(node, labelmap)
        assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(node)) == study
        image = slicer.util.arrayFromVolume(node)
        assert image.dtype == np.uint8 and image[phantom.array == 0].max() == 0 and image.max() > 0
    assert not np.array_equal(*(slicer.util.arrayFromVolume(n) for n in outputs))

    (image,) = synthesis.synthesize(segmentation, augment=0)
    assert image.GetName() == "A4C echo" and same_geometry(image, labelmap)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(labelmap), labelmap_before[0])
    assert volume_from_node(labelmap).same_geometry(labelmap_before[1])
    assert segmentation.GetSegmentation().GetNumberOfSegments() == segment_count
    assert segmentation.GetMTime() == mtime


def test_augmented_anatomy_gives_segmentations_and_their_images(scene, phantom):
    labelmap = _labelmap(scene, phantom, "A4C")
    outputs = synthesis.synthesize(labelmap, augment=1, seed=2)
    assert [n.GetName() for n in outputs] == ["A4C echo", "A4C anatomy 1", "A4C anatomy 1 echo"]
    anatomy = outputs[1]
    assert anatomy.IsA("vtkMRMLSegmentationNode")
    new_map = label_map_from_node(anatomy)
    assert new_map.same_geometry(phantom) and not np.array_equal(new_map.array, phantom.array)
    assert same_geometry(outputs[2], labelmap)


def _sequence_of_frames(scene, frames: list[Volume]):
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", "cine labels")
    sequence.SetIndexName("time")
    sequence.SetIndexUnit("s")
    for index, labels in enumerate(frames):
        frame = slicer.vtkMRMLLabelMapVolumeNode()
        fill_volume_node(frame, labels)
        sequence.SetDataNodeAtValue(frame, f"{index * 0.04:.2f}")
    browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", "cine")
    browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
    sequences_logic(scene).UpdateProxyNodesFromSequences(browser)
    return browser, sequence, browser.GetProxyNode(sequence)


def test_a_sequence_in_gives_sequences_out_in_the_same_browser(scene, phantom):
    grid = PhantomGrid.for_view("4CH", 48)
    frames = [
        phantom.with_array(phantom_label_map("4CH", phase, seed=1, grid=grid).labels.array)
        for phase in ("ED", "ES", "ED")
    ]
    browser, sequence, proxy = _sequence_of_frames(scene, frames)
    browser.SetSelectedItemNumber(1)
    assert sequence_of(proxy) is not None
    outputs = synthesis.synthesize(proxy, n=2)
    sequences = [n for n in outputs if n.IsA("vtkMRMLSequenceNode")]
    assert [s.GetName() for s in sequences] == ["cine labels echo 1", "cine labels echo 2"]
    for output in sequences:
        assert browser.IsSynchronizedSequenceNodeID(output.GetID())
        assert output.GetNumberOfDataNodes() == 3
        assert [output.GetNthIndexValue(i) for i in range(3)] == ["0.00", "0.04", "0.08"]
        assert output.GetIndexName() == "time"
        first, last = output.GetNthDataNode(0), output.GetNthDataNode(2)
        assert same_geometry(first, sequence.GetNthDataNode(0))
        second = slicer.util.arrayFromVolume(output.GetNthDataNode(1))
        assert not np.array_equal(slicer.util.arrayFromVolume(first), second)
        assert slicer.util.arrayFromVolume(last).shape == phantom.array.shape
        assert browser.GetProxyNode(output) is not None
    assert browser.GetSelectedItemNumber() == 1
    assert sequence.GetNumberOfDataNodes() == 3
    with pytest.raises(ValueError, match="not on every frame"):
        synthesis.synthesize(proxy, augment=1)


def test_a_cancelled_run_leaves_no_nodes_and_no_outputs(scene):
    big = phantom_label_map("3D", "ED", seed=0, grid=PhantomGrid.for_view("3D", size=64)).labels
    labelmap = _labelmap(scene, big, "LV 3D")
    before = node_ids(scene)
    run = synthesis.BackgroundSynthesis(labelmap, synthesis.SynthesisOptions(n=200))
    deadline = time.monotonic() + 60
    while not any(e.kind == "progress" for e in run.poll()):
        assert time.monotonic() < deadline and run.running
        time.sleep(0.05)
    worker = run.worker
    run.cancel()
    assert not run.running and worker.process.returncode != 0
    with pytest.raises(JobFailed, match="cancelled"):
        worker.check()
    assert node_ids(scene) == before
    assert not run.folder.exists()  # the job folder, staged outputs included, is gone


def test_a_3d_segmentation_gives_a_3d_volume_from_a_2d_model(scene, tiny_adversarial):
    """A 3D segmentation with a 2D model and plane 'volume' (the panel's 3D path): progress through the
    planes, one 3D volume node on the segmentation's grid whose heart planes are drawn, the others black;
    equal to the library's volume for the seed. Cancel: the same worker as
    ``test_a_cancelled_run_leaves_no_nodes_and_no_outputs``."""
    from EchoSynthLib.inference.generators import GeneratorSettings, open_generator

    labels = phantom_label_map("3D", "ED", seed=3, grid=PhantomGrid.for_view("3D", size=24)).labels
    labelmap = _labelmap(scene, labels, "LV 3D")
    model = str(tiny_adversarial.run / "model")
    events = []
    (node,) = synthesis.synthesize(labelmap, progress=events.append, generator=model, plane="volume", seed=4)
    assert any(e.kind == "progress" for e in events)
    assert same_geometry(node, labelmap)
    image = slicer.util.arrayFromVolume(node)
    assert image.shape == labels.array.shape and image.dtype == np.uint8
    drawer = open_generator(GeneratorSettings(model, plane="volume", device="cpu"))
    expected = drawer.generate(drawer.prepare(labels), 1, 4)[0].array
    heart = [k for k in range(labels.size[2]) if expected[k].any()]
    assert 2 < len(heart) < labels.size[2]
    assert np.abs(image.astype(int) - expected.astype(int)).max() <= 1


def test_worker_errors_reach_the_caller(scene, phantom):
    labelmap = _labelmap(scene, phantom, "A4C")
    before = node_ids(scene)
    with pytest.raises(JobFailed, match="no-such-model"):
        synthesis.synthesize(labelmap, generator="no-such-model")
    assert node_ids(scene) == before


def test_the_generator_list_offers_only_models_that_make_images(tmp_path, monkeypatch):
    import torch

    from EchoSynthLib.errors import InputError
    from EchoSynthLib.inference.generators import GeneratorSettings, open_generator
    from EchoSynthLib.store.families import SEGMENTER_KIND
    from EchoSynthLib.store.package import save_package
    from EchoSynthLib.store.registry import BUNDLED_ENV, CACHE_ENV, MANIFEST_ENV
    from EchoSynthScene.models import checked_model_folder, generator_choices

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(BUNDLED_ENV, str(tmp_path / "bundled"))
    monkeypatch.setenv(MANIFEST_ENV, str(tmp_path / "manifest.json"))  # nothing listed for download
    (tmp_path / "manifest.json").write_text('{"format_version": 1, "models": []}')
    save_package(tmp_path / "cache" / "tiny", "sdm2d", {"version": "0.1"}, {"w": torch.zeros(2)}, "card")
    segmenter = tmp_path / "bundled" / "camus-segmenter"
    save_package(segmenter, SEGMENTER_KIND, {"version": "1"}, {"w": torch.zeros(2)}, "card")
    (tmp_path / "cache" / "not-a-model").mkdir()
    choices = generator_choices()
    assert [c.spec for c in choices] == ["simulator", "tiny"]  # stored by name: found wherever it moves
    assert choices[1].label.startswith("tiny 0.1 (cache, sdm2d)")
    # Picked by hand ("Use a model folder...") or named in a job, a segmenter is refused before any work.
    with pytest.raises(InputError, match=r"segmenter2d.*cannot be used for label map -> image"):
        checked_model_folder(segmenter)
    with pytest.raises(InputError, match="cannot be used for label map -> image"):
        open_generator(GeneratorSettings("camus-segmenter"))
    assert checked_model_folder(tmp_path / "cache" / "tiny") == str(tmp_path / "cache" / "tiny")
    # The translate mode lists the learned label-guided models, without the simulator.
    from EchoSynthScene.models import TRANSLATION, task_of_mode

    assert task_of_mode("translate") == TRANSLATION
    assert [c.spec for c in generator_choices(TRANSLATION)] == ["tiny"]
    with pytest.raises(InputError, match="cannot be used for label map -> image"):
        checked_model_folder(segmenter, TRANSLATION)
    # A model guided by the source image translates only: listed in translate mode, not for synthesis.
    sourced = tmp_path / "cache" / "sourced"
    save_package(
        sourced, "adversarial2d", {"version": "1", "guide": "labels+source"}, {"w": torch.zeros(2)}, "c"
    )
    assert "sourced" not in [c.spec for c in generator_choices()]
    assert "sourced" in [c.spec for c in generator_choices(TRANSLATION)]
    with pytest.raises(InputError, match="translates images only"):
        checked_model_folder(sourced)
    assert checked_model_folder(sourced, TRANSLATION) == str(sourced)


def test_generate_says_what_is_missing(scene, phantom):
    assert "Select an input" in synthesis.input_problem(None, "simulator")
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "image")
    assert "Select an input" in synthesis.input_problem(volume, "simulator")
    empty = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "empty")
    assert "'empty' has no segments" in synthesis.input_problem(empty, "simulator")
    blank = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "blank")
    assert "'blank' has no voxels" in synthesis.input_problem(blank, "simulator")
    labelmap = _labelmap(scene, phantom)
    assert "generator" in synthesis.input_problem(labelmap, "")
    assert synthesis.input_problem(labelmap, "simulator") is None


def test_generate_cases_adds_volume_and_segmentation_pairs_in_a_new_study(scene, tiny_paired_model):
    """The "Generate cases" mode: no input; each case's echo volume and segmentation (same grid) land under
    one new study, and a run that is cancelled or fails adds nothing."""
    from EchoSynthLib.models.latent.pipeline import LatentModel

    before = node_ids(scene)
    nodes = synthesis.generate_cases(scene, generator=str(tiny_paired_model), n=2, steps=3, seed=4)
    assert [n.GetName() for n in nodes] == ["case 1 echo", "case 1 labels", "case 2 echo", "case 2 labels"]
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    studies = {hierarchy.GetItemParent(hierarchy_item(n)) for n in nodes}
    assert len(studies) == 1
    (study,) = studies
    assert hierarchy.GetItemLevel(study) == "Study"
    assert hierarchy.GetItemLevel(hierarchy.GetItemParent(study)) == "Patient"
    volume, segmentation = nodes[0], nodes[1]
    labels = label_map_from_node(segmentation, volume)
    expected = LatentModel.load(tiny_paired_model, "cpu").generate_pairs(1, steps=3, seed=4)[0]
    image = volume_from_node(volume)
    assert image.same_geometry(expected[0]) and labels.same_geometry(expected[0])  # the training grid
    np.testing.assert_array_equal(image.array, expected[0].array)  # case 1 is seed 4
    np.testing.assert_array_equal(labels.array, expected[1].array)
    # Cancelled: nothing new, no study.
    count = len(node_ids(scene))
    run = synthesis.BackgroundGeneration(
        scene, synthesis.SynthesisOptions(generator=str(tiny_paired_model), n=500)
    )
    run.cancel()
    assert len(node_ids(scene)) == count and not run.folder.exists()
    # A label-conditioned generator (the simulator) cannot generate cases.
    assert "paired-generation model" in synthesis.generation_problem("simulator")
    with pytest.raises(JobFailed, match="needs a paired-generation model"):
        synthesis.generate_cases(scene, generator="simulator", n=1)
    assert len(node_ids(scene)) == count and node_ids(scene) >= before


def test_translate_adds_the_translated_volume_beside_the_input(scene, phantom, tiny_adversarial, tmp_path):
    """The Translate mode's scene code: a volume and its segmentation (or the segmenter alone) through a
    real worker; the translated volume lands in the input's study with the input's grid, equal to the
    library's image for the seed; a 2D+t sequence gives a sequence in the same browser; cancel adds
    nothing."""
    from EchoSynthLib.inference.generators import GeneratorSettings, open_generator
    from EchoSynthLib.simulation import simulate_bmode
    from EchoSynthScene import translation
    from EchoSynthScene.nodes import add_image_node, image_node

    model = str(tiny_adversarial.run / "model")
    image = simulate_bmode(phantom, seed=2)
    volume = add_image_node(scene, image, "Vscan A4C")
    segmentation = _segmentation_from_file(scene, phantom, tmp_path / "a4c.seg.nrrd")
    assert "segmentation" in translation.translation_problem(volume, None, model, False)
    assert "label-guided model" in translation.translation_problem(volume, segmentation, "simulator", False)
    assert translation.translation_problem(volume, segmentation, model, False) is None
    before = node_ids(scene)
    (translated,) = translation.translate(volume, segmentation, generator=model, seed=3, device="cpu")
    assert translated.GetName() == "Vscan A4C translated"
    out = volume_from_node(translated)
    assert out.same_geometry(image)
    generator = open_generator(GeneratorSettings(model, device="cpu"))
    expected = generator.generate(generator.prepare(label_map_from_node(segmentation, volume)), 1, 3)[0]
    np.testing.assert_array_equal(out.array, expected.array)
    hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    parent = hierarchy.GetItemParent
    assert parent(hierarchy_item(translated)) == parent(hierarchy_item(volume))
    added = [scene.GetNodeByID(i) for i in node_ids(scene) - before]
    data = [n for n in added if n.IsA("vtkMRMLVolumeNode") or n.IsA("vtkMRMLSegmentationNode")]
    assert data == [translated]  # and its display nodes: no helper node is left behind
    # The segmenter alone labels the volume.
    (alone,) = translation.translate(volume, None, segment=True, generator=model, device="cpu")
    assert volume_from_node(alone).same_geometry(image)
    # A 2D+t sequence of volumes: a translated sequence, synchronised in the same browser.
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", "cine")
    for index, seed in enumerate((4, 5)):
        sequence.SetDataNodeAtValue(image_node(simulate_bmode(phantom, seed=seed), "frame"), str(index))
    browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", "cine browser")
    browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
    sequences_logic(scene).UpdateProxyNodesFromSequences(browser)
    proxy = browser.GetProxyNode(sequence)
    outputs = translation.translate(proxy, segmentation, generator=model, device="cpu")
    (output,) = [n for n in outputs if n.IsA("vtkMRMLSequenceNode")]
    assert output.GetName() == "cine translated" and output.GetNumberOfDataNodes() == 2
    assert browser.IsSynchronizedSequenceNodeID(output.GetID())
    # Cancelled: nothing new.
    count = len(node_ids(scene))
    run = translation.BackgroundTranslation(volume, synthesis.SynthesisOptions(generator=model), segmentation)
    run.cancel()
    assert len(node_ids(scene)) == count and not run.folder.exists()
    with pytest.raises(ValueError, match="segmentation of the volume or the segmenter"):
        translation.translate(volume, None, generator=model)


def test_a_blocking_run_keeps_the_gui_alive(scene, phantom, monkeypatch):
    """The console API waits for its worker while Slicer's GUI processes its events (no "Not Responding"
    for a long run); outside a Slicer application there is nothing to process."""
    from types import SimpleNamespace

    import slicer

    assert synthesis.keep_gui_alive() is None
    processed = []
    monkeypatch.setattr(
        slicer, "app", SimpleNamespace(processEvents=lambda: processed.append(1)), raising=False
    )
    (image,) = synthesis.synthesize(_labelmap(scene, phantom), seed=1)
    assert image is not None and processed
