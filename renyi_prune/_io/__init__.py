"""Files: output that never leaves a partial file looking complete (:mod:`.atomic`), one run per output
folder (a lock, :mod:`.folders`), and input weights files whose problems are named (empty, truncated,
holding more than tensors, :mod:`.weights`).

Nothing here imports torch or timm until a weights file is read, so the CLI can import it cheaply.
"""

from __future__ import annotations

import os  # noqa: F401  (tests patch ``_io.os.replace``: the one ``os`` module every submodule uses)

from .atomic import atomic_open, atomic_write_bytes, jsonable, write_json
from .folders import LOCK_NAME, OutputFolderError, check_writable, locked_folder
from .weights import BadFileError, check_weights_file, read_state_dict, unreadable_weights

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
