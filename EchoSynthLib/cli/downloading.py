"""Downloads on the command line: the licence prompt on a terminal, a tqdm bar in bytes, and the first-use
handler that any command naming a listed, not installed model goes through (``models.downloads``)."""

from __future__ import annotations

import sys
from contextlib import AbstractContextManager

from EchoSynthLib.store.registry import KnownModel, Progress


def ask_on_terminal(model: KnownModel) -> bool:
    """Show the licence and ask (stderr, so an output piped on stdout stays clean); False without a
    terminal to answer on."""
    from EchoSynthLib.store.downloads import licence_prompt

    if not sys.stdin.isatty():
        return False
    print(licence_prompt(model) + " [y/N] ", end="", file=sys.stderr, flush=True)
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def byte_progress(model: KnownModel) -> Progress:
    """A tqdm bar for one download (bytes; the total once the server says it), opened when the download
    starts (not before its licence is accepted)."""
    from tqdm import tqdm

    bars: list[tqdm] = []

    def progress(done: int, total: int | None) -> None:
        if not bars:
            bars.append(tqdm(desc=f"download {model.name}", unit="B", unit_scale=True, unit_divisor=1024))
        bar = bars[0]
        if total is not None and bar.total != total:
            bar.total = total
            bar.refresh()
        bar.update(done - bar.n)
        if total is not None and done >= total:
            bar.close()

    return progress


def first_use_downloads(accept: bool) -> AbstractContextManager[None]:
    """While the command runs, a listed model it names that is not installed is downloaded (licence
    accepted by ``accept``, earlier, or at the terminal's prompt), with a progress bar."""
    from EchoSynthLib.store.downloads import downloads_on_first_use

    return downloads_on_first_use(accept=accept, ask=ask_on_terminal, progress=byte_progress)
