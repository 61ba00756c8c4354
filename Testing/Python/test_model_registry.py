"""The model manager: cache location, manifest, listing, resolving, installing, clearing, and its CLI."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from EchoSynthLib.cli import main as cli_main
from EchoSynthLib.errors import InputError
from EchoSynthLib.store import registry
from EchoSynthLib.store.package import CONFIG, WEIGHTS, save_package
from EchoSynthLib.store.registry import (
    KnownModel,
    clear_cache,
    find_known_model,
    install_from_archive,
    install_from_folder,
    install_from_url,
    installed_models,
    read_manifest,
    resolve_model,
    user_cache_dir,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def places(tmp_path, monkeypatch):
    """Every test gets its own cache and bundled folder; the real home is never touched."""
    cache, bundled = tmp_path / "cache", tmp_path / "bundled"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv(registry.CACHE_ENV, str(cache))
    monkeypatch.setenv(registry.BUNDLED_ENV, str(bundled))
    return cache, bundled


def _package(folder: Path, kind: str = "sdm2d", version: str | None = None, licence: str = "") -> Path:
    config = {"version": version} if version else {}
    provenance = {"training_data": {"dataset": "folder", "licence": licence}} if licence else {}
    return save_package(folder, kind, config, {"weight": torch.arange(4.0)}, "# tiny model\n", provenance)


def _zip(path: Path, package: Path, in_folder: bool = True, extra: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for file in sorted(package.iterdir()):
            archive.write(file, f"{package.name}/{file.name}" if in_folder else file.name)
        for name, text in (extra or {}).items():
            archive.writestr(name, text)
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _known(archive: Path, name: str = "tiny", kind: str = "sdm2d", sha: str | None = None) -> KnownModel:
    return KnownModel(name, "1.0", kind, archive.as_uri(), sha or _sha(archive), "CC0", "a tiny test model")


def _files(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file()
    }


def _entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture
def source(tmp_path) -> Path:
    return _package(tmp_path / "src" / "tiny", version="1.0", licence="CC0 test licence")


# --- places ---------------------------------------------------------------------------------------------


def test_cache_dir_env_override_and_platform_defaults(tmp_path, monkeypatch):
    assert user_cache_dir() == tmp_path / "cache"
    monkeypatch.delenv(registry.CACHE_ENV)
    home = tmp_path / "home"
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    assert user_cache_dir() == home / ".cache" / "EchoSynth" / "models"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert user_cache_dir() == tmp_path / "xdg" / "EchoSynth" / "models"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert user_cache_dir() == home / ".cache" / "EchoSynth" / "models"
    monkeypatch.setattr(sys, "platform", "darwin")
    assert user_cache_dir() == home / "Library" / "Caches" / "EchoSynth" / "models"
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "local"))
    assert user_cache_dir() == tmp_path / "local" / "EchoSynth" / "Cache" / "models"


def test_bundled_dir_and_shipped_manifest(tmp_path, monkeypatch):
    assert registry.bundled_models_dir() == tmp_path / "bundled"
    monkeypatch.delenv(registry.BUNDLED_ENV)
    assert registry.bundled_models_dir() == ROOT / "Resources" / "Models"
    assert registry.DEFAULT_MANIFEST == ROOT / "Resources" / "Models" / "manifest.json"
    shipped = {m.name for m in read_manifest()}  # every bundled model is also a release asset
    assert shipped == {p.name for p in (ROOT / "Resources" / "Models").iterdir() if p.is_dir()}
    monkeypatch.setenv(registry.MANIFEST_ENV, str(tmp_path / "mirror.json"))
    with pytest.raises(InputError, match=r"mirror\.json: no such model manifest"):
        read_manifest()


# --- manifest -------------------------------------------------------------------------------------------

ENTRY = {
    "name": "tiny",
    "version": "1.0",
    "kind": "sdm2d",
    "url": "https://example.org/tiny.zip",
    "sha256": "a" * 64,
    "license": "CC0",
    "description": "test",
}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (None, "no such model manifest"),
        ("{not json", "not valid JSON"),
        (json.dumps({"models": []}), "no 'format_version'"),
        (json.dumps({"format_version": 2, "models": []}), "format version 2"),
        (json.dumps({"format_version": 1, "models": {}}), "must be a list"),
        (json.dumps({"format_version": 1, "models": [ENTRY | {"url": None}]}), "must be text"),
        (
            json.dumps({"format_version": 1, "models": [{k: ENTRY[k] for k in ENTRY if k != "url"}]}),
            "lacks url",
        ),
        (json.dumps({"format_version": 1, "models": [ENTRY | {"sha256": "A" * 64}]}), "64 lowercase hex"),
        (json.dumps({"format_version": 1, "models": [ENTRY | {"sha256": "ab"}]}), "64 lowercase hex"),
        (json.dumps({"format_version": 1, "models": [ENTRY | {"name": "../up"}]}), "not a usable folder"),
        (json.dumps({"format_version": 1, "models": [ENTRY | {"url": "ftp://x/y.zip"}]}), "url must be"),
        (json.dumps({"format_version": 1, "models": [ENTRY, dict(ENTRY)]}), "listed twice"),
    ],
)
def test_manifest_problems_name_the_file(tmp_path, text, problem):
    path = tmp_path / "manifest.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(InputError, match=problem) as error:
        read_manifest(path)
    assert str(path) in str(error.value)


def test_manifest_versions_and_lookup(tmp_path):
    path = tmp_path / "manifest.json"
    entries = [ENTRY, ENTRY | {"version": "2.0"}, {k: v for k, v in ENTRY.items() if k != "description"}]
    entries[2] = entries[2] | {"name": "other"}
    path.write_text(json.dumps({"format_version": 1, "models": entries, "comment": "extra keys are fine"}))
    models = read_manifest(path)
    assert [(m.name, m.version, m.description) for m in models] == [
        ("tiny", "1.0", "test"),
        ("tiny", "2.0", "test"),
        ("other", "1.0", ""),
    ]
    assert find_known_model("tiny", manifest=path).version == "2.0"
    assert find_known_model("tiny", "1.0", path).version == "1.0"
    with pytest.raises(InputError, match=r"no version '3.0'.*1\.0, 2\.0"):
        find_known_model("tiny", "3.0", path)
    with pytest.raises(InputError, match="it lists other, tiny"):
        find_known_model("nope", manifest=path)


# --- listing and resolving ------------------------------------------------------------------------------


def test_listing_skips_foreign_folders(places, caplog):
    cache, bundled = places
    _package(bundled / "alpha", version="2.0", licence="CC BY-NC-SA 4.0")
    _package(cache / "beta", kind="segmenter2d")
    (cache / "notes").mkdir()
    (cache / "notes" / "todo.txt").write_text("not a model")
    (cache / "readme.txt").write_text("a file")
    (cache / ".beta.abcdefgh.tmp").mkdir()
    with caplog.at_level(logging.WARNING):
        models = installed_models()
    assert [(m.name, m.version, m.kind, m.source, m.license) for m in models] == [
        ("alpha", "2.0", "sdm2d", "bundled", "CC BY-NC-SA 4.0"),
        ("beta", "unversioned", "segmenter2d", "cache", ""),
    ]
    assert models[1].path == cache / "beta"
    assert len(caplog.records) == 1 and "notes" in caplog.text and "missing" in caplog.text


def test_installed_models_of_missing_folders_is_empty():
    assert installed_models() == []


def test_resolve_by_name_and_path(places, tmp_path):
    cache, bundled = places
    _package(bundled / "alpha")
    _package(cache / "alpha")
    _package(cache / "beta", kind="segmenter2d")
    assert resolve_model("alpha") == bundled / "alpha"  # bundled first
    assert resolve_model("beta", kind="segmenter2d") == cache / "beta"
    elsewhere = _package(tmp_path / "elsewhere" / "mine")
    assert resolve_model(elsewhere) == elsewhere
    assert resolve_model(str(elsewhere), kind="sdm2d") == elsewhere
    with pytest.raises(InputError, match="is a 'segmenter2d' model, expected 'sdm2d'"):
        resolve_model("beta", kind="sdm2d")
    (tmp_path / "foreign").mkdir()
    with pytest.raises(InputError, match="not an EchoSynth model package"):
        resolve_model(tmp_path / "foreign")
    with pytest.raises(InputError, match="no such model folder"):
        resolve_model(tmp_path / "missing")


def test_unknown_name_says_what_exists_and_how_to_install(places):
    cache, bundled = places
    _package(bundled / "alpha")
    _package(cache / "beta")
    with pytest.raises(InputError) as error:
        resolve_model("nope")
    message = str(error.value)
    assert "no model named 'nope'" in message and "installed: alpha, beta" in message
    assert "echosynth models download nope" in message and str(cache / "nope") in message


# --- installing -----------------------------------------------------------------------------------------


def test_install_from_url(places, source, tmp_path):
    cache, _ = places
    archive = _zip(tmp_path / "tiny.zip", source)
    calls = []
    path = install_from_url(_known(archive), progress=lambda done, total: calls.append((done, total)))
    assert path == cache / "tiny" and _entries(cache) == ["tiny"]
    assert {k: v[0] for k, v in _files(path).items()} == {k: v[0] for k, v in _files(source).items()}
    size = archive.stat().st_size
    assert calls[0] == (0, size) and calls[-1] == (size, size)
    assert registry.package_summary(path).license == "CC0 test licence"
    # a new release (package files at the zip's root this time) replaces the installed one
    update = _zip(tmp_path / "update.zip", source, in_folder=False, extra={"NOTES.txt": "new"})
    install_from_url(_known(update))
    assert (cache / "tiny" / "NOTES.txt").read_text() == "new" and _entries(cache) == ["tiny"]


def test_checksum_mismatch_installs_nothing_and_keeps_the_old(places, source, tmp_path):
    cache, _ = places
    archive = _zip(tmp_path / "tiny.zip", source)
    wrong = "0" * 64
    with pytest.raises(InputError) as error:
        install_from_url(_known(archive, sha=wrong))
    assert _sha(archive) in str(error.value) and wrong in str(error.value)
    assert _entries(cache) == []
    install_from_url(_known(archive))
    before = _files(cache / "tiny")
    with pytest.raises(InputError, match="does not match"):
        install_from_url(_known(archive, sha=wrong))
    assert _entries(cache) == ["tiny"] and _files(cache / "tiny") == before


@pytest.mark.parametrize("member", ["../evil.txt", "tiny/../../evil.txt", "/tmp/evil.txt", "C:/evil.txt"])
def test_unsafe_archive_members_are_refused(places, source, tmp_path, member):
    cache, _ = places
    archive = _zip(tmp_path / "tiny.zip", source, extra={member: "x"})
    with pytest.raises(InputError, match="unsafe archive member"):
        install_from_url(_known(archive))
    assert _entries(cache) == [] and not (tmp_path / "evil.txt").exists()


def test_wrong_kind_is_refused(places, tmp_path):
    cache, _ = places
    package = _package(tmp_path / "src" / "tiny", kind="segmenter2d")
    archive = _zip(tmp_path / "tiny.zip", package)
    with pytest.raises(InputError, match="holds a 'segmenter2d' model, but the manifest says 'sdm2d'"):
        install_from_url(_known(archive))
    assert _entries(cache) == []


def test_version_mismatch_is_refused(places, tmp_path):
    package = _package(tmp_path / "src" / "tiny", version="0.9")
    archive = _zip(tmp_path / "tiny.zip", package)
    with pytest.raises(InputError, match=r"holds version '0\.9'"):
        install_from_url(_known(archive))
    unversioned = _zip(tmp_path / "bare.zip", _package(tmp_path / "bare" / "tiny"))
    with pytest.raises(InputError, match="holds no version of the model, but the manifest says"):
        install_from_url(_known(unversioned))


def test_network_error_says_how_to_install_offline(places, tmp_path):
    cache, _ = places
    missing = tmp_path / "nowhere.zip"
    with pytest.raises(InputError) as error:
        install_from_url(_known(missing, sha="0" * 64))
    message = str(error.value)
    assert missing.as_uri() in message and "echosynth models add ZIP" in message
    assert str(cache / "tiny") in message
    assert _entries(cache) == []


def test_install_from_archive(places, source, tmp_path):
    cache, _ = places
    archive = _zip(tmp_path / "hand-made.zip", source, in_folder=False)
    before = archive.read_bytes()
    assert install_from_archive(archive) == cache / "hand-made"  # no manifest entry: named after the zip
    assert install_from_archive(archive, name="renamed") == cache / "renamed"
    folder_zip = _zip(tmp_path / "download.zip", source, extra={"__MACOSX/tiny/._config.json": "junk"})
    assert install_from_archive(folder_zip) == cache / "tiny"  # named after the folder inside
    assert _entries(cache / "tiny") == sorted(p.name for p in source.iterdir())
    with pytest.raises(InputError, match="does not match"):
        install_from_archive(archive, _known(archive, sha="1" * 64))
    assert install_from_archive(archive, _known(archive, name="listed")) == cache / "listed"
    assert archive.read_bytes() == before
    assert _entries(cache) == ["hand-made", "listed", "renamed", "tiny"]


def test_archives_that_hold_no_package(places, tmp_path):
    cache, _ = places
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("a/README.md", "one")
        archive.writestr("b/README.md", "two")
    with pytest.raises(InputError, match="neither one model package folder"):
        install_from_archive(other)
    incomplete = tmp_path / "incomplete.zip"
    with zipfile.ZipFile(incomplete, "w") as archive:
        archive.writestr("pkg/config.json", "{}")
    with pytest.raises(InputError, match=r"incomplete\.zip: not an EchoSynth model package \(missing model"):
        install_from_archive(incomplete)
    not_zip = tmp_path / "not.zip"
    not_zip.write_text("plain text")
    with pytest.raises(InputError, match="not a readable zip archive"):
        install_from_archive(not_zip)
    with pytest.raises(InputError, match="no such archive"):
        install_from_archive(tmp_path / "missing.zip")
    assert _entries(cache) == []


def test_install_from_folder_leaves_the_source_unchanged(places, source, tmp_path):
    cache, _ = places
    before = _files(source)
    assert install_from_folder(source) == cache / "tiny"
    assert install_from_folder(source, name="copy") == cache / "copy"
    assert install_from_folder(cache / "copy", name="copy") == cache / "copy"  # onto itself: nothing to do
    assert _files(source) == before
    assert {k: v[0] for k, v in _files(cache / "copy").items()} == {k: v[0] for k, v in before.items()}
    with pytest.raises(InputError, match="not a usable model name"):
        install_from_folder(source, name="../escape")
    assert _entries(cache) == ["copy", "tiny"]


def test_install_from_folder_checks_the_package(places, tmp_path):
    cache, _ = places
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=re.escape(f"{tmp_path / 'empty'}: not an EchoSynth model package")):
        install_from_folder(tmp_path / "empty")
    broken = _package(tmp_path / "broken")
    (broken / WEIGHTS).write_bytes(b"<html>not weights</html>")
    with pytest.raises(InputError, match=re.escape(f"{broken / WEIGHTS}: not a safetensors weights file")):
        install_from_folder(broken)
    (cache / "taken").mkdir(parents=True)
    (cache / "taken" / "mine.txt").write_text("keep me")
    with pytest.raises(InputError, match="exists and is not an EchoSynth model package"):
        install_from_folder(_package(tmp_path / "ok"), name="taken")
    assert (cache / "taken" / "mine.txt").read_text() == "keep me"
    assert _entries(cache) == ["taken"]


def test_a_package_whose_settings_its_family_refuses_is_not_installed(cli, places, tmp_path):
    """``models add --name NAME`` of a package its family could not load (here an SDM with an empty channel
    list, re-sealed so that only the settings are wrong) is refused at once, nothing installed."""
    cache, _ = places
    bad = save_package(
        tmp_path / "bad", "sdm2d", {"channels": [], "version": "1.0"}, {"w": torch.zeros(2)}, "# c\n"
    )
    code, _, err = cli("models", "add", bad, "--name", "sdm-camus64")
    assert code == 2 and err.count("\n") == 1
    assert f"{bad / CONFIG}: settings a 'sdm2d' model cannot have (setting channels must be" in err
    assert _entries(cache) == []
    with pytest.raises(InputError, match="settings a 'sdm2d' model cannot have"):
        install_from_archive(_zip(tmp_path / "bad.zip", bad), _known(tmp_path / "bad.zip"))
    assert _entries(cache) == []


def test_clear_cache_removes_only_packages(places, tmp_path):
    cache, _ = places
    _package(cache / "a")
    _package(cache / "b")
    outside = _package(tmp_path / "outside" / "linked")
    (cache / "linked").symlink_to(outside, target_is_directory=True)
    (cache / "keep").mkdir()
    (cache / "keep.txt").write_text("mine")
    (cache / ".a.abcdefgh.tmp").mkdir()
    (cache / ".a.k2j4h_9x.download").write_bytes(b"partial")
    (cache / ".hidden-of-someone-else").write_text("mine")
    assert clear_cache() == ["a", "b", "linked"]
    assert _entries(cache) == [".hidden-of-someone-else", "keep", "keep.txt"]
    assert (outside / WEIGHTS).is_file()
    assert clear_cache() == []
    assert clear_cache(tmp_path / "never-made") == []


# --- command line ---------------------------------------------------------------------------------------


@pytest.fixture
def cli(capsys):
    """``echosynth`` as a user runs it: exit code, stdout, stderr."""

    def run(*args) -> tuple[int, str, str]:
        code = cli_main.main([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def test_cli_path_list_add_install_clear(cli, places, source, tmp_path):
    cache, bundled = places
    _package(bundled / "alpha", version="2.0", licence="CC BY-NC-SA 4.0")
    archive = _zip(tmp_path / "tiny.zip", source)
    manifest = tmp_path / "manifest.json"
    entries = [ENTRY | {"url": archive.as_uri(), "sha256": _sha(archive), "license": "CC0 manifest"}]
    manifest.write_text(json.dumps({"format_version": 1, "models": entries}))

    assert cli("models", "path") == (0, f"{cache}\n", "")
    code, out, _ = cli("models", "list", "--manifest", manifest)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "VERSION", "KIND", "WHERE", "LICENSE"]
    assert lines[1].split()[:4] == ["alpha", "2.0", "sdm2d", "bundled"] and "CC BY-NC-SA 4.0" in lines[1]
    assert lines[2].split()[:3] == ["tiny", "1.0", "sdm2d"] and "not installed" in lines[2]
    assert "CC0 manifest" in lines[2] and "echosynth models download NAME" in out

    code, out, err = cli("models", "add", tmp_path / "src" / "nothing")
    assert code == 2 and out == "" and err.count("\n") == 1 and err.startswith("echosynth models: error:")
    code, out, _ = cli("models", "add", source, "--name", "mine")
    assert code == 0 and f"added mine 1.0 (sdm2d) to {cache / 'mine'}" in out

    code, out, err = cli("models", "install", "tiny", "--manifest", manifest)  # no terminal to ask on
    assert code == 2 and "licence was not accepted (CC0 manifest)" in err and "--accept-licence" in err
    code, out, _ = cli("models", "install", "tiny", "--manifest", manifest, "--accept-licence")
    assert code == 0 and f"installed tiny 1.0 (sdm2d) to {cache / 'tiny'}" in out and "CC0 manifest" in out
    code, out, _ = cli("models", "install", "tiny", "--archive", archive, "--manifest", manifest)
    assert code == 0 and "installed tiny" in out
    code, _, err = cli("models", "install", "nope", "--manifest", manifest)
    assert code == 2 and "'nope' is not in the model manifest" in err

    code, out, _ = cli("models", "list", "--manifest", manifest)
    assert [line.split()[:4] for line in out.splitlines()[1:4]] == [
        ["alpha", "2.0", "sdm2d", "bundled"],
        ["mine", "1.0", "sdm2d", "cache"],
        ["tiny", "1.0", "sdm2d", "cache"],
    ]
    assert "not installed" not in out

    assert cli("models", "clear") == (0, f"removed 2 model(s) from {cache}: mine, tiny\n", "")
    assert cli("models", "clear") == (0, f"no cached models in {cache}\n", "")
    assert (bundled / "alpha").is_dir()


def test_cli_list_with_nothing_and_a_broken_manifest(cli, tmp_path):
    broken = tmp_path / "manifest.json"
    broken.write_text("{")
    code, out, err = cli("models", "list", "--manifest", broken)
    assert code == 0 and "no models installed" in out and "not valid JSON" in err


def test_the_feature_cache_is_never_inside_the_models_folder(monkeypatch, tmp_path):
    from EchoSynthLib.store.registry import feature_cache_dir, user_cache_dir

    monkeypatch.delenv("ECHOSYNTH_FEATURE_CACHE", raising=False)
    monkeypatch.delenv("ECHOSYNTH_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert feature_cache_dir() == user_cache_dir().parent / "features" != user_cache_dir()
    monkeypatch.setenv("ECHOSYNTH_CACHE_DIR", str(tmp_path / "models"))
    assert feature_cache_dir() == tmp_path / "models-features"
    monkeypatch.setenv("ECHOSYNTH_FEATURE_CACHE", str(tmp_path / "f"))
    assert feature_cache_dir() == tmp_path / "f"
