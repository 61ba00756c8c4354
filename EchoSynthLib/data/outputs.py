"""The one rule for what a command may write, used by every command that takes an output path.

- An output may never be, contain, or lie inside an input (``check_place``).
- A folder is replaced only whole, and only when it is this command's own earlier output: empty, or
  holding the mark (``MARK``) the command left in it (``owned_folder``). Anything else is refused with
  one line naming the folder.
- Files added to a folder (synthesize, translate, generate, augment, simulate) never replace a file that
  is already there (``new_files``).
- A single file output never replaces an existing file (``check_new_file``).
- Two runs on one output at once: the second is refused (``output_lock``, an advisory lock on a hidden
  file beside the output, released by the operating system when a run dies), never merged.
- A failed or killed run leaves nothing that a rerun does not clean up: staging folders left by a killed
  run are removed by the next run that holds the lock, and a folder a failed run created is removed.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

from EchoSynthLib.data.atomic import StagedFiles, staged_directory, write_atomically
from EchoSynthLib.errors import InputError

MARK = ".echosynth-output.json"  # in a folder a command wrote whole: which command it was
MARK_FORMAT = 1
STAGING_PREFIX = ".staging."  # StagedFiles' folders inside an output folder: STAGING_PREFIX + part + "."
WHOLE = "all"  # the part of an output that an unsharded run writes


def _paths(inputs: Iterable[str | os.PathLike | None]) -> list[Path]:
    return [Path(p).resolve() for p in inputs if p is not None and str(p) != "" and Path(p).exists()]


def input_paths(*specs: str | os.PathLike | None) -> list[Path]:
    """The files and folders named by input arguments that exist here: a path, or the cache of a
    ``CACHE:split`` spec; a model name that is not a path is left out (it names the model store)."""
    found = []
    for spec in specs:
        if spec is None or str(spec) == "":
            continue
        path = Path(spec)
        if not path.exists() and ":" in str(spec):
            path = Path(str(spec).rsplit(":", 1)[0])
        if path.exists():
            found.append(path)
    return found


def check_place(out: str | os.PathLike, inputs: Iterable[str | os.PathLike | None], whole: bool) -> None:
    """InputError if ``out`` is an input or lies inside an input folder; for an output replaced ``whole``,
    also if it contains an input (replacing it would delete the input)."""
    _check_place(out, _paths(inputs), whole)


def _check_place(out: str | os.PathLike, sources: list[Path], whole: bool) -> None:
    """``check_place`` against inputs already resolved (``_paths``)."""
    target = Path(out).resolve()
    for source in sources:
        if target == source or (target.exists() and os.path.samefile(target, source)):
            raise InputError(f"{out}: is an input of this command; choose another output path")
        if target.is_relative_to(source):
            raise InputError(f"{out}: lies inside the input folder {source}; write it somewhere else")
        if whole and source.is_relative_to(target):
            raise InputError(f"{out}: holds the input {source}; choose another output path")


def check_new_file(path: str | os.PathLike, inputs: Iterable[str | os.PathLike | None] = ()) -> None:
    """InputError if the single output file ``path`` exists (it is never replaced) or is an input."""
    path = Path(path)
    check_place(path, inputs, whole=False)
    _refuse_existing(path)


def _refuse_existing(path: Path) -> None:
    if path.exists() or path.is_symlink():
        what = "a folder" if path.is_dir() else "a file"
        raise InputError(f"{path}: exists ({what}); remove it or choose another output path")


def _lock_path(out: Path, part: str, inside: bool) -> Path:
    if inside:  # a folder that stays (files are added to it)
        return out / f".echosynth.{part}.lock"
    out = out.absolute()  # a folder replaced whole, or a file: the lock lies beside it
    return out.parent / f".{out.name}.{part}.echosynth-lock"


def _try_lock(descriptor: int) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows (Slicer): msvcrt locks one byte, released when the process ends
        import msvcrt

        try:
            msvcrt.locking(descriptor, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


@contextmanager
def output_lock(out: str | os.PathLike, part: str = WHOLE, inside: bool = False) -> Iterator[None]:
    """Hold the lock on ``out`` (or on one ``part`` of it: the shards of one run write disjoint files and
    may run at once) for the block; InputError at once if another run holds it. The lock file (hidden,
    beside ``out``, or ``inside`` the folder ``out``) is removed at the end; one left by a killed run is
    simply taken over."""
    out = Path(out)
    lock = _lock_path(out, part, inside)
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        try:
            descriptor = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise OSError(error.errno, error.strerror, str(out)) from None
        if not _try_lock(descriptor):
            os.close(descriptor)
            raise InputError(
                f"{out}: another echosynth command is writing it now; wait for it or choose another output"
            )
        try:  # the file we locked may have been removed by the run before us: lock the one in place
            same = os.path.samestat(os.fstat(descriptor), os.stat(lock))
        except OSError:
            same = False
        if same:
            break
        os.close(descriptor)
    try:
        yield
    finally:
        with suppress(OSError):
            lock.unlink()
        os.close(descriptor)


def _created_parents(folder: Path) -> list[Path]:
    """The folders ``folder.mkdir(parents=True)`` would create, deepest first."""
    missing = []
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            break
        missing.append(candidate)
    return missing


def _remove_if_empty(folders: Sequence[Path]) -> None:
    for folder in folders:  # deepest first
        with suppress(OSError):
            folder.rmdir()


def _written_by(path: Path) -> str | None:
    """The command named by the ``written_by`` of a JSON file (a folder's mark, a report), or None."""
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    command = document.get("written_by") if isinstance(document, dict) else None
    return command if isinstance(command, str) else None


def read_mark(folder: str | os.PathLike) -> str | None:
    """The command that wrote ``folder`` whole (from its mark), or None."""
    return _written_by(Path(folder) / MARK)


def check_folder_output(
    out: str | os.PathLike,
    command: str,
    inputs: Iterable[str | os.PathLike | None] = (),
    also_owned: str | tuple[str, ...] | None = None,
) -> None:
    """InputError if ``owned_folder`` would refuse ``out`` (call it before long work, to fail at once)."""
    out = Path(out)
    check_place(out, inputs, whole=True)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder; remove it or choose another output path")
    earlier = (also_owned,) if isinstance(also_owned, str) else also_owned or ()
    mine = read_mark(out) == command or (bool(earlier) and all((out / name).exists() for name in earlier))
    if out.is_dir() and any(out.iterdir()) and not mine:
        raise InputError(
            f"{out}: is a folder that 'echosynth {command}' did not write; refusing to replace it "
            "(choose a new or empty folder)"
        )


@contextmanager
def owned_folder(
    out: str | os.PathLike,
    command: str,
    inputs: Iterable[str | os.PathLike | None] = (),
    also_owned: str | tuple[str, ...] | None = None,
) -> Iterator[Path]:
    """Yield a staging folder that replaces ``out`` whole when the block succeeds (nothing changes if it
    fails). Refused (InputError) when ``out`` is a file, is or holds or lies inside an input, is written
    by another run now, or is a non-empty folder without this command's mark (``also_owned``: a file
    (or files) whose presence marks the command's output from before marks existed, e.g. a cache's
    manifest)."""
    out = Path(out)
    check_folder_output(out, command, inputs, also_owned)
    created = _created_parents(out.parent)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with output_lock(out):
            check_folder_output(out, command, inputs, also_owned)  # again, under the lock
            with staged_directory(out) as staging:
                yield staging
                document = {"written_by": command, "format_version": MARK_FORMAT}
                (staging / MARK).write_text(json.dumps(document) + "\n")
    except BaseException:
        _remove_if_empty(created)
        raise


def check_new_files(
    out_dir: str | os.PathLike, names: Iterable[str] = (), inputs: Iterable[str | os.PathLike | None] = ()
) -> None:
    """InputError if ``new_files`` would refuse (call it before long work, to fail at once): ``out_dir`` a
    file, or an input or inside one; one of ``names`` an input or already there."""
    out_dir = Path(out_dir)
    sources = _paths(inputs)  # resolved once: a command may name thousands of inputs and outputs
    _check_place(out_dir, sources, whole=False)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir}: exists and is not a folder; remove it or choose another output path")
    # out_dir is no input and lies in none, so a new file in it can only be an input that lies in it.
    here = out_dir.resolve()
    inside = [source for source in sources if source.parent == here]
    for name in names:
        path = out_dir / name
        if inside:
            _check_place(path, inside, whole=False)
        _refuse_existing(path)


