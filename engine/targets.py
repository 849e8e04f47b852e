"""Which targets, on which machines: a report's columns."""

from __future__ import annotations

from typing import Callable

from isasim.backends import load_machine, machine_names
from isasim.isa.errors import UserError
from isasim.isa.hardware import Machine
from isasim.isa.targets import ALL_TARGETS, Target, get_any_target

Progress = Callable[[str, int, int], None]  # (what, done, total): long work reports through one of these


def machines_for(targets: list[Target], names: list[str] | None) -> list[Machine]:
    """The --uarch machines, each refused unless one of `targets` runs its instruction set."""
    chosen = [load_machine(u) for u in (names or [])]
    for u in chosen:
        if not any(t.isa == u.isa for t in targets):
            raise UserError(f"--uarch {u.name} is an {u.isa} core, but no {u.isa} target was chosen: "
                            f"add --target for it or drop --uarch {u.name}")
    return chosen


def _pairs(names: list[str] | None, machines: list[str] | None, precision: str = "fp32"
           ) -> tuple[list[tuple[Target, Machine]], list[str]]:
    """(each requested target with its machine, a note per unnamed target its chosen core cannot run)."""
    targets = [get_any_target(n) for n in (names or list(ALL_TARGETS))]
    chosen = machines_for(targets, machines)
    out, notes = [], []
    for t in targets:
        if precision == "fp32" and not t.fp32:  # amx: int8 and bf16 only; named, it is refused
            if names:
                t.features(precision)
            continue
        try:
            usable = machine_names(t, precision)
        except UserError as e:  # a target without this precision's lowering
            if names:
                raise
            notes.append(f"target {t.name} left out: {str(e).split(':')[0]}")
            continue
        match = [u for u in chosen if u.isa == t.isa]
        if match:
            machine = match[0]
        else:  # the target's own core, unless it lacks what this precision needs (int8 AVX-512 without VNNI)
            machine = load_machine(t.default_uarch if t.default_uarch in usable or not usable else usable[0])
        if machine.name not in usable:
            lacks = ", ".join(machine.lacks(t.features(precision)))
            what = f"target {t.name}" + ("" if precision == "fp32" else f" in {precision}")
            if names:
                raise UserError(f"--uarch {machine.name} lacks {lacks}, which {what} needs: choose another core "
                                f"({', '.join(usable) or 'none is described'}) or another target")
            notes.append(f"{what} left out: --uarch {machine.name} lacks {lacks}")
            continue
        out.append((t, machine))
    return out, notes


def pick_targets(names: list[str] | None, machines: list[str] | None, precision: str = "fp32"
                 ) -> list[tuple[Target, Machine]]:
    """Each requested target (default: all) with its machine: the first of `machines` of its ISA, else its
    default one (or, where that core lacks an extension `precision` needs, the first described core that has
    it). A core that lacks a named target's extensions is refused; unnamed targets it cannot run (the AVX-512
    target on Zen 3, the SIMT target in int8) are left out."""
    return _pairs(names, machines, precision)[0]


def left_out(machines: list[str] | None, precision: str = "fp32") -> list[str]:
    """What `pick_targets(None, machines, precision)` leaves out, and why: a sentence per target (for a note
    to the user, who asked for every target)."""
    return _pairs(None, machines, precision)[1]


def every_pair(precision: str = "fp32") -> list[tuple[Target, Machine]]:
    """Every target on every machine its timing can come from: what `compare` tabulates (in int8: the targets
    and cores that have an int8 lowering and the extensions it needs)."""
    pairs = []
    for t in ALL_TARGETS.values():
        try:
            pairs += [(t, load_machine(m)) for m in machine_names(t, precision)]
        except UserError:
            continue
    return pairs
