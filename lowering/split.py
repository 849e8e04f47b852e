"""A kernel split across the cores of one socket, as ATen's and oneDNN's OpenMP loops split theirs: one
parallel loop cut into equal contiguous chunks (OpenMP's static schedule: ceil(E / cores) iterations each,
the last core taking what is left), one chunk per core. Each chunk is a kernel of its own: the original with
that loop's extent cut to the chunk and every index moved to the chunk's first iteration. So it lowers,
costs and executes like any kernel, and the chunks together write what the whole kernel writes, each output
element once. No reduction is split, so the result is bit-identical to one core's.

Which loop: any parallel one the kernel does not read as a value (arange and masks count from the loop's
index, so it stays whole) can be split: `splittable` lists them. `split_var` names the default: the outermost
with at least as many iterations as cores (a GEMM's rows, the heads of an attention matmul, a layer norm's
rows), else the one with the most (a GEMM of one row splits its columns).

A grid splits two loops at once, as oneDNN partitions a GEMM's output into blocks: c1 parts of the outer loop
times c2 of the inner, cores numbered outer-major. `grids` lists the candidates (every loop alone, every pair
with every factorization of the cores); engine/cores.py chooses among them by cost. `domain_boxes` gives the
rectangles of the loop space that the cores of each last-level-cache domain cover together.
"""

from __future__ import annotations

from dataclasses import replace

from isasim.lowering.kernel import Affine, Index, Kernel, Let, Load, Map, Op, Reduce


def splittable(kernel: Kernel) -> list[str]:
    """The parallel loops that cores can share, outermost first."""
    return [v for v, e in kernel.parallel if e > 1 and not _reads_index(kernel, v)]


def split_var(kernel: Kernel, cores: int) -> str | None:
    """The default loop the cores share, or None (one core runs the kernel)."""
    loops = [(v, dict(kernel.parallel)[v]) for v in splittable(kernel)]
    if cores < 2 or not loops:
        return None
    wide = [v for v, e in loops if e >= cores]
    return wide[0] if wide else max(loops, key=lambda ve: ve[1])[0]


def bounds(extent: int, cores: int) -> list[tuple[int, int]]:
    """(start, size) of each core's chunk of a loop of `extent` iterations: OpenMP's static schedule."""
    chunk = -(-extent // cores)
    return [(start, min(chunk, extent - start)) for start in range(0, extent, chunk)]


def shares(kernel: Kernel, cores: int, var: str | None = None) -> list[Kernel]:
    """One kernel per core that has work (fewer than `cores` where the loop is shorter), in core order; `var`:
    the loop to split (default: `split_var`'s)."""
    var = var or split_var(kernel, cores)
    if var is None or cores < 2:
        return [kernel]
    return [chunk_of(kernel, var, start, size) for start, size in bounds(dict(kernel.parallel)[var], cores)]


Grid = tuple[tuple[str, int], ...]  # (loop, parts) per split loop, outermost first
Box = tuple[tuple[str, int, int], ...]  # (loop, start, size) per split loop: one core's chunk, or a domain's


def grids(kernel: Kernel, cores: int) -> list[Grid]:
    """Every way to share the kernel among `cores`: each splittable loop alone, and each pair of them (outer,
    inner) with c1 x c2 = cores, c1 and c2 above 1 and neither above its loop's extent."""
    loops = splittable(kernel) if cores > 1 else []
    extent = dict(kernel.parallel)
    out: list[Grid] = [((v, cores),) for v in loops]
    for i, outer in enumerate(loops):
        for inner in loops[i + 1:]:
            out += [((outer, c1), (inner, cores // c1)) for c1 in range(2, cores // 2 + 1)
                    if cores % c1 == 0 and c1 <= extent[outer] and cores // c1 <= extent[inner]]
    return out


def boxes(kernel: Kernel, grid: Grid) -> list[Box]:
    """Each busy core's chunk, in core order (outer-major)."""
    extent = dict(kernel.parallel)
    per_loop = [[(v, start, size) for start, size in bounds(extent[v], parts)] for v, parts in grid]
    out: list[Box] = [()]
    for dim in per_loop:
        out = [box + (b,) for box in out for b in dim]
    return out


def box_kernel(kernel: Kernel, box: Box) -> Kernel:
    for var, start, size in box:
        kernel = chunk_of(kernel, var, start, size)
    return kernel


def domain_boxes(kernel: Kernel, grid: Grid, llc_cores: int) -> list[list[Box]]:
    """Per last-level cache (`llc_cores` consecutive cores), in order, the rectangles of the loop space that
    together cover what its cores run: a domain that starts or ends inside a row of the grid contributes that
    row's part as a rectangle of its own."""
    extent = dict(kernel.parallel)
    per_loop = [bounds(extent[v], parts) for v, parts in grid]
    inner = per_loop[-1] if len(grid) > 1 else [(0, 1)]
    outer = per_loop[0]
    n_inner = len(inner) if len(grid) > 1 else 1
    used = len(outer) * n_inner

    def rect(i0: int, i1: int, j0: int, j1: int) -> Box:
        o = outer[i0][0], outer[i1 - 1][0] + outer[i1 - 1][1] - outer[i0][0]
        box: Box = ((grid[0][0], *o),)
        if len(grid) > 1:
            box += ((grid[1][0], inner[j0][0], inner[j1 - 1][0] + inner[j1 - 1][1] - inner[j0][0]),)
        return box

    out: list[list[Box]] = []
    for lo in range(0, used, llc_cores):
        hi = min(lo + llc_cores, used)
        out.append([])
        full_from = full_to = None
        for i in range(lo // n_inner, (hi - 1) // n_inner + 1):
            j0, j1 = max(lo - i * n_inner, 0), min(hi - i * n_inner, n_inner)
            if (j0, j1) == (0, n_inner):  # whole rows merge into one rectangle
                full_from = i if full_from is None else full_from
                full_to = i + 1
            else:
                out[-1].append(rect(i, i + 1, j0, j1))
        if full_from is not None:
            out[-1].append(rect(full_from, full_to, 0, n_inner))
    return out


def moved(kernel: Kernel, var: str, start: int) -> Kernel:
    """The kernel with every index moved to iteration `start` of loop `var` (a parallel loop, a Reduce's or a
    Map's own), its extents as they were."""
    def ix(a: Affine) -> Affine:
        return Affine(a.offset + start * a.coef(var), a.terms, tuple((_expr(d, ix), c) for d, c in a.dynamic))

    return replace(kernel, phases=tuple(_phase(p, ix) for p in kernel.phases))


def chunk_of(kernel: Kernel, var: str, start: int, size: int) -> Kernel:
    """The kernel over iterations start .. start + size - 1 of its parallel loop `var`."""
    extent = dict(kernel.parallel)[var]
    parallel = tuple((v, size if v == var else e) for v, e in kernel.parallel)
    return replace(moved(kernel, var, start), name=f"{kernel.name}@{start}", parallel=parallel,
                   flops=kernel.flops * size // extent)


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
