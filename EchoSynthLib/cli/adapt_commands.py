"""``echosynth adapt``: a model in the look of the user's scanner, learned from unlabelled images of it."""

from __future__ import annotations

import argparse
from pathlib import Path

from EchoSynthLib.cli.arguments import add_compute_arguments, count_argument, seed_argument


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register this module's subcommands."""
    from EchoSynthLib.adaptation.adapt import DEFAULT_BASE, DEFAULT_TRANSLATOR, MINIMUM_IMAGES

    adapt = commands.add_parser(
        "adapt",
        help="learn a scanner's look from its unlabelled images: a model that draws any label map in it",
        description="Fit the look of your scanner from unlabelled 2D images of it (a folder, at least "
        f"{MINIMUM_IMAGES}; a few hundred frames are better): a chain of degradations (blur, speckle "
        "grain, gain, grey map, resampling, haze, noise, edge enhancement, compression) that brings a "
        "model's images nearest yours in echo-encoder features. Writes a model package: synthesize "
        "--model OUT draws label maps in your scanner's look, translate --model OUT puts images in it. "
        "Cine loops (--video) give evenly spaced frames. --way-back STEPS also fine-tunes a translator to "
        "undo the look (OUT/way-back: translate --model OUT/way-back takes your scanner's images to the "
        "base's look). Resumable: run the same command again after a stop.",
    )
    adapt.add_argument("--images", type=Path, help="a folder of the scanner's 2D images")
    adapt.add_argument(
        "--video",
        type=Path,
        nargs="+",
        default=[],
        help="cine loops of the scanner (AVI): evenly spaced frames",
    )
    adapt.add_argument("--out", required=True, type=Path, help="the adapted model's folder (new)")
    adapt.add_argument(
        "--base", default=DEFAULT_BASE, help=f"the model whose images are adapted (default {DEFAULT_BASE})"
    )
    adapt.add_argument(
        "--maps",
        type=count_argument(8),
        default=64,
        help="phantom maps the base draws for the fit (default 64)",
    )
    adapt.add_argument("--rounds", type=count_argument(1), default=5, help="rounds of the search (default 5)")
    adapt.add_argument(
        "--candidates",
        type=count_argument(1),
        default=8,
        help="settings tried per kind and round (default 8)",
    )
    adapt.add_argument("--seed", type=seed_argument, default=0, help="seed of the maps, noise and search")
    adapt.add_argument(
        "--way-back",
        type=count_argument(0),
        default=0,
        metavar="STEPS",
        help="also fine-tune --translator for STEPS steps to undo the look (default 0: no way back; about "
        "100 to 200 steps, 10 s each on one CPU thread, batch 8)",
    )
    adapt.add_argument(
        "--translator",
        default=DEFAULT_TRANSLATOR,
        help=f"the source-guided translator the way back starts from (default {DEFAULT_TRANSLATOR})",
    )
    adapt.add_argument("--device", default="auto", help="auto, cpu, gpu, cuda:N")
    add_compute_arguments(adapt)
    adapt.set_defaults(run=_run_adapt)


def _run_adapt(args: argparse.Namespace) -> None:
    import sys

    from tqdm import tqdm

    from EchoSynthLib.adaptation.adapt import DEFAULT_TRANSLATOR, AdaptSettings, adapt

    if args.translator != DEFAULT_TRANSLATOR and not args.way_back:
        print("warning: --translator is used only with --way-back STEPS", file=sys.stderr)

    settings = AdaptSettings(
        args.images,
        args.out,
        args.base,
        args.maps,
        args.rounds,
        args.candidates,
        args.seed,
        args.device,
        videos=tuple(args.video),
        way_back=args.way_back,
        translator=args.translator,
    )
    bars: dict[str, tqdm] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if stage not in bars:
            for bar in bars.values():
                bar.close()
            unit = {"draw": "image", "fit": "round"}.get(stage, "step")
            bars[stage] = tqdm(total=total, desc=stage, unit=unit, delay=0.5)
        bars[stage].update(done - bars[stage].n)

    try:
        out = adapt(settings, progress, warn=lambda message: print(f"warning: {message}", file=sys.stderr))
    finally:
        for bar in bars.values():
            bar.close()
    print(f"wrote the adapted model {out}/ (see its MODEL_CARD.md)")
