"""Reading the machine descriptions (isa/uarch/*.toml for CPU cores, isa/gpu/*.toml for GPUs): every value
checked as it is read, every file found by its name. A malformed file is a bug in the data, not user input:
it raises MachineFileError."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

from isasim.isa.errors import UserError

T = TypeVar("T")


class MachineFileError(ValueError):
    """A description file in isa/uarch/ or isa/gpu/ is malformed."""


def required(table: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in table:
        raise MachineFileError(f"{where}: missing {key!r}")
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise MachineFileError(f"{where}: {key!r} must be {kind}, got {value!r}")
    return value


def positive(value: float, key: str, where: str) -> float:
    if value <= 0:
        raise MachineFileError(f"{where}: {key!r} must be positive, got {value!r}")
    return float(value)


def nonnegative(value: float, key: str, where: str) -> float:
    if value < 0:
        raise MachineFileError(f"{where}: {key!r} must not be negative, got {value!r}")
    return float(value)


def text(table: Mapping[str, Any], key: str, where: str) -> str:
    """A non-empty string: a name, a description, or the source of a number."""
    value = required(table, key, str, where).strip()
    if not value:
        raise MachineFileError(f"{where}: empty {key!r}")
    return value


def based(data: Mapping[str, Any], where: str, folder: Path) -> Mapping[str, Any]:
    """A description that names another of `folder` in `based_on` (the H200 is the H100 with other memory;
    Zen 5 is Zen 4 with full-width 512-bit pipes) holds only what differs: its keys replace the base's (a
    list such as `levels` whole), its instructions are added to the base's, its sources follow them."""
    base_name = data.get("based_on")
    if base_name is None:
        return data
    path = files(folder).get(base_name) if isinstance(base_name, str) else None
    if path is None:
        raise MachineFileError(f"{where}: based_on {base_name!r} names no file in isa/{folder.name}/")
    with path.open("rb") as fh:
        base = based(tomllib.load(fh), path.name, folder)
    return {**base, **{k: v for k, v in data.items() if k != "based_on"},
            "instructions": {**base["instructions"], **data.get("instructions", {})},
            "sources": list(base["sources"]) + list(data.get("sources", []))}


def files(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.glob("*.toml"))}


def load(folder: Path, name: str, what: str, parse: Callable[[Mapping[str, Any], str], T]) -> T:
    """The description called `name` (a file stem in `folder`), parsed; `what` names the kind in errors."""
    found = files(folder)
    if name not in found:
        raise UserError(f"unknown {what} {name!r}: choose one of {', '.join(found)}")
    with found[name].open("rb") as fh:
        machine = parse(tomllib.load(fh), found[name].name)
    if machine.name != name:
        raise MachineFileError(f"{found[name].name}: name {machine.name!r} does not match the file name")
    return machine
