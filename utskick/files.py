"""Atomic file writes, the one writer of every output: a crash or Ctrl-C never leaves a
half-written file behind."""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from .errors import Problem, UtskickError


def read_bytes(path: Path) -> bytes:
    """A file's bytes, or our located error when it is missing or unreadable."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UtskickError(Problem("file not found", path)) from None
    except OSError as e:
        raise UtskickError(Problem(f"cannot read: {e.strerror}", path)) from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import: os.umask can only be read by setting it, which is not thread-safe.
UMASK = _umask()


def write_atomic(path: Path, data: bytes | str, mode: int | None = None, private: bool = False) -> None:
    """Write to a temporary file beside `path`, fsync, then rename over it.

    mkstemp makes the file 0600: it gets `mode`, else the mode the file had, else the usual mode
    of a new file (build/ output is published on a web server). `private` is for personal data
    (outbox messages, reports): a new file is 0600 and the folders made for it 0700. Only a
    regular file is ever replaced: renaming over a symlink or a device (`--report /dev/full` as
    root) would destroy it. Any failure of the file system (a full disk, no permission, a file
    where a folder should be) is a located error naming `path`, for every command alike.
    """
    try:
        _write(path, data.encode("utf-8") if isinstance(data, str) else data, mode, private)
    except OSError as e:
        raise UtskickError(Problem(f"cannot write: {e.strerror or e}", path)) from None


def _write(path: Path, raw: bytes, mode: int | None, private: bool) -> None:
    try:
        existing = path.lstat().st_mode
    except (FileNotFoundError, NotADirectoryError):  # NotADirectoryError: make_folders says which
        existing = None
    if existing is not None and not stat.S_ISREG(existing):
        what = "a symbolic link" if stat.S_ISLNK(existing) else "a folder" if stat.S_ISDIR(existing) else "a device or special file"
        raise UtskickError(Problem(f"is {what}, not a regular file: not replacing it; choose another path", path))
    make_folders(path.parent, 0o700 if private else 0o777)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if mode is None:
            try:
                mode = path.stat().st_mode & 0o777
            except FileNotFoundError:
                mode = 0o600 if private else 0o666 & ~UMASK
        os.chmod(tmp, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def make_folders(folder: Path, mode: int = 0o777) -> list[Path]:
    """`folder` and any missing parents, each made with `mode` (less the umask), parents first:
    the folders it made. pathlib's `mkdir(mode, parents=True)` makes the parents with the
    default mode instead."""
    missing: list[Path] = []
    while not folder.is_dir():
        if os.path.lexists(folder):
            raise UtskickError(Problem("is a file, not a folder: cannot write into it; choose another path", folder))
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    for f in reversed(missing):
        f.mkdir(mode=mode, exist_ok=True)
    return missing[::-1]


def write_tree(out: Path, files: Mapping[str, bytes], mode: int | None = None) -> list[Path]:
    """Every file of one output (what `build` or `publish` writes) under `out`, each atomically.

    With `mode` (a site a web server reads, whatever the umask) each file gets it and each folder
    made for one the same with search rights (0644 makes folders 0755)."""
    written = []
    for name, data in files.items():
        path = out / name
        try:
            for folder in make_folders(path.parent):
                if mode is not None:
                    folder.chmod(mode | (mode & 0o444) >> 2)
        except OSError as e:
            raise UtskickError(Problem(f"cannot write: {e.strerror or e}", path)) from None
        write_atomic(path, data, mode)
        written.append(path)
    return written


def bundled(package: str, source: Path, probe: str) -> Path:
    """Data shipped inside the wheel as `package`, or `source` when running from a checkout."""
    from importlib.resources import files

    try:
        # joinpath() gives a real path even for a namespace package (a MultiplexedPath).
        path = Path(str(files(package).joinpath(probe)))
        if path.exists():
            return path.parent
    except (ModuleNotFoundError, TypeError):
        pass
    return source


@contextmanager
def locked(path: Path, wait: bool = True) -> Iterator[bool]:
    """An exclusive lock on `path` across processes; yields False when `wait` is False and
    another process holds it. fcntl on POSIX, msvcrt on Windows, where many editors work. A
    folder made for the lock is 0700: locks guard the secret, the journal and the lists."""
    make_folders(path.parent, 0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            if sys.platform == "win32":
                import msvcrt

                msvcrt.locking(fd, msvcrt.LK_LOCK if wait else msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError:
            if wait:
                raise
            yield False
            return
        yield True
    finally:
        os.close(fd)
