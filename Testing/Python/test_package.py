"""Model package format 2: named components with SHA-256, bit-exact round trip, clear refusals, and the
upgrade of a format-1 folder."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import save_file

from EchoSynthLib.cli.main import main
from EchoSynthLib.errors import InputError
from EchoSynthLib.store.package import (
    CARD,
    CONFIG,
    FORMAT_VERSION,
    WEIGHTS,
    component_path,
    load_weights,
    read_package_config,
    read_package_header,
    save_package,
)


def _two_networks():
    torch.manual_seed(0)
    return torch.nn.Linear(3, 4), torch.nn.Conv2d(2, 2, 3)


@pytest.fixture
def package(tmp_path):
    vae, unet = _two_networks()
    settings = {"image_size": 32, "classes": {"1": "lv_cavity", "2": "myocardium"}, "version": "2.0"}
    components = {"vae": vae.state_dict(), "unet": unet.state_dict()}
    return save_package(
        tmp_path / "pkg", "sdm2d", settings, None, "# card\n", {"steps": 3}, components=components
    )


def test_round_trip_is_bit_exact_for_every_component(package):
    header = read_package_header(package)
    assert header["format_version"] == FORMAT_VERSION == 2 and header["task"] == "label map -> image"
    assert [c["name"] for c in header["components"]] == ["vae", "unet"]
    assert header["classes"] == {"1": "lv_cavity", "2": "myocardium"} and header["grid"] == {"image_size": 32}
    assert read_package_config(package, "sdm2d")["version"] == "2.0"
    vae, unet = _two_networks()
    for name, network in (("vae", vae), ("unet", unet)):
        fresh = type(network)(*((3, 4) if name == "vae" else (2, 2, 3)))
        load_weights(package, fresh, name)
        for key, value in network.state_dict().items():
            assert torch.equal(fresh.state_dict()[key], value)
    with pytest.raises(InputError, match="no component 'gan' \\(it has: vae, unet\\)"):
        component_path(package, header, "gan")


def test_damaged_packages_are_refused_with_what_is_wrong(package, tmp_path):
    def copy(name: str, change) -> str:
        target = tmp_path / name
        shutil.copytree(package, target)
        change(target)
        return target

    def edit_config(edit):
        def change(folder):
            config = json.loads((folder / CONFIG).read_text())
            edit(config)
            (folder / CONFIG).write_text(json.dumps(config))

        return change

    tampered = copy("tampered", lambda f: (f / "unet.safetensors").write_bytes(
        (f / "unet.safetensors").read_bytes()[:-4] + b"\0\0\0\0"))  # fmt: skip
    with pytest.raises(InputError, match=r"unet\.safetensors: SHA-256 differs"):
        load_weights(tampered, _two_networks()[1], "unet")
    missing = copy("missing", lambda f: (f / "vae.safetensors").unlink())
    with pytest.raises(InputError, match=r"missing vae\.safetensors"):
        read_package_header(missing)
    unknown = copy("unknown", edit_config(lambda c: c.update(kind="gan9d")))
    with pytest.raises(InputError, match="unknown model kind 'gan9d'"):
        read_package_header(unknown)
    wrong_task = copy("task", edit_config(lambda c: c.update(task="image -> features")))
    with pytest.raises(InputError, match="task 'image -> features' is not what a 'sdm2d' model does"):
        read_package_header(wrong_task)

    # The class table the weights were trained with: two structures swapped still parse as a layout.
    def swap(config):
        for table in (config["classes"], config["settings"]["classes"]):
            table["1"], table["2"] = table["2"], table["1"]

    for name, edit in (
        ("swapped", swap),
        ("one-table", lambda c: c["classes"].update({"1": "left_atrium"})),
        ("setting", lambda c: c["settings"].update(image_size=64)),
    ):
        with pytest.raises(InputError, match="differ from those the weights were saved with"):
            read_package_header(copy(name, edit_config(edit)))
    no_card = copy("card", lambda f: (f / CARD).unlink())
    with pytest.raises(InputError, match=r"missing MODEL_CARD\.md"):
        read_package_header(no_card)
    with pytest.raises(InputError, match="unknown model kind"):
        save_package(tmp_path / "x", "gan9d", {}, {"w": torch.zeros(1)}, "card")


def _format_one(folder, network):
    """A package as format 1 wrote it: model.safetensors and the settings at the top of config.json."""
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in network.state_dict().items()}, str(folder / WEIGHTS))
    config = {"format_version": 1, "kind": "segmenter2d", "channels": [4], "provenance": {"trained_steps": 7}}
    (folder / CONFIG).write_text(json.dumps(config))
    (folder / CARD).write_text("# old card\n")
    return folder


def test_a_format_1_package_is_refused_with_the_command_that_upgrades_it(tmp_path, capsys):
    network = _two_networks()[0]
    old = _format_one(tmp_path / "old", network)
    weights = (old / WEIGHTS).read_bytes()
    with pytest.raises(InputError, match=f"format 1; convert it with 'echosynth models upgrade {old}'"):
        read_package_header(old)
    assert main(["models", "add", str(old)]) == 2
    assert "echosynth models upgrade" in capsys.readouterr().err
    assert main(["models", "upgrade", str(old)]) == 0
    header = read_package_header(old)
    assert header["settings"] == {"channels": [4]} and header["provenance"] == {"trained_steps": 7}
    assert (old / WEIGHTS).read_bytes() == weights  # the weights are kept as they were
    fresh = torch.nn.Linear(3, 4)
    load_weights(old, fresh)
    assert torch.equal(fresh.weight, network.weight)
    assert main(["models", "upgrade", str(old)]) == 0  # a format-2 package is left alone
    (tmp_path / "plain").mkdir()
    assert main(["models", "upgrade", str(tmp_path / "plain")]) == 2
