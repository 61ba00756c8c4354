"""Adapt to my images in the Slicer module (issue 33 section 3): the frames of a volume or sequence in the
scene go to an 'adapt' job, a real worker fits the look, and the model is installed in the user's cache
under a name no other model has, listed, chosen as the Generator, and drawn with by Generate. Too few
images are one clear error; a cancelled run installs nothing and leaves no folder behind.

Scene code against Slicer's MRML library (slicer-core); the panel on the stand-in widgets of
``test_slicer_panel`` (the module file loaded as in ``test_slicer_module``). The base is the simulator with
a tiny fit, so a run takes seconds.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import slicer
from test_adapt import SCANNER, scanner_settings, simulated
from test_slicer_module import module  # noqa: F401 (the module file against stand-ins)
from test_slicer_panel import Combo, Node
from test_slicer_scene import scene  # noqa: F401 (a scene with the sequence classes)

from EchoSynthLib.adaptation.adapt import AdaptSettings, work_folder
from EchoSynthLib.anatomy import PhantomGrid, phantom_label_map
from EchoSynthLib.augmentation.degradations import degrade_fixed
from EchoSynthLib.data.io import read_image, write_image
from EchoSynthLib.data.volume import Volume
from EchoSynthLib.errors import InputError
from EchoSynthLib.jobs.launcher import JobFailed
from EchoSynthLib.jobs.spec import ADAPT, ADAPT_DEFAULTS, ADAPTED_MODEL, RESULT_FILE, JobSpec
from EchoSynthLib.jobs.worker import main as worker_main
from EchoSynthLib.simulation import simulate_bmode
from EchoSynthLib.store import downloads, registry
from EchoSynthScene import adaptation
from EchoSynthScene.geometry import fill_volume_node, volume_from_node
from EchoSynthScene.nodes import image_node
from EchoSynthScene.sequences import sequences_logic

TINY = {"maps": 8, "rounds": 1, "candidates": 1, "device": "cpu"}  # a fit of seconds
WAIT_S = 300


@pytest.fixture
def cache(monkeypatch, tmp_path):
    """The user's model cache in ``tmp_path`` (the bundled models and manifest as shipped), and the job
    folders in a temporary folder of their own, so a test sees what a run leaves behind."""
    monkeypatch.setenv(registry.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(registry.BUNDLED_ENV, raising=False)
    monkeypatch.delenv(registry.MANIFEST_ENV, raising=False)
    monkeypatch.delenv(downloads.ACCEPT_ENV, raising=False)
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(jobs))
    return SimpleNamespace(models=tmp_path / "cache", jobs=jobs)


def scanner_frames(count: int, size: int = 48) -> np.ndarray:
    """``count`` uint8 frames (size x size) of phantoms, simulated and put in a scanner's look (a wide blur
    and a hard, dark grey map: ``test_adapt``'s scanner)."""
    images, inside = simulated(count, size, first=200)
    looked = degrade_fixed(images, inside, SCANNER, scanner_settings(), range(count))
    return np.rint((looked[:, 0].numpy() + 1.0) * 127.5).clip(0, 255).astype(np.uint8)


def scanner_sequence(scene, count: int, name: str = "Vscan cine"):  # noqa: F811
    """A sequence of ``count`` 2D frames in a browser, shown at frame 1; its proxy node."""
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", name)
    for index, frame in enumerate(scanner_frames(count)):
        sequence.SetDataNodeAtValue(
            image_node(Volume.from_2d(frame, (0.4, 0.4)), "frame"), f"{index * 0.04:.2f}"
        )
    browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", f"{name} browser")
    browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
    sequences_logic(scene).UpdateProxyNodesFromSequences(browser)
    browser.SetSelectedItemNumber(1)
    return browser.GetProxyNode(sequence)


class Selector:
    """A qMRMLNodeComboBox as far as the panel uses it."""

    def __init__(self, node=None):
        self.node = node

    def currentNode(self):
        return self.node


