"""What a warp's memory instruction costs, from the addresses its threads touch.

Global memory (compute capability >= 6.0): a warp request is served in 32-byte sectors; it costs the number of
distinct sectors its active threads touch (CUDA C++ Best Practices Guide, "Coalesced Access to Global Memory").
Shared memory: 32 banks of 4 bytes, bank = (byte address / 4) mod 32; threads reading the same word share it
(broadcast), and distinct words in one bank are served one after another, so a request takes as many
wavefronts as the most-loaded bank has distinct words (CUDA C++ Programming Guide, "Shared Memory"). A vector
load (ld.shared.v2/.v4) is also bound by the path that returns data to the registers, 128 bytes a clock (one
register of the warp): it takes at least as many wavefronts as each thread receives registers, or half as many
where every pair of threads n and n^1 (or every n and n^2) reads one address (NVIDIA developer forum,
"Unexpected shared memory bank conflict", answer 2: an LDS.128 takes 4 requests, 2 under that rule).

Both the executor (real addresses) and the cost model (closed-form addresses) call these, one row per warp;
the geometry (warp size, sector bytes, banks) is the GPU's (isa/gpu/*.toml).
"""

from __future__ import annotations

import numpy as np

from isasim.isa.gpu import Gpu


def _distinct(keys: np.ndarray, active: np.ndarray, warp: int) -> tuple[np.ndarray, np.ndarray]:
    """Per warp (row), the sorted keys with inactive lanes as -1, and a mask of each distinct active key."""
    k = np.where(active, keys, -1).reshape(-1, warp)
    step = np.diff(k, axis=1)
    if not (step >= 0).all():  # already in order (consecutive threads, rising addresses): no sort needed
        k.sort(axis=1)
        step = np.diff(k, axis=1)
    first = np.ones(k.shape, dtype=bool)
    first[:, 1:] = step != 0
    return k, first & (k >= 0)


def requests(active: np.ndarray, gpu: Gpu) -> int:
    """Warp instructions that touch memory: warps with at least one active thread."""
    return int(active.reshape(-1, gpu.warp_size).any(axis=1).sum())


def sectors(addr: np.ndarray, active: np.ndarray, gpu: Gpu, width: int) -> int:
    """Distinct sectors each warp's active threads touch, summed over warps (accesses are aligned, so an
    access of `width` <= sector bytes lies in one sector)."""
    _, uniq = _distinct(np.asarray(addr) // gpu.sector_bytes, active, gpu.warp_size)
    return int(uniq.sum())


def wavefronts(addr: np.ndarray, active: np.ndarray, gpu: Gpu, width: int = 4, regs: int = 0) -> int:
    """Shared-memory wavefronts, summed over warps: per warp, the most distinct words any one bank holds. An
    access wider than a word (ldmatrix's 16-byte rows, a 16-byte cp.async) touches each of its words. A vector
    load of `regs` registers a thread takes at least the clocks its data needs on the return path (the module's
    docstring)."""
    banks, warp = gpu.shared_banks, gpu.warp_size
    per = max(1, width // gpu.shared_bank_bytes)
    word = np.asarray(addr) // gpu.shared_bank_bytes
    if per > 1:  # each thread's words side by side: a warp's row holds warp x per keys
        keys = (word.reshape(-1, warp)[:, :, None] + np.arange(per)).reshape(-1, warp * per)
        by_bank = _wavefronts(keys, np.repeat(np.asarray(active).reshape(-1, warp), per, axis=1), banks, warp * per)
    else:
        by_bank = _wavefronts(word, active, banks, warp)
    if regs > 1:  # the return path moves one row of the banks a clock (128 bytes: a register of each thread)
        clocks = -(-regs * warp * 4 // (banks * gpu.shared_bank_bytes))
        by_bank = np.maximum(by_bank, _returns(np.asarray(addr), np.asarray(active), warp, clocks))
    return int(by_bank.sum())


def _returns(addr: np.ndarray, active: np.ndarray, warp: int, clocks: int) -> np.ndarray:
    """Per warp, the clocks a vector load's registers take to come back: `clocks`, halved where every active
    thread n reads the address of thread n^1 (or every one that of n^2); none for a warp with no active thread."""
    a, on = np.broadcast_to(addr, active.shape).reshape(-1, warp), active.reshape(-1, warp)
    lanes = np.arange(warp)
    paired = np.zeros(a.shape[0], dtype=bool)
    for x in (1, 2):
        p = lanes ^ x
        paired |= ((a == a[:, p]) | ~on | ~on[:, p]).all(axis=1)
    return np.where(on.any(axis=1), np.where(paired, clocks // 2, clocks), 0)


def _wavefronts(word: np.ndarray, active: np.ndarray, banks: int, row: int) -> np.ndarray:
    """Per warp (row), the most distinct words any one bank holds."""
    words, uniq = _distinct(word, active, row)
    rows = np.broadcast_to(np.arange(words.shape[0])[:, None], words.shape)
    key = rows[uniq] * banks + words[uniq] % banks
    per_bank = np.bincount(key, minlength=words.shape[0] * banks).reshape(-1, banks)
    return per_bank.max(axis=1)
