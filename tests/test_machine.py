"""Machine descriptions load, are complete for the mnemonics the simulator issues, and match the
reference numbers in docs/sources.md."""

import dataclasses

import pytest

from isasim.backends import all_machines, load_machine, machine_names
from isasim.isa.hardware import Machine
from isasim.isa.targets import ALL_TARGETS

from isasim.isa.datafile import MachineFileError
from isasim.isa.machine import LEVEL_NAMES, load_uarch, parse_uarch, uarch_names
from isasim.isa.errors import UserError

X86_SCALAR = (
    "vmovss_load vmovss_store vaddss vsubss vmulss vdivss vsqrtss vmaxss vminss vfmadd231ss "
    "vfnmadd231ss vroundss vcvttss2si vcvtsi2ss vmovd_to_xmm vmovd_from_xmm vandps vxorps vcmpss "
    "vblendvps mov_load64 mov_store64 movzx_load8 mov_store8 mov_imm lea add sub imul shl and cmp "
    "setcc cmovcc jcc"
).split()
A64_SCALAR = (
    "ldr_s str_s fadd fsub fmul fdiv fsqrt fmax fmin fmadd fmsub frintn fcvtzs scvtf fmov_to_fp "
    "fmov_from_fp fabs fneg fcmp fcsel ldr_x str_x ldrb strb mov_imm add sub subs mul lsl and cmp "
    "cset csel b_cond"
).split()
_X86_VEC = (
    "vaddps vsubps vmulps vdivps vsqrtps vmaxps vminps vfmadd231ps vfnmadd231ps vandps vxorps vmovaps "
    "vmovups_load vmovups_store vbroadcastss_load vbroadcastss vcvttps2dq vpaddd vpslld"
).split()
X86_AVX2 = [f"{m}_ymm" for m in _X86_VEC] + (
    "vaddps_xmm vmaxps_xmm vmovhlps_xmm vmovshdup_xmm vroundps_ymm vcmpps_ymm vblendvps_ymm vextractf128_ymm"
).split()
X86_AVX512 = [f"{m}_zmm" for m in _X86_VEC] + (
    "vrndscaleps_zmm vrndscaless vcmpps_zmm vcmpss_k vblendmps_zmm vblendmps_xmm vextractf32x4_ymm "
    "vextractf64x4_zmm kmovw"
).split()
A64_NEON = (
    "ldr_q str_q ld1r_4s dup_4s fadd_4s fsub_4s fmul_4s fdiv_4s fsqrt_4s fmax_4s fmin_4s fmla_4s fmls_4s "
    "fabs_4s fneg_4s frintn_4s fcvtzs_4s add_4s shl_4s fcmgt_4s bsl_16b mov_16b movi_zero faddp_4s faddp_s "
    "fmaxp_4s fmaxp_s"
).split()
REQUIRED = {"x86-64": X86_SCALAR + X86_AVX2, "aarch64": A64_SCALAR + A64_NEON}
EXPECTED = {
    "skylake-x": "x86-64",
    "zen3": "x86-64",
    "zen4": "x86-64",
    "sapphirerapids": "x86-64",
    "neoverse-n1": "aarch64",
    "neoverse-v1": "aarch64",
    "zen5": "x86-64",
}


def test_names_and_isas():
    assert set(EXPECTED) <= set(uarch_names())
    assert set(uarch_names("x86-64")) >= {"skylake-x", "zen4", "sapphirerapids"}
    assert set(uarch_names("aarch64")) >= {"neoverse-n1", "neoverse-v1"}
    assert not set(uarch_names("x86-64")) & set(uarch_names("aarch64"))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_uarch_is_complete_and_consistent(name):
    u = load_uarch(name)
    assert u.name == name and u.isa == EXPECTED[name]
    assert u.clock_ghz > 0 and u.issue_width > 0 and u.description and u.sources
    assert u.clock_source and u.issue_width_source and u.features_source
    assert u.reorder_buffer > u.scheduler > 0 and u.reorder_buffer_source and u.scheduler_source
    required = REQUIRED[u.isa] + (X86_AVX512 if "avx512f" in u.features else [])
    missing = [m for m in required if m not in u.instructions]
    assert not missing, f"{name} lacks {missing}"
    for mnemonic, t in u.instructions.items():
        assert t.latency >= 0 and t.rthroughput > 0 and t.uops >= 1, mnemonic
        assert set(t.ports) <= set(u.ports), mnemonic
        # only moves eliminated at rename go without a latency or an execution port
        assert (t.latency > 0 and t.ports) or "eliminated at rename" in t.source, mnemonic
        assert t.source.strip(), mnemonic
    assert tuple(lvl.name for lvl in u.levels) == LEVEL_NAMES
    for lvl in u.levels:
        assert lvl.bytes_per_cycle > 0 and lvl.latency > 0 and lvl.line > 0 and lvl.source.strip()
    caches = u.levels[:-1]
    assert all(c.size and c.assoc for c in caches)
    # Each level is bigger, slower and no wider than the one above it.
    assert [c.size for c in caches] == sorted(c.size for c in caches)
    assert [lvl.latency for lvl in u.levels] == sorted(lvl.latency for lvl in u.levels)
    bws = [lvl.bytes_per_cycle for lvl in u.levels]
    assert bws == sorted(bws, reverse=True)


