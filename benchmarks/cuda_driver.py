"""The CUDA driver API through ctypes (libcuda.so.1): load PTX, move buffers, launch, time with events.

Only numpy and the driver itself are needed, so the GPU half of benchmarks/cuda_run.py runs on a machine
that has neither isasim's dependencies nor a CUDA toolkit: the driver JIT-compiles the PTX
(cuModuleLoadData). Function names and signatures follow the CUDA Driver API reference
(https://docs.nvidia.com/cuda/cuda-driver-api/); the `_v2` entry points are the 64-bit ones that cuda.h maps
the plain names to.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np

_ATTR_CLOCK_KHZ = 13  # CU_DEVICE_ATTRIBUTE_CLOCK_RATE (peak SM clock, kHz)
_ATTR_SMS = 16  # CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT
_ATTR_MAJOR, _ATTR_MINOR = 75, 76  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR / _MINOR
_JIT_ERROR_LOG, _JIT_ERROR_LOG_SIZE = 5, 6  # CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES


class NoGpu(RuntimeError):
    """No driver, or no device: the one-line reason."""


@dataclass(frozen=True)
class Device:
    name: str
    sms: int
    peak_clock_ghz: float
    compute_capability: str


class Cuda:
    def __init__(self):
        try:
            self.lib = ctypes.CDLL("libcuda.so.1")
        except OSError:
            raise NoGpu("no CUDA driver here (libcuda.so.1 is not installed): run this on a machine with an "
                        "NVIDIA GPU") from None
        err = self.lib.cuInit(0)
        count = ctypes.c_int(0)
        if err or self.lib.cuDeviceGetCount(ctypes.byref(count)) or count.value == 0:
            raise NoGpu(f"the CUDA driver finds no GPU (cuInit returned {err}): run this on a machine with an "
                        f"NVIDIA GPU")
        self.dev = ctypes.c_int(0)
        self._ok(self.lib.cuDeviceGet(ctypes.byref(self.dev), 0), "cuDeviceGet")
        self.ctx = ctypes.c_void_p()
        self._ok(self.lib.cuDevicePrimaryCtxRetain(ctypes.byref(self.ctx), self.dev), "cuDevicePrimaryCtxRetain")
        self._ok(self.lib.cuCtxSetCurrent(self.ctx), "cuCtxSetCurrent")

    def _ok(self, err: int, what: str) -> None:
        if err:
            name = ctypes.c_char_p()
            self.lib.cuGetErrorName(err, ctypes.byref(name))
            raise RuntimeError(f"{what} failed: {name.value.decode() if name.value else err}")

    def device(self) -> Device:
        name = ctypes.create_string_buffer(256)
        self._ok(self.lib.cuDeviceGetName(name, 256, self.dev), "cuDeviceGetName")
        return Device(name.value.decode(), self._attr(_ATTR_SMS), self._attr(_ATTR_CLOCK_KHZ) / 1e6,
                      f"{self._attr(_ATTR_MAJOR)}.{self._attr(_ATTR_MINOR)}")

    def _attr(self, attr: int) -> int:
        v = ctypes.c_int()
        self._ok(self.lib.cuDeviceGetAttribute(ctypes.byref(v), attr, self.dev), "cuDeviceGetAttribute")
        return v.value

    # ---- modules and kernels -------------------------------------------------------------------------
    def function(self, ptx: str, entry: str) -> ctypes.c_void_p:
        """The entry of a PTX module, JIT-compiled by the driver; its log in the error where it is refused."""
        mod = ctypes.c_void_p()
        log = ctypes.create_string_buffer(8192)
        opts = (ctypes.c_int * 2)(_JIT_ERROR_LOG, _JIT_ERROR_LOG_SIZE)
        vals = (ctypes.c_void_p * 2)(ctypes.cast(log, ctypes.c_void_p), ctypes.c_void_p(len(log)))
        err = self.lib.cuModuleLoadDataEx(ctypes.byref(mod), ctypes.c_char_p(ptx.encode() + b"\0"), 2, opts, vals)
        if err:
            raise RuntimeError(f"the driver refused the PTX of {entry}: {log.value.decode(errors='replace')[:300]}")
        fn = ctypes.c_void_p()
        self._ok(self.lib.cuModuleGetFunction(ctypes.byref(fn), mod, entry.encode()), "cuModuleGetFunction")
        return fn

    def launcher(self, fn: ctypes.c_void_p, grid: int, block: int, args: list[int], stream=None):
        """A call that launches grid blocks of block threads (1-D) on the default stream, each argument a 64-bit
        value (a pointer); its parameters are built once, so back-to-back calls cost the driver's launch
        and little Python."""
        values = [ctypes.c_uint64(a) for a in args]
        params = (ctypes.c_void_p * len(values))(*[ctypes.cast(ctypes.byref(v), ctypes.c_void_p) for v in values])
        launch, ok = self.lib.cuLaunchKernel, self._ok

        def go() -> None:
            err = launch(fn, grid, 1, 1, block, 1, 1, 0, stream, params, None)
            if err:
                ok(err, "cuLaunchKernel")
        go.keep = (values, params)  # the parameter memory lives as long as the call
        return go

    def launch(self, fn: ctypes.c_void_p, grid: int, block: int, args: list[int]) -> None:
        self.launcher(fn, grid, block, args)()

    def synchronize(self) -> None:
        self._ok(self.lib.cuCtxSynchronize(), "kernel execution (cuCtxSynchronize)")

    # ---- memory --------------------------------------------------------------------------------------
    def alloc(self, nbytes: int) -> int:
        p = ctypes.c_uint64()
        self._ok(self.lib.cuMemAlloc_v2(ctypes.byref(p), ctypes.c_size_t(max(nbytes, 1))), "cuMemAlloc")
        return p.value

    def free(self, ptr: int) -> None:
        self._ok(self.lib.cuMemFree_v2(ctypes.c_uint64(ptr)), "cuMemFree")

    def upload(self, ptr: int, host: np.ndarray) -> None:
        host = np.ascontiguousarray(host)
        self._ok(self.lib.cuMemcpyHtoD_v2(ctypes.c_uint64(ptr), host.ctypes.data_as(ctypes.c_void_p),
                                          ctypes.c_size_t(host.nbytes)), "cuMemcpyHtoD")

    def zero(self, ptr: int, nbytes: int) -> None:
        self._ok(self.lib.cuMemsetD8_v2(ctypes.c_uint64(ptr), 0, ctypes.c_size_t(nbytes)), "cuMemsetD8")

    def download(self, ptr: int, out: np.ndarray) -> np.ndarray:
        self._ok(self.lib.cuMemcpyDtoH_v2(out.ctypes.data_as(ctypes.c_void_p), ctypes.c_uint64(ptr),
                                          ctypes.c_size_t(out.nbytes)), "cuMemcpyDtoH")
        return out

    # ---- timing --------------------------------------------------------------------------------------
    def milliseconds(self, run, repeat: int, each: bool = False) -> float:
        """Milliseconds per call of `run` (which launches), over `repeat` calls back to back between two CUDA
        events: what a stream of kernels sees, launch gaps included. each=True: the fastest single call
        between its own two events, waiting for each (the kernel's own time on the GPU)."""
        start, stop = ctypes.c_void_p(), ctypes.c_void_p()
        self._ok(self.lib.cuEventCreate(ctypes.byref(start), 0), "cuEventCreate")
        self._ok(self.lib.cuEventCreate(ctypes.byref(stop), 0), "cuEventCreate")
        ms = ctypes.c_float()
        best = float("inf")
        for _ in range(repeat if each else 1):
            self._ok(self.lib.cuEventRecord(start, None), "cuEventRecord")
            for _ in range(1 if each else repeat):
                run()
            self._ok(self.lib.cuEventRecord(stop, None), "cuEventRecord")
            self._ok(self.lib.cuEventSynchronize(stop), "cuEventSynchronize")
            self._ok(self.lib.cuEventElapsedTime(ctypes.byref(ms), start, stop), "cuEventElapsedTime")
            best = min(best, ms.value)
        self.lib.cuEventDestroy_v2(start)
        self.lib.cuEventDestroy_v2(stop)
        return best if each else best / repeat

    def graph_milliseconds(self, fn: ctypes.c_void_p, grid: int, block: int, args: list[int], repeat: int) -> float:
        """Milliseconds per kernel in a CUDA graph of `repeat` launches (captured from a stream, replayed after
        one warm replay): the GPU's own time per kernel back to back, without the host's launch calls."""
        lib, ok = self.lib, self._ok
        stream, graph, exe = ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_void_p()
        ok(lib.cuStreamCreate(ctypes.byref(stream), 1), "cuStreamCreate")  # CU_STREAM_NON_BLOCKING
        ok(lib.cuStreamBeginCapture_v2(stream, 0), "cuStreamBeginCapture")  # CU_STREAM_CAPTURE_MODE_GLOBAL
        go = self.launcher(fn, grid, block, args, stream)
        for _ in range(repeat):
            go()
        ok(lib.cuStreamEndCapture(stream, ctypes.byref(graph)), "cuStreamEndCapture")
        ok(lib.cuGraphInstantiateWithFlags(ctypes.byref(exe), graph, ctypes.c_ulonglong(0)), "cuGraphInstantiate")
        start, stop = ctypes.c_void_p(), ctypes.c_void_p()
        ok(lib.cuEventCreate(ctypes.byref(start), 0), "cuEventCreate")
        ok(lib.cuEventCreate(ctypes.byref(stop), 0), "cuEventCreate")
        ms = ctypes.c_float()
        times = []
        for _ in range(3):  # the first replay is the warm one
            ok(lib.cuEventRecord(start, stream), "cuEventRecord")
            ok(lib.cuGraphLaunch(exe, stream), "cuGraphLaunch")
            ok(lib.cuEventRecord(stop, stream), "cuEventRecord")
            ok(lib.cuEventSynchronize(stop), "cuEventSynchronize")
            ok(lib.cuEventElapsedTime(ctypes.byref(ms), start, stop), "cuEventElapsedTime")
            times.append(ms.value)
        lib.cuEventDestroy_v2(start)
        lib.cuEventDestroy_v2(stop)
        lib.cuGraphExecDestroy(exe)
        lib.cuGraphDestroy(graph)
        lib.cuStreamDestroy_v2(stream)
        return min(times[1:]) / repeat


# A dependent chain of fma.rn.f32 between two reads of %clock64 and of %globaltimer (nanoseconds): SM cycles
# over nanoseconds is the clock the SM really ran at, whatever the boost state (the GPU analogue of
# `isasim host`'s CPU clock measurement).
CLOCK_PTX = """.version 8.0
.target {target}
.address_size 64
.visible .entry clock_probe(.param .u64 out, .param .u64 n)
{{
\t.reg .pred %p<2>; .reg .f32 %f<2>; .reg .b64 %rd<8>;
\tld.param.u64 %rd1, [out]; cvta.to.global.u64 %rd1, %rd1; ld.param.u64 %rd6, [n];
\tmov.f32 %f1, 0f3F800000;
\tmov.u64 %rd2, %globaltimer; mov.u64 %rd3, %clock64;
$Lloop:
\tfma.rn.f32 %f1, %f1, 0f3F7FFFFF, 0f3F800000;
\tsub.s64 %rd6, %rd6, 1; setp.ne.s64 %p1, %rd6, 0; @%p1 bra $Lloop;
\tmov.u64 %rd4, %clock64; mov.u64 %rd5, %globaltimer;
\tsub.s64 %rd4, %rd4, %rd3; sub.s64 %rd5, %rd5, %rd2;
\tst.global.u64 [%rd1], %rd4; st.global.u64 [%rd1+8], %rd5; st.global.f32 [%rd1+16], %f1;
\tret;
}}
"""


def sm_clock_ghz(cuda: Cuda, target: str, iterations: int = 20_000_000) -> float:
    """The SM clock measured by one thread's dependent FMA chain (cycles / ns); best of three."""
    fn = cuda.function(CLOCK_PTX.format(target=target), "clock_probe")
    out = cuda.alloc(24)
    best = 0.0
    for _ in range(3):
        cuda.launch(fn, 1, 1, [out, iterations])
        cuda.synchronize()
        raw = cuda.download(out, np.zeros(3, dtype=np.uint64))
        best = max(best, float(raw[0]) / float(raw[1]))
    cuda.free(out)
    return best


# ---- microbenchmarks of single instructions (the timings of isa/gpu/*.toml) ------------------------------
# `chains` independent dependency chains of one instruction, `n` trips of a loop: one warp alone gives the
# latency (cycles per trip of one chain, from %clock64); many warps on every SM give the throughput.
PROBE_PTX = """.version 8.0
.target {target}
.address_size 64
.visible .entry probe(.param .u64 out, .param .u64 n)
{{
\t.reg .pred %p<2>; .reg .f32 %f<40>; .reg .b32 %h<20>; .reg .b64 %rd<8>;
\tld.param.u64 %rd1, [out]; cvta.to.global.u64 %rd1, %rd1; ld.param.u64 %rd6, [n];
{init}
\tmov.u64 %rd3, %clock64;
$Lloop:
{body}
\tsub.s64 %rd6, %rd6, 1; setp.ne.s64 %p1, %rd6, 0; @%p1 bra $Lloop;
\tmov.u64 %rd4, %clock64; sub.s64 %rd4, %rd4, %rd3;
\tmov.f32 %f39, 0f00000000;
{fold}
\tst.global.u64 [%rd1], %rd4; st.global.f32 [%rd1+8], %f39;
\tret;
}}
"""
MMA = "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32"


def _mma_probe(chains: int) -> tuple[str, str, str]:
    init = "\n".join([f"\tmov.b32 %h{i}, 0x3C003C00;" for i in range(1, 7)]
                     + [f"\tmov.f32 %f{i}, 0f00000000;" for i in range(1, 4 * chains + 1)])
    body = "\n".join(f"\t{MMA} {{%f{4*c+1}, %f{4*c+2}, %f{4*c+3}, %f{4*c+4}}}, {{%h1, %h2, %h3, %h4}}, "
                     f"{{%h5, %h6}}, {{%f{4*c+1}, %f{4*c+2}, %f{4*c+3}, %f{4*c+4}}};" for c in range(chains))
    fold = "\n".join(f"\tadd.f32 %f39, %f39, %f{i};" for i in range(1, 4 * chains + 1))
    return init, body, fold


def _cvt_probe(chains: int) -> tuple[str, str, str]:
    init = "\n".join(f"\tmov.f32 %f{i}, 0f3F800000;" for i in range(1, chains + 2))
    body = "\n".join(f"\tcvt.rn.f16x2.f32 %h{c+1}, %f{c+1}, %f{c+2}; mov.b32 %f{c+1}, %h{c+1};"
                     for c in range(chains))
    fold = "\n".join(f"\tadd.f32 %f39, %f39, %f{i};" for i in range(1, chains + 1))
    return init, body, fold


PROBES = {MMA: _mma_probe, "cvt.rn.f16x2.f32": _cvt_probe}


def probe(cuda: Cuda, target: str, instruction: str, clock_ghz: float, sms: int) -> dict:
    """`instruction`'s latency (cycles, one warp, one chain) and throughput (thread-instructions per clock per
    SM, 16 warps on every SM with 4 chains each)."""
    out = cuda.alloc(16)
    fns = {c: cuda.function(PROBE_PTX.format(target=target, **dict(zip(("init", "body", "fold"),
                                                                      PROBES[instruction](c)))), "probe")
           for c in (1, 4)}
    trips = 4096
    cuda.launch(fns[1], 1, 32, [out, trips])
    cuda.synchronize()
    latency = float(cuda.download(out, np.zeros(2, np.uint64))[0]) / trips
    grid, block = sms * 4, 128
    run = cuda.launcher(fns[4], grid, block, [out, trips])
    cuda.milliseconds(run, 2)
    ms = min(cuda.milliseconds(run, 1) for _ in range(3))
    issued = grid * block * trips * 4  # thread-instructions
    cuda.free(out)
    return {"instruction": instruction, "latency_cycles": latency,
            "per_clock_per_sm": issued / (ms * 1e-3 * clock_ghz * 1e9 * sms)}
