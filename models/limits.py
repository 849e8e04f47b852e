"""The ranges of the numbers a user gives (seeds, tolerances), checked before any work; light enough for the
command line to use before it imports torch."""

from __future__ import annotations

import math

from isasim.isa.errors import UserError

MAX_SEED = 2**63 - 1  # torch's and numpy's generators take any seed in 0 .. 2**63 - 1


def check_seed(seed: int) -> None:
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise UserError(f"--seed {seed} is out of range: use 0 .. 2**63 - 1")


def check_finite(name: str, value: float, low: float, inclusive: bool) -> None:
    """`value` must be a finite number above `low` (or at it, when inclusive)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and \
        (value > low or (inclusive and value == low))
    if not ok:
        raise UserError(f"{name} {value} is out of range: use a finite number {'>=' if inclusive else '>'} {low:g}")