def test_descriptions_are_read_only_and_cached():
    u = load_uarch("skylake-x")
    assert load_uarch("skylake-x") is u
    with pytest.raises(TypeError):
        u.instructions["vaddss"] = u.instructions["vmulss"]  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        u.clock_ghz = 1.0  # type: ignore[misc]


# (latency, reciprocal throughput) of timing keys, against the published tables: x86 from uops.info and
# Agner Fog, AArch64 from Arm's Software Optimization Guides (2 FP pipes on N1, 4 on V1); the SIMD keys
# against uops.info (ashvardanian/AssemblyStats uops/*.csv)
SPOT_CHECKS = {
    "skylake-x": {"vfmadd231ss": (4, 0.5), "vaddss": (4, 0.5), "vmulss": (4, 0.5), "vfmadd231ps_ymm": (4, 0.5),
                  "vfmadd231ps_zmm": (4, 0.5),  # p0 + p5: two 512-bit FMA units
                  "vpaddd_zmm": (1, 0.5),  # uops.info p05 (LLVM's p015 is wrong for 512-bit)
                  "vcmpps_zmm": (4, 1.0)},
    "zen4": {"vaddss": (3, 0.5), "vmulss": (3, 0.5), "vfmadd231ss": (4, 0.5), "vfmadd231ps_ymm": (4, 0.5),
             "vfmadd231ps_zmm": (4, 1.0),  # double-pumped on the two 256-bit FMA pipes
             "vaddps_zmm": (3, 1.0), "vmovups_store_zmm": (1, 2.0)},  # uops.info: one 256-bit store per cycle
    "sapphirerapids": {"vfmadd231ps_ymm": (4, 0.5),
                       "vfmadd231ps_zmm": (4, 0.5),  # server part: second 512-bit FMA on p5
                       "vaddps_ymm": (3, 0.5)},  # Golden Cove fast adders (uops.info ADL-P)
    "neoverse-n1": {"fmadd": (4, 0.5), "fmul": (3, 0.5), "fadd": (2, 0.5), "fmla_4s": (4, 0.5), "fmul_4s": (3, 0.5)},
    "neoverse-v1": {"fmadd": (4, 0.25), "fmul": (3, 0.25), "fadd": (2, 0.25), "fmla_4s": (4, 0.25),
                    "ldr_q": (6, 0.33)},
}


@pytest.mark.parametrize("name, mnemonic, latency, rthroughput",
                         [(u, m, *v) for u, keys in SPOT_CHECKS.items() for m, v in keys.items()])
def test_spot_checks_against_hardware_facts(name, mnemonic, latency, rthroughput):
    t = load_uarch(name).timing(mnemonic)
    assert (t.latency, t.rthroughput) == (latency, rthroughput)


def test_fma_ports():
    assert set(load_uarch("skylake-x").timing("vfmadd231ss").ports) == {"p0", "p1"}
    assert set(load_uarch("skylake-x").timing("vfmadd231ps_zmm").ports) == {"p0", "p5"}
    assert set(load_uarch("sapphirerapids").timing("vfmadd231ps_zmm").ports) == {"p0", "p5"}


@pytest.mark.parametrize("op", ["vaddps", "vmulps", "vfmadd231ps", "vandps", "vpaddd", "vrndscaleps"])
def test_zen4_zmm_is_double_pumped(op):
    """Zen 4 runs a 512-bit op as one macro-op holding a 256-bit pipe for two cycles."""
    u = load_uarch("zen4")
    ymm = u.timing("vroundps_ymm" if op == "vrndscaleps" else f"{op}_ymm")
    zmm = u.timing(f"{op}_zmm")
    assert zmm.latency == ymm.latency and zmm.rthroughput == 2 * ymm.rthroughput and zmm.uops == 1


