"""Output folders: checked before any work starts, and used by one run at a time (a lock file).

Nothing here imports torch.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path

__all__ = ["LOCK_NAME", "OutputFolderError", "check_writable", "locked_folder"]

#: Name of the lock file that :func:`locked_folder` keeps in an output folder while a run uses it.
LOCK_NAME = ".renyi-prune.lock"


class OutputFolderError(OSError):
    """An output folder cannot be used: a parent is a file, it is not writable, or another run holds it.

    A start-up problem: the CLI reports it like a bad argument (exit code 2).
    """

    __module__ = "renyi_prune._io"  # its public home: tracebacks and pickles name the re-export


def check_writable(folder: str | os.PathLike[str]) -> None:
    """Raise :class:`OutputFolderError` unless files can be created in ``folder``, or, while it does not exist
    yet, in its nearest existing parent (which must be a folder). Creates nothing that stays.

    Example:
        >>> import tempfile
        >>> check_writable(Path(tempfile.mkdtemp()) / "new" / "run")  # created later, by the run
        >>> check_writable(Path(__file__) / "run")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        renyi_prune._io.OutputFolderError: cannot create the output folder ...: ... is a file, not a folder
    """
    folder = Path(folder)
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise OutputFolderError(
            f"cannot create the output folder {folder}: {existing} is a file, not a folder"
        )
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=existing)
    except OSError as err:
        raise OutputFolderError(f"cannot write in {existing}: {err.strerror or err}") from None
    os.close(fd)
    os.unlink(probe)


def _make_folder(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; returns those it created, deepest first."""
    created = []
    for p in (folder, *folder.parents):
        if p.exists():
            break
        created.append(p)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputFolderError(f"cannot create the output folder {folder}: {err.strerror or err}") from None
    return created


def _remove_empty(folders: list[Path]) -> None:
    """Remove each of ``folders`` (deepest first) while it is empty."""
    for p in folders:
        try:
            p.rmdir()
        except OSError:
            return


def _pid_alive(pid: int) -> bool:
    if os.name != "posix":
        return True  # no cheap, harmless check: assume it is (the message says how to remove the lock)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _holder(text: str) -> tuple[str, bool]:
    """(who holds a lock, in words; whether it is stale: its process is gone from this host)."""
    try:
        info = json.loads(text)
        pid, host = int(info["pid"]), str(info["host"])
        who = f"{info.get('command', 'a run')} (pid {pid} on {host}, started {info.get('started', '?')})"
    except (ValueError, KeyError, TypeError):
        return "an unknown run (unreadable lock)", False
    return who, host == socket.gethostname() and not _pid_alive(pid)


def _try_lock(lock: Path, text: str) -> bool:
    """Create ``lock`` holding ``text`` if it does not exist (atomically: O_CREAT | O_EXCL)."""
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    except OSError as err:
        raise OutputFolderError(f"cannot write in {lock.parent}: {err.strerror or err}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    return True


def _take_over(lock: Path, seen: str) -> None:
    """Remove the stale ``lock`` if it still holds ``seen`` (another process may have taken it over since)."""
    grave = lock.with_name(f"{lock.name}.stale.{os.getpid()}")
    try:
        os.rename(lock, grave)
    except FileNotFoundError:
        return
    if grave.read_text(encoding="utf-8") != seen:  # not the lock judged stale: put it back
        with suppress(FileExistsError):
            os.link(grave, lock)
    grave.unlink()


def _acquire(lock: Path, text: str) -> None:
    for _ in range(5):
        if _try_lock(lock, text):
            return
        try:
            seen = lock.read_text(encoding="utf-8")
        except FileNotFoundError:  # released meanwhile
            continue
        who, stale = _holder(seen)
        if not stale:
            raise OutputFolderError(
                f"output folder {lock.parent} is in use by {who}; wait for it to end or choose another "
                f"output folder (if that run is no longer alive, delete {lock})"
            )
        warnings.warn(f"taking over the stale lock {lock} of {who}: no such process", RuntimeWarning, 4)
        _take_over(lock, seen)
    raise OutputFolderError(f"output folder {lock.parent}: could not take its lock {lock}; try again")


@contextmanager
def locked_folder(folder: str | os.PathLike[str], command: str) -> Iterator[Path]:
    """Use ``folder`` as this run's output folder: create it, and hold its lock file :data:`LOCK_NAME` for the
    duration of the ``with`` block, so that no other run writes into it meanwhile.

    The lock is created atomically (``O_CREAT | O_EXCL``) and holds ``command``, the process id, the host
    name and the start time. A lock whose process no longer runs on this host is stale: it is taken over with
    a :class:`RuntimeWarning`. On leaving the block (normally, by an exception or by Ctrl-C) the lock is
    removed, and so are the folders this call created if they are empty (a run that failed before writing
    anything leaves no empty folder).

    Raises:
        OutputFolderError: a parent of ``folder`` is a file, it cannot be written, or another run holds it
            (the message names the folder, that run and its lock file).

    Example:
        >>> import tempfile
        >>> out = Path(tempfile.mkdtemp()) / "run"
        >>> with locked_folder(out, "renyi-prune train") as folder:
        ...     (folder / LOCK_NAME).is_file(), json.loads((folder / LOCK_NAME).read_text())["command"]
        (True, 'renyi-prune train')
        >>> out.exists()  # nothing was written in it: removed again
        False
    """
    folder = Path(folder)
    check_writable(folder)
    created = _make_folder(folder)
    lock = folder / LOCK_NAME
    info = {
        "command": command,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds"),
    }
    text = json.dumps(info) + "\n"
    try:
        _acquire(lock, text)
    except BaseException:
        _remove_empty(created)
        raise
    try:
        yield folder
    finally:
        with suppress(OSError):
            if lock.read_text(encoding="utf-8") == text:  # still ours
                lock.unlink()
        _remove_empty(created)
