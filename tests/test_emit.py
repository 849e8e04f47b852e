"""Emitted assembly is real: GNU as accepts every kernel, and the machine code computes, bit for bit, what
isasim's executor computes — natively on this x86-64 host, under qemu-aarch64 for AArch64."""

import json

import numpy as np
import pytest
from tiny import capture_bert

from isasim.cli.main import main
from isasim.isa.emit import emit, symbol
from isasim.isa.execute import execute
from isasim.isa.machine_state import Memory
from isasim.isa.program import walk
from isasim.isa.native import assemble, can_run, run_aarch64, run_x86_64
from isasim.isa.targets import TARGETS
from isasim.backends import backend_for
from isasim.engine.run import run_graph
from isasim.lowering.pipeline import lower_graph


RUNNERS = {"x86-64": run_x86_64, "aarch64": run_aarch64}
FLOAT32 = [n for n, t in TARGETS.items() if t.fp32]  # (amx runs int8 and bf16 only: tests/test_amx.py)


def select(kernel, target):
    return backend_for(target).select(kernel, target)


@pytest.fixture(scope="module")
def tiny_bert():
    """Every op of a BERT forward (two layers, odd sizes) with real values flowing between kernels."""
    lowered = lower_graph(capture_bert(7, hidden_size=24, num_hidden_layers=2, num_attention_heads=3,
                                       intermediate_size=40, vocab_size=60, max_position_embeddings=32).graph)
    storages = run_graph(lowered, TARGETS["x86-64"])  # every kernel's inputs, as the executor computed them
    return lowered, storages


def test_a_run_that_releases_storages_computes_the_same_and_keeps_only_what_it_was_asked_to(tiny_bert):
    """run_graph(keep=...) drops each intermediate after its last reader: the output is the same bits, only the
    kept storages come back, and while a step runs every storage its node reads or writes is still held."""
    from isasim.engine.run import last_uses

    lowered, everything = tiny_bert
    output = lowered.context.views[lowered.graph.outputs[0]].storage
    held, live = [], {}

    def on_step(step, program, events):
        needed = {b.name for b in step.kernel.buffers} if step.kernel else set()
        held.append(needed <= set(live) and len(live))

    kept = run_graph(lowered, TARGETS["x86-64"], on_step, keep=[output], live=live)
    assert all(held)
    unread = set(lowered.graph.values) - set(last_uses(lowered))  # (graph values no kernel reads stay as given)
    assert output in kept and set(kept) - {output} <= unread
    assert kept[output].tobytes() == everything[output].tobytes()
    assert max(held) < len(set(everything) | set(last_uses(lowered)))  # never all at once


def _runner(target: str):
    t = TARGETS[target]
    if not can_run(t.isa, t.host_features):
        return None
    return RUNNERS[t.isa]


@pytest.mark.parametrize("target", FLOAT32)
def test_every_kernel_assembles(target, tiny_bert):
    t = TARGETS[target]
    for kernel in tiny_bert[0].kernels:
        program = select(kernel, t)
        assemble(t.isa, emit(program, t), program.name)


@pytest.mark.parametrize("target", FLOAT32)
def test_every_kernel_runs_natively_bit_identical_to_the_executor(target, tiny_bert):
    lowered, storages = tiny_bert
    t = TARGETS[target]
    run = _runner(target)
    if run is None:
        pytest.skip(f"this host runs {target} code neither natively nor under qemu (needs {t.host_features})")
    checked = 0
    for kernel in lowered.kernels:
        program = select(kernel, t)
        mem = Memory(program.buffers)
        buffers = []
        for b in program.buffers:
            arr = np.zeros(b.size, b.dtype.numpy) if b.is_output else \
                np.ascontiguousarray(storages[b.name].astype(b.dtype.numpy))
            if not b.is_output:
                mem.write(b.name, arr)
            buffers.append(arr)
        execute(program, mem)
        run(emit(program, t), symbol(program.name), buffers)
        for b, arr in zip(program.buffers, buffers):
            if b.is_output:
                want = mem.read(b.name)
                assert arr.view(want.dtype).tobytes() == want.tobytes(), f"{kernel.name} ({kernel.op})"
                checked += 1
    assert checked >= len(lowered.kernels)


