"""``echosynth prepare | augment``: datasets to training caches, and new anatomies from label maps."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from EchoSynthLib.cli.arguments import (
    add_acquisition_argument,
    count_argument,
    parse_numbers,
    parse_pairs,
    parse_size,
    seed_argument,
)
from EchoSynthLib.errors import InputError


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register this module's subcommands."""
    prepare = commands.add_parser(
        "prepare",
        help="turn a dataset into a training cache (arrays + JSON manifest)",
        description="Read a dataset in its original layout and write a training cache: resampled images in "
        "[-1, 1], label maps with the sector class, patient-level splits and a manifest. Rerunning on an "
        "up-to-date cache does nothing.",
    )
    prepare.add_argument("dataset", choices=["camus", "camus224", "mitea", "echonet", "folder"])
    prepare.add_argument("root", type=Path, help="dataset root folder")
    prepare.add_argument("--out", required=True, type=Path, help="cache folder (created or updated)")
    prepare.add_argument(
        "--size",
        type=parse_size,
        help="target grid WxH (2D) or WxHxD (3D); one number N means NxN (default 128, mitea 160x160x128)",
    )
    prepare.add_argument(
        "--resize", choices=["pad", "stretch"], default="pad", help="keep aspect ratio (pad)"
    )
    prepare.add_argument("--no-upscale", action="store_true", help="only ever shrink (DIFF-3 preprocessing)")
    prepare.add_argument(
        "--layout",
        default="echosynth",
        help="class values of the cached labels: echosynth, echo-from-noise, camus, mitea, echonet",
    )
    prepare.add_argument(
        "--splits",
        choices=["dataset", "random"],
        default="dataset",
        help="keep the dataset's own splits where it has them (default) or split every patient at random",
    )
    prepare.add_argument(
        "--fractions",
        default="0.8,0.1,0.1",
        metavar="TRAIN,VAL,TEST",
        help="split fractions for patients without a dataset split (default 0.8,0.1,0.1)",
    )
    prepare.add_argument("--seed", type=seed_argument, default=0, help="seed of the patient shuffle")
    prepare.add_argument("--strict", action="store_true", help="stop at the first unusable case")
    prepare.add_argument("--half-sequences", action="store_true", help="camus: add every half-sequence frame")
    prepare.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="mitea: label value of a structure, e.g. --label myocardium=1 --label cavity=2",
    )
    prepare.add_argument("--patient-pattern", metavar="REGEX", help="mitea/folder: patient id = group 1")
    prepare.add_argument("--schema", default="echosynth", help="folder: label values of label images")
    prepare.set_defaults(run=_run_prepare)

    augment = commands.add_parser(
        "augment",
        help="write randomly deformed variants of label maps (Echo-from-noise settings)",
        description="Write N augmented variants of each label map: random affine + elastic warp, "
        "nearest neighbour, clipped to the original sector.",
    )
    augment.add_argument("labels", type=Path, nargs="+", help="label files and/or folders of label files")
    augment.add_argument("--n", type=count_argument(1), default=5, help="variants per label map (default 5)")
    augment.add_argument("--out", required=True, type=Path, help="output folder")
    augment.add_argument("--seed", type=seed_argument, default=0)
    augment.add_argument("--schema", default="echosynth", help="label values of label images")
    add_acquisition_argument(augment)
    augment.set_defaults(run=_run_augment)


def _reader_options(args: argparse.Namespace) -> dict[str, object]:
    """The options of the chosen reader; options meant for another dataset are an error."""
    from EchoSynthLib.data.labels import schema_named

    given = {
        "half_sequences": (args.half_sequences, ["camus"]),
        "label_names": (dict(parse_pairs(args.label, "--label", int)), ["mitea"]),
        "patient_pattern": (args.patient_pattern, ["mitea", "folder"]),
        "schema": (args.schema if args.schema != "echosynth" else None, ["folder"]),
    }
    options: dict[str, object] = {}
    for name, (value, datasets) in given.items():
        if not value:
            continue
        if args.dataset not in datasets:
            flag = "--" + name.replace("_", "-").replace("label-names", "label")
            raise InputError(f"{flag} applies to {' and '.join(datasets)}, not {args.dataset}")
        options[name] = schema_named(value) if name == "schema" else value
    if args.dataset == "echonet":
        options["splits"] = args.splits
    return options


