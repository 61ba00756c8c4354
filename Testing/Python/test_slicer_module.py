"""The module file itself, loaded with the real MRML classes (slicer-core) and small stand-ins for the parts
of Slicer that need the application (Qt, the parameter-node wrapper, ScriptedLoadableModule).

The rules checked here are Slicer's: the parameter-node wrapper writes None as the default of a node field,
and a ``Union`` of node classes can hold None only when None is a member
(``Base/Python/slicer/parameterNodeWrapper/serializers.py``, ``UnionSerializer._findBestSerializer``);
``qMRMLWidget::setMRMLScene`` only emits ``mrmlSceneChanged``, so each node selector gets the scene from a
``.ui`` connection; a binding needs a widget that can show the field's type (``guiConnectors.py``).
"""

from __future__ import annotations

import ast
import importlib.util
import sys
import types
import typing
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import pytest
import slicer

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "EchoSynth" / "EchoSynth.py"
UI = ROOT / "EchoSynth" / "Resources" / "UI" / "EchoSynth.ui"


class Choice:
    def __init__(self, choices):
        self.choices = list(choices)


class WithinRange:  # Slicer's keeps its bounds as minimum and maximum
    def __init__(self, minimum, maximum):
        self.minimum, self.maximum = minimum, maximum


class _Base:
    def __init__(self, parent=None):
        self.parent = parent


@pytest.fixture
def module(monkeypatch):
    """EchoSynth.py imported against stand-ins; ``slicer.app`` reports Slicer 5.10."""
    wrapper = types.ModuleType("slicer.parameterNodeWrapper")
    wrapper.Choice, wrapper.WithinRange = Choice, WithinRange
    wrapper.parameterNodeWrapper = lambda cls: cls
    scripted = types.ModuleType("slicer.ScriptedLoadableModule")
    for name in ("ScriptedLoadableModule", "ScriptedLoadableModuleLogic", "ScriptedLoadableModuleWidget"):
        setattr(scripted, name, type(name, (_Base,), {}))
    scripted.ScriptedLoadableModuleTest = type("ScriptedLoadableModuleTest", (), {})
    monkeypatch.setitem(sys.modules, "qt", types.ModuleType("qt"))
    monkeypatch.setitem(sys.modules, "slicer.parameterNodeWrapper", wrapper)
    monkeypatch.setitem(sys.modules, "slicer.ScriptedLoadableModule", scripted)
    monkeypatch.setattr(slicer, "app", SimpleNamespace(majorVersion=5, minorVersion=10), raising=False)
    spec = importlib.util.spec_from_file_location("EchoSynthUnderTest", MODULE)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


def _node_classes(annotation) -> tuple[list[type], bool]:
    """The MRML node classes a field annotation names, and whether it admits None."""
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    members = typing.get_args(annotation) if typing.get_origin(annotation) is typing.Union else (annotation,)
    nodes = [m for m in members if isinstance(m, type) and issubclass(m, slicer.vtkMRMLNode)]
    single = len(members) == 1  # a plain node field: the NodeSerializer writes None itself
    return nodes, single or type(None) in members


def _fields(module) -> dict:
    return typing.get_type_hints(module.EchoSynthParameterNode, include_extras=True)


def _ui():
    root = ET.parse(UI).getroot()
    top = root.find("widget")
    widgets = {w.get("name"): w for w in root.iter("widget")}
    return top, widgets, root


def test_every_node_field_of_the_parameter_node_admits_none(module):
    node_fields = {name: _node_classes(t) for name, t in _fields(module).items() if _node_classes(t)[0]}
    assert set(node_fields) == {"inputNode", "referenceVolume", "translateVolume"}
    for name, (_, admits_none) in node_fields.items():
        assert admits_none, f"{name}: a Union of node classes without None cannot hold the default None"


def test_every_parameter_name_binds_to_a_widget_that_shows_its_type(module):
    fields = _fields(module)
    _, widgets, _ = _ui()
    bound = {}
    for widget in widgets.values():
        parameter = widget.find("property[@name='SlicerParameterName']/string")
        if parameter is not None:
            bound[parameter.text] = widget
    assert set(fields) - set(bound) == {"generator"}  # filled by hand from the installed models
    for parameter, widget in bound.items():
        annotation = fields[parameter]
        annotated = typing.get_origin(annotation) is typing.Annotated
        base = typing.get_args(annotation)[0] if annotated else annotation
        extras = typing.get_args(annotation)[1:] if annotated else ()
        kind = widget.get("class")
        if kind == "qMRMLNodeComboBox":
            nodes, _ = _node_classes(annotation)
            listed = [s.text for s in widget.findall("property[@name='nodeTypes']/stringlist/string")]
            assert sorted(listed) == sorted(n.__name__ for n in nodes), parameter
        elif kind == "QComboBox":
            assert base is str and any(isinstance(e, Choice) for e in extras), parameter
        else:
            assert (kind, base) in {("QSpinBox", int), ("QDoubleSpinBox", float), ("QCheckBox", bool)}, (
                parameter,
                kind,
                base,
            )
    for name in ("plane", "sampler", "device"):
        (choice,) = [e for e in typing.get_args(fields[name])[1:] if isinstance(e, Choice)]
        assert getattr(module.EchoSynthParameterNode, name) in choice.choices
    # The panel's lists are the library's (the module file cannot import the library at load time).
    from EchoSynthLib.diffusion import DEFAULT_SAMPLER, SAMPLERS
    from EchoSynthLib.inference.options import sampling_option

    assert tuple(module.SAMPLERS) == SAMPLERS and tuple(module.PLANES) == sampling_option("plane").choices
    from EchoSynthLib.augmentation.labelmaps import ACQUISITIONS as MADE
    from EchoSynthLib.inference.options import ACQUISITIONS

    assert tuple(module.ACQUISITIONS) == ACQUISITIONS == tuple(MADE)
    assert module.EchoSynthParameterNode.acquisition == ACQUISITIONS[0]
    assert module.EchoSynthParameterNode.sampler == DEFAULT_SAMPLER


