"""The outer code: Reed-Solomon over GF(256) across oligos, so lost oligos can be rebuilt.

A stream's data oligos are rows of symbols (bytes, or the values of a words stream), all rows of
one stream the same width ``C``.  Rows are dealt to ``blocks`` blocks in turn (row ``j`` goes to
block ``j % blocks`` at position ``j // blocks``), so a run of neighbouring lost oligos spreads
over the blocks.  In each block, every column is a systematic, shortened RS(K + P, K) codeword
over GF(256) (``reedsolo``'s code: primitive polynomial 0x11d, generator 2, first consecutive
root 0; the K data symbols first, then the P parity symbols), ``K + P <= 255``.  Parity row ``i``
of block ``b`` is the stream's parity row ``b * P + i``.

Decoding: erasures are the cells whose oligo was lost or failed its inner code.  Per block the
erased data rows are solved from the parity rows (a small e x e system over GF(256), the same
for every column with the same erasures: vectorised over the columns); columns where the
spare parity disagrees (an undetected wrong symbol) are decoded by ``reedsolo`` with errors and
erasures (``2 * errors + erasures <= P``).

:func:`plan` chooses the blocks: the fewest with ``K + ceil(redundancy * K) <= 255``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import reedsolo

from dnaimg.dna.galois import tables

MAX_N = 255

# GF(256) tables, primitive polynomial 0x11d, generator 2 (as reedsolo builds them)
_EXP, _LOG = tables(8, 0x11D)


def _mul_table() -> np.ndarray:
    a = np.arange(256)
    m = _EXP[(_LOG[a][:, None] + _LOG[a][None, :]) % 255].astype(np.uint8)
    m[0, :] = 0
    m[:, 0] = 0
    return m


_MUL = _mul_table()          # 256 x 256 products: one gather per multiplication


def gf_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return _MUL[np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)].astype(np.int64)


def gf_inv(a: int) -> int:
    if a == 0:
        raise ZeroDivisionError("GF(256) inverse of 0")
    return int(_EXP[255 - _LOG[a]])


def gf_matmul(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """(m, k) x (k, c) over GF(256): products by table, XOR-summed over k (in column chunks)."""
    A = np.asarray(A, dtype=np.int64)
    B = np.asarray(B, dtype=np.int64)
    m, k = A.shape
    c = B.shape[1]
    out = np.empty((m, c), dtype=np.int64)
    step = max(1, (1 << 24) // max(1, m * k))
    for j in range(0, c, step):
        out[:, j:j + step] = np.bitwise_xor.reduce(_MUL[A[:, :, None], B[None, :, j:j + step]], axis=1)
    return out


def gf_solve(A: np.ndarray, B: np.ndarray) -> np.ndarray | None:
    """Solve A X = B over GF(256) for square A (Gauss-Jordan); None if A is singular."""
    A = A.astype(np.int64).copy()
    B = B.astype(np.int64).copy()
    n = A.shape[0]
    for c in range(n):
        piv = next((r for r in range(c, n) if A[r, c]), None)
        if piv is None:
            return None
        if piv != c:
            A[[c, piv]] = A[[piv, c]]
            B[[c, piv]] = B[[piv, c]]
        inv = gf_inv(int(A[c, c]))
        A[c] = gf_mul(A[c], inv)
        B[c] = gf_mul(B[c], inv)
        for r in range(n):
            if r != c and A[r, c]:
                f = int(A[r, c])
                A[r] ^= gf_mul(A[c], f)
                B[r] ^= gf_mul(B[c], f)
    return B


@lru_cache(maxsize=64)
def parity_matrix(k: int, p: int) -> np.ndarray:
    """(p, k): parity = M x data, for reedsolo's systematic RS with ``p`` parity symbols."""
    rs = reedsolo.RSCodec(nsym=p, nsize=MAX_N)
    M = np.zeros((p, k), dtype=np.int64)
    for j in range(k):
        msg = bytearray(k)
        msg[j] = 1
        M[:, j] = list(rs.encode(msg)[k:])
    M.setflags(write=False)
    return M


