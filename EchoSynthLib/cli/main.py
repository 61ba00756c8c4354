"""``echosynth``: the command line. Subcommands live in the *_commands modules beside this one.

Errors are one line on stderr and exit status 2; outputs are written atomically, so a failed command
leaves no partial files.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from EchoSynthLib.cli import (
    adapt_commands,
    data_commands,
    evaluate_commands,
    generate_commands,
    model_store_commands,
    simulate_commands,
    translate_commands,
)
from EchoSynthLib.cli.arguments import OneLineParser
from EchoSynthLib.cpu_threads import prepare_environment, use_threads
from EchoSynthLib.errors import run_main


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = OneLineParser(
        prog="echosynth", description="Labelled synthetic echocardiography from label maps."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for module in (
        simulate_commands,
        data_commands,
        generate_commands,
        translate_commands,
        adapt_commands,
        evaluate_commands,
        model_store_commands,
    ):
        module.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    prepare_environment()  # before torch is imported (OpenMP reads its wait policy when it starts)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # --help, or a usage error already printed as one line
        return int(stop.code or 0)

    def run() -> None:
        if hasattr(args, "threads"):  # a command that computes: the thread policy (cpu_threads)
            use_threads(args.threads)
        if not hasattr(args, "accept_licence"):
            args.run(args)
            return
        from EchoSynthLib.cli.downloading import first_use_downloads

        with first_use_downloads(args.accept_licence):  # a model it names may be downloaded on first use
            args.run(args)

    return run_main(run, lambda message: _report(args.command, message))


def _report(command: str, message: str) -> None:
    """The one error line, on a line of its own: a progress bar still open is closed first (it ends its
    line), so the message is never glued to it."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()
    print(f"echosynth {command}: error: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
