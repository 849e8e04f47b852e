"""Instruction selection's entry points, one per kind of machine: which selector, and which code shape, each
kernel gets. The backends (backends/) call these; the selectors live in isel*.py.

- scalar CPU: lowering/isel.py, a register program per kernel;
- SIMD CPU: register-blocked micro-kernels for GEMMs (lowering/isel_gemm.py; int8 and bf16:
  isel_gemm_int8.py, isel_gemm_bf16.py; on AMX tiles: isel_gemm_amx.py), else every phase vectorised
  along its own variable (lowering/isel_vector.py);
- SIMT GPU: shared-memory tiled GEMMs (lowering/isel_simt_gemm.py), else a thread per element or a warp per
  row (lowering/isel_simt.py), on a grid the GPU can hold.
"""

from __future__ import annotations

from isasim.isa.gpu import Gpu
from isasim.isa.program import Program
from isasim.isa.simt_cost import occupancy, registers
from isasim.isa.targets import Target
from isasim.lowering import (isel_gemm, isel_gemm_amx, isel_gemm_bf16, isel_gemm_int8, isel_simt_gemm,
                             isel_simt_mma, isel_simt_pairs)
from isasim.lowering.isel import Selector, finish, nest
from isasim.lowering.isel_simt import BLOCK, select_points
from isasim.lowering.isel_vector import VectorSelector
from isasim.lowering.kernel import Kernel


def select_scalar(kernel: Kernel, target: Target) -> Program:
    """Lower one kernel to one scalar program for `target`."""
    parallel = tuple((v, e) for v, e in kernel.parallel if e > 1)
    sel = Selector(kernel, target, dict(parallel))
    return finish(sel, kernel, target, nest(sel, parallel, sel.phases(tuple(v for v, _ in parallel))))


def select_vector(kernel: Kernel, target: Target, core: tuple[str, ...] = (),
                  caches: tuple[int, int] | None = None) -> Program:
    """Lower one kernel to one program on the target's vector registers; `core`, the extensions of the core
    it is for, may choose its int8 dot-product instructions (AVX-VNNI on an AVX2 core that has it), and
    `caches`, its (L1D, L2) bytes, the float32 GEMM's loop order (else the ISA's smallest described)."""
    parallel = tuple((v, e) for v, e in kernel.parallel if e > 1)
    sel = VectorSelector(kernel, target, dict(parallel))
    blocked = (isel_gemm.select_gemm(sel, kernel, parallel, caches)
               or isel_gemm_amx.select_gemm_amx(sel, kernel, parallel)
               or isel_gemm_int8.select_gemm_int8(sel, kernel, parallel, target.int8_dot(core))
               or isel_gemm_bf16.select_gemm_bf16(sel, kernel, parallel))
    if blocked is not None:
        return finish(sel, kernel, target, blocked)
    return finish(sel, kernel, target, nest(sel, parallel, sel.phases(tuple(v for v, _ in parallel))))


def select_simt(kernel: Kernel, target: Target, gpu: Gpu | None = None) -> Program:
    """Lower one kernel to one SIMT kernel launch (PTX instruction stream + geometry); `gpu` lets a GEMM pick
    tiles that keep all its SMs busy, and caps an elementwise grid at the blocks the GPU holds at once (beyond
    them, threads loop: a grid-stride loop)."""
    kernel = isel_simt_gemm.merged_rows(kernel)
    if kernel.op in ("isasim.linear_fp16", "isasim.linear_bf16") or isel_simt_mma.int8_fits(kernel):
        return isel_simt_mma.select_mma(kernel, target, gpu=gpu)
    if kernel.op == "isasim.round_bf16":
        return isel_simt_pairs.named_pairs(select_elementwise(isel_simt_pairs.round_pairs(kernel), target, gpu))
    shape = isel_simt_gemm.gemm_shape(kernel)
    if shape is not None:
        tensor = isel_simt_mma.matmul_shape(kernel, shape)  # fp16 operands (attention's): the tensor cores
        if tensor is not None:
            return isel_simt_mma.select_mma(kernel, target, tensor, gpu)
        return isel_simt_gemm.select_gemm(kernel, target, shape, gpu)
    paired = isel_simt_pairs.half_pairs(kernel)  # fp16 outputs: a thread per pair of elements
    if paired is not None:
        return isel_simt_pairs.named_pairs(select_elementwise(paired, target, gpu))
    return select_elementwise(kernel, target, gpu)


def select_elementwise(kernel: Kernel, target: Target, gpu: Gpu | None) -> Program:
    """A thread per point (a warp per row for row reductions), the grid capped at what the GPU holds."""
    if gpu is None:
        return select_points(kernel, target, None)
    # First guess: the blocks that threads and block slots alone allow; the kernel's registers may allow fewer.
    prog = select_points(kernel, target, gpu.sms * max(1, min(gpu.max_threads_per_sm // BLOCK, gpu.max_blocks_per_sm)))
    resident = occupancy(prog, registers(prog), gpu)[0]
    if prog.launch.grid > gpu.sms * resident:
        prog = select_points(kernel, target, gpu.sms * resident)
    return prog
