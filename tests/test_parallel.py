"""engine/parallel.py: items in forked processes, results in order, progress forwarded, and a process that dies
or fails ends the run in one line rather than a hang."""

from __future__ import annotations

import os
import signal

import pytest

from isasim.engine.parallel import can_fork, run_forked
from isasim.isa.errors import UserError

pytestmark = pytest.mark.skipif(not can_fork(), reason="processes start as forks only where fork exists")


def square(x, progress):
    progress("squaring", x, 3)
    return x * x, os.getpid()


def test_results_come_back_in_order_each_from_its_own_process():
    seen = []
    out = run_forked(square, [1, 2, 3], 2, lambda *update: seen.append(update))
    assert [r[0][0] for r in out] == [1, 4, 9]
    assert len({r[0][1] for r in out} | {os.getpid()}) == 4  # three processes, none of them this one
    assert all(seconds >= 0 and rss > 0 for _, seconds, rss in out)
    assert sorted(seen) == [("squaring", 1, 3), ("squaring", 2, 3), ("squaring", 3, 3)]


def killed(x, progress):
    if x == 2:
        os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's OOM killer does
    return x


def test_a_process_that_dies_ends_the_run_in_one_line():
    with pytest.raises(UserError, match="the process for checking b died") as e:
        run_forked(killed, [1, 2, 3], 2, names=["checking a", "checking b", "checking c"])
    assert "\n" not in str(e.value) and "--jobs 1" in str(e.value)


def failing(x, progress):
    if x == 3:
        raise UserError("three is refused")
    return x


def test_an_error_in_a_process_is_raised_here():
    with pytest.raises(UserError, match="three is refused"):
        run_forked(failing, [1, 2, 3], 3)
