"""``echosynth``: the command line. Subcommands live in the *_commands modules beside this one.

Errors are one line on stderr and exit status 2; outputs are written atomically, so a failed command
leaves no partial files.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from EchoSynthLib.cli import data_commands, model_commands, models_commands, simulate_commands
from EchoSynthLib.cli.arguments import OneLineParser
from EchoSynthLib.errors import EchoSynthError

EXIT_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = OneLineParser(
        prog="echosynth", description="Labelled synthetic echocardiography from label maps."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for module in (simulate_commands, data_commands, model_commands, models_commands):
        module.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # --help, or a usage error already printed as one line
        return int(stop.code or 0)
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


if __name__ == "__main__":
    sys.exit(main())