class ModelList:
    """The model manager's QListWidget: its rows' texts, and the one selected."""

    def __init__(self):
        self.rows, self.current = [], None

    def clear(self):
        self.rows = []

    def addItem(self, item):
        self.rows.append(getattr(item, "text", item))

    def findItems(self, text, flags):
        assert flags == sys.modules["qt"].Qt.MatchStartsWith
        return [row for row in self.rows if row.startswith(text)]

    def setCurrentItem(self, item):
        self.current = item


class Timer:
    def __init__(self):
        self.active = False

    def start(self):
        self.active = True

    def stop(self):
        self.active = False


@pytest.fixture
def panel(module, cache, monkeypatch):  # noqa: F811
    """The module's widget on stand-in widgets, with the module's real logic; dialogs fail the test."""
    qt = sys.modules["qt"]
    monkeypatch.setattr(qt, "Qt", SimpleNamespace(UserRole=32, MatchStartsWith=1), raising=False)
    monkeypatch.setattr(
        qt, "QListWidgetItem", lambda text: SimpleNamespace(text=text, setData=lambda *a: None), raising=False
    )
    for name in ("errorDisplay", "confirmOkCancelDisplay", "createProgressDialog"):
        monkeypatch.setattr(slicer.util, name, lambda *a, name=name, **k: pytest.fail(f"{name}: {a}"))
    widget = module.EchoSynthWidget()
    widget.ui = SimpleNamespace(
        modeSelector=Combo(),
        generatorSelector=Combo(),
        inputSelector=SimpleNamespace(enabled=True),
        referenceSelector=SimpleNamespace(enabled=True),
        translateVolumeSelector=SimpleNamespace(enabled=True),
        useSegmenterCheckBox=SimpleNamespace(enabled=True),
        generateButton=SimpleNamespace(enabled=True, text="", toolTip=""),
        statusLabel=SimpleNamespace(text=""),
        modelsList=ModelList(),
        adaptVolumeSelector=Selector(),
        adaptBaseSelector=Combo(),
        adaptNameLineEdit=SimpleNamespace(text="", placeholderText=""),
        adaptMapsSpinBox=SimpleNamespace(value=64),
        adaptRoundsSpinBox=SimpleNamespace(value=5),
        adaptWayBackSpinBox=SimpleNamespace(value=0),
        adaptButton=SimpleNamespace(enabled=False, text="Adapt", toolTip=""),
        adaptProgressBar=SimpleNamespace(value=0, visible=False),
        adaptStatusLabel=SimpleNamespace(text=""),
    )
    widget.ui.modeSelector.connect("currentIndexChanged(int)", widget.onModeChanged)
    widget.ui.generatorSelector.connect("currentIndexChanged(int)", widget.onGeneratorChanged)
    widget.ui.adaptBaseSelector.connect("currentIndexChanged(int)", widget._checkCanAdapt)
    widget.logic = module.EchoSynthLogic()
    widget._adaptTimer = Timer()
    return widget


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_a_sequence_of_frames_gives_an_installed_model_that_the_panel_chooses_and_generate_draws_with(
    panel,
    module,  # noqa: F811
    scene,  # noqa: F811
    cache,
):
    proxy = scanner_sequence(scene, 16)
    taken = cache.models / "My-Vscan-2024"  # a folder of that name, not a model: never replaced
    taken.mkdir(parents=True)
    (taken / "notes.txt").write_text("mine")
    node = Node(module.MODES, mode="generate", device="cpu")  # generate mode lists paired models only
    panel.setParameterNode(node)
    panel.refreshAdaptBases()
    base = panel.ui.adaptBaseSelector
    assert base.itemData(base.currentIndex) == adaptation.DEFAULT_BASE  # the library's default base
    assert not panel.ui.adaptButton.enabled and "Select your scanner's images" in panel.ui.adaptButton.toolTip
    panel.ui.adaptVolumeSelector.node = proxy
    base.currentIndex = base.findData("simulator")
    assert panel.ui.adaptButton.enabled and panel.ui.adaptNameLineEdit.placeholderText == "Vscan-cine-look"
    panel.ui.adaptNameLineEdit.text = " My Vscan (2024) "
    panel.ui.adaptMapsSpinBox.value, panel.ui.adaptRoundsSpinBox.value = 8, 1

    panel.onAdaptButton()
    assert panel.ui.adaptButton.text == "Cancel" and panel.ui.adaptProgressBar.visible
    assert panel._adaptTimer.active
    fractions, deadline = [], time.monotonic() + WAIT_S
    while panel._adaptRun is not None:
        assert time.monotonic() < deadline, panel.ui.adaptStatusLabel.text
        panel.onAdaptPoll()
        fractions.append(panel.ui.adaptProgressBar.value)
        time.sleep(0.05)

    name = "My-Vscan-2024-2"
    assert "Installed 'My-Vscan-2024-2'" in panel.ui.adaptStatusLabel.text, panel.ui.adaptStatusLabel.text
    assert fractions == sorted(fractions) and max(fractions) == 1000
    assert not panel.ui.adaptProgressBar.visible and not panel._adaptTimer.active
    assert panel.ui.adaptButton.text == "Adapt"
    # Listed and chosen: the Generator (the panel went to synthesize mode) and the model manager's row.
    assert (node.mode, node.generator) == ("synthesize", name)
    generators = panel.ui.generatorSelector
    assert generators.itemData(generators.currentIndex) == name
    assert panel.ui.modelsList.current.startswith(f"{name} unversioned: cache")
    assert base.findData(name) >= 0  # and a base to adapt further
    (installed,) = [m for m in registry.installed_models() if m.name == name]
    assert (installed.kind, installed.source, installed.path) == (
        "adapted-look",
        "cache",
        cache.models / name,
    )
    document = json.loads((installed.path / "config.json").read_text())
    assert document["provenance"]["fit"]["images"] == 16 and document["settings"]["base"] == "simulator"
    assert document["settings"]["kinds"]  # the fit kept a degradation of the scanner's look
    assert (taken / "notes.txt").read_text() == "mine"
    assert _leftovers(cache.models) == ["My-Vscan-2024", name] and _leftovers(cache.jobs) == []
    assert adaptation.unique_model_name("my-vscan-2024") == "my-vscan-2024-3"  # case-insensitive
    # The scene was only read: the browser is on the frame it showed.
    assert slicer.vtkMRMLSequenceBrowserNode.SafeDownCast(scene.GetFirstNodeByName("Vscan cine browser"))
    assert scene.GetFirstNodeByName("Vscan cine browser").GetSelectedItemNumber() == 1

    # Generate draws label maps in the scanner's look with it.
    labels = phantom_label_map("4CH", "ED", seed=1, grid=PhantomGrid.for_view("4CH", size=48)).labels
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "A4C")
    fill_volume_node(labelmap, labels)
    (image,) = module.EchoSynthLogic().synthesize(labelmap, model=node.generator, seed=4, ask=False)
    drawn = volume_from_node(image)
    assert image.GetName() == "A4C echo" and drawn.same_geometry(labels)
    assert not np.array_equal(drawn.array, simulate_bmode(labels, 4).array)  # not the plain simulator's


