"""What a warp's memory instruction costs, from the addresses its threads touch.

Global memory (compute capability >= 6.0): a warp request is served in 32-byte sectors; it costs the number of
distinct sectors its active threads touch (CUDA C++ Best Practices Guide, "Coalesced Access to Global Memory").
Shared memory: 32 banks of 4 bytes, bank = (byte address / 4) mod 32; threads reading the same word share it
(broadcast), and distinct words in one bank are served one after another, so a request takes as many
wavefronts as the most-loaded bank has distinct words (CUDA C++ Programming Guide, "Shared Memory").

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


def wavefronts(addr: np.ndarray, active: np.ndarray, gpu: Gpu, width: int = 4) -> int:
    """Shared-memory wavefronts, summed over warps: per warp, the most distinct words any one bank holds. An
    access wider than a word (ldmatrix's 16-byte rows, a 16-byte cp.async) touches each of its words."""
    banks = gpu.shared_banks
    per = max(1, width // gpu.shared_bank_bytes)
    word = np.asarray(addr) // gpu.shared_bank_bytes
    if per > 1:  # each thread's words side by side: a warp's row holds warp x per keys
        word = (word.reshape(-1, gpu.warp_size)[:, :, None] + np.arange(per)).reshape(-1, gpu.warp_size * per)
        active = np.repeat(np.asarray(active).reshape(-1, gpu.warp_size), per, axis=1)
        return _wavefronts(word, active, banks, gpu.warp_size * per)
    return _wavefronts(word, active, banks, gpu.warp_size)


def _wavefronts(word: np.ndarray, active: np.ndarray, banks: int, row: int) -> int:
    words, uniq = _distinct(word, active, row)
    rows = np.broadcast_to(np.arange(words.shape[0])[:, None], words.shape)
    key = rows[uniq] * banks + words[uniq] % banks
    per_bank = np.bincount(key, minlength=words.shape[0] * banks).reshape(-1, banks)
    return int(per_bank.max(axis=1).sum())