def test_emit_command_writes_files_and_manifest(tmp_path, capsys):
    assert main(["emit", "minilm", "--seq", "9", "--op", "gelu", "-o", str(tmp_path)]) == 0
    for target in FLOAT32:
        manifest = json.loads((tmp_path / target / "manifest.json").read_text())
        assert manifest["target"] == target and len(manifest["kernels"]) == 6  # one GELU per layer
        for k in manifest["kernels"]:
            text = (tmp_path / target / k["file"]).read_text()
            assert k["symbol"] in text and text.count("LLVM-MCA-BEGIN") == 1 and text.count("LLVM-MCA-END") == 1
            assert k["inner_loop"]["predicted_cycles_per_iteration"] > 0
            assert [a["role"] for a in k["arguments"]] == ["input", "output"]


def test_emit_rejects_an_unknown_op(tmp_path, capsys):
    assert main(["emit", "minilm", "--seq", "9", "--op", "conv2d", "-o", str(tmp_path)]) == 2
    assert "no kernel matches --op conv2d" in capsys.readouterr().err


@pytest.mark.parametrize("target", FLOAT32)
def test_strides_too_wide_for_an_immediate(target):
    """A 1100-float row is a 4400-byte pointer step, which AArch64's add cannot encode: it is held in a
    register, and the executors and the machine code must still agree."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from oprunner import both_executors, one_op_graph

    from isasim.models.graph import Ref

    rng = np.random.default_rng(5)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((3, 1100), (2, 1100), (2,)))
    g = one_op_graph("aten.linear.default", {"x": x, "w": w, "b": b}, (Ref("x"), Ref("w"), Ref("b")), [(3, 2)])
    program = select(lower_graph(g).kernels[0], TARGETS[target])
    (mem_b, ev_b), (mem_s, ev_s) = both_executors(program, g.values, target)
    assert mem_b.data.tobytes() == mem_s.data.tobytes() and ev_b.instructions == ev_s.instructions
    buffers = [np.ascontiguousarray(g.values[bf.name].reshape(-1)) if not bf.is_output
               else np.zeros(bf.size, np.float32) for bf in program.buffers]
    assemble(TARGETS[target].isa, emit(program, TARGETS[target]), program.name)
    run = _runner(target)
    if run is None:
        return
    run(emit(program, TARGETS[target]), symbol(program.name), buffers)
    assert buffers[-1].tobytes() == mem_b.read("out").tobytes()
    np.testing.assert_allclose(buffers[-1].reshape(3, 2), x @ w.T + b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("target", FLOAT32)
def test_pointer_steps_no_single_mov_can_make(target):
    """A 176000-byte step is no AArch64 movz/movn: it comes from the literal pool (ldr x, =imm), still one
    instruction; every target's machine code agrees with the executor."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from oprunner import one_op_graph

    from isasim.models.graph import Ref

    rng = np.random.default_rng(6)
    a, b = rng.standard_normal((2, 5, 1100)).astype(np.float32), rng.standard_normal((2, 1100, 40)).astype(np.float32)
    g = one_op_graph("aten.bmm.default", {"a": a, "b": b}, (Ref("a"), Ref("b")), [(2, 5, 40)])
    t = TARGETS[target]
    program = select(lower_graph(g).kernels[0], t)
    if t.isa == "aarch64":
        assert any(i.mnemonic == "ldr_x" and i.prim.name == "IMOV" for i, _, _ in walk(program.body))
    mem = Memory(program.buffers)
    for bf in program.buffers:
        if not bf.is_output:
            mem.write(bf.name, g.values[bf.name])
    execute(program, mem)
    assemble(t.isa, emit(program, t), program.name)
    run = _runner(target)
    if run is None:
        return
    buffers = [np.ascontiguousarray(g.values[bf.name].reshape(-1)) if not bf.is_output
               else np.zeros(bf.size, np.float32) for bf in program.buffers]
    run(emit(program, t), symbol(program.name), buffers)
    assert buffers[-1].tobytes() == mem.read("out").tobytes()
    np.testing.assert_allclose(buffers[-1].reshape(2, 5, 40), a @ b, rtol=1e-4, atol=1e-4)