def test_too_few_images_are_one_clear_error_and_install_nothing(
    panel,
    module,  # noqa: F811
    scene,  # noqa: F811
    cache,
    tmp_path,
    capsys,
):
    few = scanner_sequence(scene, 5, "short cine")
    problem = adaptation.adaptation_problem(few, "simulator")
    assert problem.startswith("'short cine' gives 5 2D image(s); adapting needs at least 16")
    logic = module.EchoSynthLogic()
    with pytest.raises(ValueError) as raised:
        logic.adapt(few, "few", base="simulator", ask=False, **TINY)
    assert str(raised.value) == problem and "\n" not in problem
    with pytest.raises(ValueError, match="at least 16"):
        adaptation.BackgroundAdaptation(few, "few", "simulator", **TINY)
    panel.ui.adaptVolumeSelector.node = few
    panel.refreshAdaptBases()
    assert not panel.ui.adaptButton.enabled and panel.ui.adaptButton.toolTip == problem
    panel.onAdaptButton()  # pressed anyway: says why, starts nothing
    assert panel.ui.adaptStatusLabel.text == problem and panel._adaptRun is None
    # A labelmap is no scanner image; a bad setting is named before any work.
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    assert "Select your scanner's images" in adaptation.adaptation_problem(labelmap)
    with pytest.raises(InputError, match=r"unknown setting\(s\) steps"):
        adaptation.BackgroundAdaptation(scanner_sequence(scene, 16, "cine"), "x", "simulator", steps=3)
    with pytest.raises(InputError, match="rounds"):
        logic.adapt(scanner_sequence(scene, 16, "cine 2"), "x", base="simulator", ask=False, rounds=0)
    assert _leftovers(cache.models) == [] and _leftovers(cache.jobs) == []
    # The worker refuses too few images itself, in one error event, writing nothing.
    job = tmp_path / "job"
    names = [f"inputs/image{index}.nrrd" for index in range(3)]
    for name, frame in zip(names, scanner_frames(3), strict=True):
        write_image(Volume.from_2d(frame), job / name)
    JobSpec(task=ADAPT, inputs=tuple(names), generator="simulator", **TINY).write(job)
    capsys.readouterr()
    assert worker_main([str(job)]) == 2
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [e["event"] for e in events] == ["start", "error"] and "at least 16" in events[-1]["message"]
    assert not (job / RESULT_FILE).exists() and not (job / ADAPTED_MODEL).exists()
    assert not work_folder(job / ADAPTED_MODEL).exists()