@pytest.mark.parametrize("op", ["vaddps", "vmulps", "vfmadd231ps", "vandps", "vpaddd", "vrndscaleps"])
def test_zen5_runs_zmm_at_full_width_and_keeps_the_rest_of_zen4(op):
    """zen5.toml is based_on zen4: the 512-bit ops it lists go at the 256-bit ops' rate (measured on a Zen 5
    host); what it does not list is Zen 4's, entry for entry."""
    zen4, zen5 = load_uarch("zen4"), load_uarch("zen5")
    ymm = zen5.timing("vroundps_ymm" if op == "vrndscaleps" else f"{op}_ymm")
    assert zen5.timing(f"{op}_zmm").rthroughput == ymm.rthroughput == zen4.timing(f"{op}_zmm").rthroughput / 2
    assert zen5.timing("vpermq_ymm") == zen4.timing("vpermq_ymm") and "[MEAS]" in zen5.timing(f"{op}_zmm").source
    assert zen5.sources[:len(zen4.sources)] == zen4.sources and zen5.levels[0].size == 48 * 1024


def test_a_core_runs_only_the_targets_whose_extensions_it_has():
    """Zen 3 has no AVX-512: the avx512 target is not timed on it, and asking for the pair is refused in one line."""
    from isasim.engine.targets import pick_targets

    assert "zen3" in machine_names(ALL_TARGETS["avx2"]) and "zen3" not in machine_names(ALL_TARGETS["avx512"])
    assert load_uarch("zen3").lacks(ALL_TARGETS["avx512"].host_features) == ["avx512f", "avx512vl", "avx512dq"]
    with pytest.raises(UserError) as err:
        pick_targets(["avx512"], ["zen3"])
    assert "\n" not in str(err.value) and "avx512f" in str(err.value) and "zen4" in str(err.value)
    assert [t.name for t, _ in pick_targets(None, ["zen3"]) if t.isa == "x86-64"] == ["x86-64", "avx2"]


def test_sapphirerapids_has_every_skylake_key():
    assert set(load_uarch("skylake-x").instructions) <= set(load_uarch("sapphirerapids").instructions)


def test_unknown_uarch_is_a_one_line_user_error():
    with pytest.raises(UserError) as err:
        load_uarch("pentium-4")
    msg = str(err.value)
    assert "\n" not in msg and "pentium-4" in msg and "skylake-x" in msg


def test_unknown_isa_is_a_user_error():
    with pytest.raises(UserError):
        uarch_names("riscv")


def test_missing_mnemonic_names_itself():
    with pytest.raises(KeyError, match="vpdpbusd"):
        load_uarch("skylake-x").timing("vpdpbusd")


def _minimal(**instr):
    level = {"line": 64, "bytes_per_cycle": 1.0, "latency": 1.0, "source": "s", "size": 1, "assoc": 1}
    return {
        "name": "toy", "isa": "x86-64", "description": "d", "sources": ["s"],
        "clock_ghz": 1.0, "clock_source": "s", "issue_width": 1, "issue_width_source": "s",
        "features": [], "features_source": "s", "reorder_buffer": 8, "reorder_buffer_source": "s",
        "scheduler": 4, "scheduler_source": "s",
        "ports": ["p0"],
        "levels": [dict(level, name=n) for n in LEVEL_NAMES],
        "socket": {"part": "p", "cores": 4, "llc_cores": 2, "dram_gb_s": 10, "fork_join_ns": 500,
                   "fork_join_ns_per_doubling": 100, "cores_source": "s", "dram_source": "s",
                   "fork_join_source": "s"},
        "instructions": {"add": dict({"latency": 1, "rthroughput": 1, "ports": ["p0"], "uops": 1, "source": "s"},
                                     **instr)},
    }


def test_parser_accepts_a_minimal_description():
    assert parse_uarch(_minimal(), "toy.toml").timing("add").ports == ("p0",)


