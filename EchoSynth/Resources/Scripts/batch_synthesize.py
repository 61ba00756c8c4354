"""Synthesize echo images for every label file in a folder, headless.

Runs both ways, with the same arguments as ``echosynth synthesize``:

    Slicer --no-main-window --python-script batch_synthesize.py --model simulator --labels maps/ --out out/
    python batch_synthesize.py --model simulator --labels maps/ --out out/ --n 4

Inside Slicer, the Python packages this run needs are installed first (no questions asked; the simulator
needs only tqdm for the progress bar, augmented anatomy adds torch and MONAI, a model everything); with
plain Python the ``echosynth`` package must be installed (``pip install -e .`` in the EchoSynth checkout).
The exit status is 0 on success and 2 on bad input or a failed install, with one line naming the problem;
nothing partial is written.
"""

import sys


def _in_slicer() -> bool:
    slicer = sys.modules.get("slicer")
    return slicer is not None and hasattr(slicer, "app")


def run(argv: list[str]) -> int:
    """``echosynth synthesize`` with ``argv``; its exit status."""
    from EchoSynthLib.cli.main import build_parser, main

    if _in_slicer():
        from EchoSynthScene.dependencies import DependencyError, ensure, needs_for

        try:
            args = build_parser().parse_args(["synthesize", *argv])
        except SystemExit as stop:  # argparse has printed the usage error
            return int(stop.code or 0)
        try:
            # tqdm for the command line's progress bar, slicerio for .seg.nrrd maps (any generator reads them)
            needs = needs_for(args.model, args.augment, extra=("tqdm", "slicerio"), sampler=args.sampler)
            ensure(needs, ask=False)
        except DependencyError as error:
            print(f"batch_synthesize: error: {error}", file=sys.stderr)
            return 2

    return main(["synthesize", *argv])


# No __main__ guard: Slicer's --python-script runs the file's top level as a script.
_code = run(sys.argv[1:])
if _in_slicer():
    import slicer

    slicer.util.exit(_code)
else:
    sys.exit(_code)