def _run_prepare(args: argparse.Namespace) -> None:
    from collections import Counter

    from tqdm import tqdm

    from EchoSynthLib.cache.store import build_cache
    from EchoSynthLib.datasets import scan_dataset
    from EchoSynthLib.preprocessing.prepare import PrepareSettings

    fractions = dict(
        zip(("train", "val", "test"), parse_numbers(args.fractions, "--fractions"), strict=False)
    )
    if len(fractions) != 3 or len(args.fractions.split(",")) != 3:
        raise InputError(f"--fractions expects three numbers TRAIN,VAL,TEST, got '{args.fractions}'")
    if not all(math.isfinite(f) and f >= 0 for f in fractions.values()) or sum(fractions.values()) <= 0:
        raise InputError(f"--fractions must be finite, not negative, and not all 0, got '{args.fractions}'")
    size = args.size or ((128, 160, 160) if args.dataset == "mitea" else (128, 128))
    settings = PrepareSettings(
        size=size,
        resize=args.resize,
        upscale=not args.no_upscale,
        layout=args.layout,
        split_fractions=fractions,
        split_seed=args.seed,
    )
    options = _reader_options(args)
    scan = scan_dataset(args.dataset, args.root, **options)
    print(f"{scan.dataset}: {len(scan.cases)} cases found in {scan.root}")
    with tqdm(total=len(scan.cases), desc="prepare", unit="case", delay=0.5) as bar:

        def advance(case_id: str) -> None:
            bar.set_postfix_str(case_id, refresh=False)
            bar.update(1)

        result = build_cache(
            scan,
            args.out,
            settings,
            options={k: getattr(v, "name", v) for k, v in options.items()},
            use_dataset_splits=args.splits == "dataset",
            strict=args.strict,
            progress=advance,
        )
    manifest = result.manifest
    if not result.rebuilt:
        print(f"{args.out}: up to date (same sources and settings); nothing to do")
    counts = ", ".join(
        f"{split} {c['cases']} cases / {c['patients']} patients" for split, c in manifest.counts.items()
    )
    shape = "x".join(str(n) for n in manifest.shape[::-1])
    print(f"{args.out}: {counts}; {shape}, classes {manifest.layout.as_json()}")
    skipped = manifest.skipped
    if skipped:
        print(f"skipped {len(skipped)}:", file=sys.stderr)
        for reason, count in Counter(s["reason"] for s in skipped).most_common(10):
            example = next(s["source"] for s in skipped if s["reason"] == reason)
            print(f"  {count} x {reason} (e.g. {example})", file=sys.stderr)


def _run_augment(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from EchoSynthLib.augmentation import augment_files
    from EchoSynthLib.augmentation.labelmaps import ACQUISITIONS
    from EchoSynthLib.data.io import find_label_files
    from EchoSynthLib.data.outputs import check_place

    check_place(args.out, args.labels, whole=False)  # never into (or as) a folder of the label maps
    files = find_label_files(args.labels)
    bars: list[tqdm] = []  # started on the first write, after every input has been checked

    def advance(_: Path) -> None:
        if not bars:
            bars.append(tqdm(total=len(files) * args.n, desc="augment", unit="map"))
        bars[0].update(1)

    try:
        written = augment_files(
            files, args.n, args.out, args.seed, args.schema, advance, ACQUISITIONS[args.acquisition]
        )
    finally:
        for bar in bars:
            bar.close()
    print(f"wrote {len(written)} files to {args.out}/:")
    for path in written:
        print(f"  {path}")
