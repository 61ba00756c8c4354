"""Run a job folder: ``python -m EchoSynthLib.jobs.worker JOB_FOLDER``.

Reports are JSON lines on stdout, one event each: ``start`` (what generates), ``progress`` (``fraction``
of the whole job, ``message``), ``warning``, ``error`` and ``done``. Exit status 0 once ``result.json`` is
written, 2 for bad input (the error event names the problem), 130 when interrupted. Outputs are staged,
so a failed or killed job leaves no partial output files (an 'adapt' job's model and its work lie in the
job folder, which the caller removes).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from EchoSynthLib.cpu_threads import prepare_environment, use_threads
from EchoSynthLib.errors import EXIT_ERROR, run_main
from EchoSynthLib.jobs.spec import (
    ADAPT,
    ADAPTED_MODEL,
    GENERATE,
    OUTPUT_DIR,
    TRANSLATE,
    InputResult,
    JobSpec,
    write_result,
)

Report = Callable[[dict[str, Any]], None]
# The share of an 'adapt' job's progress bar that drawing the base's images takes (the fit's rounds the rest).
ADAPT_DRAW_SHARE = 0.25
ADAPT_FIT_SHARE = 0.4  # with a way back: the bar at the end of the fit (the fine-tune is the longest part)


def run_job(folder: str | Path, report: Report) -> list[InputResult]:
    """Make every output of the job in ``folder``, then write its ``result.json``."""
    from EchoSynthLib.data.labels import schema_named
    from EchoSynthLib.inference.generators import open_generator
    from EchoSynthLib.sampling.files import synthesize_files

    folder = Path(folder)
    spec = JobSpec.read(folder)
    warnings: list[str] = []

    def warn(message: str) -> None:
        warnings.append(message)
        report({"event": "warning", "message": message})

    if spec.task == GENERATE:
        return _generate(folder, spec, warn, report, warnings)
    if spec.task == TRANSLATE:
        return _translate(folder, spec, warn, report, warnings)
    if spec.task == ADAPT:
        return _adapt(folder, spec, warn, report, warnings)
    generator = open_generator(spec, warn)
    report({"event": "start", "message": generator.description})
    outputs = synthesize_files(
        generator,
        [folder / name for name in spec.inputs],
        folder / OUTPUT_DIR,
        schema=schema_named(spec.schema),
        n=spec.n,
        seed=spec.seed,
        augment=spec.augment,
        acquisition=spec.acquisition,
        progress=lambda fraction, name: report({"event": "progress", "fraction": fraction, "message": name}),
    )
    results = []
    for name in spec.inputs:
        made = [o for o in outputs if o.source == folder / name]
        relative = [tuple(str(p.relative_to(folder)) for p in o.images) for o in made]
        augmented = tuple(
            (str(o.labels.relative_to(folder)), images)
            for o, images in zip(made, relative, strict=True)
            if o.labels is not None
        )
        results.append(InputResult(name, relative[0], augmented))
    write_result(folder, results, warnings)
    report({"event": "done", "message": f"{sum(len(o.images) for o in outputs)} images"})
    return results


def _translate(folder: Path, spec: JobSpec, warn, report: Report, warnings: list[str]) -> list[InputResult]:
    """A 'translate' job: each input image translated into ``output/`` (``sampling.translate``)."""
    from EchoSynthLib.data.labels import schema_named
    from EchoSynthLib.inference.generators import open_generator
    from EchoSynthLib.sampling.translate import file_sources, translate_files

    generator = open_generator(spec, warn)
    segment = None
    if spec.segment:
        from EchoSynthLib.models.segmenter.network import Segmenter

        segment = Segmenter.load(spec.segmenter, spec.device).segment
    report({"event": "start", "message": generator.description})
    images = [folder / name for name in spec.inputs]
    labels = [folder / name for name in spec.labels] or None
    outputs = translate_files(
        generator,
        # Several inputs are the frames of one sequence: one seed, the look held steady (``steady_look``).
        file_sources(images, labels, schema_named(spec.schema), "sequence" if len(images) > 1 else ""),
        folder / OUTPUT_DIR,
        segment=segment,
        seed=spec.seed,
        progress=lambda fraction, name: report({"event": "progress", "fraction": fraction, "message": name}),
        inputs=[*images, *(labels or [])],
        slices=True,  # the Slicer Translate mode takes 3D volumes slice by slice
    )
    results = [
        InputResult(name, (str(o.image.relative_to(folder)),))
        for name, o in zip(spec.inputs, outputs, strict=True)
    ]
    write_result(folder, results, warnings)
    report({"event": "done", "message": f"{len(results)} images"})
    return results


def _generate(folder: Path, spec: JobSpec, warn, report: Report, warnings: list[str]) -> list[InputResult]:
    """A 'generate' job: ``n`` paired cases of a paired model into ``output/``."""
    from EchoSynthLib.sampling.cases import generate_pair_files, open_paired_model

    model = open_paired_model(spec.generator, spec.device, warn)
    report({"event": "start", "message": f"paired model {model.source.name} on {model.device}"})
    written = generate_pair_files(
        model,
        folder / OUTPUT_DIR,
        spec.n,
        seed=spec.seed,
        steps=spec.steps,
        sampler=spec.sampler,
        progress=lambda fraction: report({"event": "progress", "fraction": fraction, "message": "cases"}),
    )
    pairs = [(str(i.relative_to(folder)), str(lab.relative_to(folder))) for i, lab in written]
    write_result(folder, [], warnings, pairs)
    report({"event": "done", "message": f"{len(pairs)} cases"})
    return []


def _adapt(folder: Path, spec: JobSpec, warn, report: Report, warnings: list[str]) -> list[InputResult]:
    """An 'adapt' job: a look for the base model ``spec.generator`` fitted to the input images, written as
    a model package to ``ADAPTED_MODEL`` (``adaptation.adapt``; its work folder lies beside it)."""
    from EchoSynthLib.adaptation.adapt import AdaptSettings, adapt
    from EchoSynthLib.data.io import readable_files
    from EchoSynthLib.errors import InputError

    images = (folder / spec.inputs[0]).parent
    missing = [name for name in spec.inputs if not (folder / name).is_file()]
    if missing:
        raise InputError(f"{folder / missing[0]}: no such image ({len(missing)} of the job's are missing)")
    others = sorted(set(readable_files(images)) - {folder / name for name in spec.inputs})
    if others:  # the fit reads the whole folder: it must hold the job's images alone
        raise InputError(f"{images}: holds {others[0].name}, which is not one of the job's images")
    settings = AdaptSettings(
        images,
        folder / ADAPTED_MODEL,
        spec.generator,
        spec.maps,
        spec.rounds,
        spec.candidates,
        spec.seed,
        spec.device,
        way_back=spec.way_back,
    )
    report({"event": "start", "message": f"adapting '{spec.generator}' to {len(spec.inputs)} images"})

    def progress(stage: str, done: int, total: int) -> None:
        part = done / total if total else 1.0
        # The fit's share of the bar (after the base's images), and with a way back, its share after the fit.
        fit_share = 1.0 if not spec.way_back else ADAPT_FIT_SHARE
        if stage == "draw":
            fraction, message = ADAPT_DRAW_SHARE * part, f"base images {done}/{total}"
        elif stage == "fit":
            fraction = ADAPT_DRAW_SHARE + (fit_share - ADAPT_DRAW_SHARE) * part
            message = f"round {done}/{total}"
        else:
            fraction, message = fit_share + (1.0 - fit_share) * part, f"way back step {done}/{total}"
        report({"event": "progress", "fraction": fraction, "message": message})

    model = adapt(settings, progress, warn)
    write_result(folder, [], warnings, model=model.relative_to(folder).as_posix())
    report({"event": "done", "message": f"adapted model in {ADAPTED_MODEL}"})
    return []


def _print_event(event: dict[str, Any]) -> None:
    print(json.dumps(event), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: one job folder as the only argument."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        _print_event({"event": "error", "message": "usage: python -m EchoSynthLib.jobs.worker JOB_FOLDER"})
        return EXIT_ERROR
    prepare_environment()  # before torch is imported (OpenMP reads its wait policy when it starts)

    def run() -> None:
        use_threads()  # one core left for Slicer's GUI unless ECHOSYNTH_THREADS says otherwise
        run_job(args[0], _print_event)

    return run_main(run, lambda m: _print_event({"event": "error", "message": m}))


if __name__ == "__main__":
    sys.exit(main())
