"""``echosynth evaluate``: a synthetic set against real images (distances, diversity, speckle, adherence,
memorisation, downstream usefulness), beside a baseline set when given, as report.json, report.html and
figures; a short summary table in the terminal."""

from __future__ import annotations

import argparse
from pathlib import Path

from EchoSynthLib.cli.arguments import add_compute_arguments, count_argument, seed_argument
from EchoSynthLib.errors import InputError


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register this module's subcommands."""
    evaluate = commands.add_parser(
        "evaluate",
        help="evaluate a synthetic set against real images (report.json, report.html, figures)",
        description="Compare a synthetic set (a folder of images with their label maps, as 'synthesize' "
        "writes them, or a cache) with real images of a cache: Fréchet distance and KID in each feature "
        "space, precision / recall, density / coverage, MS-SSIM diversity, grey levels and speckle per "
        "structure, label adherence, memorisation, and (--downstream) segmenters trained on it. With "
        "--baseline, a second set (the simulator's images of the same label maps, say) is measured the same "
        "way and shown beside it: the report's verdict says whether the synthetic set beats it. Ends with a "
        "short summary table; report.html explains every number.",
    )
    evaluate.add_argument("--real", required=True, help="real images: CACHE[:split] (default split val)")
    evaluate.add_argument("--synthetic", required=True, help="synthetic images: a folder or CACHE[:split]")
    evaluate.add_argument("--out", required=True, type=Path, help="report folder (replaced whole)")
    evaluate.add_argument(
        "--train",
        help="the generator's training images: CACHE[:split] (default: the "
        "real cache's train split); memorisation and the reference row use them",
    )
    evaluate.add_argument("--labels", help="folder of the synthetic images' label maps, if not beside them")
    evaluate.add_argument(
        "--baseline",
        help="a set the synthetic set should beat, measured the same way (a folder or CACHE[:split]; e.g. "
        "'synthesize --model simulator' on the same label maps)",
    )
    evaluate.add_argument(
        "--baseline-labels", help="folder of the baseline images' label maps, if not beside them"
    )
    evaluate.add_argument(
        "--paired-with", help="the synthetic images' sources (same names): SSIM / PSNR / MSE"
    )
    evaluate.add_argument(
        "--encoder",
        default=None,
        help="echo encoder package (name or folder; default: the shipped echo-encoder-camus)",
    )
    evaluate.add_argument(
        "--segmenter",
        help="segmenter package (a folder or an installed name, e.g. segmenter-camus) for adherence and "
        "the semantic feature space",
    )
    evaluate.add_argument(
        "--inception-weights", type=Path, help="local Inception-v3 safetensors (FID proper)"
    )
    evaluate.add_argument(
        "--downstream", action="store_true", help="train segmenters on real / synthetic / both"
    )
    evaluate.add_argument(
        "--downstream-steps", type=count_argument(1), default=500, help="steps per segmenter"
    )
    evaluate.add_argument("--seeds", type=seed_argument, nargs="+", default=[0, 1], help="downstream seeds")
    evaluate.add_argument(
        "--filter",
        type=Path,
        metavar="OUT",
        help="also copy the images below the memorisation threshold (with their label maps) to OUT",
    )
    evaluate.add_argument("--device", default="auto")
    add_compute_arguments(evaluate)
    evaluate.set_defaults(run=_run_evaluate)


def _run_evaluate(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from EchoSynthLib.data.outputs import check_folder_output, input_paths
    from EchoSynthLib.evaluation.feature_spaces import DEFAULT_ENCODER
    from EchoSynthLib.evaluation.report import (
        FILTER_COMMAND,
        REPORT_COMMAND,
        REPORT_FILES,
        STAGES,
        EvaluationOptions,
        evaluate,
        load_inputs,
    )
    from EchoSynthLib.evaluation.summary import terminal_summary
    from EchoSynthLib.store.registry import feature_cache_dir

    sources = input_paths(
        args.real,
        args.train,
        args.synthetic,
        args.labels,
        args.paired_with,
        args.inception_weights,
        args.baseline,
        args.baseline_labels,
    )
    sources += input_paths(*(p for p in (args.segmenter, args.encoder) if p and Path(p).is_dir()))
    # before any work: nothing of a user's is replaced
    check_folder_output(args.out, REPORT_COMMAND, sources, also_owned=REPORT_FILES)
    if args.filter is not None:
        check_folder_output(args.filter, FILTER_COMMAND, sources)
        out, kept = Path(args.out).resolve(), Path(args.filter).resolve()
        if out == kept or out.is_relative_to(kept) or kept.is_relative_to(out):
            raise InputError(f"--filter and --out must be two separate folders, got {args.filter}")
    options = EvaluationOptions(
        real=args.real,
        synthetic=args.synthetic,
        out=args.out,
        train=args.train,
        labels=args.labels,
        baseline=args.baseline,
        baseline_labels=args.baseline_labels,
        paired_with=args.paired_with,
        encoder=args.encoder or DEFAULT_ENCODER,
        segmenter=args.segmenter,
        inception_weights=args.inception_weights,
        downstream=args.downstream,
        downstream_steps=args.downstream_steps,
        seeds=tuple(args.seeds),
        filter_out=args.filter,
        device=args.device,
        feature_cache=feature_cache_dir(),
    )
    inputs = load_inputs(options)  # bad input fails here, before the progress bar
    with tqdm(total=len(STAGES), desc="evaluate", unit="stage", delay=0.5) as bar:

        def stage(name: str) -> None:
            bar.set_postfix_str(name)
            bar.update(STAGES.index(name) - bar.n)

        report = evaluate(options, stage, inputs)
        bar.update(len(STAGES) - bar.n)
    print(terminal_summary(report))
    print(f"report: {args.out}/report.html (all numbers: {args.out}/report.json)")