def test_a_stack_of_colour_frames_gives_one_grey_image_per_slice(scene, tmp_path):  # noqa: F811
    """A cine loaded as one volume (frames along K), in colour: each slice is one grey image."""
    frames = scanner_frames(20)
    rgb = np.stack([frames, frames // 2, frames // 4], axis=-1)  # (k, j, i, 3)
    node = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "colour cine")
    slicer.util.updateVolumeFromArray(node, rgb)
    node.SetSpacing(0.3, 0.5, 1.0)
    assert adaptation.image_count(node) == 20 and adaptation.adaptation_problem(node) is None
    job = adaptation.prepare_adaptation(node, tmp_path / "job", "simulator", **TINY)
    spec = JobSpec.read(job.folder)
    assert (spec.task, spec.generator, spec.maps, spec.rounds, spec.candidates) == (
        ADAPT,
        "simulator",
        8,
        1,
        1,
    )
    assert len(spec.inputs) == 20 and len({Path(name).parent for name in spec.inputs}) == 1
    image = read_image(job.folder / spec.inputs[7])
    grey = np.rint(rgb[7].astype(float) @ [0.299, 0.587, 0.114]).astype(np.uint8)
    assert image.is_2d and image.spacing[:2] == (0.3, 0.5)
    np.testing.assert_array_equal(image.array[0], grey)
    # One 2D image, and a single slice along another axis, are one image each.
    single = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "one frame")
    slicer.util.updateVolumeFromArray(single, frames[:, :1, :].copy())  # (20, 1, 48): one j row
    assert adaptation.image_count(single) == 1


