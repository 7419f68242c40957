"""Log and antilog tables of the Galois fields the format uses (as ``reedsolo`` builds them)."""
from __future__ import annotations

import numpy as np


def tables(bits: int, prim: int) -> tuple[np.ndarray, np.ndarray]:
    """(exp, log) of GF(2^bits) with primitive polynomial ``prim`` and generator 2; ``exp`` is
    periodic over twice the field size, so ``exp[log a + log b]`` needs no modulo."""
    q = 1 << bits
    exp = np.zeros(2 * q, dtype=np.int64)
    log = np.zeros(q, dtype=np.int64)
    x = 1
    for i in range(q - 1):
        exp[i] = x
        log[x] = i
        x <<= 1
        if x & q:
            x ^= prim
    for i in range(q - 1, 2 * q):
        exp[i] = exp[i - (q - 1)]
    return exp, log
