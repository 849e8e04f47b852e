"""The tensor-core GEMM's geometry (lowering/isel_simt_mma.py): how a block's warps split its tile, how a slice
of k is laid out in shared memory, how many slices are in flight; and what differs between the precisions
(`Format`) and between GEMMs (`MmaShape`)."""

from __future__ import annotations

from dataclasses import dataclass

from isasim.isa.semantics import Prim
from isasim.lowering.kernel import Load, Map

WARPS_M, WARPS_N = 2, 4
THREADS = 32 * WARPS_M * WARPS_N
MMA_M, MMA_N = 16, 8
TILES = (128, 64, 32)  # a block tile's rows (BM) and columns (BN): 1 to 4 tiles of 16 x 8 per warp each way
WORDS = 8  # 32-bit words along k in a slice's row: one mma's k (8 fp16 or bf16 pairs, 8 int8 quads)
ROW = WORDS + 4  # a shared row, padded (see lowering/isel_simt_mma.py)
STAGES = 3  # slices in shared memory at once: two in flight while the warps multiply the third
CHUNK = 16  # bytes of one cp.async.cg, and of one row of an ldmatrix matrix
WORD_PAD = 8  # words added to a shared row of packed weight words (see lowering/isel_simt_mma.py)
LDMATRIX = {4: "ldmatrix.sync.aligned.m8n8.x4.shared.b16", 2: "ldmatrix.sync.aligned.m8n8.x2.shared.b16"}


@dataclass(frozen=True)
class Format:
    """What one precision's tensor-core GEMM multiplies: its mma, the k of one mma, and how its kernel's
    reduction steps (fp16: one k at a time; bf16 and int8: a 32-bit word of two or four k at a time)."""

    name: str
    mma: Prim
    k: int  # one mma's k: WORDS words
    per_word: int  # elements in a 32-bit word
    per_step: int  # elements of k one trip of the kernel's reduction covers
    int_sums: bool  # int32 accumulators (B32 registers), turned into float32 for the epilogue


FP16 = Format("fp16", Prim.MMA_F16, 16, 2, 1, False)
BF16 = Format("bf16", Prim.MMA_BF16, 16, 2, 2, False)
INT8 = Format("int8", Prim.MMA_S8, 32, 4, 4, True)


@dataclass(frozen=True)
class MmaShape:
    m: int
    n: int
    k: int
    a: Load  # fp16: the fp16 activation [M, K]; bf16: the rounded one, [M, K]; int8: the quantized one
    b: Load  # fp16: the weight [N, K]; bf16: packed [K/2, N, 2]; int8: packed [K/4, N, 4]
    store: Map
    fmt: Format
    batch: tuple[tuple[str, int], ...] = ()  # a batched matmul's batch loops (attention's batch and heads)
    b_rows: bool = False  # B held [K, N] in memory (n contiguous: attention's values), read with ldmatrix.trans

    @property
    def b_words(self) -> bool:
        """B a packed weight (bf16's [K/2, N, 2], int8's [K/4, N, 4]): rows of 32-bit words along n, one word per
        column holding the mma's consecutive k, which shared memory keeps as they are."""
        return self.fmt is not FP16 and not self.b_rows
