"""Exception types: every user-facing failure is an EchoSynthError with a message naming the problem."""


class EchoSynthError(Exception):
    """Base class for errors the CLI reports as one line and a non-zero exit."""


class InputError(EchoSynthError, ValueError):
    """Bad input: wrong dimensions, NaNs, empty maps, unreadable or foreign files."""


class UnknownLabelError(InputError):
    """A label value or segment name that the label schema cannot map."""
