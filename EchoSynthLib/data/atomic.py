"""Atomic file writing: write beside the target under a temporary name, then rename into place."""

from __future__ import annotations

import errno
import glob
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _temporary_sibling(path: Path) -> Path:
    # Keep the full suffix (".nii.gz", ".seg.nrrd") so writers that pick a format by extension still work.
    fd, name = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".tmp" + "".join(path.suffixes), dir=path.parent
    )
    os.close(fd)
    return Path(name)


def _default_mode(directory: bool) -> int:
    """Permissions a plain open()/mkdir() would give under the current umask (mkstemp uses 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def write_atomically(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(temp_path)`` then rename the result onto ``path``; on failure nothing is left behind."""
    path = Path(path)
    try:
        if not path.parent.is_dir():
            path.parent.mkdir(parents=True, exist_ok=True)
        temporary = _temporary_sibling(path)
    except OSError as error:  # name the user's file, not a temporary one
        raise OSError(error.errno, error.strerror, str(path)) from None
    try:
        write(temporary)
        os.chmod(temporary, _default_mode(directory=False))
        os.replace(temporary, path)
    except OSError as error:
        raise OSError(error.errno, error.strerror, str(path)) from None
    except RuntimeError as error:  # SimpleITK's writers: the message names the temporary file
        lines = str(error).strip().splitlines()
        reason = (lines[-1].strip() if lines else str(error)).replace(str(temporary), str(path))
        raise OSError(errno.EIO, f"cannot be written ({reason})", str(path)) from None
    finally:
        temporary.unlink(missing_ok=True)
    return path


def _retired(directory: Path, name: str) -> list[Path]:
    """Retired copies ``.<name>.*.old/<name>`` in ``directory``, newest first."""
    found = [p for p in directory.glob(f".{glob.escape(name)}.*.old") if (p / name).is_dir()]
    return sorted(found, key=os.path.getmtime, reverse=True)


def restore_retired(target: str | os.PathLike) -> bool:
    """If ``target`` is missing because a ``staged_directory`` was killed between its two renames, put the
    retired complete copy back. Safe for readers: it removes nothing. True if it restored one."""
    target = Path(target)
    if target.exists() or not target.parent.is_dir():
        return False
    for retired in _retired(target.parent, target.name):
        try:
            os.replace(retired / target.name, target)
        except OSError:  # another process got there first
            continue
        return True
    return False


def recover_directory(target: str | os.PathLike) -> None:
    """Clean up after a killed ``staged_directory`` (for the one process that writes ``target``): restore a
    retired copy if ``target`` is missing, then remove the staging (``.tmp``) and retired (``.old``) folders
    that earlier kills left beside it."""
    target = Path(target)
    if not target.parent.is_dir():
        return
    restore_retired(target)
    for leftover in target.parent.glob(f".{glob.escape(target.name)}.*"):
        if leftover.is_dir() and leftover.suffix in (".tmp", ".old"):
            shutil.rmtree(leftover, ignore_errors=True)


@contextmanager
def staged_directory(target: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty staging folder; on success it replaces ``target`` whole, on error it is removed.

    The replacement is two renames (target away, staging in); ``recover_directory`` (run first here)
    undoes what a kill between them leaves."""
    target = Path(target)
    try:  # a failure names the user's folder, not a temporary one
        target.parent.mkdir(parents=True, exist_ok=True)
        recover_directory(target)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    except OSError as error:
        raise OSError(error.errno, error.strerror, str(target)) from None
    try:
        yield staging
        os.chmod(staging, _default_mode(directory=True))
        for path in staging.rglob("*"):  # some writers (safetensors) create files readable by the owner only
            os.chmod(path, _default_mode(directory=path.is_dir()))
        if target.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.replace(target, retired / target.name)
            os.replace(staging, target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


class StagedFiles:
    """Files written into a hidden staging folder inside ``directory`` that move in together on ``commit``.

    Each file is written when it is made (memory stays flat however many there are); until ``commit``
    nothing appears in ``directory``, so a failed or interrupted run leaves nothing there."""

    def __init__(self, directory: str | os.PathLike, prefix: str = ".staging.") -> None:
        self.directory = Path(directory)
        try:  # a failure names the user's folder, not a temporary one
            self.directory.mkdir(parents=True, exist_ok=True)
            self.staging = Path(tempfile.mkdtemp(prefix=prefix, dir=self.directory))
        except OSError as error:
            raise OSError(error.errno, error.strerror, str(self.directory)) from None

    def path(self, name: str) -> Path:
        """Where to write the file that will be ``directory/name``."""
        return self.staging / name

    def final(self, path: Path) -> Path:
        """The place a staged file will have after ``commit``."""
        return self.directory / Path(path).relative_to(self.staging)

    def commit(self) -> None:
        """Move every staged file into ``directory`` (MetaImage ``.mhd`` headers after their data files)."""
        for source in sorted(self.staging.iterdir(), key=lambda p: p.suffix.lower() == ".mhd"):
            os.replace(source, self.directory / source.name)

    def discard(self) -> None:
        """Remove the staging folder and whatever is still in it."""
        shutil.rmtree(self.staging, ignore_errors=True)


@contextmanager
def staged_files(directory: str | os.PathLike) -> Iterator[StagedFiles]:
    """A StagedFiles for ``directory``, committed when the block succeeds and removed in every case."""
    staged = StagedFiles(directory)
    try:
        yield staged
        staged.commit()
    finally:
        staged.discard()
