"""Synthesize echo images for every label file in a folder, headless.

Runs both ways, with the same arguments as ``echosynth synthesize``:

    Slicer --no-main-window --python-script batch_synthesize.py --model simulator --labels maps/ --out out/
    python batch_synthesize.py --model simulator --labels maps/ --out out/ --n 4

Inside Slicer, missing Python packages are installed first (no questions asked); with plain Python the
``echosynth`` package must be installed (``pip install -e .`` in the EchoSynth checkout). The exit status is
0 on success and 2 on bad input, with one line naming the problem; nothing partial is written.
"""

import sys


def _in_slicer() -> bool:
    slicer = sys.modules.get("slicer")
    return slicer is not None and hasattr(slicer, "app")


def run(argv: list[str]) -> int:
    """``echosynth synthesize`` with ``argv``; its exit status."""
    if _in_slicer():
        from EchoSynthScene import dependencies

        if not dependencies.ensure(ask=False):
            print("batch_synthesize: error: EchoSynth's dependencies could not be installed", file=sys.stderr)
            return 2
    from EchoSynthLib.cli.main import main

    return main(["synthesize", *argv])


# No __main__ guard: Slicer's --python-script runs the file's top level as a script.
_code = run(sys.argv[1:])
if _in_slicer():
    import slicer

    slicer.util.exit(_code)
else:
    sys.exit(_code)