def test_cancelling_an_adaptation_installs_nothing_and_leaves_no_folder(
    panel,
    scene,  # noqa: F811
    cache,
):
    proxy = scanner_sequence(scene, 16)
    # In the middle of the fit (900 proposals a round): the work folder is there; cancel removes it all.
    run = adaptation.BackgroundAdaptation(proxy, "slow", "simulator", maps=8, rounds=50, candidates=100)
    deadline = time.monotonic() + WAIT_S
    while not any(e.kind == "progress" and e.fraction >= 0.25 for e in run.poll()):
        assert time.monotonic() < deadline and run.running
        time.sleep(0.05)
    assert work_folder(run.folder / ADAPTED_MODEL).is_dir() and _leftovers(cache.jobs) == [run.folder.name]
    worker = run.worker
    run.cancel()
    assert not run.running and worker.process.returncode != 0
    with pytest.raises(JobFailed, match="cancelled"):
        worker.check()
    assert not run.folder.exists() and _leftovers(cache.jobs) == [] and _leftovers(cache.models) == []
    # The panel's Cancel: the button goes back, the status says nothing was installed.
    panel.ui.adaptVolumeSelector.node = proxy
    panel.refreshAdaptBases()
    panel.ui.adaptBaseSelector.currentIndex = panel.ui.adaptBaseSelector.findData("simulator")
    panel.onAdaptButton()
    assert panel.ui.adaptButton.text == "Cancel"
    panel.onAdaptButton()
    assert panel._adaptRun is None and panel.ui.adaptButton.text == "Adapt" and panel.ui.adaptButton.enabled
    assert panel.ui.adaptStatusLabel.text == "Stopped (cancelled); nothing was installed."
    assert not panel.ui.adaptProgressBar.visible and not panel._adaptTimer.active
    assert _leftovers(cache.jobs) == [] and _leftovers(cache.models) == []
    assert [m for m in registry.installed_models() if m.source == "cache"] == []


def test_the_adapt_job_spec():
    """An 'adapt' job names its images (one folder) and the fit; the fit's settings go with it alone, and
    their defaults are the library's."""
    spec = JobSpec(task=ADAPT, inputs=("inputs/a.nrrd", "inputs/b.nrrd"), generator="simulator", rounds=2)
    assert (spec.maps, spec.rounds, spec.candidates) == (64, 2, 8)
    defaults = {f.name: f.default for f in fields(AdaptSettings)}
    assert {name: defaults[name] for name in ADAPT_DEFAULTS} == ADAPT_DEFAULTS
    with pytest.raises(InputError, match="one folder"):
        JobSpec(task=ADAPT, inputs=("inputs/a.nrrd", "elsewhere/b.nrrd"))
    with pytest.raises(InputError, match="at least one input"):
        JobSpec(task=ADAPT)
    with pytest.raises(InputError, match="one model and no images"):
        JobSpec(task=ADAPT, inputs=("a.nrrd",), n=2)
    with pytest.raises(InputError, match="'adapt' jobs only"):
        JobSpec(inputs=("map.nrrd",), maps=8)
    with pytest.raises(InputError, match="'adapt' jobs only"):
        JobSpec(inputs=("map.nrrd",), way_back=10)
    assert spec.way_back == 0 and "way_back" in adaptation.SETTINGS


def test_the_modules_self_test_of_adapt_runs_and_leaves_the_users_cache_alone(
    module,  # noqa: F811
    scene,  # noqa: F811
    cache,
):
    """``EchoSynthTest.test_adapt_to_my_images`` (run in Slicer before a release) as written, here on the
    MRML library; its model goes to a temporary cache, never the user's."""
    import unittest

    shown = []
    SelfTest = type(
        "SelfTest",
        (module.EchoSynthTest, unittest.TestCase),
        {"delayDisplay": lambda self, text: shown.append(text)},
    )
    SelfTest("test_adapt_to_my_images").test_adapt_to_my_images()
    assert shown == ["Adapt to my images: passed"]
    assert _leftovers(cache.models) == [] and _leftovers(cache.jobs) == []
    assert registry.user_cache_dir() == cache.models  # the variable is restored
