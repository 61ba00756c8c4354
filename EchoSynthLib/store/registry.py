"""The model manager: where model packages live, which ones can be downloaded, and installing them.

Model packages (folders in the format of ``EchoSynthLib.store.package``, named by their folder) are found in

- the bundled folder ``Resources/Models/<name>/`` beside the library (in an installed Slicer extension,
  ``qt-scripted-modules/Resources/Models``); ``ECHOSYNTH_BUNDLED_MODELS`` points elsewhere;
- the per-user cache (``user_cache_dir()``, outside any install; ``ECHOSYNTH_CACHE_DIR`` points elsewhere),
  which the installers below fill;
- any folder given by its path.

``Resources/Models/manifest.json`` lists the models that can be downloaded (URL of a .zip, its SHA-256,
licence). Every installer unpacks or copies into a staging folder inside the cache, checks the package
there, and only then replaces ``<cache>/<name>``: a failed install leaves nothing behind, and its inputs
(archive, folder) are only read. Nothing here imports torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import EchoSynthLib
from EchoSynthLib.data.atomic import restore_retired, sha256_of, staged_directory
from EchoSynthLib.errors import InputError
from EchoSynthLib.store.families import check_package_settings, translates_only
from EchoSynthLib.store.package import (
    CARD,
    CONFIG,
    PROVENANCE,
    component_path,
    is_package_folder,
    read_package_header,
)

log = logging.getLogger(__name__)

MANIFEST_FORMAT_VERSION = 1
MODELS_DIR = Path(EchoSynthLib.__file__).parent.parent / "Resources" / "Models"
DEFAULT_MANIFEST = MODELS_DIR / "manifest.json"
MANIFEST_ENV = "ECHOSYNTH_MODEL_MANIFEST"  # another manifest (a mirror's, a lab's own)
CACHE_ENV = "ECHOSYNTH_CACHE_DIR"
BUNDLED_ENV = "ECHOSYNTH_BUNDLED_MODELS"
FEATURE_CACHE_ENV = "ECHOSYNTH_FEATURE_CACHE"

Progress = Callable[[int, "int | None"], None]

_CHUNK = 1 << 20
_TIMEOUT_S = 60
_URL_SCHEMES = ("https", "http", "file")
_FIELDS = ("name", "version", "kind", "url", "sha256", "license")  # required; "description" is optional
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# What the installers (and staged_directory) create beside <cache>/<name> while working, named
# ".<name>.<8 random characters from tempfile>.<suffix>"; a killed install can leave one behind.
_LEFTOVER = re.compile(r"\.[A-Za-z0-9][A-Za-z0-9._-]*\.[a-z0-9_]{8}\.(tmp|old|download)")
# Inside a staging folder: the archive's members, before the package files are lifted to the staging root.
_UNPACKED = ".echosynth-unpacked"


@dataclass(frozen=True)
class KnownModel:
    """A manifest entry: a model package downloadable as a .zip from ``url``."""

    name: str
    version: str
    kind: str
    url: str
    sha256: str
    license: str
    description: str = ""
    task: str = ""
    size: int = 0  # bytes of the .zip (0: not stated)
    translates_only: bool = False  # a source-guided model: it needs a source image besides the map


@dataclass(frozen=True)
class InstalledModel:
    """A model package found on disk; ``source`` is "bundled", "cache" or "folder"."""

    name: str
    version: str
    kind: str
    path: Path
    source: str
    license: str = ""
    translates_only: bool = False  # it needs a source image besides the map (a source-guided model)


def _env_path(variable: str) -> Path | None:
    value = os.environ.get(variable, "").strip()
    return Path(value).expanduser() if value else None


def bundled_models_dir() -> Path:
    """The folder of models shipped with EchoSynth (``ECHOSYNTH_BUNDLED_MODELS`` overrides)."""
    return _env_path(BUNDLED_ENV) or MODELS_DIR


def user_cache_dir() -> Path:
    """The per-user folder of installed models (``ECHOSYNTH_CACHE_DIR`` overrides). It may not exist yet."""
    override = _env_path(CACHE_ENV)
    if override is not None:
        return override
    # platformdirs' user_cache_dir rules, written out: platformdirs is not a dependency of EchoSynth and is
    # not in Slicer's Python, and these three lines are all that is needed.
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA", "").strip()
        base = Path(local) if local else Path.home() / "AppData" / "Local"
        return base / "EchoSynth" / "Cache" / "models"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "EchoSynth" / "models"
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"  # XDG: relative = unset
    return base / "EchoSynth" / "models"


def feature_cache_dir() -> Path:
    """Where ``evaluate`` keeps computed features (``ECHOSYNTH_FEATURE_CACHE`` overrides): ``features``
    beside the models folder of the user cache, or ``<ECHOSYNTH_CACHE_DIR>-features`` when that is set.
    Never inside the models folder, where every sub-folder is taken for a model package."""
    override = _env_path(FEATURE_CACHE_ENV)
    if override is not None:
        return override
    models = user_cache_dir()
    return models.with_name(models.name + "-features") if _env_path(CACHE_ENV) else models.parent / "features"


def default_manifest() -> Path:
    """The manifest of downloadable models: ``ECHOSYNTH_MODEL_MANIFEST``, else the one EchoSynth ships."""
    return _env_path(MANIFEST_ENV) or DEFAULT_MANIFEST


def _cache(cache_dir: str | os.PathLike | None) -> Path:
    return Path(cache_dir).expanduser() if cache_dir is not None else user_cache_dir()


def _bundled(bundled_dir: str | os.PathLike | None) -> Path:
    return Path(bundled_dir).expanduser() if bundled_dir is not None else bundled_models_dir()


def _check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise InputError(
            f"{name!r} is not a usable model name (letters, digits, '.', '_' and '-', starting with a letter "
            "or digit)"
        )
    return name


# --- the manifest ---------------------------------------------------------------------------------------


def read_manifest(path: str | os.PathLike | None = None) -> list[KnownModel]:
    """The models a manifest (default: ``default_manifest()``) lists: ``{"format_version": 1, "models":
    [{name, version, kind, url, sha256, license, description, task, size}, ...]}``. Any problem is an
    InputError naming the file."""
    path = Path(path) if path is not None else default_manifest()
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such model manifest") from None
    except OSError as error:
        raise InputError(f"{path}: cannot read the model manifest ({error.strerror or error})") from None
    except ValueError as error:
        raise InputError(f"{path}: model manifest is not valid JSON ({error})") from None
    if not isinstance(document, dict):
        raise InputError(f"{path}: a model manifest is a JSON object with 'format_version' and 'models'")
    found = document.get("format_version")
    if found != MANIFEST_FORMAT_VERSION:
        problem = "has no 'format_version'" if found is None else f"has format version {found!r}"
        raise InputError(f"{path}: model manifest {problem}; this EchoSynth reads {MANIFEST_FORMAT_VERSION}")
    entries = document.get("models")
    if not isinstance(entries, list):
        raise InputError(f"{path}: 'models' must be a list of model entries")
    models: list[KnownModel] = []
    seen: set[tuple[str, str]] = set()
    for number, entry in enumerate(entries, start=1):
        where = f"{path}: model entry {number}"
        if not isinstance(entry, dict):
            raise InputError(f"{where} is not a JSON object")
        missing = [field for field in _FIELDS if field not in entry]
        if missing:
            raise InputError(f"{where} lacks {', '.join(missing)}")
        fields = {field: entry[field] for field in (*_FIELDS, "description", "task") if field in entry}
        wrong = [field for field, value in fields.items() if not isinstance(value, str)]
        if wrong:
            raise InputError(f"{where}: {', '.join(wrong)} must be text")
        empty = [field for field in ("name", "version", "kind", "url") if not fields[field].strip()]
        if empty:
            raise InputError(f"{where}: {', '.join(empty)} must not be empty")
        name = fields["name"]
        if not _NAME.fullmatch(name):
            raise InputError(f"{where}: name {name!r} is not a usable folder name ([A-Za-z0-9._-])")
        if not _SHA256.fullmatch(fields["sha256"]):
            raise InputError(f"{where} ('{name}'): sha256 must be 64 lowercase hex digits")
        if fields["url"].split(":", 1)[0].lower() not in _URL_SCHEMES:
            raise InputError(f"{where} ('{name}'): url must be https://, http:// or file://")
        key = (name, fields["version"])
        if key in seen:
            raise InputError(f"{where}: '{name}' version '{fields['version']}' is listed twice")
        seen.add(key)
        size = entry.get("size", 0)
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InputError(f"{where} ('{name}'): size must be a whole number of bytes")
        translates_only = entry.get("translates_only", False)
        if not isinstance(translates_only, bool):
            raise InputError(f"{where} ('{name}'): translates_only must be true or false")
        models.append(KnownModel(**fields, size=size, translates_only=translates_only))
    return models


def find_known_model(
    name: str, version: str | None = None, manifest: str | os.PathLike | None = None
) -> KnownModel:
    """The manifest entry of ``name`` (``version``, or the one listed last: manifests list versions oldest
    first)."""
    manifest = manifest or default_manifest()
    models = read_manifest(manifest)
    matches = [m for m in models if m.name == name]
    if not matches:
        listed = ", ".join(sorted({m.name for m in models})) or "no models yet"
        raise InputError(
            f"'{name}' is not in the model manifest {manifest} (it lists {listed}). For a package that is "
            "not in the manifest, unzip it and run 'echosynth models add FOLDER'"
        )
    if version is None:
        return matches[-1]
    for model in matches:
        if model.version == version:
            return model
    versions = ", ".join(m.version for m in matches)
    raise InputError(f"'{name}' has no version '{version}' in {manifest} (versions: {versions})")


# --- what is installed ----------------------------------------------------------------------------------


def _text(value: Any) -> str:
    return str(value) if isinstance(value, str | int | float) and not isinstance(value, bool) else ""


def _licence(provenance: dict[str, Any]) -> str:
    training = provenance.get("training_data")
    for place in (provenance, training if isinstance(training, dict) else {}):
        for key in ("license", "licence"):
            if _text(place.get(key)):
                return _text(place[key])
    return ""


def _version(header: dict[str, Any]) -> str:
    provenance = header.get(PROVENANCE) if isinstance(header.get(PROVENANCE), dict) else {}
    settings = header.get("settings") if isinstance(header.get("settings"), dict) else {}
    return _text(header.get("version")) or _text(settings.get("version")) or _text(provenance.get("version"))


def package_summary(folder: str | os.PathLike, source: str = "folder") -> InstalledModel:
    """Name (the folder's), version, kind and licence of a package of any kind (InputError if it is none).
    The version is config.json's "version", else provenance's "version", else "unversioned"."""
    folder = Path(folder)
    header = read_package_header(folder)
    provenance = header.get(PROVENANCE) if isinstance(header.get(PROVENANCE), dict) else {}
    return InstalledModel(
        name=folder.name,
        version=_version(header) or "unversioned",
        kind=header["kind"],
        path=folder,
        source=source,
        license=_licence(provenance),
        translates_only=translates_only(header["kind"], header.get("settings")),
    )


def _scan(directory: Path, source: str) -> list[InstalledModel]:
    if not directory.is_dir():
        return []
    for retired in directory.glob(".*.old"):  # an install killed between its two renames
        for inner in retired.iterdir() if retired.is_dir() else []:
            restore_retired(directory / inner.name)
    found = []
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith(".") or not entry.is_dir():  # files (manifest.json) and install temporaries
            continue
        try:
            found.append(package_summary(entry, source))
        except InputError as error:
            log.warning("skipped %s, not a usable model package: %s", entry, error)
    return found


def installed_models(
    cache_dir: str | os.PathLike | None = None, bundled_dir: str | os.PathLike | None = None
) -> list[InstalledModel]:
    """Every valid package directly under the bundled folder and the cache, sorted by name (bundled first
    for equal names). Other folders are skipped with a logging warning naming them and why."""
    found = _scan(_bundled(bundled_dir), "bundled") + _scan(_cache(cache_dir), "cache")
    return sorted(found, key=lambda model: model.name.lower())


def _check_kind(folder: Path, header: dict[str, Any], kind: str | None, label: str | None = None) -> None:
    if kind is not None and header["kind"] != kind:
        raise InputError(f"{label or folder}: is a '{header['kind']}' model, expected '{kind}'")


def _looks_like_path(text: str) -> bool:
    separators = {"/", os.sep, os.altsep or "/"}
    return any(s in text for s in separators) or text.startswith(("~", ".")) or not _NAME.fullmatch(text)


# What a name that is listed in the manifest but not installed does (``set_first_use``): nothing by default
# (the error says how to install it); the command line and Slicer download it after the licence is accepted
# (``models.downloads``).
FirstUse = Callable[[KnownModel, "str | os.PathLike | None"], Path]
_first_use: FirstUse | None = None


def set_first_use(handler: FirstUse | None) -> FirstUse | None:
    """Set what ``resolve_model`` does with a listed model that is not installed; the previous handler."""
    global _first_use
    previous, _first_use = _first_use, handler
    return previous


def listed_model(name: str, kind: str | None = None) -> KnownModel | None:
    """The manifest's (newest) entry of ``name`` (of ``kind`` if given), or None; a broken manifest lists
    nothing."""
    try:
        known = [m for m in read_manifest() if m.name == name and kind in (None, m.kind)]
    except InputError:  # a broken manifest: the name is simply unknown
        return None
    return known[-1] if known else None


def download_needed(name: str) -> KnownModel | None:
    """The manifest entry of ``name`` when it is listed but installed neither bundled nor in the cache (its
    first use downloads it); None otherwise."""
    installed = any((directory / name).is_dir() for directory in (_bundled(None), _cache(None)))
    return None if installed or not _NAME.fullmatch(name) else listed_model(name)


# The settings by which a package names another model it draws with: a shape model's image model, an
# adapted model's base.
DRAWS_WITH = ("image_model", "base")


def models_drawn_with(name_or_path: str | os.PathLike) -> list[str]:
    """The models (names or folders) that the installed package ``name_or_path`` draws with, which must
    be installed too (Slicer downloads them before a run); none for the simulator or a package not
    installed."""
    try:
        settings = read_package_header(resolve_model(name_or_path)).get("settings", {})
    except InputError:
        return []
    named = [settings.get(key) for key in DRAWS_WITH]
    return [value for value in named if isinstance(value, str) and value and value != "simulator"]


def resolve_model(
    name_or_path: str | os.PathLike,
    cache_dir: str | os.PathLike | None = None,
    bundled_dir: str | os.PathLike | None = None,
    kind: str | None = None,
) -> Path:
    """The package folder for a path or a model name (checked to be a package, of ``kind`` if given).

    An existing folder is used as it is. A name is looked up in the bundled folder first, then in the
    user cache: a model shipped (and tested) with this release is not shadowed by a cached one of the same
    name. An unknown name is an InputError listing the installed names and how to install one."""
    candidate = Path(name_or_path).expanduser()
    if candidate.is_dir():
        _check_kind(candidate, read_package_header(candidate), kind)
        return candidate
    text = str(name_or_path)
    if _looks_like_path(text):
        raise InputError(f"{text}: no such model folder")
    cache = _cache(cache_dir)
    restore_retired(cache / text)  # an install killed between its two renames
    for directory in (_bundled(bundled_dir), cache):
        folder = directory / text
        if folder.is_dir():
            _check_kind(folder, read_package_header(folder), kind)
            return folder
    listed = listed_model(text, kind) if _first_use is not None else None
    if listed is not None:
        return _first_use(listed, cache_dir)
    models = installed_models(cache_dir, bundled_dir)
    available = ", ".join(dict.fromkeys(m.name for m in models if kind in (None, m.kind))) or "none"
    raise InputError(
        f"no model named '{text}' (installed: {available}). Install it with "
        f"'echosynth models download {text}' (see 'echosynth models list'), or without network place its "
        f"package folder at {cache / text} ('echosynth models add FOLDER' copies it there)"
    )


# --- installing -----------------------------------------------------------------------------------------


def _check_digest(actual: str, model: KnownModel, label: str) -> None:
    if actual != model.sha256:
        raise InputError(
            f"{label}: SHA-256 {actual} does not match the manifest's {model.sha256} for '{model.name}' "
            f"{model.version}; nothing was installed (the file is damaged or not the published one)"
        )


def _check_weights(path: Path) -> None:
    """A cheap look at the safetensors header (8-byte length, then JSON) without loading any tensor."""
    try:
        size = path.stat().st_size
        with path.open("rb") as stream:
            length = int.from_bytes(stream.read(8), "little")
            if not 2 <= length <= size - 8:
                raise ValueError("bad header length")
            header = json.loads(stream.read(length))
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: not a safetensors weights file ({error})") from None


def _refuse_foreign(target: Path) -> None:
    """Installing replaces ``target``: only allow that for an EchoSynth package."""
    if not (target.exists() or target.is_symlink()):
        return
    if not is_package_folder(target):  # any format: an install may replace an old package
        raise InputError(
            f"{target} exists and is not an EchoSynth model package; move it away first (installing "
            "would replace it)"
        )


def _member_parts(info: zipfile.ZipInfo, label: str) -> list[str]:
    name = info.filename
    parts = [part for part in re.split(r"[\\/]", name) if part not in ("", ".")]
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name) or ".." in parts:
        raise InputError(f"{label}: refusing unsafe archive member {name!r} (absolute path or '..')")
    return parts


def _archive_members(archive: zipfile.ZipFile, label: str) -> tuple[list[zipfile.ZipInfo], str | None]:
    """The members to extract, and the package folder they sit in (None: the package files at the root).
    Every member is checked before anything is extracted; macOS Finder's extras are left out."""
    members, tops, root_files = [], set(), set()
    for info in archive.infolist():
        parts = _member_parts(info, label)
        if not parts or parts[0] == "__MACOSX" or parts[-1] == ".DS_Store":
            continue
        members.append(info)
        tops.add(parts[0])
        if len(parts) == 1 and not info.is_dir():
            root_files.add(parts[0])
    if CONFIG in root_files:
        return members, None
    if len(tops) == 1 and not root_files:
        return members, tops.pop()
    raise InputError(
        f"{label}: the archive holds neither one model package folder nor the package files ({CONFIG}, "
        f"{CARD} and the weights) at its root"
    )


def _validate(root: Path, label: str, kind: str | None, version: str | None) -> None:
    """Check the package at ``root`` (a staging folder), naming ``label`` (what the user gave) in errors."""
    try:
        header = read_package_header(root)
        for component in header["components"]:
            _check_weights(root / component["file"])
            component_path(root, header, component["name"])  # its SHA-256
    except InputError as error:
        raise InputError(str(error).replace(str(root), label)) from None
    if kind is not None and header["kind"] != kind:
        raise InputError(f"{label}: holds a '{header['kind']}' model, but the manifest says '{kind}'")
    found = _version(header)
    if version is not None and found != version:
        what = f"version '{found}'" if found else "no version"
        raise InputError(f"{label}: holds {what} of the model, but the manifest says '{version}'")
    try:
        check_package_settings(header["kind"], header["settings"], str(root / CONFIG))
    except InputError as error:
        raise InputError(str(error).replace(str(root), label)) from None


def _install(
    name: str,
    fill: Callable[[Path], Path],
    label: str,
    cache: Path,
    kind: str | None = None,
    version: str | None = None,
) -> Path:
    """The one install path: ``fill(staging)`` puts the package files under the staging folder and returns
    where the package is; it is checked, lifted to the staging root, then replaces ``cache/name`` whole."""
    target = cache / _check_name(name)
    _refuse_foreign(target)
    with staged_directory(target) as staging:
        root = fill(staging)
        _validate(root, label, kind, version)
        if root != staging:
            for child in list(root.iterdir()):
                os.replace(child, staging / child.name)
            shutil.rmtree(staging / _UNPACKED)
    if (bundled_models_dir() / name).is_dir():
        log.warning("%s: a bundled model of the same name is used first when '%s' is asked for", target, name)
    return target


def _install_archive(
    zip_path: Path, label: str, name: str | None, cache: Path, kind: str | None, version: str | None
) -> Path:
    try:
        with zipfile.ZipFile(zip_path) as archive:
            members, folder = _archive_members(archive, label)

            def unpack(staging: Path) -> Path:
                unpacked = staging / _UNPACKED
                for info in members:
                    archive.extract(info, unpacked)
                return unpacked / folder if folder else unpacked

            target_name = name or folder or re.sub(r"\.zip$", "", zip_path.name, flags=re.IGNORECASE)
            return _install(target_name, unpack, label, cache, kind, version)
    except zipfile.BadZipFile as error:
        raise InputError(f"{label}: not a readable zip archive ({error})") from None
    except (NotImplementedError, RuntimeError, EOFError) as error:  # encrypted, unknown compression, cut
        raise InputError(f"{label}: cannot unpack the zip archive ({error})") from None


def _network_error(model: KnownModel, reason: object, cache: Path) -> InputError:
    return InputError(
        f"could not download '{model.name}' from {model.url} ({reason}). Without network access, fetch that "
        f"file elsewhere and run 'echosynth models add ZIP' (or in Slicer: Install from file), or unzip it "
        f"and copy the package folder to {cache / model.name}"
    )


def _download(model: KnownModel, out: BinaryIO, progress: Progress | None, cache: Path) -> str:
    """Stream ``model.url`` into ``out``; the SHA-256 of what came."""
    import http.client
    import urllib.error
    import urllib.request

    failures = (urllib.error.URLError, http.client.HTTPException, OSError, ValueError)
    if model.url.split(":", 1)[0].lower() not in _URL_SCHEMES:
        raise InputError(f"{model.url}: only https://, http:// and file:// URLs are downloaded")
    try:
        response = urllib.request.urlopen(model.url, timeout=_TIMEOUT_S)
    except urllib.error.HTTPError as error:  # the server answered: say what it said
        raise _network_error(model, f"HTTP {error.code} {error.reason}", cache) from None
    except failures as error:
        raise _network_error(model, getattr(error, "reason", None) or error, cache) from None
    digest, done = hashlib.sha256(), 0
    with response:
        length = response.headers.get("Content-Length", "")
        total = int(length) if length.isdigit() else None
        if progress:
            progress(0, total)
        while True:
            try:
                chunk = response.read(_CHUNK)
            except failures as error:
                raise _network_error(model, error, cache) from None
            if not chunk:
                break
            out.write(chunk)  # a full disk is an OSError of its own, not a network problem
            digest.update(chunk)
            done += len(chunk)
            if progress:
                progress(done, total)
    if total is not None and done != total:
        raise _network_error(model, f"the connection closed after {done} of {total} bytes", cache)
    return digest.hexdigest()


def install_from_url(
    model: KnownModel, cache_dir: str | os.PathLike | None = None, progress: Progress | None = None
) -> Path:
    """Download ``model`` (a .zip at its URL) into the cache, check its SHA-256 and the package, and
    install it as ``<cache>/<name>``. ``progress(bytes_done, bytes_total_or_None)`` follows the download."""
    cache = _cache(cache_dir)
    _refuse_foreign(cache / _check_name(model.name))  # before spending a download on it
    cache.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{model.name}.", suffix=".download", dir=cache)
    download = Path(name)
    try:
        with os.fdopen(handle, "wb") as out:
            digest = _download(model, out, progress, cache)
        _check_digest(digest, model, model.url)
        return _install_archive(download, model.url, model.name, cache, model.kind, model.version)
    finally:
        download.unlink(missing_ok=True)


def install_from_archive(
    zip_path: str | os.PathLike,
    model: KnownModel | None = None,
    cache_dir: str | os.PathLike | None = None,
    name: str | None = None,
) -> Path:
    """Install a .zip downloaded by hand (offline). With a manifest entry, its SHA-256, kind and version are
    checked and it is installed under the entry's name; otherwise under ``name``, else the package folder's
    name in the archive, else the archive's name without .zip."""
    zip_path = Path(zip_path)
    if not zip_path.is_file():
        raise InputError(f"{zip_path}: no such archive")
    if model is not None:
        _check_digest(sha256_of(zip_path), model, str(zip_path))
    return _install_archive(
        zip_path,
        str(zip_path),
        model.name if model is not None else name,
        _cache(cache_dir),
        model.kind if model is not None else None,
        model.version if model is not None else None,
    )


def install_archive_file(
    zip_path: str | os.PathLike, name: str | None = None, cache_dir: str | os.PathLike | None = None
) -> Path:
    """Offline install of a model .zip fetched by hand: when the manifest lists a file of its name (a
    release asset), its SHA-256, kind and version are checked against that entry."""
    zip_path = Path(zip_path)
    try:
        listed = [m for m in read_manifest() if m.url.rsplit("/", 1)[-1] == zip_path.name]
    except InputError:  # no usable manifest: an unlisted archive
        listed = []
    known = listed[-1] if listed and name in (None, listed[-1].name) else None
    return install_from_archive(zip_path, known, cache_dir, name=name)


def _refuse_outside_links(folder: Path) -> None:
    """InputError for a symbolic link in the package that points outside it (or in a loop): a package is
    copied with what links point to, and must not pull other files of the machine into the cache."""
    root = folder.resolve()
    for path in folder.rglob("*"):
        if not path.is_symlink():
            continue
        try:
            target = path.resolve(strict=True)
        except (OSError, RuntimeError):
            raise InputError(f"{path}: a symbolic link that loops or points nowhere; remove it") from None
        if not target.is_relative_to(root):
            raise InputError(f"{path}: a symbolic link to {target}, outside the package; copy the file in")
        if target.is_dir():  # a package holds files; a link to a folder can make copying recurse forever
            raise InputError(f"{path}: a symbolic link to a folder; a model package holds plain files")


def install_from_folder(
    folder: str | os.PathLike, name: str | None = None, cache_dir: str | os.PathLike | None = None
) -> Path:
    """Copy a package folder into the cache as ``<cache>/<name or the folder's name>`` (checked first; the
    folder itself is only read)."""
    folder = Path(folder).expanduser()
    read_package_header(folder)  # errors name the user's folder
    cache = _cache(cache_dir)
    target = cache / _check_name(name or Path(os.path.abspath(folder)).name)  # "." and "x/.." have names
    if target.exists() and target.resolve() == folder.resolve():
        return target

    _refuse_outside_links(folder)

    def copy(staging: Path) -> Path:
        shutil.copytree(folder, staging, dirs_exist_ok=True)
        return staging

    return _install(target.name, copy, str(folder), cache)


def clear_cache(cache_dir: str | os.PathLike | None = None) -> list[str]:
    """Remove the model packages from the cache (and temporaries a killed install left); return the names
    of the removed packages. Anything that is not an EchoSynth package stays. Do not run during an install."""
    cache = _cache(cache_dir)
    if not cache.is_dir():
        return []
    removed = []
    for entry in sorted(cache.iterdir()):
        if _LEFTOVER.fullmatch(entry.name):
            _remove(entry)
            continue
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        if not is_package_folder(entry):
            continue
        _remove(entry)
        removed.append(entry.name)
    return removed


def _remove(entry: Path) -> None:
    if entry.is_symlink() or not entry.is_dir():
        entry.unlink()  # a link into the cache: remove the link, never what it points to
    else:
        shutil.rmtree(entry)
