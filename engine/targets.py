"""Which targets, on which machines: a report's columns."""

from __future__ import annotations

from typing import Callable

from isasim.backends import load_machine, machine_names
from isasim.isa.errors import UserError
from isasim.isa.hardware import Machine
from isasim.isa.targets import ALL_TARGETS, Target, get_any_target

Progress = Callable[[str, int, int], None]  # (what, done, total): long work reports through one of these


def _pairs(names: list[str] | None, machines: list[str] | None) -> tuple[list[tuple[Target, Machine]], list[str]]:
    """(each requested target with its machine, a note per unnamed target its chosen core cannot run)."""
    targets = [get_any_target(n) for n in (names or list(ALL_TARGETS))]
    chosen = [load_machine(u) for u in (machines or [])]
    for u in chosen:
        if not any(t.isa == u.isa for t in targets):
            raise UserError(f"--uarch {u.name} is an {u.isa} core, but no {u.isa} target was chosen: "
                            f"add --target for it or drop --uarch {u.name}")
    out, notes = [], []
    for t in targets:
        match = [u for u in chosen if u.isa == t.isa]
        machine = match[0] if match else load_machine(t.default_uarch)
        if machine.name not in machine_names(t):
            lacks = ", ".join(machine.lacks(t.host_features))
            if names:
                raise UserError(f"--uarch {machine.name} lacks {lacks}, which target {t.name} needs: choose "
                                f"another core ({', '.join(machine_names(t))}) or another target")
            notes.append(f"target {t.name} left out: --uarch {machine.name} lacks {lacks}")
            continue
        out.append((t, machine))
    return out, notes


def pick_targets(names: list[str] | None, machines: list[str] | None) -> list[tuple[Target, Machine]]:
    """Each requested target (default: all) with its machine: the first of `machines` of its ISA, else its
    default one. A core that lacks a named target's extensions is refused; unnamed targets it cannot run (the
    AVX-512 target on Zen 3) are left out."""
    return _pairs(names, machines)[0]


def left_out(machines: list[str] | None) -> list[str]:
    """What `pick_targets(None, machines)` leaves out, and why: a sentence per target whose chosen core lacks its
    extensions (for a note to the user, who asked for every target)."""
    return _pairs(None, machines)[1]


def every_pair() -> list[tuple[Target, Machine]]:
    """Every target on every machine its timing can come from: what `compare` tabulates."""
    return [(t, load_machine(m)) for t in ALL_TARGETS.values() for m in machine_names(t)]
