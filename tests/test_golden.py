"""Golden trace reports: any change in counts, cycles or bytes shows up here and as a reviewed diff
(refresh with tests/golden/refresh.py)."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "golden"))
from refresh import CASES, HERE, golden  # noqa: E402


@pytest.mark.parametrize("name", list(CASES))
def test_trace_matches_golden(name):
    want = json.loads((HERE / f"{name}.json").read_text())
    got = json.loads(json.dumps(golden(CASES[name]), sort_keys=True))
    assert got["flops"] == want["flops"]
    assert [t["target"] for t in got["targets"]] == [t["target"] for t in want["targets"]]
    for g, w in zip(got["targets"], want["targets"]):
        changed = sorted(op for op in w["ops"] if g["ops"].get(op) != w["ops"][op])
        assert not changed, f"{g['target']}: {len(changed)} ops changed, e.g. {changed[:5]}; " \
                            "if intended, run tests/golden/refresh.py and review the diff"
        assert g == w
