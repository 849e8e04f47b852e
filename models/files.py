"""Reading files a user points at (a model folder's config.json, its weights): only regular files, and only
sizes that make sense, checked before a byte is read, so a FIFO, a device or a link to /dev/zero is refused in
one line instead of hanging or filling memory."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from isasim.isa.errors import UserError

MAX_CONFIG_BYTES = 1 << 20  # a BERT config.json is about 1 KB


def is_special(path: Path) -> bool:
    """Whether something that is not a regular file (after links) sits at `path`: a FIFO, device or socket."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def read_small(path: Path, limit: int = MAX_CONFIG_BYTES) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; UserError for anything else."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise UserError(f"cannot read '{path}': {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise UserError(f"'{path}' is not a regular file (a folder, FIFO or device): give a real file")
    if st.st_size > limit:
        raise UserError(f"'{path}' is {st.st_size:,} bytes, more than the {limit:,} such a file can need: "
                        "check the path")
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise UserError(f"'{path}' grew past {limit:,} bytes while being read: check the path")
    return data
