"""``echosynth translate``: images of one scanner in, the look a model learned out, anatomy kept."""

from __future__ import annotations

import argparse
from pathlib import Path

from EchoSynthLib.cli.arguments import add_compute_arguments, advance_to, seed_argument

SEGMENTER = "segmenter-camus"
# ``sampling.translate.STEADY_FRAMES`` (this module stays light: a test holds the two equal)
STEADY_FRAMES = float("inf")


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register this module's subcommands."""
    from EchoSynthLib.inference.options import add_sampling_arguments

    translate = commands.add_parser(
        "translate",
        help="translate echo images to the look a label-guided model learned (anatomy from labels or "
        "the segmenter)",
        description="Translate 2D echo images with a label-guided model (e.g. an adversarial diffusion "
        "model trained on CAMUS): each image's anatomy, from its label map (--labels, one per image, in "
        "order) and/or the CAMUS segmenter (--segment: fills the structures the labels lack, keeps the "
        "ones they have), guides the model; outputs keep the source's exact grid. Writes "
        "<stem>_translated<suffix>, the guide map <stem>_translated_labels.seg.nrrd and translation.json "
        "(which structure came from where).",
    )
    translate.add_argument("--model", required=True, help="an installed model's name or a package folder")
    source = translate.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", type=Path, nargs="+", help="image files or folders")
    source.add_argument(
        "--echonet",
        type=Path,
        metavar="ROOT",
        help="an EchoNet-Dynamic folder: the traced ED and ES frame of every video, the LV tracing as labels",
    )
    translate.add_argument("--split", help="with --echonet: only this FileList split (train, val, test)")
    translate.add_argument(
        "--every-frame",
        action="store_true",
        help="with --echonet: every frame of each video (VIDEO_fNNNN; needs --segment), one seed per video",
    )
    translate.add_argument("--labels", type=Path, nargs="+", help="label files or folders, one per image")
    translate.add_argument(
        "--segment", action="store_true", help="fill missing structures with the segmenter (--segmenter)"
    )
    translate.add_argument(
        "--slices",
        action="store_true",
        help="translate 3D volumes slice by slice (k slices, one seed each volume)",
    )
    translate.add_argument("--segmenter", default=SEGMENTER, help=f"segmenter package (default {SEGMENTER})")
    translate.add_argument(
        "--steady",
        type=_frames,
        default=STEADY_FRAMES,
        metavar="FRAMES",
        help="with --every-frame: each video in one look, no flicker (the translation's difference from its "
        "source averaged over the video: the output changes from frame to frame as the source does); a "
        "number: smoothed over about that many frames instead; 0: each frame as translated (default: inf)",
    )
    translate.add_argument("--out", required=True, type=Path, help="output folder")
    add_sampling_arguments(translate)
    translate.add_argument("--seed", type=seed_argument, default=0, help="image i uses seed + i")
    translate.add_argument("--schema", default="echosynth", help="label values of label images")
    translate.add_argument("--device", default="auto", help="auto, cpu, gpu, cuda:N")
    add_compute_arguments(translate)
    translate.set_defaults(run=_run_translate)


def _frames(text: str) -> float:
    """A ``--steady`` value: a number of frames, at least 0, or inf."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0:
        raise argparse.ArgumentTypeError(
            f"--steady takes a number of frames (at least 0) or inf, got '{text}'"
        )
    return value


def _run_translate(args: argparse.Namespace) -> None:
    import sys

    from tqdm import tqdm

    from EchoSynthLib.data.io import find_label_files
    from EchoSynthLib.data.labels import schema_named
    from EchoSynthLib.errors import InputError
    from EchoSynthLib.inference.generators import SIMULATOR, GeneratorSettings, open_generator
    from EchoSynthLib.inference.options import sampling_values
    from EchoSynthLib.sampling.translate import echonet_sources, file_sources, translate_files

    if args.echonet is not None:
        if args.labels is not None:
            raise InputError("--echonet brings its own LV tracings; --labels goes with --images")
        if args.every_frame and not args.segment:
            raise InputError("--every-frame needs --segment: only the ED and ES frames are traced")
        sources = echonet_sources(
            args.echonet, args.split, args.every_frame, lambda m: print(f"warning: {m}", file=sys.stderr)
        )
        inputs = [args.echonet]
    else:
        if args.labels is None and not args.segment:
            raise InputError(
                "images need their label maps (--labels) or the segmenter (--segment) to translate"
            )
        if args.split is not None or args.every_frame:
            raise InputError("--split and --every-frame go with --echonet")
        images = find_label_files(args.images)
        labels = find_label_files(args.labels) if args.labels is not None else None
        sources = file_sources(images, labels, schema_named(args.schema))
        inputs = [*args.images, *(args.labels or []), *images, *(labels or [])]
    if args.model == SIMULATOR:
        raise InputError(
            "the simulator draws an image from a label map only and cannot keep an image's content; "
            "translate with a trained model (echosynth models list)"
        )
    settings = GeneratorSettings(args.model, device=args.device, **sampling_values(args))
    generator = open_generator(settings, warn=lambda message: print(f"warning: {message}", file=sys.stderr))
    segment = None
    if args.segment:
        from EchoSynthLib.models.segmenter.network import Segmenter

        segment = Segmenter.load(args.segmenter, args.device).segment
    print(generator.description)
    with tqdm(total=len(sources), desc="translate", unit="image", delay=0.5) as bar:
        outputs = translate_files(
            generator,
            sources,
            args.out,
            segment=segment,
            seed=args.seed,
            progress=lambda fraction, _name: advance_to(bar, fraction, len(sources)),
            inputs=inputs,
            slices=args.slices,
            steady=args.steady,
        )
    print(f"wrote {2 * len(outputs) + 1} files to {args.out}/")
