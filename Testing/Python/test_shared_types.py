"""The shared types: class layouts, the typed cache manifest, and run settings kept apart from the model's."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from EchoSynthLib.cache.store import MANIFEST, CacheIndex
from EchoSynthLib.data.labels import CAMUS, ECHO_FROM_NOISE, ECHOSYNTH, ClassLayout, Structure
from EchoSynthLib.engine.settings import RunSettings, split_settings
from EchoSynthLib.errors import InputError, UnknownLabelError
from EchoSynthLib.models.sdm.config import SDMConfig


def test_a_class_layout_round_trips_and_maps_values_channels_and_structures():
    layout = ClassLayout.of(ECHO_FROM_NOISE)
    assert layout.as_json() == {
        "0": "background", "1": "lv_cavity", "2": "sector", "3": "lv_myocardium", "4": "left_atrium",
    }  # fmt: skip
    assert ClassLayout.from_json(layout.as_json()) == layout and len(layout) == 5
    assert layout != ClassLayout.of(ECHOSYNTH)  # same structures, other values
    assert layout.structures[2] is Structure.SECTOR and layout.has(Structure.SECTOR)
    assert not ClassLayout.of(CAMUS).has(Structure.SECTOR)
    labels = np.array([[0, 2], [4, 3]], dtype=np.uint8)
    channels = layout.channels_of(labels)
    assert (layout.channel_values[channels] == labels).all()
    canonical = layout.to_canonical(labels)
    assert canonical.tolist() == [[0, 4], [3, 2]]
    assert (layout.one_hot_canonical(canonical).argmax(0) == channels).all()
    with pytest.raises(UnknownLabelError, match=r"\[7\]"):
        layout.channels_of(np.array([[7]]))


@pytest.mark.parametrize(
    ("mapping", "words"),
    [
        ({"1": "aorta"}, "'1' -> 'aorta' is not a class value and a known structure"),
        ({"one": "lv_cavity"}, "'one'"),
        ({"1": "lv_cavity", "2": "lv_cavity"}, "appears under two class values"),
        ({"300": "lv_cavity"}, "outside 0..255"),
        (["lv_cavity"], "expected a mapping"),
    ],
)
def test_a_bad_class_layout_is_named(mapping, words):
    with pytest.raises(InputError, match="classes") as error:
        ClassLayout.from_json(mapping)
    assert words in str(error.value)


def test_settings_hold_a_class_layout_and_store_its_json():
    config = SDMConfig.preset(64, classes=ClassLayout.of(ECHOSYNTH).as_json())
    assert isinstance(config.classes, ClassLayout) and config.classes.has(Structure.SECTOR)
    stored = json.loads(json.dumps(config.as_dict()))
    assert stored["classes"] == ClassLayout.of(ECHOSYNTH).as_json()
    assert SDMConfig.from_dict(stored) == config
    with pytest.raises(InputError, match="classes"):
        SDMConfig.preset(64, classes={"1": "spleen"})


def test_the_cache_manifest_is_typed_and_a_damaged_one_is_named(tiny_cache, tmp_path):
    manifest = CacheIndex.open(tiny_cache).manifest
    assert manifest.spatial_dims == 2 and manifest.shape == (32, 32) and manifest.dataset == "folder"
    assert manifest.layout == ClassLayout.of(ECHOSYNTH)
    assert sum(c["cases"] for c in manifest.counts.values()) == sum(len(v) for v in manifest.cases.values())
    damaged = tmp_path / "damaged"
    shutil.copytree(tiny_cache, damaged)
    document = json.loads((damaged / MANIFEST).read_text())
    del document["shape"]
    (damaged / MANIFEST).write_text(json.dumps(document))
    with pytest.raises(InputError, match=r"manifest.json: damaged cache manifest \(KeyError: 'shape'\)"):
        CacheIndex.open(damaged)
    document["shape"], document["spatial_dims"] = [32, 32], 3
    (damaged / MANIFEST).write_text(json.dumps(document))
    with pytest.raises(InputError, match="does not have 3 sides"):
        CacheIndex.open(damaged)


def test_set_values_split_into_the_model_config_and_the_run_settings():
    values = {"batch_size": 8, "max_steps": 10, "workers": 0, "compile": True}
    model, run = split_settings(values, SDMConfig, {"max_steps": 50_000, "val_every": 500})
    assert model == {"batch_size": 8}
    assert run == RunSettings(max_steps=10, workers=0, val_every=500, compile=True)
    with pytest.raises(InputError, match=r"unknown setting.s. colour .model: .*run: .*workers"):
        split_settings({"colour": "red"}, SDMConfig, {})
    with pytest.raises(InputError, match="setting checkpoint_every"):
        split_settings({"checkpoint_every": 0}, SDMConfig, {})


def test_the_command_line_sampling_flags_are_the_declared_options(tmp_path, capsys):
    """The flags' defaults are GeneratorSettings' defaults, their checks are the options' checks, and an
    option the chosen generator does not use is named in a warning."""
    from types import SimpleNamespace

    from EchoSynthLib.anatomy import PhantomGrid, phantom_label_map
    from EchoSynthLib.cli.main import build_parser, main
    from EchoSynthLib.data.io import write_label_map
    from EchoSynthLib.inference.generators import GeneratorSettings
    from EchoSynthLib.inference.options import SAMPLING_OPTIONS, sampling_values

    args = build_parser().parse_args(["synthesize", "--model", "simulator", "--labels", "x", "--out", "y"])
    assert sampling_values(args) == sampling_values(GeneratorSettings())
    for option in SAMPLING_OPTIONS:
        with pytest.raises(InputError, match=option.flag.lstrip("-")):
            GeneratorSettings(**{option.name: "?" if option.kind is not str else "nowhere"})
    assert sampling_values(SimpleNamespace(**vars(args)), ("steps",)) == {"steps": 25}
    labels = phantom_label_map("4CH", "ED", seed=1, grid=PhantomGrid.for_view("4CH", size=40)).labels
    write_label_map(labels, tmp_path / "map.nii.gz")
    command = ["synthesize", "--model", "simulator", "--labels", str(tmp_path / "map.nii.gz")]
    assert main([*command, "--out", str(tmp_path / "out"), "--steps", "10", "--slice", "2"]) == 0
    assert "warning: steps, slice are not used by the training-free simulator" in capsys.readouterr().err
    assert main([*command, "--out", str(tmp_path / "out2"), "--steps", "0"]) == 2
    assert "steps must be" in capsys.readouterr().err


def test_generator_settings_are_made_from_the_declared_sampling_options():
    """An option is declared once (``SAMPLING_OPTIONS``): ``GeneratorSettings`` takes its fields, defaults
    and checks from there, between ``generator`` and ``device``."""
    import dataclasses

    from EchoSynthLib.errors import InputError
    from EchoSynthLib.inference.generators import GeneratorSettings
    from EchoSynthLib.inference.options import SAMPLING_OPTIONS

    fields = dataclasses.fields(GeneratorSettings)
    assert [f.name for f in fields] == ["generator", *(o.name for o in SAMPLING_OPTIONS), "device"]
    assert [f.default for f in fields[1:-1]] == [o.default for o in SAMPLING_OPTIONS]
    for option in SAMPLING_OPTIONS:
        bad = "bogus" if option.choices else -5
        with pytest.raises(InputError, match=option.flag.lstrip("-")):
            GeneratorSettings("simulator", **{option.name: bad})
