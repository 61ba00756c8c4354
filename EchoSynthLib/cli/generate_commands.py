"""``echosynth train | synthesize | validate``: the learned generators."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from EchoSynthLib.cli.arguments import (
    add_acquisition_argument,
    add_compute_arguments,
    advance_to,
    count_argument,
    seed_argument,
    settings_from,
    shard_argument,
)
from EchoSynthLib.store.families import families

VALIDATE_COMMAND = "validate"  # the writer named in its JSON report (which a rerun may replace)


def add_commands(commands: argparse._SubParsersAction) -> None:
    """Register this module's subcommands."""
    from EchoSynthLib.inference.options import add_sampling_arguments

    train = commands.add_parser(
        "train",
        help="train a model family: sdm (2D semantic diffusion), segmenter (label-adherence U-Net), ...",
        description="Train on a cache from 'echosynth prepare'. Rerunning the same command resumes from "
        "the last checkpoint (same step count and optimizer state).",
    )
    train.add_argument("model", choices=[family.name for family in families()], help="model family")
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
    add_compute_arguments(train)
    train.set_defaults(run=_run_train)

    synthesize = commands.add_parser(
        "synthesize",
        help="synthesize echo images from label maps (a trained model or the simulator)",
        description="Synthesize images from label maps with a trained semantic diffusion model or the "
        "training-free simulator. Images keep each label map's geometry; a 2D model makes images of one "
        "plane of a 3D map (--plane, --slice).",
    )
    synthesize.add_argument(
        "--model",
        required=True,
        help="'simulator', an installed model's name (echosynth models list) or a model package folder",
    )
    synthesize.add_argument("--labels", required=True, type=Path, nargs="+", help="label files or folders")
    synthesize.add_argument("--out", required=True, type=Path, help="output folder")
    synthesize.add_argument("--n", type=count_argument(1), default=1, help="images per label map (default 1)")
    add_sampling_arguments(synthesize)
    synthesize.add_argument(
        "--seed", type=seed_argument, default=0, help="image i of the run (maps in order) uses seed + i"
    )
    synthesize.add_argument(
        "--augment", type=count_argument(0), default=0, metavar="N", help="also N new anatomies per map"
    )
    add_acquisition_argument(synthesize)
    synthesize.add_argument("--schema", default="echosynth", help="label values of label images")
    synthesize.add_argument("--device", default="auto", help="auto, cpu, gpu, cuda:N")
    synthesize.add_argument(
        "--shard",
        type=shard_argument,
        metavar="K/N",
        help="make only part K of N of the images (0-based; under torchrun: RANK/WORLD_SIZE); the N parts "
        "together write exactly the files of one run",
    )
    add_compute_arguments(synthesize)
    synthesize.set_defaults(run=_run_synthesize)

    generate = commands.add_parser(
        "generate",
        help="generate paired cases (image + label map) from nothing with a paired latent model (DIFF-3)",
        description="Generate N new cases with a paired-generation model: case_NNNN_image.nrrd and "
        "case_NNNN_labels.seg.nrrd (named segments) on the model's training grid, probe at the top.",
    )
    generate.add_argument("--model", required=True, help="an installed model's name or a package folder")
    generate.add_argument("--n", type=count_argument(1), default=1, help="number of cases (default 1)")
    generate.add_argument("--out", required=True, type=Path, help="output folder")
    add_sampling_arguments(generate, ("steps", "sampler"))
    generate.add_argument("--seed", type=seed_argument, default=0, help="case k uses seed + k")
    generate.add_argument("--device", default="auto", help="auto, cpu, gpu, cuda:N")
    add_compute_arguments(generate)
    generate.set_defaults(run=_run_generate)

    validate = commands.add_parser(
        "validate",
        help="label adherence of a generator: Dice of a segmenter on synthetic images",
        description="Synthesize an image for every label map of a cache split, segment it with a segmenter "
        "trained on real images, and report Dice per structure (and the same on the real images).",
    )
    validate.add_argument(
        "--model", required=True, help="'simulator', or a label map -> image model: a name or a folder"
    )
    validate.add_argument(
        "--segmenter", required=True, help="segmenter package: a folder or an installed name"
    )
    validate.add_argument("--data", required=True, type=Path, help="cache whose split's label maps are drawn")
    validate.add_argument("--split", default="val")
    add_sampling_arguments(validate, ("steps", "sampler"))
    validate.add_argument("--cases", type=count_argument(1), help="at most this many label maps")
    validate.add_argument("--seed", type=seed_argument, default=0)
    validate.add_argument("--device", default="auto")
    validate.add_argument("--out", type=Path, help="also write the report as JSON here")
    add_compute_arguments(validate)
    validate.set_defaults(run=_run_validate)


