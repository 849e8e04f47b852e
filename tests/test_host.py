"""`isasim host`: the host's core identified from CPUID fields, its clock measured, every kernel timed natively
next to its prediction (the JSON contract), and targets the host cannot run refused in one line."""

from __future__ import annotations

import json
import platform
import shutil

import pytest
from tiny import cli, save_bert

from isasim.isa import hostcpu

X86 = platform.machine().lower() in ("x86_64", "amd64")


SPACED = {"cpu_family": "cpu family", "CPU_implementer": "CPU implementer", "CPU_part": "CPU part"}


def cpuinfo(**fields) -> str:
    """/proc/cpuinfo's text for a first processor with these fields (and a second that must not count)."""
    return "processor\t: 0\n" + "".join(f"{SPACED.get(k, k)}\t: {v}\n" for k, v in fields.items()) + "\n" \
        + "processor\t: 1\nvendor_id\t: other\n"


@pytest.mark.parametrize("fields, core, uarch", [
    (dict(vendor_id="GenuineIntel", cpu_family=6, model=143, flags="avx512f amx_tile"), "Sapphire Rapids",
     "sapphirerapids"),
    (dict(vendor_id="GenuineIntel", cpu_family=6, model=85, flags="avx2 avx512f"), "Skylake-SP / Cascade Lake",
     "skylake-x"),
    (dict(vendor_id="AuthenticAMD", cpu_family=26, model=2, flags="avx2 avx512f"), "Zen 5 (Turin)", "zen5"),
    (dict(vendor_id="AuthenticAMD", cpu_family=25, model=17, flags="avx2 avx512f"), "Zen 4 (Genoa)", "zen4"),
    (dict(vendor_id="AuthenticAMD", cpu_family=25, model=1, flags="avx2 fma"), "Zen 3 (Milan)", "zen3"),
    (dict(vendor_id="GenuineIntel", cpu_family=6, model=999, flags="avx2 avx512f"), "unknown", "skylake-x"),
    (dict(vendor_id="Weird", cpu_family="x", model="y", flags="avx2"), "unknown", "zen3"),
])
def test_x86_cores_are_identified_and_mapped_to_the_nearest_description(fields, core, uarch):
    cpu = hostcpu.identify(cpuinfo(**fields), "x86_64")
    assert (cpu.isa, cpu.core, cpu.uarch) == ("x86-64", core, uarch)
    assert cpu.why  # always says why that description
    if core == "unknown":
        assert "unknown" in cpu.why


def test_arm_cores_are_identified_by_implementer_and_part():
    v1 = hostcpu.identify(cpuinfo(CPU_implementer="0x41", CPU_part="0xd40", Features="asimd sve bf16"), "aarch64")
    assert (v1.isa, v1.core, v1.uarch, v1.flags) == ("aarch64", "Neoverse V1", "neoverse-v1", ["asimd", "bf16", "sve"])
    other = hostcpu.identify(cpuinfo(CPU_implementer="0x61", CPU_part="0x022"), "aarch64")
    assert other.core == "unknown" and other.uarch == "neoverse-n1"


@pytest.mark.skipif(not shutil.which("gcc") or platform.machine().lower() not in ("x86_64", "aarch64"),
                    reason="the clock is measured with a chain compiled by gcc, on x86-64 or AArch64")
def test_the_clock_chains_run_the_dependent_instructions_they_count():
    """The clock is CHAIN instructions per trip over the time taken: the chains must execute exactly that many
    (n trips of CHAIN adds of 1 from 1; and 3 squared CHAIN times is 1 modulo 2^64, where 3 has order 2^62,
    which a chain of fewer than 62 squarings would not reach), and the
    measurement uses them with the uarch's multiply latency."""
    from isasim.isa.machine import load_uarch

    lib = hostcpu.chains()
    assert lib.add_chain(7) == 1 + 7 * hostcpu.CHAIN
    assert lib.mul_chain(1) == 1 and lib.mul_chain(0) == 3
    host = hostcpu.this_host()
    core = load_uarch(host.uarch)
    clock = hostcpu.measure_clock(core, repeat=1, flags=tuple(host.flags))
    assert clock.ghz > 0 and clock.mul_ghz > 0 and hostcpu.clock_now(1) > 0
    key, flag = hostcpu.FMA_KEY[core.isa]
    if flag in host.flags:  # the FMA pipes' throughput, next to what the description says they sustain
        assert clock.fma_per_cycle > 0 and clock.fma_described == round(1 / core.timing(key).rthroughput, 2)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return save_bert(tmp_path_factory.mktemp("tiny-host"), 5, hidden_size=32, num_hidden_layers=1,
                     num_attention_heads=2, intermediate_size=48, vocab_size=90, max_position_embeddings=24)


