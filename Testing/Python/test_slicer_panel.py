"""The panel's behaviour (issue 31): its state survives Slicer's GUI binding, models chosen by name are
downloaded with a licence prompt, progress and Cancel, and the console API never opens a dialog headless.

Outside Slicer, with stand-ins that behave like the real parts: a combo box that emits
``currentIndexChanged`` as Qt's does (-1 when cleared, 0 when the first item arrives, the new index when
set), and a parameter node whose ``connectGui`` does what Slicer's ``QComboBoxToStringableConnector`` does
(``Base/Python/slicer/parameterNodeWrapper/guiConnectors.py``: clear and refill the list in its constructor,
then write the node's value into the widget, and write the widget's choices back into the node).
"""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest
import slicer
from test_downloads import LICENCE, publish, server  # noqa: F401 (the loopback server fixture)
from test_slicer_module import module  # noqa: F401 (the module file against stand-ins)

from EchoSynthLib.errors import InputError
from EchoSynthLib.release import write_manifest
from EchoSynthLib.store import downloads, registry


class Combo:
    """A QComboBox as far as the panel uses it, emitting currentIndexChanged(int) the way Qt does."""

    def __init__(self):
        self.items: list[tuple[str, object]] = []
        self._index = -1
        self.slots = []
        self.blocked = False
        self.enabled = True

    def connect(self, signal, slot):
        assert signal == "currentIndexChanged(int)"
        self.slots.append(slot)

    def _emit(self):
        if not self.blocked:
            for slot in list(self.slots):
                slot(self._index)

    def blockSignals(self, block):
        self.blocked = block

    def clear(self):
        self.items = []
        if self._index != -1:
            self._index = -1
            self._emit()

    def addItem(self, text, data=None):
        self.items.append((text, data))
        if self._index == -1:
            self._index = 0
            self._emit()

    @property
    def currentIndex(self):
        return self._index

    @currentIndex.setter
    def currentIndex(self, index):
        if index != self._index:
            self._index = index
            self._emit()

    @property
    def count(self):
        return len(self.items)

    def itemText(self, index):
        return self.items[index][0]

    def itemData(self, index):
        return self.items[index][1]

    def findData(self, data):
        return next((i for i, (_, d) in enumerate(self.items) if d == data), -1)

    def findText(self, text):
        return next((i for i, (t, _) in enumerate(self.items) if t == text), -1)


class Node:
    """A parameter node whose ``connectGui`` binds ``mode`` to the Mode combo box as Slicer's connector does;
    setting ``mode`` (the console) writes the widget, which emits its signal."""

    def __init__(self, modes, **values):
        object.__setattr__(self, "_modes", modes)
        object.__setattr__(self, "_ui", None)
        object.__setattr__(self, "values", {"generator": "simulator", "mode": "synthesize", **values})
        self.values.update(useSegmenter=False, augment=0, inputNode=None)

    def __getattr__(self, name):
        return self.values[name]

    def __setattr__(self, name, value):
        self.values[name] = value
        if name == "mode" and self._ui is not None:
            self._ui.modeSelector.currentIndex = self._modes.index(value)

    def connectGui(self, ui):
        combo = ui.modeSelector
        combo.clear()  # the connector's constructor: emits -1, then 0 with the first item
        for mode in self._modes:
            combo.addItem(mode)
        combo.currentIndex = self._modes.index(self.values["mode"])  # write(value)
        changed = lambda i: self.values.update(mode=self._modes[i])  # noqa: E731 (the connector's slot)
        combo.connect("currentIndexChanged(int)", changed)
        object.__setattr__(self, "_ui", ui)
        return changed

    def disconnectGui(self, changed):
        self._ui.modeSelector.slots.remove(changed)
        object.__setattr__(self, "_ui", None)

    def AddObserver(self, *args):
        return 1

    def RemoveObserver(self, *args):
        pass


class Dialog:
    """slicer.util.createProgressDialog's QProgressDialog: value, and a Cancel the test presses."""

    def __init__(self, cancel_at=None):
        self.values, self.cancel_at, self.closed = [], cancel_at, False

    @property
    def value(self):
        return self.values[-1] if self.values else 0

    @value.setter
    def value(self, value):
        self.values.append(value)

    @property
    def wasCanceled(self):
        return self.cancel_at is not None and self.value >= self.cancel_at

    def close(self):
        self.closed = True


@pytest.fixture
def panel(module, monkeypatch, tmp_path):  # noqa: F811
    """The module's widget on stand-in widgets, the real model registry (bundled models), an empty cache."""
    monkeypatch.setenv(registry.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(registry.BUNDLED_ENV, raising=False)
    monkeypatch.delenv(downloads.ACCEPT_ENV, raising=False)
    qt = sys.modules["qt"]
    monkeypatch.setattr(qt, "Qt", SimpleNamespace(UserRole=32), raising=False)
    monkeypatch.setattr(
        qt, "QListWidgetItem", lambda text: SimpleNamespace(setData=lambda *a: None), raising=False
    )
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
        modelsList=SimpleNamespace(clear=lambda: None, addItem=lambda item: None),
    )
    widget.ui.modeSelector.connect("currentIndexChanged(int)", widget.onModeChanged)
    widget.ui.generatorSelector.connect("currentIndexChanged(int)", widget.onGeneratorChanged)
    widget.logic = SimpleNamespace(missingInput=lambda parameters: None)
    return widget