def _run_train(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from EchoSynthLib.data.outputs import check_folder_output
    from EchoSynthLib.store.families import family_named

    # A run folder is new, empty or a run to resume; never the cache or inside it.
    check_folder_output(args.out, "train", [args.data], also_owned="config.json")
    family = family_named(args.model).load()
    trainer = family.build_trainer(args.data, args.out, settings_from(args), args.device)
    total, main = trainer.settings.max_steps, trainer.rank.main  # under torchrun only the main process speaks
    if main:
        where = f" (process 0 of {trainer.rank.world})" if trainer.rank.distributed else ""
        step = trainer.state.step
        print(f"training {args.model} on {trainer.device}{where}: step {step} of {total}, run {args.out}")
    with tqdm(
        total=total, initial=trainer.state.step, desc=f"train {args.model}", unit="step", disable=not main
    ) as bar:

        def advance(step: int, losses: dict[str, float]) -> None:
            bar.set_postfix({k: f"{v:.4f}" for k, v in losses.items()}, refresh=False)
            bar.update(step - bar.n)

        trainer.fit(progress=advance)
    if main:
        samples = f", sample grids in {args.out}/samples" if (args.out / "samples").is_dir() else ""
        print(f"done: {args.out}/model (log {args.out}/log.jsonl{samples})")


def _run_synthesize(args: argparse.Namespace) -> None:
    import sys

    from tqdm import tqdm

    from EchoSynthLib.data.io import find_label_files
    from EchoSynthLib.data.labels import schema_named
    from EchoSynthLib.data.outputs import check_place
    from EchoSynthLib.inference.generators import GeneratorSettings, open_generator
    from EchoSynthLib.inference.options import sampling_values
    from EchoSynthLib.sampling.files import synthesize_files

    if not args.augment and args.acquisition != "same":
        print("warning: --acquisition is used only with --augment (new anatomies)", file=sys.stderr)

    check_place(args.out, args.labels, whole=False)  # never into (or as) a folder of the label maps
    inputs = find_label_files(args.labels)
    settings = GeneratorSettings(args.model, device=args.device, **sampling_values(args))
    if args.shard is None:  # under torchrun each process makes its part
        from EchoSynthLib.training.distributed import rank_from_environment

        rank = rank_from_environment()
        args.shard = (rank.index, rank.world)
    generator = open_generator(settings, warn=lambda message: print(f"warning: {message}", file=sys.stderr))
    print(generator.description)
    maps = len(inputs) * (1 + args.augment)
    with tqdm(total=maps, desc="synthesize", unit="map", delay=0.5) as bar:

        def advance(fraction: float, _name: str) -> None:
            advance_to(bar, fraction, maps)

        outputs = synthesize_files(
            generator,
            inputs,
            args.out,
            schema=schema_named(args.schema),
            n=args.n,
            seed=args.seed,
            augment=args.augment,
            acquisition=args.acquisition,
            progress=advance,
            shard=args.shard,
        )
    written = sum(len(o.images) + (o.labels is not None) for o in outputs)
    print(f"wrote {written} files to {args.out}/")


def _run_generate(args: argparse.Namespace) -> None:
    import sys

    from tqdm import tqdm

    from EchoSynthLib.sampling.cases import generate_pair_files, open_paired_model

    model = open_paired_model(args.model, args.device, lambda m: print(f"warning: {m}", file=sys.stderr))
    print(f"{model.spatial_dims}D paired model {model.source.name} on {model.device}")
    with tqdm(total=args.n, desc="generate", unit="case", delay=0.5) as bar:
        written = generate_pair_files(
            model,
            args.out,
            args.n,
            seed=args.seed,
            steps=args.steps,
            sampler=args.sampler,
            progress=lambda fraction: advance_to(bar, fraction, args.n),
        )
    print(f"wrote {2 * len(written)} files to {args.out}/")


def _run_validate(args: argparse.Namespace) -> None:
    import json

    from tqdm import tqdm

    from EchoSynthLib.data.outputs import check_report_output, write_report
    from EchoSynthLib.engine.device import pick_device
    from EchoSynthLib.evaluation.adherence import adherence_report
    from EchoSynthLib.inference.generators import GeneratorSettings, open_generator
    from EchoSynthLib.models.segmenter.network import Segmenter

    if args.out is not None:  # before any work
        check_report_output(args.out, VALIDATE_COMMAND, [args.data])
    warn = lambda message: print(f"echosynth validate: warning: {message}", file=sys.stderr)  # noqa: E731
    settings = GeneratorSettings(str(args.model), steps=args.steps, sampler=args.sampler, device=args.device)
    generator = open_generator(settings, warn)
    segmenter = Segmenter.load(args.segmenter, pick_device(args.device))
    with tqdm(desc="validate", unit="image", delay=0.5) as bar:
        report = adherence_report(
            generator,
            segmenter,
            args.data,
            split=args.split,
            max_cases=args.cases,
            seed=args.seed,
            progress=bar.update,
        )
    report = {**report, "sampler": args.sampler, "steps": args.steps}
    if args.out is not None:
        write_report(args.out, VALIDATE_COMMAND, report, [args.data])
    print(json.dumps(report, indent=1))
