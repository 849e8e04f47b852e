"""Writing what the command line produces without harming what was there: a report, a trace, a plot.

A file is written to a temporary file in the same folder and renamed over its target only once complete, so
a full disk or an interrupt leaves the old file as it was (and no temporary file behind). Paths are checked
before the work starts, so a bad one costs nothing.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from isasim.isa.errors import UserError

PLOT_FORMATS = (".png", ".pdf", ".svg")


def check_writable(path: Path, flag: str) -> None:
    """Refuse, before any work, a path that cannot become a regular file: a folder, a device or a FIFO, or one
    in a folder that does not exist."""
    if path.exists() and not path.is_file():
        raise UserError(f"{flag} {path}: not a regular file (a folder, device or pipe): give a file path")
    if not path.parent.is_dir():
        raise UserError(f"{flag} {path}: the folder {path.parent} does not exist: create it or choose another")


def check_plot(path: Path) -> None:
    check_writable(path, "--plot")
    if path.suffix.lower() not in PLOT_FORMATS:
        raise UserError(f"--plot {path}: the file name must end in {', '.join(PLOT_FORMATS)} (the image format)")


@contextmanager
def replacing(path: Path, mode: str = "w") -> Iterator[IO]:
    """A file to write `path`'s new content into; it replaces `path` only when the block completes."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    with replacing(path) as f:
        f.write(text)
