"""``echosynth``: phantom, simulate, info and demo subcommands.

Errors are one line on stderr and exit status 2; outputs are written atomically, so a failed command
leaves no partial files.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from EchoSynthLib.errors import EchoSynthError, InputError

EXIT_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="echosynth", description="Labelled synthetic echocardiography from label maps."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    phantom = commands.add_parser(
        "phantom",
        help="generate a phantom label map (2D apical view or 3D LV)",
        description="Generate a seeded phantom label map.",
    )
    phantom.add_argument("--view", default="4CH", choices=["4CH", "2CH", "3D"], type=str.upper)
    phantom.add_argument("--phase", default="ED", choices=["ED", "ES"], type=str.upper)
    phantom.add_argument("--seed", type=int, default=0)
    phantom.add_argument("--size", type=int, help="grid side in voxels (default 256 for 2D, 128 for 3D)")
    phantom.add_argument("--depth", type=float, help="sector depth in mm (default 150 for 2D, 140 for 3D)")
    phantom.add_argument("--angle", type=float, help="sector opening angle in degrees (default 75 / 70)")
    phantom.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="fix an anatomy parameter, e.g. --set lv_length_mm=85 (repeatable)",
    )
    phantom.add_argument(
        "--out", required=True, type=Path, help="output label file (.nii.gz, .nrrd, .seg.nrrd, ...)"
    )
    phantom.set_defaults(run=_run_phantom)

    simulate = commands.add_parser(
        "simulate",
        help="simulate a B-mode echo image from a label map",
        description="Simulate B-mode echo images from a label map.",
    )
    simulate.add_argument("labels", type=Path, help="label map (.seg.nrrd, .nii.gz, .nrrd, .mha, .mhd, .png)")
    simulate.add_argument("--out", required=True, type=Path, help="output image file")
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument("--n", type=int, default=1, help="number of images (seeds seed..seed+n-1)")
    simulate.add_argument(
        "--schema",
        default="echosynth",
        help="label values of a label image: echosynth, camus, mitea, echonet, echo-from-noise",
    )
    simulate.add_argument("--no-tgc", action="store_true", help="do not compensate attenuation with depth")
    simulate.add_argument("--dynamic-range", type=float, default=None, metavar="DB")
    simulate.add_argument("--gain", type=float, default=None, metavar="DB")
    simulate.add_argument("--frequency", type=float, default=None, metavar="MHZ")
    simulate.set_defaults(run=_run_simulate)

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
        type=_parse_size,
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
    prepare.add_argument("--seed", type=int, default=0, help="seed of the patient shuffle")
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
    augment.add_argument("--n", type=int, default=5, help="variants per label map (default 5)")
    augment.add_argument("--out", required=True, type=Path, help="output folder")
    augment.add_argument("--seed", type=int, default=0)
    augment.add_argument("--schema", default="echosynth", help="label values of label images")
    augment.set_defaults(run=_run_augment)

    train = commands.add_parser(
        "train",
        help="train a model: sdm (2D semantic diffusion) or segmenter (label-adherence U-Net)",
        description="Train on a cache from 'echosynth prepare'. Rerunning the same command resumes from "
        "the last checkpoint (same step count and optimizer state).",
    )
    train.add_argument("model", choices=["sdm", "segmenter"])
    train.add_argument("--data", required=True, type=Path, help="training cache")
    train.add_argument("--out", required=True, type=Path, help="run folder (created, or resumed)")
    train.add_argument("--config", type=Path, help="JSON file of settings (applied over the size preset)")
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override one setting, e.g. --set max_steps=20000 --set batch_size=32 (repeatable)",
    )
    train.add_argument("--device", default="auto", help="auto (GPU if present), cpu, cuda, cuda:1, ...")
    train.set_defaults(run=_run_train)

    synthesize = commands.add_parser(
        "synthesize",
        help="synthesize echo images from label maps with a trained model",
        description="Synthesize images with a trained semantic diffusion model. Images keep each label "
        "map's geometry; a 3D map gives one slice (--slice).",
    )
    synthesize.add_argument("--model", required=True, type=Path, help="model package folder")
    synthesize.add_argument("--labels", required=True, type=Path, nargs="+", help="label files or folders")
    synthesize.add_argument("--out", required=True, type=Path, help="output folder")
    synthesize.add_argument("--n", type=int, default=1, help="images per label map (default 1)")
    synthesize.add_argument("--steps", type=int, default=25, help="sampling steps (default 25)")
    synthesize.add_argument("--sampler", default="dpm++", choices=["dpm++", "ddim", "ddpm"])
    synthesize.add_argument("--seed", type=int, default=0, help="image k of a map uses seed + k")
    synthesize.add_argument(
        "--augment", type=int, default=0, metavar="N", help="also N new anatomies per map"
    )
    synthesize.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance scale")
    synthesize.add_argument("--slice", type=int, help="slice index (k) of a 3D label map (default: middle)")
    synthesize.add_argument("--schema", default="echosynth", help="label values of label images")
    synthesize.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    synthesize.set_defaults(run=_run_synthesize)

    validate = commands.add_parser(
        "validate",
        help="label adherence of a model: Dice of a segmenter on synthetic images",
        description="Synthesize an image for every label map of a cache split, segment it with a segmenter "
        "trained on real images, and report Dice per structure (and the same on the real images).",
    )
    validate.add_argument("--model", required=True, type=Path)
    validate.add_argument("--segmenter", required=True, type=Path)
    validate.add_argument(
        "--data", required=True, type=Path, help="cache (same size and classes as the model)"
    )
    validate.add_argument("--split", default="val")
    validate.add_argument("--sampler", default="dpm++", choices=["dpm++", "ddim", "ddpm"])
    validate.add_argument("--steps", type=int, default=25)
    validate.add_argument("--cases", type=int, help="at most this many label maps")
    validate.add_argument("--seed", type=int, default=0)
    validate.add_argument("--device", default="auto")
    validate.add_argument("--out", type=Path, help="also write the report as JSON here")
    validate.set_defaults(run=_run_validate)

    info = commands.add_parser(
        "info",
        help="show geometry, value range and labels of a file",
        description="Show a file's geometry, value range and labels.",
    )
    info.add_argument("path", type=Path)
    info.add_argument("--schema", default="echosynth", help="schema used to name label values")
    info.set_defaults(run=_run_info)

    demo = commands.add_parser(
        "demo",
        help="phantoms + simulated echo + PNG montage",
        description="Write phantom label maps, simulated images and a montage.",
    )
    demo.add_argument("--out", type=Path, default=Path("out/demo"))
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_run_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except EchoSynthError as error:
        print(f"echosynth {args.command}: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as error:
        print(
            f"echosynth {args.command}: error: {error.strerror or error}: {error.filename or ''}".rstrip(
                ": "
            ),
            file=sys.stderr,
        )
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"echosynth {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


def _parse_pairs(pairs: list[str], flag: str, kind: type = float) -> list[tuple[str, float]]:
    """NAME=VALUE options as (name, value) pairs, with an error naming the flag."""
    parsed = []
    for pair in pairs:
        name, sep, value = pair.partition("=")
        try:
            parsed.append((name.strip(), kind(value)))
        except ValueError:
            raise InputError(f"{flag} expects NAME=NUMBER, got '{pair}'") from None
        if not sep or not name.strip():
            raise InputError(f"{flag} expects NAME=NUMBER, got '{pair}'")
    return parsed


def _parse_numbers(text: str, flag: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise InputError(f"{flag} expects comma-separated numbers, got '{text}'") from None


def _parse_settings(pairs: list[str]) -> dict[str, float]:
    return dict(_parse_pairs(pairs, "--set"))


def _run_phantom(args: argparse.Namespace) -> None:
    from EchoSynthLib.anatomy import PhantomGrid, phantom_label_map
    from EchoSynthLib.data.io import file_kind, write_label_map

    file_kind(args.out)
    overrides = {k: v for k, v in (("depth_mm", args.depth), ("angle_deg", args.angle)) if v is not None}
    if args.view == "3D" and args.angle is not None:
        overrides["elevation_angle_deg"] = args.angle
    grid = PhantomGrid.for_view(args.view, args.size, **overrides)
    phantom = phantom_label_map(args.view, args.phase, args.seed, grid, **_parse_settings(args.set))
    path = write_label_map(phantom.labels, args.out)
    print(f"wrote {path} ({phantom.labels.describe_geometry()})")


def _output_paths(out: Path, seeds: range) -> list[Path]:
    if len(seeds) == 1:
        return [out]
    name = out.name
    suffix = next((s for s in (".seg.nrrd", ".nii.gz") if name.lower().endswith(s)), out.suffix)
    stem = name[: len(name) - len(suffix)]
    return [out.with_name(f"{stem}_s{seed}{suffix}") for seed in seeds]


def _run_simulate(args: argparse.Namespace) -> None:
    from dataclasses import replace

    from tqdm import tqdm

    from EchoSynthLib.data.io import file_kind, read_label_map, write_image
    from EchoSynthLib.data.labels import schema_named
    from EchoSynthLib.simulation import SimulatorSettings, simulate_bmode

    if args.n < 1:
        raise InputError(f"--n must be at least 1, got {args.n}")
    if file_kind(args.out) != "image":
        raise InputError(f"{args.out}: simulated images are written as .nii.gz, .nrrd, .mha, .mhd or .png")
    settings = SimulatorSettings()
    changes = {
        "tgc": not args.no_tgc,
        "dynamic_range_db": args.dynamic_range,
        "gain_db": args.gain,
        "frequency_mhz": args.frequency,
    }
    settings = replace(settings, **{k: v for k, v in changes.items() if v is not None})
    labels = read_label_map(args.labels, schema_named(args.schema))
    seeds = range(args.seed, args.seed + args.n)
    images = [
        simulate_bmode(labels, seed, settings)
        for seed in tqdm(seeds, desc="simulate", unit="image", disable=len(seeds) == 1)
    ]
    for image, path in zip(images, _output_paths(args.out, seeds), strict=True):
        write_image(image, path)
        print(f"wrote {path}")


def _parse_size(text: str) -> tuple[int, ...]:
    """'128' -> (128, 128); 'WxH' -> (H, W); 'WxHxD' -> (D, H, W): array order (k, j, i)."""
    try:
        sides = [int(part) for part in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N, WxH or WxHxD, got '{text}'") from None
    if len(sides) == 1:
        sides *= 2
    if len(sides) not in (2, 3) or min(sides) < 1:
        raise argparse.ArgumentTypeError(f"expected N, WxH or WxHxD, got '{text}'")
    return tuple(sides[::-1])


def _reader_options(args: argparse.Namespace) -> dict[str, object]:
    """The options of the chosen reader; options meant for another dataset are an error."""
    from EchoSynthLib.data.labels import schema_named

    given = {
        "half_sequences": (args.half_sequences, ["camus"]),
        "label_names": (dict(_parse_pairs(args.label, "--label", int)), ["mitea"]),
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
        zip(("train", "val", "test"), _parse_numbers(args.fractions, "--fractions"), strict=False)
    )
    if len(fractions) != 3 or len(args.fractions.split(",")) != 3:
        raise InputError(f"--fractions expects three numbers TRAIN,VAL,TEST, got '{args.fractions}'")
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
        f"{split} {c['cases']} cases / {c['patients']} patients" for split, c in manifest["counts"].items()
    )
    shape = "x".join(str(n) for n in manifest["shape"][::-1])
    print(f"{args.out}: {counts}; {shape}, classes {manifest['classes']}")
    skipped = manifest["skipped"]
    if skipped:
        print(f"skipped {len(skipped)}:", file=sys.stderr)
        for reason, count in Counter(s["reason"] for s in skipped).most_common(10):
            example = next(s["source"] for s in skipped if s["reason"] == reason)
            print(f"  {count} x {reason} (e.g. {example})", file=sys.stderr)


def _settings_from(args: argparse.Namespace) -> dict[str, object]:
    """--config JSON then --set NAME=VALUE (values parsed as JSON where they can be: 3, 0.5, true, [1,2])."""
    import json

    settings: dict[str, object] = {}
    if args.config is not None:
        try:
            settings.update(json.loads(args.config.read_text()))
        except (OSError, ValueError) as error:
            raise InputError(f"{args.config}: cannot read the settings ({error})") from None
    for pair in args.set:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise InputError(f"--set expects NAME=VALUE, got '{pair}'")
        try:
            settings[name.strip()] = json.loads(value)
        except ValueError:
            settings[name.strip()] = value
    return settings


def _run_train(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from EchoSynthLib.cache.store import CacheIndex

    cache = CacheIndex.open(args.data)
    settings = _settings_from(args)
    if args.model == "sdm":
        from EchoSynthLib.models.sdm import SDMConfig
        from EchoSynthLib.training.sdm import SDMTrainer

        size = int(settings.pop("image_size", cache.manifest["shape"][-1]))
        trainer = SDMTrainer(cache.path, args.out, SDMConfig.preset(size, **settings), args.device)
        total = trainer.config.max_steps
    else:
        from EchoSynthLib.training.segmenter import SegmenterConfig, SegmenterTrainer

        trainer = SegmenterTrainer(cache.path, args.out, SegmenterConfig.from_dict(settings), args.device)
        total = trainer.config.max_steps
    print(f"training {args.model} on {trainer.device}: step {trainer.state.step} of {total}, run {args.out}")
    with tqdm(total=total, initial=trainer.state.step, desc=f"train {args.model}", unit="step") as bar:

        def advance(step: int, losses: dict[str, float]) -> None:
            bar.set_postfix({k: f"{v:.4f}" for k, v in losses.items()}, refresh=False)
            bar.update(step - bar.n)

        trainer.fit(progress=advance)
    samples = f", sample grids in {args.out}/samples" if args.model == "sdm" else ""
    print(f"done: {args.out}/model (log {args.out}/log.jsonl{samples})")


def _run_synthesize(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from EchoSynthLib.augmentation import find_label_files
    from EchoSynthLib.data.labels import schema_named
    from EchoSynthLib.sampling.files import synthesize_files
    from EchoSynthLib.sampling.synthesizer import Synthesizer

    if args.n < 1 or args.augment < 0:
        raise InputError(f"--n must be at least 1 and --augment at least 0, got {args.n} and {args.augment}")
    inputs = find_label_files(args.labels)
    synthesizer = Synthesizer.load(args.model, args.device)
    print(f"model {args.model} on {synthesizer.device}: {args.sampler}, {args.steps} steps")
    with tqdm(total=len(inputs) * (1 + args.augment), desc="synthesize", unit="map", delay=0.5) as bar:
        written = synthesize_files(
            synthesizer,
            inputs,
            args.out,
            schema=schema_named(args.schema),
            n=args.n,
            steps=args.steps,
            sampler=args.sampler,
            seed=args.seed,
            augment=args.augment,
            slice_index=args.slice,
            guidance_scale=args.guidance,
            progress=lambda _: bar.update(1),
        )
    print(f"wrote {len(written)} files to {args.out}/")


def _run_validate(args: argparse.Namespace) -> None:
    import json

    from tqdm import tqdm

    from EchoSynthLib.data.atomic import write_atomically
    from EchoSynthLib.evaluation.adherence import adherence_report
    from EchoSynthLib.models.segmenter import Segmenter
    from EchoSynthLib.sampling.synthesizer import Synthesizer

    synthesizer = Synthesizer.load(args.model, args.device)
    segmenter = Segmenter.load(args.segmenter, synthesizer.device)
    with tqdm(desc="validate", unit="image", delay=0.5) as bar:
        report = adherence_report(
            synthesizer,
            segmenter,
            args.data,
            split=args.split,
            sampler=args.sampler,
            steps=args.steps,
            max_cases=args.cases,
            seed=args.seed,
            progress=bar.update,
        )
    text = json.dumps(report, indent=1)
    if args.out is not None:
        write_atomically(args.out, lambda tmp: tmp.write_text(text))
    print(text)


def _run_info(args: argparse.Namespace) -> None:
    import numpy as np

    from EchoSynthLib.data.io import file_kind, read_image, read_segmentation
    from EchoSynthLib.data.labels import schema_named, structure_for_segment_name

    if file_kind(args.path) == "segmentation":
        labels, segments = read_segmentation(args.path)
        print(f"{args.path}: Slicer segmentation, {labels.describe_geometry()}")
        for segment in segments:
            try:
                meaning = structure_for_segment_name(segment.name).value
            except InputError:
                meaning = "unknown structure"
            count = int((labels.array == segment.value).sum())
            print(f"  segment {segment.value}: {segment.name!r} -> {meaning}, {count} voxels")
        return
    volume = read_image(args.path)
    array = volume.array
    print(f"{args.path}: image, {volume.describe_geometry()}")
    print(f"  dtype {array.dtype}, values {array.min()} .. {array.max()}")
    is_integer = np.issubdtype(array.dtype, np.integer)
    values = np.unique(array) if is_integer else np.empty(0)
    if is_integer and values.size <= 16:
        schema = schema_named(args.schema)
        counts = {int(v): int((array == v).sum()) for v in values}
        names = {
            int(v): schema.values[int(v)].value if int(v) in schema.values else "not in schema"
            for v in values
        }
        print(
            f"  labels ({schema.name} schema): " + ", ".join(f"{v}={names[v]} ({counts[v]})" for v in counts)
        )


def _run_augment(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from EchoSynthLib.augmentation import augment_files, find_label_files

    if args.n < 1:
        raise InputError(f"--n must be at least 1, got {args.n}")
    files = find_label_files(args.labels)
    bars: list[tqdm] = []  # started on the first write, after every input has been checked

    def advance(_: Path) -> None:
        if not bars:
            bars.append(tqdm(total=len(files) * args.n, desc="augment", unit="map"))
        bars[0].update(1)

    try:
        written = augment_files(files, args.n, args.out, args.seed, args.schema, progress=advance)
    finally:
        for bar in bars:
            bar.close()
    print(f"wrote {len(written)} files to {args.out}/:")
    for path in written:
        print(f"  {path}")


def _run_demo(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from EchoSynthLib.demo import DEMO_CASES, run_demo

    with tqdm(total=len(DEMO_CASES), desc="demo", unit="case") as bar:

        def advance(case: str) -> None:
            bar.set_postfix_str(case)
            bar.update(1)

        written = run_demo(args.out, args.seed, progress=advance)
    print(f"wrote {len(written)} files to {args.out}/:")
    for path in written:
        print(f"  {path}")


if __name__ == "__main__":
    sys.exit(main())