@lru_cache(maxsize=16)
def _codec(p: int) -> reedsolo.RSCodec:
    return reedsolo.RSCodec(nsym=p, nsize=MAX_N)


@dataclass(frozen=True)
class Plan:
    rows: int          # data rows
    blocks: int        # 0: no outer code
    parity: int        # parity rows per block

    @property
    def parity_rows(self) -> int:
        return self.blocks * self.parity

    def block_rows(self, b: int) -> np.ndarray:
        """The data rows of block ``b``."""
        return np.arange(b, self.rows, self.blocks)


def plan(rows: int, redundancy: float) -> Plan:
    """Blocks and parity rows per block for ``rows`` data rows at ``redundancy`` (parity rows per
    data row): the fewest blocks with K + ceil(redundancy * K) <= 255."""
    if redundancy <= 0 or rows == 0:
        return Plan(rows, 0, 0)
    if redundancy > 4:
        raise ValueError("redundancy above 4 (400 %) is not supported")
    b = 1
    while True:
        k = -(-rows // b)
        p = max(1, int(np.ceil(redundancy * k - 1e-9)))
        if k + p <= MAX_N:
            return Plan(rows, b, p)
        b += 1


def encode(data: np.ndarray, pl: Plan) -> np.ndarray:
    """(rows, C) symbols 0..255 -> (blocks * parity, C) parity rows."""
    data = np.asarray(data, dtype=np.int64)
    out = np.zeros((pl.parity_rows, data.shape[1]), dtype=np.int64)
    for b in range(pl.blocks):
        idx = pl.block_rows(b)
        M = parity_matrix(len(idx), pl.parity)
        out[b * pl.parity:(b + 1) * pl.parity] = gf_matmul(M, data[idx])
    return out


def decode(data: np.ndarray, data_erased: np.ndarray, parity: np.ndarray, parity_erased: np.ndarray,
           pl: Plan, data_suspect: np.ndarray | None = None,
           parity_suspect: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Rebuild the data rows.  ``data`` (rows, C) and ``parity`` (parity rows, C) as read, with
    boolean masks of the erased cells (nothing read) and, optionally, of the *suspect* ones (read,
    but their oligo failed its inner code, or the codeword had to be repaired: most such cells
    are still right).  Suspect cells are first treated as erasures; in a column where that is
    more than the code can take, they are used as read and only the erased cells are erasures
    (errors-and-erasures decoding, ``2 * errors + erasures <= P``).  Returns (data, cells not
    rebuilt: erased or suspect cells of the columns beyond capacity, report); those cells stay as
    read (erased ones as 0)."""
    data = np.asarray(data, dtype=np.int64).copy()
    d_er = np.asarray(data_erased, dtype=bool)
    parity = np.asarray(parity, dtype=np.int64)
    p_er = np.asarray(parity_erased, dtype=bool)
    d_sus = d_er if data_suspect is None else (d_er | np.asarray(data_suspect, dtype=bool))
    p_sus = p_er if parity_suspect is None else (p_er | np.asarray(parity_suspect, dtype=bool))
    data[d_er] = 0
    hard_d, hard_p = d_er, p_er
    d_er = d_sus.copy()             # pass 1: suspect cells are erasures too
    p_er = p_sus
    rep = {"blocks": pl.blocks, "parity_rows_per_block": pl.parity, "erased_cells": int(d_er.sum()),
           "rebuilt_cells": 0, "corrected_columns": 0, "failed_columns": 0, "failed_blocks": 0}
    if pl.blocks == 0:
        rep["failed_columns"] = int(d_er.any(axis=0).sum())
        return data, d_er, rep
    for b in range(pl.blocks):
        idx = pl.block_rows(b)
        K, P = len(idx), pl.parity
        M = parity_matrix(K, P)
        D, DE = data[idx], d_er[idx]
        Pr, PE = parity[b * P:(b + 1) * P], p_er[b * P:(b + 1) * P]
        HD, HP = hard_d[idx], hard_p[b * P:(b + 1) * P]
        # group the columns by their erasure pattern
        pattern = np.concatenate([DE, PE]).T            # (C, K + P)
        keys, inverse = np.unique(pattern, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        bad_cols = []
        for g, key in enumerate(keys):
            cols = np.flatnonzero(inverse == g)
            er_d = np.flatnonzero(key[:K])
            ok_p = np.flatnonzero(~key[K:])
            e = len(er_d)
            if e > len(ok_p):
                bad_cols.extend(cols.tolist())
                continue
            Dc = D[:, cols].copy()
            Dc[er_d] = 0
            if e:
                # rows ok_p[:e] of  M[:, er] x D[er] = parity - M[:, known] x D[known]
                rhs = Pr[ok_p[:e]][:, cols] ^ gf_matmul(M[ok_p[:e]], Dc)
                sol = gf_solve(M[np.ix_(ok_p[:e], er_d)], rhs)
                if sol is None:
                    bad_cols.extend(cols.tolist())
                    continue
                Dc[er_d] = sol
            spare = ok_p[e:]
            if len(spare):
                check = gf_matmul(M[spare], Dc) ^ Pr[spare][:, cols]
                wrong = check.any(axis=0)
            else:
                wrong = np.zeros(len(cols), dtype=bool)
            good = cols[~wrong]
            D[:, good] = Dc[:, ~wrong]
            DE[:, good] = False
            if e:
                rep["rebuilt_cells"] += e * len(good)
            bad_cols.extend(cols[wrong].tolist())
        # columns with a disagreement (or too many erasures): errors-and-erasures decoding,
        # with the suspect cells erased, then as read; then, learning from the columns decoded so
        # far which rows were wrong (a read with an indel is wrong in most columns), with those
        # rows erased
        rs = _codec(P)
        read = np.concatenate([D, Pr])                 # the block as read (rebuilt columns aside)
        hard = np.concatenate([HD, HP])
        done = np.zeros(read.shape[1], dtype=bool)
        done[[c for c in range(read.shape[1]) if c not in set(bad_cols)]] = True
        full = np.concatenate([D, gf_matmul(M, D)]) if len(bad_cols) else None
        failed = []
        for attempt in range(2):
            if attempt:
                if not failed or not done.any():
                    break
                # rows wrong somewhere in a decoded column (as read vs decoded, cells not erased)
                wrong_rows = ((full[:, done] != read[:, done]) & ~hard[:, done]).any(axis=1)
                todo, failed = failed, []
            else:
                wrong_rows, todo = None, bad_cols
            for c in todo:
                word = bytearray(read[:, c].astype(np.uint8).tobytes())
                sets = [hard[:, c] | wrong_rows] if attempt else \
                    [np.concatenate([DE[:, c], PE[:, c]]), hard[:, c]]
                for erased in sets:
                    erase = np.flatnonzero(erased).tolist()
                    if len(erase) > P:
                        continue
                    try:
                        msg = rs.decode(bytearray(word), erase_pos=erase or None)[0]
                    except (reedsolo.ReedSolomonError, ZeroDivisionError, IndexError, ValueError):
                        continue
                    D[:, c] = np.frombuffer(bytes(msg), dtype=np.uint8)
                    DE[:, c] = False
                    full[:, c] = np.concatenate([D[:, c], gf_matmul(M, D[:, [c]])[:, 0]])
                    done[c] = True
                    rep["corrected_columns"] += 1
                    break
                else:
                    failed.append(c)
        rep["failed_columns"] += len(failed)
        if DE.any():
            rep["failed_blocks"] += 1
        data[idx], d_er[idx] = D, DE
    return data, d_er, rep
