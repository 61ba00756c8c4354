"""Cutting a release (issue 31): models as release assets listed with their SHA-256 in the shipped manifest,
and an extension source tree the Extensions Index accepts (small, no weights, every CMake-listed file)."""

from __future__ import annotations

import json
import re
import tarfile
import zipfile
from pathlib import Path

import torch
from test_slicer_packaging import _cmake_listed

from EchoSynthLib import release
from EchoSynthLib.data.atomic import sha256_of
from EchoSynthLib.store.package import save_package
from EchoSynthLib.store.registry import MODELS_DIR, find_known_model, installed_models, read_manifest

ROOT = Path(__file__).resolve().parents[2]


def test_model_zips_are_byte_identical_on_every_run_and_listed_with_their_hash(tmp_path):
    models = tmp_path / "Models"
    save_package(models / "tiny", "sdm2d", {"version": "2.1"}, {"w": torch.arange(3.0)}, "# A tiny model\n")
    first = release.model_entries(models, tmp_path / "a", "https://example.org/r/")
    second = release.model_entries(models, tmp_path / "b", "https://example.org/r/")
    assert first == second
    (entry,) = first
    archive = tmp_path / "a" / "tiny-2.1.zip"
    assert entry["url"] == "https://example.org/r/tiny-2.1.zip" and entry["sha256"] == sha256_of(archive)
    assert entry["size"] == archive.stat().st_size and entry["task"] == "label map -> image"
    assert entry["description"] == "A tiny model"
    assert (tmp_path / "a" / "tiny-2.1.zip").read_bytes() == (tmp_path / "b" / "tiny-2.1.zip").read_bytes()
    with zipfile.ZipFile(archive) as opened:
        assert sorted(opened.namelist()) == [
            "tiny/MODEL_CARD.md",
            "tiny/config.json",
            "tiny/model.safetensors",
        ]
    manifest = release.write_manifest(first, tmp_path / "manifest.json")
    (known,) = read_manifest(manifest)
    assert (known.name, known.version, known.size, known.task) == (
        "tiny",
        "2.1",
        entry["size"],
        entry["task"],
    )


def test_the_shipped_manifest_lists_every_shipped_model_with_the_hash_of_its_release_zip(tmp_path):
    """The manifest the extension ships must match the weights: each bundled model packed now has the
    SHA-256 and size the manifest lists, at the one release address."""
    bundled = {m.name: m for m in installed_models(bundled_dir=MODELS_DIR, cache_dir=tmp_path / "none")}
    listed = {m.name: m for m in read_manifest(MODELS_DIR / "manifest.json")}
    assert set(listed) == set(bundled) and listed
    for name, model in listed.items():
        archive = release.pack_model(MODELS_DIR / name, tmp_path / f"{name}.zip")
        assert (model.sha256, model.size) == (sha256_of(archive), archive.stat().st_size), name
        assert model.url == f"{release.RELEASE_BASE_URL}{name}-{model.version}.zip"
        assert model.version == bundled[name].version and model.kind == bundled[name].kind
        assert "CC BY-NC-SA 4.0" in model.license  # CAMUS-trained: its terms go with every download
    assert find_known_model("latent-camus128").kind == "latent-synthesis"


def test_the_extension_tree_is_small_has_no_weights_and_every_file_its_cmake_lists(tmp_path):
    tree, packed = release.write_extension_tree(ROOT, tmp_path)
    files = [p for p in tree.rglob("*") if p.is_file()]
    assert packed.stat().st_size < 10e6  # the Extensions Index refuses 100 MB (history included)
    assert not [p for p in files if p.suffix in (".safetensors", ".zip", ".npz")]
    large = [p.relative_to(tree).as_posix() for p in files if p.stat().st_size > release.LARGE]
    assert set(large) <= set(release.LARGE_ALLOWED)
    assert json.loads((tree / "Resources/Models/manifest.json").read_text())["models"]
    for cmake in (tree / "EchoSynth" / "CMakeLists.txt", tree / "EchoSynthLib" / "CMakeLists.txt"):
        missing = [f for f in _cmake_listed(cmake) if not (cmake.parent / f).is_file()]
        assert not missing, f"{cmake}: lists files the tree lacks: {missing}"
    top = (tree / "CMakeLists.txt").read_text()
    for folder in re.findall(r"add_subdirectory\((\w+)\)", top):
        assert (tree / folder / "CMakeLists.txt").is_file()
    assert (tree / "EchoSynth.json").is_file() and (tree / "LICENSE").is_file()
    with tarfile.open(packed) as archive:
        assert len([m for m in archive.getmembers() if m.isfile()]) == len(files)


def test_a_release_writes_only_a_folder_of_its_own(tmp_path):
    """The one output rule: ``--out`` is new, empty or an earlier release (replaced whole); a folder holding
    a user's files is refused and left as it was; the models folder cannot be the output."""
    import pytest

    from EchoSynthLib.errors import InputError

    models = tmp_path / "Models"
    save_package(models / "tiny", "sdm2d", {"version": "1.0"}, {"w": torch.arange(3.0)}, "# A tiny model\n")
    made = release.release(tmp_path / "dist", "https://example.org/r/", False, models, ROOT)
    assert (made["tree"] / "EchoSynth.json").is_file() and made["packed"].is_file()
    assert (tmp_path / "dist" / "models" / "tiny-1.0.zip").is_file()
    again = release.release(tmp_path / "dist", "https://example.org/r/", False, models, ROOT)
    assert again["models"] == made["models"]  # its own: replaced
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="did not write"):
        release.release(mine, "https://example.org/r/", False, models, ROOT)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    with pytest.raises(InputError, match="input"):
        release.release(models / "out", "https://example.org/r/", False, models, ROOT)
