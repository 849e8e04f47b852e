"""Element types: what a buffer, a register or a tensor holds. The bottom layer: the IR (isa/program.py), the
machines and the captured graph (models/graph.py) all describe their data with it."""

from __future__ import annotations

from enum import Enum

import numpy as np


class DType(Enum):
    F32 = "float32"
    I64 = "int64"
    BOOL = "bool"
    # int8 inference (models/quantize.py): quantized activations, weights, and their int32 column sums
    U8 = "uint8"
    I8 = "int8"
    I32 = "int32"
    # bf16 inference (models/bf16.py): bfloat16 values, held as their 16 bits (numpy has no bfloat16)
    BF16 = "bfloat16"
    # fp16 on a GPU's tensor cores (models/fp16.py): the weights, as IEEE half precision
    F16 = "float16"

    @property
    def itemsize(self) -> int:
        return self.numpy.itemsize

    @property
    def numpy(self) -> np.dtype:
        return np.dtype(np.uint16) if self is DType.BF16 else np.dtype(self.value)


F32_BYTES = DType.F32.itemsize  # the element every float buffer, register lane and shared-memory word holds
