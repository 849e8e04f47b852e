"""A sweep's output file: a tidy table (CSV, or JSON lines) that rows are appended to as points finish.

The file is the sweep's memory. A point whose row is in it is not run again, so a killed sweep, rerun with the
same output, runs only what is missing. Each row is written whole and flushed before the next: a kill leaves at
most one row cut short at the end, which is dropped when the file is opened again (its point runs again).
A row that records a failure (its `error` column set) also counts as done, so a deterministic failure is not
retried on every rerun; `drop_failed` removes those rows. Nothing is written before the first new row, so a
sweep refused after reading the file leaves it as it was (rows dropped go when the first new one is written).
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import IO

from isasim.isa.errors import UserError

FORMATS = ("csv", "jsonl")


def format_of(path: Path, given: str | None) -> str:
    """The file's format: as given, else by its suffix (.jsonl or .json: JSON lines; anything else: CSV)."""
    if given:
        if given not in FORMATS:
            raise UserError(f"--format {given!r} is unknown: choose one of {', '.join(FORMATS)}")
        return given
    return "jsonl" if path.suffix.lower() in (".jsonl", ".json") else "csv"


class ResultFile:
    """Rows already in `path` (read once), and `append` for new ones. `columns` is the table's header, and
    `key` the columns that name a point."""

    def __init__(self, path: Path, fmt: str, columns: tuple[str, ...], key: tuple[str, ...]):
        self.path, self.fmt, self.columns, self.key = path, fmt, columns, key
        if path.exists() and not path.is_file():
            raise UserError(f"-o {path}: not a regular file (a folder, device or pipe): give a file path")
        if not path.parent.is_dir():
            raise UserError(f"-o {path}: the folder {path.parent} does not exist: create it or choose another")
        self._whole: int | None = None  # bytes of whole rows, where a row cut short follows them
        self._dropped = False  # rows were dropped: the file is rewritten before the first new row
        self.rows = self._read()  # (nothing is written until the first row: a refused sweep leaves the file)
        self._file: IO | None = None

    def drop_failed(self) -> None:
        """Forget the rows that record a failure, so their points run again (the file loses them when the
        first new row is written: a sweep refused before that leaves the file as it was)."""
        if any(r.get("error") for r in self.rows):
            self.rows = [r for r in self.rows if not r.get("error")]
            self._dropped = True

    def done(self) -> set[tuple[str, ...]]:
        """The keys of the points that have a row, as strings (what a CSV gives back)."""
        return {self.key_of(r) for r in self.rows}

    def key_of(self, row: dict) -> tuple[str, ...]:
        return tuple(str(row[c]) for c in self.key)

    def append(self, row: dict) -> None:
        if self._file is None:
            if self._dropped:
                self._rewrite()
            if self._whole is not None:  # the row a kill cut short goes; its point is running again
                with open(self.path, "r+b") as f:
                    f.truncate(self._whole)
                self._whole = None
            new = not self.path.exists() or self.path.stat().st_size == 0
            self._file = open(self.path, "a", newline="", encoding="utf-8")
            if new and self.fmt == "csv":
                self._file.write(_csv_line(self.columns, {c: c for c in self.columns}))
        line = _csv_line(self.columns, row) if self.fmt == "csv" else json.dumps(
            {c: row.get(c) for c in self.columns}) + "\n"
        self._file.write(line)
        self._file.flush()  # whole rows reach the OS at once: a kill loses no finished row
        self.rows.append(row)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _read(self) -> list[dict]:
        if not self.path.exists():
            return []
        data = self.path.read_bytes()  # (bytes: the cut below must fall where it falls in the file, \r\n or not)
        if data and not data.endswith(b"\n"):  # a row cut short by a kill: its point runs again
            data = data[:data.rfind(b"\n") + 1]
            self._whole = len(data)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise UserError(f"-o {self.path} is not a text table: choose a new file name") from None
        return self._parse(text)

    def _parse(self, text: str) -> list[dict]:
        if not text:
            return []
        if self.fmt == "csv":
            reader = csv.DictReader(io.StringIO(text))
            if tuple(reader.fieldnames or ()) != self.columns:
                raise UserError(f"-o {self.path} has other columns than a sweep writes (it is not this "
                                f"version's sweep table): choose a new file name or delete it")
            return [dict(r) for r in reader]
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                raise UserError(f"-o {self.path}: line {n} is not JSON: choose a new file name or delete it") \
                    from None
            if not isinstance(row, dict) or set(row) != set(self.columns):
                raise UserError(f"-o {self.path}: line {n} is not a row of a sweep table: choose a new file "
                                f"name or delete it")
            rows.append({c: "" if row[c] is None else row[c] for c in self.columns})
        return rows

    def _rewrite(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            if self.fmt == "csv":
                f.write(_csv_line(self.columns, {c: c for c in self.columns}))
                f.writelines(_csv_line(self.columns, r) for r in self.rows)
            else:
                f.writelines(json.dumps({c: r.get(c) for c in self.columns}) + "\n" for r in self.rows)
        os.replace(tmp, self.path)
        self._whole = None
        self._dropped = False


def _csv_line(columns: tuple[str, ...], row: dict) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(["" if row.get(c) is None else row.get(c) for c in columns])
    return buf.getvalue()
