"""Exception types: every user-facing failure is an EchoSynthError with a message naming the problem."""


class EchoSynthError(Exception):
    """Base class for errors the CLI reports as one line and a non-zero exit."""


class InputError(EchoSynthError, ValueError):
    """Bad input: wrong dimensions, NaNs, empty maps, unreadable or foreign files."""


class UnknownLabelError(InputError):
    """A label value or segment name that the label schema cannot map."""


EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def run_main(action, report) -> int:
    """Run ``action()`` as a program's body and return its exit status: 0; 2 for an EchoSynthError or an
    OSError, reported as one line through ``report(message)``; 130 when interrupted (Ctrl-C). The one rule
    for the command line and the worker process."""
    try:
        action()
    except EchoSynthError as error:
        report(str(error))
        return EXIT_ERROR
    except OSError as error:
        report(f"{error.strerror or error}: {error.filename or ''}".rstrip(": "))
        return EXIT_ERROR
    except KeyboardInterrupt:
        report("interrupted")
        return EXIT_INTERRUPTED
    return 0
