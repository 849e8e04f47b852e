"""A kernel split across the cores of one socket, as ATen's and oneDNN's OpenMP loops split theirs: one
parallel loop cut into equal contiguous chunks (OpenMP's static schedule: ceil(E / cores) iterations each,
the last core taking what is left), one chunk per core. Each chunk is a kernel of its own: the original with
that loop's extent cut to the chunk and every index moved to the chunk's first iteration. So it lowers,
costs and executes like any kernel, and the chunks together write what the whole kernel writes, each output
element once. No reduction is split, so the result is bit-identical to one core's.

Which loop: the outermost parallel one with at least as many iterations as cores (a GEMM's rows, the heads
of an attention matmul, a layer norm's rows), else the one with the most (a GEMM of one row splits its
columns). A loop whose index the kernel reads as a value (arange, masks) stays whole.
"""

from __future__ import annotations

from dataclasses import replace

from isasim.lowering.kernel import Affine, Index, Kernel, Let, Load, Map, Op, Reduce


def split_var(kernel: Kernel, cores: int) -> str | None:
    """The parallel loop the cores share, or None (one core runs the kernel)."""
    loops = [(v, e) for v, e in kernel.parallel if e > 1 and not _reads_index(kernel, v)]
    if cores < 2 or not loops:
        return None
    wide = [v for v, e in loops if e >= cores]
    return wide[0] if wide else max(loops, key=lambda ve: ve[1])[0]


def shares(kernel: Kernel, cores: int) -> list[Kernel]:
    """One kernel per core that has work (fewer than `cores` where the loop is shorter), in core order."""
    var = split_var(kernel, cores)
    if var is None:
        return [kernel]
    extent = dict(kernel.parallel)[var]
    chunk = -(-extent // cores)
    return [chunk_of(kernel, var, start, min(chunk, extent - start)) for start in range(0, extent, chunk)]


def chunk_of(kernel: Kernel, var: str, start: int, size: int) -> Kernel:
    """The kernel over iterations start .. start + size - 1 of its parallel loop `var`."""
    def ix(a: Affine) -> Affine:
        return Affine(a.offset + start * a.coef(var), a.terms, tuple((_expr(d, ix), c) for d, c in a.dynamic))

    extent = dict(kernel.parallel)[var]
    parallel = tuple((v, size if v == var else e) for v, e in kernel.parallel)
    return replace(kernel, name=f"{kernel.name}@{start}", parallel=parallel,
                   phases=tuple(_phase(p, ix) for p in kernel.phases), flops=kernel.flops * size // extent)


def _phase(p, ix):
    if isinstance(p, Map):
        return Map(p.var, p.extent, p.buf, ix(p.index), _expr(p.value, ix))
    if isinstance(p, Reduce):
        store = _phase(p.store, ix) if p.store is not None else None
        return Reduce(p.var, p.extent, p.acc, _expr(p.init, ix), _expr(p.update, ix), store)
    assert isinstance(p, Let), p
    return Let(p.name, _expr(p.value, ix))


def _expr(e, ix):
    if isinstance(e, Load):
        return Load(e.buf, ix(e.index))
    if isinstance(e, Op):
        return Op(e.prim, tuple(_expr(a, ix) for a in e.args))
    return e


def _reads_index(kernel: Kernel, var: str) -> bool:
    def reads(e) -> bool:
        if isinstance(e, Index):
            return e.var == var
        if isinstance(e, Load):
            return any(reads(d) for d, _ in e.index.dynamic)
        return isinstance(e, Op) and any(reads(a) for a in e.args)

    def in_phase(p) -> bool:
        if isinstance(p, Map):
            return reads(p.value) or any(reads(d) for d, _ in p.index.dynamic)
        if isinstance(p, Reduce):
            return reads(p.init) or reads(p.update) or (p.store is not None and in_phase(p.store))
        return reads(p.value)

    return any(in_phase(p) for p in kernel.phases)
