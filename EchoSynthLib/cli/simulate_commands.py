"""``echosynth phantom | simulate | info | demo``: the training-free generator and file inspection."""

from __future__ import annotations

import argparse
from pathlib import Path

from EchoSynthLib.cli.arguments import (
    add_compute_arguments,
    count_argument,
    number_argument,
    parse_settings,
    seed_argument,
)
from EchoSynthLib.errors import InputError


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register this module's subcommands."""
    phantom = commands.add_parser(
        "phantom",
        help="generate a phantom label map (2D apical view or 3D LV)",
        description="Generate a seeded phantom label map.",
    )
    phantom.add_argument("--view", default="4CH", choices=["4CH", "2CH", "3D"], type=str.upper)
    phantom.add_argument("--phase", default="ED", choices=["ED", "ES"], type=str.upper)
    phantom.add_argument("--seed", type=seed_argument, default=0)
    phantom.add_argument(
        "--size", type=count_argument(8), help="grid side in voxels (default 256 for 2D, 128 for 3D)"
    )
    phantom.add_argument(
        "--depth", type=number_argument(above=0.0), help="sector depth in mm (default 150 for 2D, 140 for 3D)"
    )
    phantom.add_argument(
        "--angle", type=number_argument(above=0.0), help="sector opening angle in degrees (default 75 / 70)"
    )
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

    dataset = commands.add_parser(
        "phantom-dataset",
        help="write a labelled training set of phantom hearts and their simulated images",
        description="Write N phantom hearts (seeds SEED..SEED+N-1) at ED and ES as image + label files "
        "(h{seed}_{view}_{phase}_image / _labels.nii.gz) that 'echosynth prepare folder' reads: 2D apical "
        "views (4CH and 2CH) or 3D LV volumes (--view 3D).",
    )
    dataset.add_argument("--n", type=count_argument(1), default=20, help="number of hearts (default 20)")
    dataset.add_argument("--seed", type=seed_argument, default=0, help="first heart's seed")
    dataset.add_argument("--view", default="2D", choices=["2D", "3D"], type=str.upper)
    dataset.add_argument("--size", type=count_argument(8), help="grid side (default 256 for 2D, 128 for 3D)")
    dataset.add_argument("--out", required=True, type=Path, help="output folder (replaced whole)")
    dataset.set_defaults(run=_run_phantom_dataset)

    simulate = commands.add_parser(
        "simulate",
        help="simulate a B-mode echo image from a label map",
        description="Simulate B-mode echo images from a label map.",
    )
    simulate.add_argument("labels", type=Path, help="label map (.seg.nrrd, .nii.gz, .nrrd, .mha, .mhd, .png)")
    simulate.add_argument("--out", required=True, type=Path, help="output image file")
    simulate.add_argument("--seed", type=seed_argument, default=0)
    simulate.add_argument(
        "--n", type=count_argument(1), default=1, help="number of images (seeds seed..seed+n-1)"
    )
    simulate.add_argument(
        "--schema",
        default="echosynth",
        help="label values of a label image: echosynth, camus, mitea, echonet, echo-from-noise",
    )
    simulate.add_argument("--no-tgc", action="store_true", help="do not compensate attenuation with depth")
    simulate.add_argument("--dynamic-range", type=number_argument(above=0.0), default=None, metavar="DB")
    simulate.add_argument("--gain", type=number_argument(), default=None, metavar="DB")
    simulate.add_argument("--frequency", type=number_argument(above=0.0), default=None, metavar="MHZ")
    simulate.set_defaults(run=_run_simulate)

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
    demo.add_argument("--seed", type=seed_argument, default=0)
    demo.add_argument(
        "--no-report", action="store_true", help="skip the small evaluation report (OUT/report/report.html)"
    )
    demo.add_argument(
        "--model",
        default="",
        help="also run the 2D maps through this trained generator (a name or a folder), into OUT/NAME/",
    )
    add_compute_arguments(demo)
    demo.set_defaults(run=_run_demo)


def _run_phantom(args: argparse.Namespace) -> None:
    from EchoSynthLib.anatomy import PhantomGrid, phantom_label_map
    from EchoSynthLib.data.io import file_kind, write_label_map
    from EchoSynthLib.data.outputs import check_new_file, output_lock

    file_kind(args.out)
    check_new_file(args.out)  # before any work; a label file is never replaced
    overrides = {k: v for k, v in (("depth_mm", args.depth), ("angle_deg", args.angle)) if v is not None}
    if args.view == "3D" and args.angle is not None:
        overrides["elevation_angle_deg"] = args.angle
    grid = PhantomGrid.for_view(args.view, args.size, **overrides)
    phantom = phantom_label_map(args.view, args.phase, args.seed, grid, **parse_settings(args.set))
    with output_lock(args.out):
        check_new_file(args.out)
        path = write_label_map(phantom.labels, args.out)
    print(f"wrote {path} ({phantom.labels.describe_geometry()})")