def test_a_saved_scenes_mode_and_model_survive_the_gui_binding_and_a_console_mode_change(panel, module):  # noqa: F811
    """Before: connecting the GUI wrote mode 'synthesize' and the first generator into the node on setup,
    every enter() and after a scene close; a console change of mode reset the model."""
    node = Node(module.MODES, mode="translate", generator="adversarial-camus128-translate")
    panel.setParameterNode(node)
    assert (node.mode, node.generator) == ("translate", "adversarial-camus128-translate")
    assert panel.ui.generatorSelector.itemData(panel.ui.generatorSelector.currentIndex) == node.generator
    panel.setParameterNode(None)  # exit, or a scene close
    panel.setParameterNode(node)  # enter again
    assert (node.mode, node.generator) == ("translate", "adversarial-camus128-translate")
    node.mode = "synthesize"  # the console: the translator cannot synthesize, so the first model is chosen
    assert node.generator == "simulator"
    node.generator = "latent-camus128"
    node.mode = "translate"  # latent-camus128 translates too: it stays
    assert node.generator == "latent-camus128"


def test_models_are_stored_by_name_and_a_path_saved_by_an_earlier_version_becomes_the_name(panel, module):  # noqa: F811
    old = "/opt/Slicer-5.10/slicer.org/Extensions-33000/EchoSynth/lib/Resources/Models/latent-camus128"
    node = Node(module.MODES, generator=old)
    panel.setParameterNode(node)
    assert node.generator == "latent-camus128"
    specs = [panel.ui.generatorSelector.itemData(i) for i in range(panel.ui.generatorSelector.count)]
    assert specs[:1] == ["simulator"] and "latent-camus128" in specs and not [s for s in specs if "/" in s]


def test_choosing_a_listed_model_downloads_it_after_its_licence_with_progress_and_cancel(
    panel,
    module,  # noqa: F811
    server,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    model = publish(server, tmp_path, name="remote-sdm")
    size = len(server.files["/remote-sdm-1.0.zip"])
    manifest = write_manifest([{**model.__dict__, "size": size}], tmp_path / "manifest.json")
    monkeypatch.setenv(registry.MANIFEST_ENV, str(manifest))
    asked, dialogs = [], []
    answer = {"ok": False, "cancel_at": None}
    monkeypatch.setattr(
        slicer.util, "confirmOkCancelDisplay", lambda text, **k: asked.append(text) or answer["ok"]
    )
    monkeypatch.setattr(slicer.util, "errorDisplay", lambda text, **k: pytest.fail(f"error shown: {text}"))

    def progress_dialog(**kwargs):
        dialogs.append(Dialog(answer["cancel_at"]))
        return dialogs[-1]

    monkeypatch.setattr(slicer.util, "createProgressDialog", progress_dialog)
    monkeypatch.setattr(
        slicer, "app", SimpleNamespace(majorVersion=5, minorVersion=10, processEvents=lambda: None)
    )
    node = Node(module.MODES)
    panel.setParameterNode(node)
    combo = panel.ui.generatorSelector
    listed = combo.findData("remote-sdm")
    assert "download" in combo.itemText(listed)
    combo.currentIndex = listed  # the licence is declined: nothing installed, the choice goes back
    assert (
        LICENCE in asked[-1]
        and node.generator == "simulator"
        and combo.itemData(combo.currentIndex) == "simulator"
    )
    assert not (tmp_path / "cache" / "remote-sdm").exists() and dialogs[-1].closed
    answer.update(ok=True, cancel_at=1)  # accepted, then Cancel pressed during the download
    combo.currentIndex = listed
    assert node.generator == "simulator" and "cancelled" in panel.ui.statusLabel.text
    assert not (tmp_path / "cache").exists() or not [p for p in (tmp_path / "cache").iterdir() if p.is_dir()]
    answer.update(cancel_at=None)
    combo.currentIndex = combo.findData("remote-sdm")
    assert (
        node.generator == "remote-sdm" and (tmp_path / "cache" / "remote-sdm" / "model.safetensors").is_file()
    )
    assert dialogs[-1].values[-1] == 1000 and dialogs[-1].closed
    assert "download" not in combo.itemText(combo.findData("remote-sdm"))  # now installed


def test_the_console_api_opens_no_dialog_headless_and_an_old_slicer_panel_does_not_fail(
    module,  # noqa: F811
    server,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    model = publish(server, tmp_path, name="remote-sdm")
    manifest = write_manifest([model.__dict__], tmp_path / "manifest.json")
    monkeypatch.setenv(registry.MANIFEST_ENV, str(manifest))
    monkeypatch.setenv(registry.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(downloads.ACCEPT_ENV, raising=False)
    modal = lambda *args, **kwargs: pytest.fail("a modal dialog opened in a headless run")  # noqa: E731
    for name in ("confirmOkCancelDisplay", "errorDisplay", "infoDisplay", "createProgressDialog"):
        monkeypatch.setattr(slicer.util, name, modal)
    monkeypatch.setattr(slicer.util, "mainWindow", lambda: None)  # Slicer --no-main-window
    logic = module.EchoSynthLogic()
    assert logic.interactive() is False and logic.interactive(ask=True) is True
    assert logic.downloadModel("simulator") is None
    with pytest.raises(InputError, match="licence was not accepted"):
        logic.downloadModel("remote-sdm")
    assert logic.downloadModel("remote-sdm", acceptLicence=True) == tmp_path / "cache" / "remote-sdm"
    assert registry.set_first_use(None) is None  # the API leaves no download handler behind
    # An old Slicer: setup() shows which version is needed and returns; entering the module must not fail.
    widget = module.EchoSynthWidget()
    widget.enter()
    widget.exit()
