"""Cut a release: the models as release assets, and the extension's source tree without them.

The Extensions Index clones an extension's repository with its history and refuses more than 100 MB, so
the extension repository holds no weights: each shipped model is a release asset (a .zip) that EchoSynth
downloads on first use, listed with its SHA-256 in ``Resources/Models/manifest.json``. This development
repository keeps the weights that ``make demo`` and the tests need.

    python -m EchoSynthLib.release --out dist          # or: make release

writes ``dist/models/<name>-<version>.zip`` (one per folder of ``Resources/Models``, byte-for-byte the same
on every run), ``dist/models/manifest.json`` and the same manifest into ``Resources/Models/manifest.json``
(``--no-update-manifest`` leaves it), and ``dist/SlicerEchoSynth/``: the extension source tree (modules,
library, CMake, tests, docs; the manifest but no weights) that the Extensions Index entry points at, with
``dist/SlicerEchoSynth.tar.gz``, its packed size. Upload the zips to the release ``RELEASE_TAG`` of
``RELEASE_BASE_URL`` and push the tree to the extension repository (docs/SLICER.md, "Extensions Index
and cutting a release").
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tarfile
import zipfile
from pathlib import Path

from EchoSynthLib.data.atomic import sha256_of, staged_directory, write_atomically
from EchoSynthLib.data.outputs import owned_folder
from EchoSynthLib.errors import InputError, run_main
from EchoSynthLib.store.families import task_of
from EchoSynthLib.store.registry import MANIFEST_FORMAT_VERSION, MODELS_DIR, package_summary

# The one place the models' download address is set: every manifest URL is this base + the zip's name.
RELEASE_TAG = "models-v1"
RELEASE_BASE_URL = f"https://github.com/echosynth/SlicerEchoSynth/releases/download/{RELEASE_TAG}/"
ROOT = MODELS_DIR.parent.parent
MANIFEST = "manifest.json"
RELEASE_COMMAND = "release"  # the writer named in the output folder's mark
EXTENSION = "SlicerEchoSynth"
# What the extension tree leaves out besides the weights: working folders, never tracked but listed here
# for a tree made without git.
LEFT_OUT = ("data/", "runs/", "out/", "dist/", ".venv/", "echosynth.egg-info/")
LARGE = 1 << 20  # no file of the extension tree is larger, but these (shown by the Extensions Manager)
LARGE_ALLOWED = ("EchoSynth/Resources/Icons/EchoSynth.png", "docs/montage.png")
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # a fixed time in every zip entry, so a zip's SHA-256 is its content's


def pack_model(folder: Path, archive: Path) -> Path:
    """Zip a model package folder as ``<name>/<file>`` entries in name order, with fixed times, stored
    uncompressed: weights hardly compress, and a stored zip's bytes (so its SHA-256) do not depend on the
    zlib of the machine that packs it."""

    def write(staging: Path) -> None:
        with zipfile.ZipFile(staging, "w", compression=zipfile.ZIP_STORED) as out:
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                entry = zipfile.ZipInfo(f"{folder.name}/{path.relative_to(folder).as_posix()}", ZIP_TIME)
                entry.compress_type = zipfile.ZIP_STORED
                entry.external_attr = 0o644 << 16
                out.writestr(entry, path.read_bytes())

    return write_atomically(archive, write)


def model_entries(models_dir: Path, zips: Path, base_url: str) -> list[dict]:
    """Pack every package folder of ``models_dir`` into ``zips``; their manifest entries."""
    entries = []
    for folder in sorted(p for p in models_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        summary = package_summary(folder, "bundled")
        archive = pack_model(folder, zips / f"{summary.name}-{summary.version}.zip")
        card = (folder / "MODEL_CARD.md").read_text().splitlines()
        entries.append(
            {
                "name": summary.name,
                "version": summary.version,
                "kind": summary.kind,
                "task": task_of(summary.kind),
                "translates_only": summary.translates_only,
                "size": archive.stat().st_size,
                "sha256": sha256_of(archive),
                "license": summary.license or "not stated",
                "url": base_url + archive.name,
                "description": next((line.lstrip("# ").strip() for line in card if line.strip()), ""),
            }
        )
    return entries


def write_manifest(entries: list[dict], path: Path) -> Path:
    document = {"format_version": MANIFEST_FORMAT_VERSION, "models": entries}
    text = json.dumps(document, indent=1) + "\n"
    return write_atomically(path, lambda staging: staging.write_text(text))


def source_files(root: Path) -> list[str]:
    """The files of the source tree (git's tracked files; every file when ``root`` is no git checkout),
    as POSIX paths relative to ``root``."""
    try:
        listed = subprocess.run(
            ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            capture_output=True,
            check=True,
            text=True,
        ).stdout.split("\0")
    except (OSError, subprocess.CalledProcessError):
        listed = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
    return sorted(p for p in listed if p and (root / p).is_file())


def extension_files(root: Path) -> list[str]:
    """What the extension repository holds: the source tree without weights (the model manifest stays)
    and without working folders."""
    models = MODELS_DIR.relative_to(ROOT).as_posix() + "/"
    kept = []
    for path in source_files(root):
        in_a_model = path.startswith(models) and "/" in path[len(models) :]
        if not in_a_model and not path.startswith(LEFT_OUT) and "/.git/" not in f"/{path}":
            kept.append(path)
    return kept


def write_extension_tree(root: Path, out: Path) -> tuple[Path, Path]:
    """Copy the extension's files into ``out/SlicerEchoSynth`` and pack them; (tree, .tar.gz). Refuses a file
    over 1 MB (but the icon and screenshot): the Extensions Index keeps repositories small."""
    files = extension_files(root)
    large = [p for p in files if (root / p).stat().st_size > LARGE and p not in LARGE_ALLOWED]
    if large:
        raise InputError(f"files over 1 MB would go into the extension repository: {', '.join(large)}")
    tree = out / EXTENSION

    with staged_directory(tree) as staging:
        for path in files:
            target = staging / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes((root / path).read_bytes())
            os.chmod(target, (root / path).stat().st_mode & 0o777)

    def pack(staging: Path) -> None:
        with tarfile.open(staging, "w:gz") as archive:
            for path in files:
                archive.add(tree / path, f"{EXTENSION}/{path}")

    return tree, write_atomically(out / f"{EXTENSION}.tar.gz", pack)


def release(
    out: Path,
    base_url: str = RELEASE_BASE_URL,
    update_manifest: bool = True,
    models_dir: Path = MODELS_DIR,
    root: Path = ROOT,
) -> dict:
    """Write the model zips, the manifest and the extension tree under ``out`` (a new or empty folder, or
    an earlier release's: the one output rule, ``data.outputs.owned_folder``), then the manifest beside the
    models; what was written."""
    with owned_folder(out, RELEASE_COMMAND, [models_dir]) as staging:
        entries = model_entries(models_dir, staging / "models", base_url)
        write_manifest(entries, staging / "models" / MANIFEST)
        write_extension_tree(root, staging)
    manifests = [out / "models" / MANIFEST]
    if update_manifest:
        manifests.append(write_manifest(entries, models_dir / MANIFEST))
    return {
        "models": entries,
        "manifests": manifests,
        "tree": out / EXTENSION,
        "packed": out / f"{EXTENSION}.tar.gz",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m EchoSynthLib.release", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "dist",
        help="a new or empty folder, or an earlier release (default: dist/)",
    )
    parser.add_argument("--base-url", default=RELEASE_BASE_URL, help="where the zips will be downloaded from")
    parser.add_argument(
        "--no-update-manifest", action="store_true", help="leave Resources/Models/manifest.json as it is"
    )
    args = parser.parse_args(argv)

    def run() -> None:
        made = release(args.out, args.base_url, not args.no_update_manifest)
        for entry in made["models"]:
            print(f"{entry['url']}  {entry['size'] / 1e6:.1f} MB  sha256 {entry['sha256']}")
        print("manifest:", *made["manifests"])
        print(f"extension tree: {made['tree']} ({made['packed'].stat().st_size / 1e6:.1f} MB packed)")

    return run_main(run, lambda message: print(f"release: error: {message}"))


if __name__ == "__main__":
    raise SystemExit(main())
