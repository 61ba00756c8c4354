"""Start a worker process for a job folder, follow its reports without blocking, cancel it whole.

The caller (the Slicer panel's timer, or a blocking loop) calls ``poll()`` for new events; reader threads
fill a queue, so nothing here blocks a GUI. ``cancel()`` kills the worker and every process it started
(its own process group on POSIX, ``taskkill /T`` on Windows). Written by hand: the standard library has
no process-tree kill, and psutil is not in Slicer's Python.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import EchoSynthLib
from EchoSynthLib.errors import EchoSynthError

WORKER_MODULE = "EchoSynthLib.jobs.worker"
_WINDOWS = sys.platform == "win32"
# Windows process creation flags (subprocess defines them on Windows only).
CREATE_NEW_PROCESS_GROUP = 0x00000200
CREATE_NO_WINDOW = 0x08000000


class JobFailed(EchoSynthError):
    """The worker stopped with an error (its message), or was cancelled."""


@dataclass(frozen=True)
class JobEvent:
    """One report of the worker: start, progress, warning, error, done, or a plain log line."""

    kind: str
    message: str = ""
    fraction: float | None = None


def library_root() -> Path:
    """The folder that holds the ``EchoSynthLib`` package (put on the worker's PYTHONPATH)."""
    return Path(EchoSynthLib.__file__).resolve().parent.parent


def child_environment(device: str = "auto", base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The worker's environment: this library importable, unbuffered output, and the CPU forced by
    hiding every GPU when ``device`` is 'cpu'."""
    env = dict(os.environ if base is None else base)
    paths = [str(library_root()), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["PYTHONUNBUFFERED"] = "1"
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def popen_options(windows: bool = _WINDOWS) -> dict:
    """How the worker is started: in a process group of its own (so cancel() can kill the whole tree) and,
    on Windows, without a console window. PythonSlicer is a console program: started from the GUI it would
    open one (slicer.util.launchConsoleProcess hides it the same way; that helper is not used because it
    merges stderr into stdout and starts no process group)."""
    if windows:
        return {"creationflags": CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW}
    return {"start_new_session": True}


def parse_event(line: str) -> JobEvent:
    """A worker's JSON line as an event; any other line is a 'log' event."""
    try:
        document = json.loads(line)
    except ValueError:
        return JobEvent("log", line.rstrip())
    if not isinstance(document, dict) or "event" not in document:
        return JobEvent("log", line.rstrip())
    fraction = document.get("fraction")
    return JobEvent(str(document["event"]), str(document.get("message", "")), fraction)


class JobProcess:
    """A running worker for one job folder."""

    def __init__(
        self,
        folder: str | Path,
        python: str | None = None,
        device: str = "auto",
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.cancelled = False
        self.events: queue.Queue[JobEvent] = queue.Queue()
        self._stderr: deque[str] = deque(maxlen=40)
        self._error: str | None = None
        command = [python or sys.executable, "-u", "-m", WORKER_MODULE, str(self.folder)]
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
            errors="replace",
            env=child_environment(device, env),
            **popen_options(),
        )
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self) -> None:
        for line in self.process.stdout:
            if line.strip():
                event = parse_event(line)
                if event.kind == "error":
                    self._error = event.message
                self.events.put(event)

    def _read_stderr(self) -> None:
        for line in self.process.stderr:
            self._stderr.append(line.rstrip())

    @property
    def running(self) -> bool:
        """True until the worker has exited and all its output is read."""
        return self.process.poll() is None or any(r.is_alive() for r in self._readers)

    def poll(self) -> list[JobEvent]:
        """The events reported since the last call (never blocks)."""
        out = []
        while True:
            try:
                out.append(self.events.get_nowait())
            except queue.Empty:
                return out

    def cancel(self) -> None:
        """Kill the worker and its whole process tree; outputs it staged are discarded with it."""
        self.cancelled = True
        if self.process.poll() is None:
            if _WINDOWS:
                subprocess.run(
                    ["taskkill", "/F", "/T", "/PID", str(self.process.pid)], capture_output=True, check=False
                )
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        for reader in self._readers:
            reader.join(timeout=5)

    def wait(
        self,
        on_event: Callable[[JobEvent], None] | None = None,
        interval: float = 0.05,
        timeout: float | None = None,
        idle: Callable[[], None] | None = None,
    ) -> None:
        """Block until the worker ends, passing each event to ``on_event`` and calling ``idle`` between
        polls (Slicer: process the GUI's events, so a long blocking call does not freeze it); JobFailed if
        it failed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.running:
            for event in self.poll():
                if on_event is not None:
                    on_event(event)
            if deadline is not None and time.monotonic() > deadline:
                self.cancel()
                raise JobFailed(f"the synthesis job ran past {timeout:.0f} s and was cancelled")
            if idle is not None:
                idle()
            time.sleep(interval)
        for event in self.poll():
            if on_event is not None:
                on_event(event)
        self.check()

    def check(self) -> None:
        """Raise JobFailed if the finished worker was cancelled or failed, with its own message."""
        code = self.process.poll()
        if self.cancelled:
            raise JobFailed("the synthesis job was cancelled")
        if code != 0:
            detail = self._error or "\n".join(self._stderr) or "no message"
            raise JobFailed(f"the synthesis worker failed (exit status {code}): {detail}")
