"""Nearest-codeword repair: map any n-nt word to the closest active codeword in Hamming distance.

Rule (deterministic): among the active codewords at minimum Hamming distance from the received
word, take the one whose *value* is the lower median of the tied values.  Tied candidates are
typically spread around the true value, so the median costs less than an arbitrary pick.

For n <= 10 the rule is precomputed once into a lookup table over all 4^n words
(:func:`build_repair_table`), and repairing is a gather: ``values = table[codes]``.
:func:`repair_direct` searches the codebook per word (for long codewords) and
:func:`repair_numpy` is a plain numpy brute force used as the reference and the benchmark
baseline.
"""
from __future__ import annotations

import numba as nb
import numpy as np

TABLE_MAX_N = 10


@nb.njit(cache=True, nogil=True)
def nearest_value(word, active):
    """Value (row of ``active``) chosen by the repair rule for one word (uint8[n])."""
    L, n = active.shape
    best = n + 1
    count = 0
    for v in range(L):
        d = 0
        for j in range(n):
            if word[j] != active[v, j]:
                d += 1
        if d < best:
            best = d
            count = 1
        elif d == best:
            count += 1
    rank = (count - 1) // 2
    seen = 0
    for v in range(L):
        d = 0
        for j in range(n):
            if word[j] != active[v, j]:
                d += 1
        if d == best:
            if seen == rank:
                return v
            seen += 1
    return -1


@nb.njit(cache=True, nogil=True)
def build_repair_table(active):
    """Lookup table over all 4^n words: code (base-4, first nt most significant) -> value."""
    L, n = active.shape
    size = 1 << (2 * n)
    table = np.empty(size, dtype=np.int32)
    word = np.empty(n, dtype=np.uint8)
    for code in range(size):
        c = code
        for j in range(n - 1, -1, -1):
            word[j] = c & 3
            c >>= 2
        table[code] = nearest_value(word, active)
    return table


@nb.njit(cache=True, nogil=True)
def repair_with_table(nts, n, table):
    """Flat nucleotide array (K*n,) -> K repaired values, via the lookup table."""
    K = nts.shape[0] // n
    out = np.empty(K, dtype=np.int32)
    for k in range(K):
        c = 0
        for j in range(n):
            c = (c << 2) | (nts[k * n + j] & 3)
        out[k] = table[c]
    return out


@nb.njit(cache=True, nogil=True)
def repair_direct(nts, n, active):
    """Flat nucleotide array (K*n,) -> K repaired values, by searching the codebook per word."""
    K = nts.shape[0] // n
    out = np.empty(K, dtype=np.int32)
    for k in range(K):
        out[k] = nearest_value(nts[k * n:(k + 1) * n], active)
    return out


def repair_numpy(received: np.ndarray, active: np.ndarray) -> np.ndarray:
    """Reference brute force in plain numpy: received (K, n) -> values (K,), same rule."""
    d = (received[:, None, :] != active[None, :, :]).sum(axis=2)          # (K, L)
    tied = d == d.min(axis=1, keepdims=True)
    rank = (tied.sum(axis=1) - 1) // 2
    pos = np.cumsum(tied, axis=1) - 1
    hit = tied & (pos == rank[:, None])
    return hit.argmax(axis=1).astype(np.int32)


@nb.njit(cache=True, nogil=True)
def _distance_table(active, table):
    """Hamming distance from every word (by code) to the codeword the repair picks."""
    L, n = active.shape
    out = np.empty(table.shape[0], dtype=np.int32)
    for code in range(table.shape[0]):
        d = 0
        v = table[code]
        for j in range(n):
            if ((code >> (2 * (n - 1 - j))) & 3) != active[v, j]:
                d += 1
        out[code] = d
    return out


class Repairer:
    """Repairs flat nucleotide arrays against one active codebook (rows = values)."""

    def __init__(self, active: np.ndarray):
        self.active = np.ascontiguousarray(active, dtype=np.uint8)
        self.n = self.active.shape[1]
        self.table = build_repair_table(self.active) if self.n <= TABLE_MAX_N else None
        self.dist = _distance_table(self.active, self.table) if self.table is not None else None

    def __call__(self, nts: np.ndarray) -> np.ndarray:
        nts = np.ascontiguousarray(nts, dtype=np.uint8)
        if self.table is not None:
            return repair_with_table(nts, self.n, self.table)
        return repair_direct(nts, self.n, self.active)

    def is_valid(self, nts: np.ndarray) -> np.ndarray:
        """Per word: is it exactly an active codeword?"""
        words = np.ascontiguousarray(nts, dtype=np.uint8).reshape(-1, self.n)
        vals = self(nts)
        return np.all(self.active[vals] == words, axis=1)
