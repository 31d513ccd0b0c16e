"""Files: output that never leaves a partial file looking complete, one run per output folder (a lock),
and input weights files whose problems are named (empty, truncated, holding more than tensors).

Nothing here imports torch or timm until a weights file is read, so the CLI can import it cheaply.
"""

from __future__ import annotations

import json
import math
import os
import socket
import tempfile
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

__all__ = [
    "LOCK_NAME",
    "BadFileError",
    "OutputFolderError",
    "atomic_open",
    "atomic_write_bytes",
    "check_weights_file",
    "check_writable",
    "jsonable",
    "locked_folder",
    "read_state_dict",
    "unreadable_weights",
    "write_json",
]

#: Name of the lock file that :func:`locked_folder` keeps in an output folder while a run uses it.
LOCK_NAME = ".renyi-prune.lock"


class OutputFolderError(OSError):
    """An output folder cannot be used: a parent is a file, it is not writable, or another run holds it.

    A start-up problem: the CLI reports it like a bad argument (exit code 2).
    """


class BadFileError(ValueError):
    """An input file that exists but cannot be used: empty, truncated or corrupt, or holding Python objects
    that are not loaded for safety. The message names the file and says which.

    A start-up problem: the CLI reports it like a bad argument (exit code 2).
    """


@contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb", **kwargs) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success fsync it and :func:`os.replace` it onto ``path``.

    On any exception the temporary file is deleted and ``path`` keeps its old content (or stays absent).
    Parent folders are created. ``mode`` is ``"wb"`` or ``"w"``; ``kwargs`` go to :func:`os.fdopen`
    (e.g. ``newline=""`` for CSV). The file gets mode 0644 (mkstemp's default is 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path) as fh:
        fh.write(data)


def jsonable(value: Any, nan: Any = "nan") -> Any:
    """A strict-JSON copy of ``value``: ±inf → ``"inf"``/``"-inf"``, NaN → ``nan``, paths → str, tuples →
    lists, torch dtypes → their name (``"bfloat16"``); dict keys become strings.

    Example:
        >>> jsonable({"alpha": float("inf"), "loss": float("nan"), "blocks": (3, 6), 1: Path("a/b")})
        {'alpha': 'inf', 'loss': 'nan', 'blocks': [3, 6], '1': 'a/b'}
    """
    if isinstance(value, float) and not math.isfinite(value):
        return nan if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): jsonable(v, nan) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, nan) for v in value]
    if isinstance(value, Path):
        return str(value)
    if type(value).__module__ == "torch" and type(value).__name__ == "dtype":
        return str(value).removeprefix("torch.")
    return value


def write_json(path: str | os.PathLike[str], obj: Any, nan: Any = "nan") -> None:
    """Write :func:`jsonable` ``obj`` to ``path`` as indented UTF-8 JSON with a final newline, atomically."""
    with atomic_open(path, "w", encoding="utf-8") as fh:
        json.dump(jsonable(obj, nan), fh, indent=2, allow_nan=False)
        fh.write("\n")


# --------------------------------------------------------------------------------------------------------
# Output folders: checked before any work, one run at a time
# --------------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------------
# Weights files: what is wrong with one that cannot be read
# --------------------------------------------------------------------------------------------------------


def check_weights_file(path: str | os.PathLike[str]) -> None:
    """Raise :class:`BadFileError` if ``path`` is empty, or a ``torch.save`` zip archive cut short (an
    interrupted write or copy); any other file passes (its loader says what else may be wrong).

    Example:
        >>> import tempfile
        >>> empty = Path(tempfile.mkdtemp()) / "empty.pth"
        >>> empty.touch()
        >>> check_weights_file(empty)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        renyi_prune._io.BadFileError: empty file (0 bytes): .../empty.pth
    """
    path = Path(path)
    if path.stat().st_size == 0:
        raise BadFileError(f"empty file (0 bytes): {path}")
    with open(path, "rb") as fh:
        is_zip_start = fh.read(4) == b"PK\x03\x04"
    if is_zip_start and not zipfile.is_zipfile(path):
        raise BadFileError(
            f"corrupt or truncated file: {path} (a zip archive without its end: the write or copy that made "
            "it did not finish)"
        )


def _unsafe_globals(path: Path) -> list[str]:
    import torch

    find = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    if find is None or not zipfile.is_zipfile(path):
        return []
    try:
        return list(find(str(path)))
    except Exception:
        return []


def unreadable_weights(path: str | os.PathLike[str], err: BaseException) -> BadFileError:
    """The :class:`BadFileError` to raise when loading the weights file ``path`` failed with ``err``.

    A file that holds Python objects besides tensors, which ``torch.load`` refuses to unpickle by default,
    gets advice the user can follow instead of torch's own (an option of ``torch.load``, which no command of
    this package has).
    """
    path = Path(path)
    if "weights_only" not in str(err):
        reason = " ".join(str(err).split()) or type(err).__name__
        return BadFileError(f"cannot read weights from {path}: {reason}")
    names = _unsafe_globals(path)
    what = f" ({', '.join(names)})" if names else ""
    return BadFileError(
        f"{path} holds Python objects besides tensors{what}, which are not loaded since unpickling them can "
        "run arbitrary code. If you trust the file, load it in Python with torch.load (weights only switched "
        "off) and torch.save just its state dict (the dict of tensors) to a new file to pass here"
    )


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The state dict in a weights file: :func:`timm.models.load_state_dict` (a state dict, one under
    ``"state_dict"`` / ``"model"`` / EMA keys, or ``.safetensors``), tensors only, on the CPU.

    Raises:
        BadFileError: the file is empty, truncated or corrupt, or holds Python objects besides tensors
            (:func:`check_weights_file`, :func:`unreadable_weights`).
    """
    from timm.models import load_state_dict

    check_weights_file(path)
    try:
        return load_state_dict(str(path))
    except Exception as err:
        raise unreadable_weights(path, err) from err