def _output_path(out: Path, seed: int, n: int) -> Path:
    """``out`` for one image; ``<stem>_s<seed><suffix>`` beside it for several."""
    if n == 1:
        return out
    name = out.name
    suffix = next((s for s in (".seg.nrrd", ".nii.gz") if name.lower().endswith(s)), out.suffix)
    return out.with_name(f"{name[: len(name) - len(suffix)]}_s{seed}{suffix}")


def _run_simulate(args: argparse.Namespace) -> None:
    from dataclasses import replace

    from tqdm import tqdm

    from EchoSynthLib.checks import check_seed
    from EchoSynthLib.data.io import file_kind, read_label_map, write_image
    from EchoSynthLib.data.labels import schema_named
    from EchoSynthLib.data.outputs import check_new_files, new_files
    from EchoSynthLib.simulation import SimulatorSettings, simulate_bmode

    if file_kind(args.out) != "image":
        raise InputError(f"{args.out}: simulated images are written as .nii.gz, .nrrd, .mha, .mhd or .png")
    check_seed(args.seed, args.n, "--seed")
    settings = SimulatorSettings()
    changes = {
        "tgc": not args.no_tgc,
        "dynamic_range_db": args.dynamic_range,
        "gain_db": args.gain,
        "frequency_mhz": args.frequency,
    }
    settings = replace(settings, **{k: v for k, v in changes.items() if v is not None})
    seeds = range(args.seed, args.seed + args.n)
    names = [_output_path(args.out, seed, args.n).name for seed in seeds]
    check_new_files(args.out.parent, names, [args.labels])  # before any work: nothing is replaced
    labels = read_label_map(args.labels, schema_named(args.schema))
    # Each image is written to the staging folder as soon as it is made; all appear together at the end.
    with new_files(args.out.parent, names, [args.labels]) as staged:
        for seed in tqdm(seeds, desc="simulate", unit="image", disable=args.n == 1):
            image = simulate_bmode(labels, seed, settings)
            write_image(image, staged.path(_output_path(args.out, seed, args.n).name))
    first, last = _output_path(args.out, seeds[0], args.n), _output_path(args.out, seeds[-1], args.n)
    print(f"wrote {first}" if args.n == 1 else f"wrote {args.n} images: {first} .. {last}")


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


def _run_phantom_dataset(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from EchoSynthLib.checks import check_seed
    from EchoSynthLib.simulation.dataset import write_phantom_dataset

    check_seed(args.seed, args.n)
    views = ("3D",) if args.view == "3D" else ("4CH", "2CH")
    total = args.n * len(views) * 2
    with tqdm(total=total, desc="phantom-dataset", unit="case", delay=0.5) as bar:
        written = write_phantom_dataset(
            args.out,
            range(args.seed, args.seed + args.n),
            views,
            size=args.size,
            progress=lambda _: bar.update(1),
        )
    print(f"wrote {len(written)} files ({total} cases) to {args.out}/")
    print(f"next: echosynth prepare folder {args.out} --out CACHE --size ...")


def _run_demo(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from EchoSynthLib.data.outputs import check_folder_output
    from EchoSynthLib.demo import DEMO_CASES, DEMO_COMMAND, DEMO_FILES, run_demo

    # before any work: a user's folder is never replaced
    check_folder_output(args.out, DEMO_COMMAND, also_owned=DEMO_FILES)
    with tqdm(total=len(DEMO_CASES), desc="demo", unit="case") as bar:

        def advance(case: str) -> None:
            bar.set_postfix_str(case)
            bar.update(1)

        written = run_demo(args.out, args.seed, progress=advance)
    print(f"wrote {len(written)} files to {args.out}/:")
    for path in written:
        print(f"  {path}")
    from EchoSynthLib.store.registry import resolve_model

    if args.model:
        from EchoSynthLib.demo import demo_model_images

        try:
            resolve_model(args.model)
        except InputError as error:  # not installed: the simulator's demo is done
            print(f"no model images ({error})")
        else:
            print(f"the same 2D label maps through the trained model {args.model} ...")
            written = demo_model_images(args.out, args.model, args.seed)
            print(f"wrote {len(written)} files to {written[0].parent}/")
    if args.no_report:
        return
    from EchoSynthLib.demo import demo_report
    from EchoSynthLib.evaluation.feature_spaces import DEFAULT_ENCODER

    try:
        resolve_model(DEFAULT_ENCODER)
    except InputError as error:  # no echo encoder installed: the demo itself is done
        print(f"no evaluation report ({error})")
        return
    print("evaluating 12 more simulated images against a second phantom set ...")
    print(f"evaluation report: {demo_report(args.out / 'report', args.seed)}")
