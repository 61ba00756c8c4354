"""``echosynth models list | install | add | upgrade | path | clear``: installed and downloadable model
packages."""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from EchoSynthLib.cli.arguments import add_licence_argument

LICENCE_WIDTH = 60


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register this module's subcommands."""
    models = commands.add_parser(
        "models",
        help="list, install and remove model packages",
        description="Model packages: bundled with EchoSynth, installed in the per-user cache "
        "(ECHOSYNTH_CACHE_DIR overrides its place), or listed in the manifest for download.",
    )
    actions = models.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser(
        "list",
        help="bundled and cached models, and the manifest's models not installed yet",
        description="List bundled and cached models, and the manifest's models not installed yet, with "
        "their licences.",
    )
    listing.add_argument("--manifest", type=Path, help="model manifest (default: the bundled one)")
    listing.set_defaults(run=_run_list)

    download = actions.add_parser(
        "download",
        aliases=["install"],
        help="download a manifest model into the cache (or install it from a .zip offline)",
        description="Download a model listed in the manifest (its licence accepted first: asked on a "
        "terminal, or --accept-licence), check its SHA-256 and install it in the cache. Offline: give the "
        ".zip fetched elsewhere with --archive, or 'echosynth models add FILE.zip'.",
    )
    download.add_argument("name", help="model name in the manifest")
    download.add_argument("--version", help="model version (default: the newest listed)")
    download.add_argument("--archive", type=Path, metavar="ZIP", help="install from this .zip, no download")
    download.add_argument("--manifest", type=Path, help="model manifest (default: the bundled one)")
    add_licence_argument(download)
    download.set_defaults(run=_run_download)

    add = actions.add_parser(
        "add",
        help="copy a model package folder (or a model .zip) into the cache",
        description="Check a model package folder, or a model .zip fetched by hand (checked against the "
        "manifest's SHA-256 when the manifest lists a file of its name), and install it in the cache (the "
        "folder or file is not changed).",
    )
    add.add_argument("folder", type=Path, help="model package folder or .zip")
    add.add_argument("--name", help="name in the cache (default: the folder's name)")
    add.set_defaults(run=_run_add)

    upgrade = actions.add_parser(
        "upgrade",
        help="convert a format-1 model package folder to format 2, in place",
        description="Convert a model package of format 1 (model.safetensors, settings at the top of "
        "config.json) to format 2 (named components with SHA-256); the weights are kept as they are.",
    )
    upgrade.add_argument("folder", type=Path, help="model package folder")
    upgrade.set_defaults(run=_run_upgrade)

    path = actions.add_parser(
        "path", help="print the cache folder", description="Print the folder of installed models."
    )
    path.set_defaults(run=_run_path)

    clear = actions.add_parser(
        "clear",
        help="remove the cached model packages",
        description="Remove the model packages from the cache (anything else there stays).",
    )
    clear.set_defaults(run=_run_clear)


def _short(text: str) -> str:
    return textwrap.shorten(text, LICENCE_WIDTH, placeholder="...") if text else "-"


def _print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1])


def _run_list(args: argparse.Namespace) -> None:
    from EchoSynthLib.errors import InputError
    from EchoSynthLib.store import registry

    installed = registry.installed_models()
    try:
        known = registry.read_manifest(args.manifest)
    except InputError as error:  # a broken manifest does not hide what is installed
        print(f"echosynth models: warning: {error}", file=sys.stderr)
        known = []
    have = {(m.name, m.version) for m in installed}
    unversioned = {m.name for m in installed if m.version == "unversioned"}
    missing = [m for m in known if (m.name, m.version) not in have and m.name not in unversioned]
    rows = [("NAME", "VERSION", "KIND", "WHERE", "LICENSE")]
    rows += [(m.name, m.version, m.kind, m.source, _short(m.license)) for m in installed]
    rows += [(m.name, m.version, m.kind, "not installed", _short(m.license)) for m in missing]
    if len(rows) > 1:
        _print_table(rows)
    else:
        print("no models installed or listed in the manifest (the 'simulator' generator needs none)")
    print(f"bundled models: {registry.bundled_models_dir()}")
    print(f"cache: {registry.user_cache_dir()}")
    if missing:
        print("install one with: echosynth models download NAME")


def _run_download(args: argparse.Namespace) -> None:
    from EchoSynthLib.cli.downloading import ask_on_terminal, byte_progress
    from EchoSynthLib.store import registry
    from EchoSynthLib.store.downloads import download_model

    model = registry.find_known_model(args.name, args.version, args.manifest)
    if args.archive is not None:
        path = registry.install_from_archive(args.archive, model)
    else:
        path = download_model(
            model, accept=args.accept_licence, ask=ask_on_terminal, progress=byte_progress(model)
        )
    print(f"installed {model.name} {model.version} ({model.kind}) to {path}")
    print(f"license: {model.license}")


def _run_add(args: argparse.Namespace) -> None:
    from EchoSynthLib.store import registry

    if args.folder.is_file():
        path = registry.install_archive_file(args.folder, args.name)
    else:
        path = registry.install_from_folder(args.folder, args.name)
    model = registry.package_summary(path, "cache")
    print(f"added {model.name} {model.version} ({model.kind}) to {path}")


def _run_upgrade(args: argparse.Namespace) -> None:
    from EchoSynthLib.store.package import upgrade_package

    print(f"{upgrade_package(args.folder)}: model package format 2")


def _run_path(args: argparse.Namespace) -> None:
    from EchoSynthLib.store import registry

    print(registry.user_cache_dir())


def _run_clear(args: argparse.Namespace) -> None:
    from EchoSynthLib.store import registry

    cache = registry.user_cache_dir()
    removed = registry.clear_cache()
    if removed:
        print(f"removed {len(removed)} model(s) from {cache}: {', '.join(removed)}")
    else:
        print(f"no cached models in {cache}")
