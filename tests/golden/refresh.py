"""Rewrite the golden trace reports after an intended change of the cost model; review them as a diff.

    .venv/bin/python tests/golden/refresh.py && git diff tests/golden
"""

import json
import sys
from pathlib import Path

HERE = Path(__file__).parent
CASES = {"minilm_seq8": ["trace", "minilm", "--seq", "8", "--format", "json"]}


def golden(argv: list[str]) -> dict:
    """The parts of a trace report that must not change unnoticed: per target and op, counts and cycles."""
    import contextlib
    import io

    from isasim.cli.main import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        if main(argv) != 0:
            raise SystemExit(f"isasim {' '.join(argv)} failed")
    report = json.loads(buf.getvalue())
    return {"flops": report["flops"], "targets": [
        {"target": t["target"], "uarch": t["uarch"], "instructions": t["instructions"],
         "cycles": round(t["cycles"], 3), "bytes": t["bytes"],
         "ops": {o["name"]: [o["instructions"], round(o["cycles"], 3), o["bound"]] for o in t["ops"]}}
        for t in report["targets"]]}


if __name__ == "__main__":
    for name, argv in CASES.items():
        (HERE / f"{name}.json").write_text(json.dumps(golden(argv), indent=1, sort_keys=True) + "\n")
        print(f"wrote {name}.json", file=sys.stderr)
