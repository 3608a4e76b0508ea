"""Output directories on disk: the marker that makes a directory nassearch's, the one-writer lock, atomic
file writes, and overwriting only what nassearch created.

Every directory nassearch creates for a run or a benchmark holds a marker file (``.nassearch``); only a
marked directory is ever emptied by ``--overwrite``. A writer holds an exclusive ``flock`` on the
directory's ``.lock`` file for its whole life, with its PID, host and start time written inside: a second
writer is refused with that information. The operating system drops the lock when its holder dies (even
by SIGKILL), so a stale lock file is simply taken over.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import shutil
import socket
import sys
import time
from pathlib import Path

from nassearch.errors import RunDirError

log = logging.getLogger(__name__)

MARKER = ".nassearch"
LOCK = ".lock"
#: How long a new directory's creator waits for its lock (a concurrent ``--overwrite`` may hold it while
#: it finds the directory unmarked and gives up).
CREATE_WAIT_S = 10.0


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: a reader (or a process killed
    mid-write) sees the old file or the new one, never half of it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise write_error(path, exc) from None


#: errno values of a write the user's environment refused (full disk, quota, file size limit, read-only).
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM})


def write_error(path: Path, exc: OSError) -> RunDirError:
    """One line for a failed write (disk full, read-only directory, permissions)."""
    return RunDirError(f"cannot write {path}: {exc.strerror or exc}; free space or fix permissions, then "
                       "continue with --resume")


def is_marked(directory: Path) -> bool:
    """Whether nassearch created ``directory`` (it holds the marker file)."""
    return (directory / MARKER).is_file()


def _mark(directory: Path, kind: str) -> None:
    atomic_write_text(directory / MARKER, json.dumps({"kind": kind, "created": _now()}) + "\n")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class DirectoryLock:
    """An exclusive lock on ``directory/.lock``, held until ``release`` (or the process's death)."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK
        self._fd: int | None = None

    def acquire(self, wait_s: float = 0.0) -> DirectoryLock:
        """Take the lock, waiting up to ``wait_s`` seconds; RunDirError naming the holder if it is taken."""
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise write_error(self.path, exc) from None
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES) or time.monotonic() >= deadline:
                    holder = self.holder()
                    os.close(self._fd)
                    self._fd = None
                    if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                        raise RunDirError(f"cannot lock {self.path}: {exc.strerror}") from None
                    raise RunDirError(f"{self.path.parent} is in use by another nassearch process ({holder}); "
                                      "wait for it to finish or stop it, then try again") from None
                time.sleep(0.05)
        previous = self.holder()
        if previous != "holder unknown":
            log.info("taking over the lock of %s (no longer running)", previous)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": _now(), "command": sys.argv[:6]}
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, (json.dumps(info) + "\n").encode(), 0)
        except OSError as exc:
            self.release()
            raise write_error(self.path, exc) from None
        return self

    def holder(self) -> str:
        """The lock file's account of its holder: 'PID p on host h since t', or 'holder unknown'."""
        try:
            info = json.loads(self.path.read_text())
            return f"PID {int(info['pid'])} on {info['host']} since {info['started']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "holder unknown"

    def release(self) -> None:
        """Drop the lock (the file stays; its contents are stale once unlocked)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DirectoryLock:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


def create(directory: Path, kind: str, overwrite: bool, hint: str) -> DirectoryLock:
    """Make ``directory`` a new marked output directory and return its held lock.

    An existing directory is refused unless ``overwrite``; then it must be marked and not in use, and its
    contents (not the lock file) are deleted. ``hint`` says how to continue an existing one instead."""
    if directory.is_symlink():
        raise RunDirError(f"{directory} is a symbolic link; nassearch writes only into directories it creates")
    try:
        directory.mkdir(parents=True)
    except FileExistsError:
        if not directory.is_dir():
            raise RunDirError(f"{directory} exists and is not a directory; choose another output.dir / name") from None
        if _unfinished(directory):  # a creator died before writing anything: nothing there to lose
            lock = DirectoryLock(directory).acquire()
            _mark(directory, kind)
            return lock
        if not overwrite:
            raise RunDirError(f"{directory} already exists: {hint}, replace it with --overwrite, or choose another "
                              "output.dir / name") from None
        return _overwrite(directory, kind)
    except OSError as exc:
        raise write_error(directory, exc) from None
    lock = DirectoryLock(directory).acquire(wait_s=CREATE_WAIT_S)
    _mark(directory, kind)
    return lock


def _unfinished(directory: Path) -> bool:
    """Whether ``directory`` holds nothing but what ``create`` writes first (its lock, its marker, a temporary
    file of the marker): the trace of a creator killed before the run wrote anything."""
    return all(p.name in (LOCK, MARKER) or (p.name.startswith(f".{MARKER}.") and p.name.endswith(".tmp"))
               for p in directory.iterdir())


def _overwrite(directory: Path, kind: str) -> DirectoryLock:
    if not is_marked(directory):
        raise RunDirError(f"--overwrite: {directory} was not created by nassearch (it has no {MARKER} marker), so "
                          "it is not deleted; remove it yourself or choose another output.dir / name")
    lock = DirectoryLock(directory).acquire()
    if not is_marked(directory):  # emptied by the writer whose lock we waited for
        lock.release()
        raise RunDirError(f"--overwrite: {directory} changed while waiting for its lock; try again")
    for entry in directory.iterdir():
        if entry.name == LOCK:
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError as exc:
            lock.release()
            raise RunDirError(f"--overwrite: cannot delete {entry}: {exc.strerror or exc}") from None
    _mark(directory, kind)
    return lock


def open_existing(directory: Path, kind: str, required: str) -> DirectoryLock:
    """Lock an existing output directory to continue it (marking one written before markers existed);
    it must hold the file ``required`` (e.g. its config.yaml), else nothing is written there."""
    if not directory.is_dir():
        raise RunDirError(f"{directory}: no such directory" if not directory.exists()
                          else f"{directory} is not a directory")
    if not (directory / required).is_file():
        raise RunDirError(f"{directory} is not a nassearch {kind} directory (no {required})")
    lock = DirectoryLock(directory).acquire()
    if not is_marked(directory):
        _mark(directory, kind)
    return lock


def open_or_create(directory: Path, kind: str, overwrite: bool) -> DirectoryLock:
    """Lock a resumable output directory (a benchmark's): continue it when it exists, else create it;
    ``overwrite`` empties an existing one first (only if nassearch made it)."""
    if overwrite or not directory.exists() or (directory.is_dir() and _unfinished(directory)):
        return create(directory, kind, overwrite, "rerun without --overwrite to continue it")
    return open_existing(directory, kind, "config.yaml")
