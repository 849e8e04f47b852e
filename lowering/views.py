"""Tensor views: ops that only re-describe existing storage (shape, strides, offset) and move no data.

A `View` says where a tensor's elements live in a storage buffer. View ops compute new views with the same
rules torch uses; reshape of a layout that cannot be re-strided, and contiguous() of a non-contiguous view,
return None and the caller emits a copy kernel (which moves bytes, and is costed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isasim.lowering.kernel import Affine
from isasim.isa.dtype import DType


@dataclass(frozen=True)
class View:
    storage: str
    shape: tuple[int, ...]
    strides: tuple[int, ...]  # elements
    offset: int
    dtype: DType

    @property
    def numel(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def index(self, loop_vars: tuple[str | None, ...]) -> Affine:
        """Affine element index when dim d is walked by loop_vars[d] (None: the dim is fixed at 0)."""
        terms = tuple((v, s) for v, s, n in zip(loop_vars, self.strides, self.shape) if v and n > 1 and s)
        return Affine(self.offset, terms)

    def broadcast_to(self, shape: tuple[int, ...]) -> "View":
        """Right-aligned broadcasting, as in torch: missing and size-1 dims get stride 0."""
        pad = len(shape) - len(self.shape)
        if pad < 0:
            raise ValueError(f"cannot broadcast {self.shape} to {shape}")
        strides = [0] * pad + [s if n != 1 else 0 for s, n in zip(self.strides, self.shape)]
        for mine, want in zip((1,) * pad + self.shape, shape):
            if mine not in (1, want):
                raise ValueError(f"cannot broadcast {self.shape} to {shape}")
        return View(self.storage, tuple(shape), tuple(strides), self.offset, self.dtype)


def contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides, acc = [], 1
    for n in reversed(shape):
        strides.append(acc)
        acc *= max(n, 1)
    return tuple(reversed(strides))


def is_contiguous(v: View) -> bool:
    return all(n == 1 or s == c for n, s, c in zip(v.shape, v.strides, contiguous_strides(v.shape)))


def resolve_shape(shape, numel: int) -> tuple[int, ...]:
    shape = list(shape)
    if -1 in shape:
        known = int(np.prod([n for n in shape if n != -1], dtype=np.int64))
        shape[shape.index(-1)] = numel // max(known, 1)
    return tuple(int(n) for n in shape)


def view_strides(old: View, new_shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """torch's computeStride (aten/src/ATen/TensorUtils.cpp): strides for a view, or None if impossible."""
    if is_contiguous(old):
        return contiguous_strides(new_shape)
    oldshape, oldstride = old.shape, old.strides
    newstride = [0] * len(new_shape)
    view_d = len(new_shape) - 1
    chunk_base = oldstride[-1] if oldstride else 1
    tensor_numel, view_numel = 1, 1
    for tensor_d in range(len(oldshape) - 1, -1, -1):
        tensor_numel *= oldshape[tensor_d]
        if tensor_d == 0 or (oldshape[tensor_d - 1] != 1 and oldstride[tensor_d - 1] != tensor_numel * chunk_base):
            while view_d >= 0 and (view_numel < tensor_numel or new_shape[view_d] == 1):
                newstride[view_d] = view_numel * chunk_base
                view_numel *= new_shape[view_d]
                view_d -= 1
            if view_numel != tensor_numel:
                return None
            if tensor_d > 0:
                chunk_base = oldstride[tensor_d - 1]
                tensor_numel, view_numel = 1, 1
    return tuple(newstride) if view_d == -1 else None


def reshape(v: View, shape) -> View | None:
    new_shape = resolve_shape(shape, v.numel)
    strides = view_strides(v, new_shape)
    return None if strides is None else View(v.storage, new_shape, strides, v.offset, v.dtype)


def _dim(d: int, ndim: int) -> int:
    return d + ndim if d < 0 else d


def permute(v: View, dims) -> View:
    dims = [_dim(d, len(v.shape)) for d in dims]
    return View(v.storage, tuple(v.shape[d] for d in dims), tuple(v.strides[d] for d in dims), v.offset, v.dtype)


def transpose(v: View, d0: int, d1: int) -> View:
    dims = list(range(len(v.shape)))
    d0, d1 = _dim(d0, len(dims)), _dim(d1, len(dims))
    dims[d0], dims[d1] = dims[d1], dims[d0]
    return permute(v, dims)


def expand(v: View, sizes) -> View:
    sizes = list(sizes)
    pad = len(sizes) - len(v.shape)
    shape = [v.shape[i - pad] if n == -1 else n for i, n in enumerate(sizes)]
    return v.broadcast_to(tuple(shape))


def unsqueeze(v: View, dim: int) -> View:
    dim = _dim(dim, len(v.shape) + 1)
    return View(v.storage, v.shape[:dim] + (1,) + v.shape[dim:], v.strides[:dim] + (0,) + v.strides[dim:],
                v.offset, v.dtype)


def squeeze(v: View, dims) -> View:
    dims = {_dim(d, len(v.shape)) for d in (dims if isinstance(dims, (tuple, list)) else (dims,))}
    keep = [i for i in range(len(v.shape)) if not (i in dims and v.shape[i] == 1)]
    return View(v.storage, tuple(v.shape[i] for i in keep), tuple(v.strides[i] for i in keep), v.offset, v.dtype)


def slice_(v: View, dim: int = 0, start=None, end=None, step: int = 1) -> View:
    dim = _dim(dim, len(v.shape))
    n = v.shape[dim]
    start = 0 if start is None else (start + n if start < 0 else start)
    end = n if end is None else min(end + n if end < 0 else end, n)
    start = min(max(start, 0), n)
    length = max(0, -(-(end - start) // step))
    shape = v.shape[:dim] + (length,) + v.shape[dim + 1:]
    strides = v.strides[:dim] + (v.strides[dim] * step,) + v.strides[dim + 1:]
    return View(v.storage, shape, strides, v.offset + start * v.strides[dim], v.dtype)


def select(v: View, dim: int, index: int) -> View:
    dim = _dim(dim, len(v.shape))
    index = index + v.shape[dim] if index < 0 else index
    return View(v.storage, v.shape[:dim] + v.shape[dim + 1:], v.strides[:dim] + v.strides[dim + 1:],
                v.offset + index * v.strides[dim], v.dtype)