@contextmanager
def new_files(
    out_dir: str | os.PathLike,
    names: Iterable[str] = (),
    inputs: Iterable[str | os.PathLike | None] = (),
    part: str = WHOLE,
) -> Iterator[StagedFiles]:
    """A StagedFiles for ``out_dir`` whose files move in together when the block succeeds. Refused when
    ``out_dir`` is a file, is or lies inside an input, is written by another run now, or already holds
    one of ``names`` (the files the command will write: nothing is ever replaced). ``part``: the shard
    this run writes (runs of other shards may write at once). A staging folder left by a killed run of
    the same part is removed; ``out_dir`` is removed again if this run created it and wrote nothing."""
    out_dir, names = Path(out_dir), list(names)
    check_new_files(out_dir, names, inputs)
    created = _created_parents(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    committed = False
    try:
        with output_lock(out_dir, part, inside=True):
            prefix = f"{STAGING_PREFIX}{part}."
            for leftover in out_dir.glob(f"{glob.escape(prefix)}*"):  # a killed run's: none holds the lock
                if leftover.is_dir():
                    shutil.rmtree(leftover, ignore_errors=True)
            for name in names:  # checked again under the lock: another run may have finished meanwhile
                check_new_file(out_dir / name)
            staged = StagedFiles(out_dir, prefix)
            try:
                yield staged
                staged.commit()
                committed = True
            finally:
                staged.discard()
    finally:
        if not committed:
            _remove_if_empty(created)


def check_report_output(
    path: str | os.PathLike, command: str, inputs: Iterable[str | os.PathLike | None] = ()
) -> None:
    """InputError unless ``path`` is free for a JSON report of ``command``: new, or that command's own
    earlier report (its ``written_by`` says so); never an input or inside one."""
    path = Path(path)
    if path.exists() and _written_by(path) == command and path.is_file():
        check_place(path, inputs, whole=False)
        return
    check_new_file(path, inputs)


def write_report(
    path: str | os.PathLike, command: str, report: dict, inputs: Iterable[str | os.PathLike | None] = ()
) -> Path:
    """Write ``report`` as JSON to ``path`` atomically, naming ``command`` as its writer (checked as
    ``check_report_output`` does, under the output's lock)."""
    path = Path(path)
    with output_lock(path):
        check_report_output(path, command, inputs)
        text = json.dumps({"written_by": command, **report}, indent=1)
        return write_atomically(path, lambda temporary: temporary.write_text(text))


SCRATCH_LOCK = ".echosynth-scratch.lock"


@contextmanager
def scratch_folder(prefix: str) -> Iterator[Path]:
    """A temporary folder (``$TMPDIR/<prefix>*``) removed at the end, held by a lock inside it while in use;
    first, the folders of that prefix whose lock no process holds (left by a run killed with SIGKILL,
    which no ``finally`` survives) are removed."""
    import tempfile

    root = Path(tempfile.gettempdir())
    for folder in root.glob(f"{glob.escape(prefix)}*"):
        lock = folder / SCRATCH_LOCK
        if not folder.is_dir() or not lock.is_file():
            continue  # not ours, or a run still setting up: left alone
        try:
            descriptor = os.open(lock, os.O_RDWR)
        except OSError:
            continue
        try:
            if _try_lock(descriptor):  # nobody holds it: the run that made it is gone
                shutil.rmtree(folder, ignore_errors=True)
        finally:
            os.close(descriptor)
    scratch = Path(tempfile.mkdtemp(prefix=prefix))
    descriptor = os.open(scratch / SCRATCH_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        _try_lock(descriptor)
        yield scratch
    finally:
        os.close(descriptor)
        shutil.rmtree(scratch, ignore_errors=True)