def test_the_panel_sampling_parameters_are_the_declared_options(module):
    """Each declared sampling option has its panel parameter with the same default, range or choices, and
    the panel's defaults make the library's default settings."""
    from EchoSynthLib.inference.generators import GeneratorSettings
    from EchoSynthLib.inference.options import SAMPLING_OPTIONS, sampling_values

    fields = _fields(module)
    node = module.EchoSynthParameterNode
    for option in SAMPLING_OPTIONS:
        extras = typing.get_args(fields[option.panel])[1:]
        default = option.unset if option.default is None else option.default
        assert getattr(node, option.panel) == default, option.name
        if option.choices:
            (choice,) = [e for e in extras if isinstance(e, Choice)]
            assert tuple(choice.choices) == option.choices, option.name
        else:
            (bounds,) = [e for e in extras if isinstance(e, WithinRange)]
            low = option.unset if option.unset is not None else option.minimum
            assert (bounds.minimum, bounds.maximum) == (low, option.maximum), option.name
    parameters = SimpleNamespace(**{name: getattr(node, name) for name in fields if hasattr(node, name)})
    options = module.optionsFromParameters(parameters)
    assert sampling_values(SimpleNamespace(**options)) == sampling_values(GeneratorSettings())
    parameters.sliceIndex, parameters.steps = 3, 7
    assert module.optionsFromParameters(parameters) | {
        "slice_index": 3,
        "steps": 7,
    } == module.optionsFromParameters(parameters)


def test_every_node_selector_receives_the_scene():
    top, widgets, root = _ui()
    assert top.get("class") == "qMRMLWidget"
    connected = {
        (c.findtext("sender"), c.findtext("signal"), c.findtext("receiver"), c.findtext("slot"))
        for c in root.iter("connection")
    }
    selectors = [name for name, w in widgets.items() if w.get("class") == "qMRMLNodeComboBox"]
    assert selectors
    for name in selectors:
        wanted = (top.get("name"), "mrmlSceneChanged(vtkMRMLScene*)", name, "setMRMLScene(vtkMRMLScene*)")
        assert wanted in connected, f"{name} never gets the scene"


def test_an_old_slicer_is_told_which_version_is_needed(module):
    old = SimpleNamespace(majorVersion=5, minorVersion=8)
    problem = module.slicerVersionProblem(old)
    assert "3D Slicer 5.10 or later" in problem and "Slicer 5.8" in problem
    assert module.slicerVersionProblem(SimpleNamespace(majorVersion=5, minorVersion=10)) is None
    assert module.slicerVersionProblem(SimpleNamespace(majorVersion=6, minorVersion=0)) is None
    slicer.app = old
    parent = SimpleNamespace()
    module.EchoSynth(parent)
    assert parent.helpText.startswith(problem)
    # The module file parses on Slicer 5.8's Python (3.9), so that message can be shown at all.
    ast.parse(MODULE.read_text(), feature_version=(3, 9))


class _Recorder:
    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return lambda *args, **kwargs: self.calls.append(name)


def test_cleanup_stops_the_poll_timer_and_the_worker(module):
    widget = module.EchoSynthWidget()
    widget._timer, widget._run = _Recorder(), _Recorder()
    run = widget._run
    widget.cleanup()
    assert widget._timer.calls == ["stop"] and run.calls == ["cancel"] and widget._run is None


@pytest.mark.parametrize(
    ("message", "dialog"),
    [("Nothing was installed (declined): press Generate again.", False), ("pip could not install x", True)],
)
def test_a_dependency_problem_is_shown_in_the_panel_and_starts_nothing(module, monkeypatch, message, dialog):
    from EchoSynthScene import dependencies

    def refuse(needs, ask=True):
        raise dependencies.DependencyError(message)

    shown = []
    monkeypatch.setattr(dependencies, "ensure", refuse)
    monkeypatch.setattr(slicer.util, "errorDisplay", lambda text, **kwargs: shown.append(text))
    widget = module.EchoSynthWidget()
    widget._parameterNode = SimpleNamespace(generator="my-model", augment=0, sampler="ddim")
    widget.ui = SimpleNamespace(statusLabel=SimpleNamespace(text=""))
    widget.logic = SimpleNamespace(startSynthesis=lambda parameters: pytest.fail("a run was started"))
    widget.onGenerateButton()
    assert widget.ui.statusLabel.text == f"Nothing was generated: {message}"
    assert shown == ([message] if dialog else [])
    assert widget._run is None


def test_a_source_checkout_puts_the_library_on_the_path(module, monkeypatch):
    """Slicer's "Additional module paths" -> EchoSynth/ puts only that folder on sys.path; the module adds
    the checkout (the folder holding EchoSynthLib/), once."""
    checkout = str(ROOT)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in (checkout, checkout + "/")])
    module._addSourceCheckoutToPath()
    module._addSourceCheckoutToPath()
    assert sys.path.count(checkout) == 1