def test_the_socket_is_checked_and_its_fork_join_grows_with_log2_of_the_cores():
    socket = parse_uarch(_minimal(), "toy.toml").socket
    assert socket.fork_join_cycles(1, 2.0) == 0  # one core forks nothing
    assert socket.fork_join_cycles(2, 2.0) == 1000  # 500 ns at 2 GHz
    assert socket.fork_join_cycles(8, 2.0) == (500 + 2 * 100) * 2.0
    for bad in ({"llc_cores": 3}, {"cores": 0}, {"dram_gb_s": -1}, {"dram_source": ""}):
        data = _minimal()
        data["socket"] = {**data["socket"], **bad}
        with pytest.raises(MachineFileError):
            parse_uarch(data, "toy.toml")
    data = _minimal()
    del data["socket"]
    with pytest.raises(MachineFileError, match="socket"):
        parse_uarch(data, "toy.toml")


def test_a_server_of_two_sockets_needs_the_links_between_them():
    two = {"sockets": 2, "remote_gb_s": 20, "sockets_source": "s"}
    data = _minimal()
    data["socket"] = {**data["socket"], **two}
    socket = parse_uarch(data, "toy.toml").socket
    assert (socket.sockets, socket.remote_gb_s) == (2, 20)
    assert parse_uarch(_minimal(), "toy.toml").socket.sockets == 1  # the default
    for bad in ({"sockets": 3}, {"remote_gb_s": None}, {"remote_gb_s": 0}, {"sockets_source": " "}):
        data = _minimal()
        data["socket"] = {k: v for k, v in {**data["socket"], **two, **bad}.items() if v is not None}
        with pytest.raises(MachineFileError):
            parse_uarch(data, "toy.toml")


@pytest.mark.parametrize(
    "bad", [{"ports": ["p9"]}, {"source": "  "}, {"latency": -1}, {"rthroughput": -1}, {"uops": 0}]
)
def test_parser_rejects_bad_entries(bad):
    with pytest.raises(MachineFileError):
        parse_uarch(_minimal(**bad), "toy.toml")


@pytest.mark.parametrize("name", list(all_machines()))
def test_every_machine_answers_the_machine_protocol_with_sources(name):
    """CPU cores and GPUs alike: every number of the description, every size and every memory level has a
    source; bandwidths and the peak of each target that runs on it are positive."""
    m = load_machine(name)
    assert isinstance(m, Machine)
    numbers = [f.name for f in dataclasses.fields(m)
               if isinstance(getattr(m, f.name), (int, float)) and not isinstance(getattr(m, f.name), bool)]
    for quantity in ["clock", *numbers, *m.sizes(), *m.memory_levels()]:
        assert m.source(quantity).strip(), quantity
    assert all(m.bytes_per_cycle(level) > 0 for level in m.memory_levels())
    runs_on = [t for t in ALL_TARGETS.values() if name in machine_names(t)]
    assert runs_on and all(m.peak_ops_per_cycle(t.peak_unit()) > 0 for t in runs_on)
    socket = getattr(m, "socket", None)  # a CPU core's chip, for --cores
    if socket is not None:
        assert all(m.source(q).strip() for q in ("cores", "socket dram", "fork_join"))
        assert socket.sockets == 1 or (m.source("sockets").strip() and socket.remote_gb_s > 0)
        # the socket's cores together reach more DRAM bandwidth than one alone
        assert socket.dram_gb_s > m.bytes_per_cycle("dram") * m.clock_ghz


@pytest.fixture(scope="module")
def tiny_lowered(tmp_path_factory):
    from isasim.engine.graphs import lowered_for_cost
    from tiny import save_bert

    folder = save_bert(tmp_path_factory.mktemp("timings") / "tiny", 0, hidden_size=64, num_hidden_layers=1,
                       num_attention_heads=2, intermediate_size=128, vocab_size=100, max_position_embeddings=64)
    return {p: lowered_for_cost(str(folder), 8, 1, precision=p) for p in ("fp32", "int8", "bf16", "fp16")}


@pytest.mark.parametrize("precision", ["fp32", "int8", "bf16", "fp16"])
def test_every_core_times_every_instruction_its_targets_emit_in_each_precision(tiny_lowered, precision):
    """A core that can run a target in a precision (engine/targets.every_pair) has a timing for each
    instruction of every kernel (the AVX2 int8 kernels take {vex} vpdpbusd on a core with AVX-VNNI: zen5 once
    lacked its timing and `isasim host --precision int8` ended in a KeyError)."""
    from isasim.engine.targets import every_pair
    from isasim.engine.trace import cost_kernel

    for target, machine in every_pair(precision):
        for kernel in tiny_lowered[precision].kernels:
            cost_kernel(kernel, target, machine)
