"""docs/tour.md is made from real output: every block in it is (part of) what the command above it prints
today, its exercises run, and it links every term of docs/glossary.md. A cost-model change that is not
followed by `docs/make_tour.py` fails here."""

import contextlib
import io
import json
import re
import shlex
import sys
from pathlib import Path

from isasim.cli.main import main

DOCS = Path(__file__).parent.parent / "docs"
TOUR = DOCS / "tour.md"


def blocks() -> list[tuple[list[str], str, str]]:
    """(argv, language, text) for every command-and-block pair in the tour."""
    pat = re.compile(r"`isasim ([^`]+)`\n\n```(\w*)\n(.*?)\n```", re.S)
    return [(shlex.split(cmd), lang, text) for cmd, lang, text in pat.findall(TOUR.read_text())]


def output(argv: list[str]) -> str:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(argv) == 0
    return buf.getvalue()


def contains(big, small) -> bool:
    """Whether `big` has every key of `small` with the same values (lists: element by element)."""
    if isinstance(small, dict):
        return isinstance(big, dict) and all(k in big and contains(big[k], v) for k, v in small.items())
    if isinstance(small, list):
        return isinstance(big, list) and len(big) == len(small) and all(map(contains, big, small))
    return big == small


def test_every_block_is_what_its_command_prints(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")  # as docs/make_tour.py renders them
    found = blocks()
    assert len(found) >= 5
    for argv, lang, text in found:
        out = output(argv)
        if lang == "json":  # a report (check), or a list of them (explain): the block shows part of one
            got = json.loads(out)
            assert any(contains(r, json.loads(text)) for r in (got if isinstance(got, list) else [got])), argv
        else:
            lines = {ln.rstrip() for ln in out.splitlines()}
            shown = [ln for ln in text.splitlines() if ln.strip() and ln.strip() != "⋮"  # an elision mark
                     and not (lang == "asm" and ln.startswith("#"))]  # the tour's comments on a listing
            missing = [ln for ln in shown if ln.rstrip() not in lines and ln.strip() not in out]
            assert not missing, f"isasim {' '.join(argv)}: {missing[:3]}"


def test_the_tour_links_every_term_of_the_glossary():
    sys.path.insert(0, str(DOCS))
    from make_tour import anchor  # the anchor GitHub gives a heading, as the tour writes its links

    headings = re.findall(r"^### (.+)$", (DOCS / "glossary.md").read_text(), re.M)
    assert len(headings) >= 30
    tour = TOUR.read_text()
    unlinked = [h for h in headings if f"glossary.md#{anchor(h)}" not in tour]
    assert not unlinked, unlinked


def test_the_exercises_run():
    section = TOUR.read_text().split("## 10. Exercises", 1)[1]
    commands = re.findall(r"^\d+\. `isasim ([^`]+)`", section, re.M)
    assert len(commands) >= 5
    for cmd in commands:
        output(shlex.split(cmd))