@pytest.mark.skipif(not X86 or not shutil.which("gcc"), reason="isasim host times x86-64 machine code with gcc")
def test_every_kernel_is_timed_next_to_its_prediction(capsys, tiny_folder):
    code, out, _ = cli(capsys, "host", str(tiny_folder), "--seq", "8", "--target", "x86-64", "--repeat", "2",
                       "--format", "json")
    report = json.loads(out)
    assert code == 0 and report["host"]["isa"] == "x86-64" and report["host"]["clock"]["ghz"] > 0
    (t,) = report["targets"]
    assert t["target"] == "x86-64" and t["uarch"] == report["host"]["uarch"] and t["clock_ghz"] > 0
    kernels = t["kernels"]
    assert len(kernels) >= 8 and sum(k["share"] for k in kernels) == pytest.approx(1)
    # identical kernels are timed once; the same op and shape with another reduction is another kernel (the
    # attention projections read 32 features, the feed-forward's output 48)
    projections = [k for k in kernels if k["op"] == "linear.default" and k["shape"] == [1, 8, 32]]
    assert len(projections) == 2 and sorted(k["calls"] for k in projections) == [1, 4]
    for k in kernels:
        assert k["measured_s"] > 0 and k["predicted_s"] > 0 and k["calls"] >= 1 and k["clock_ghz"] > 0
        assert k["ratio"] == pytest.approx(k["measured_s"] / k["predicted_s"])
    measured = sum(k["measured_s"] * k["calls"] for k in kernels)
    predicted = sum(k["predicted_s"] * k["calls"] for k in kernels)
    assert t["forward_ratio"] == pytest.approx(measured / predicted)
    assert 0 <= t["median_error"] and 0 <= t["weighted_error"]
    plot = tiny_folder.parent / "host.png"
    code, out, err = cli(capsys, "host", str(tiny_folder), "--seq", "8", "--target", "x86-64", "--repeat", "1",
                         "--plot", str(plot))
    assert code == 0 and "median |measured/predicted - 1|" in out and "clock" in out
    assert plot.read_bytes().startswith(b"\x89PNG") and "wrote" in err


@pytest.mark.parametrize("target", ["neon", "simt"])
def test_a_target_the_host_cannot_run_is_refused_in_one_line(capsys, tiny_folder, target):
    code, out, err = cli(capsys, "host", str(tiny_folder), "--seq", "8", "--target", target)
    assert code == 2 and not out and err.count("\n") == 1 and ("cannot time" in err or "this host is" in err)


@pytest.mark.skipif(not X86, reason="the toolchain question comes after the host's ISA")
def test_a_host_without_its_toolchain_is_told_what_to_install(capsys, tiny_folder, monkeypatch):
    from isasim.isa import native

    monkeypatch.setattr(native, "missing_tools", lambda isa: "gcc not found: bash .ci/install-tools")
    code, out, err = cli(capsys, "host", str(tiny_folder), "--seq", "8")
    assert code == 2 and not out and err.count("\n") == 1 and "gcc not found" in err


@pytest.mark.skipif(not X86 or not shutil.which("gcc"), reason="isasim host times x86-64 machine code with gcc")
def test_a_precision_no_target_here_can_run_is_refused_in_one_line(capsys, tiny_folder):
    if "avx512_bf16" in hostcpu.this_host().flags:
        pytest.skip("this host runs bf16 code (AVX512-BF16): nothing to refuse")
    code, out, err = cli(capsys, "host", str(tiny_folder), "--seq", "8", "--precision", "bf16")
    assert code == 2 and "runs no target's bf16 machine code" in err and len(err.strip().splitlines()) == 1
