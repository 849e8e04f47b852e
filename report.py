"""What every report isasim returns can become: plain data for JSON (`to_dict`) and a table (`to_pandas`).

A report is a dataclass. `to_dict` turns it, recursively, into dicts, lists, strings and numbers; a bound
(isa/hardware.py `Bound`) becomes its label ("port p01", "pipe lsu"), as every JSON output shows it.
`to_pandas` lays the report's `records()` out as a DataFrame, when pandas is installed (`pip install
'isasim[pandas]'`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from isasim.isa.errors import UserError
from isasim.isa.hardware import Bound


def plain(value: Any) -> Any:
    """`value` as JSON-ready data: dataclasses as dicts (fields in order, less a report's `internal` ones),
    tuples as lists, bounds by label."""
    if isinstance(value, Bound):
        return value.label
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        skip = getattr(value, "internal", ())
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.name not in skip}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


class Report:
    """Mixed into the report dataclasses (engine/, backends/*_explain.py)."""

    internal: tuple[str, ...] = ()  # fields for other renderings only (a Chrome trace's events), not for to_dict

    def to_dict(self) -> dict:
        return plain(self)

    def records(self) -> list[dict]:
        """The report as table rows, one dict each (what `to_pandas` lays out)."""
        raise NotImplementedError

    def to_pandas(self):
        try:
            import pandas
        except ImportError:
            raise UserError("to_pandas needs pandas: pip install 'isasim[pandas]' (or pandas)") from None
        return pandas.DataFrame(self.records())


@dataclass
class ModelReport(Report):
    """A report on one model at one input shape (its fields come first in every such report)."""

    model: str
    seq: int
    batch: int
