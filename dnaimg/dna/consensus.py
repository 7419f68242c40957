"""Consensus of the reads of one oligo: its best estimate of a known length.

Fast path: when at least three reads have exactly the right length and their per-position
majority is clear at every position, that majority is returned at once (clean Illumina-like
reads).  Otherwise, start: a per-position majority of the reads aligned at their start (first half) and at their
end (second half), so that an indel shifts only one side.  Then repeat: align every read to
the current estimate (global edit-distance alignment, gaps placed consistently to the left),
count at each estimate position the bases and deletions the reads put there and at each gap
the bases they insert, and rebuild the estimate by majority; the length is then forced back to
the known length by taking or dropping the indels with the least support.  Stop when the
estimate no longer changes.  Reads that align far worse than the others (another oligo filed
here by mistake, chimeras) do not vote.

    >>> consensus(["ACGTTGCA", "ACGTGCA", "ACGATGCA", "ACGTTGGCA", "CGTTGCA"], 8)
    'ACGTTGCA'
"""
from __future__ import annotations

import numba as nb
import numpy as np

from dnaimg.dna import alphabet as dna

MAX_ITERS = 12
MAX_ALIGNED_READS = 24   # the alignment rounds use at most this many reads


BAND = 10          # extra diagonals each side of the length difference in the banded alignment
MAX_BAND = 32      # widest band; reads further off than this are outliers anyway
_INF = 1 << 28


@nb.njit(cache=True, nogil=True)
def _band_fill(est, read, w, D):
    """Banded global alignment of ``read`` to ``est`` (unit costs), cell (i, j) at ``D[i, j-i+w]``
    for |j - i| <= w; returns the edit distance (``_INF`` when the ends are not in the band)."""
    E = est.shape[0]
    R = read.shape[0]
    W = 2 * w + 1
    for d in range(W):
        j = d - w
        D[0, d] = j if 0 <= j <= E else _INF
    for i in range(1, R + 1):
        ri = read[i - 1]
        for d in range(W):
            j = i + d - w
            if j < 0 or j > E:
                D[i, d] = _INF
                continue
            if j == 0:
                D[i, d] = i
                continue
            best = D[i - 1, d] + (0 if ri == est[j - 1] else 1)
            if d > 0:
                a = D[i, d - 1] + 1
                if a < best:
                    best = a
            if d < W - 1:
                b = D[i - 1, d + 1] + 1
                if b < best:
                    best = b
            D[i, d] = best
    de = E - R + w
    if de < 0 or de >= W:
        return _INF
    return D[R, de]


@nb.njit(cache=True, nogil=True)
def _band_votes(est, read, w, D, base_v, del_v, ins_v, ins_b):
    """Votes of one read from its filled band (see :func:`_band_fill`); same tie-breaking as
    the full table had (match, then deletion, then insertion)."""
    E = est.shape[0]
    i, j = read.shape[0], E
    while i > 0 or j > 0:
        d = j - i + w
        if i > 0 and j > 0 and D[i, d] == D[i - 1, d] + (0 if read[i - 1] == est[j - 1] else 1):
            if read[i - 1] < 4:
                base_v[j - 1, read[i - 1]] += 1
            i -= 1
            j -= 1
        elif j > 0 and d > 0 and D[i, d] == D[i, d - 1] + 1:
            del_v[j - 1] += 1
            j -= 1
        else:
            ins_v[j] += 1
            if read[i - 1] < 4:
                ins_b[j, read[i - 1]] += 1
            i -= 1


@nb.njit(cache=True, nogil=True)
def _argmax4(v):
    best = 0
    for k in range(1, 4):
        if v[k] > v[best]:
            best = k
    return best


@nb.njit(cache=True, nogil=True)
def _argmax4_pref(v, pref):
    best = pref
    for k in range(4):
        if v[k] > v[best]:
            best = k
    return best


@nb.njit(cache=True, nogil=True)
def _initial(flat, offs, length):
    n = offs.shape[0] - 1
    votes = np.zeros((length, 4), dtype=np.int64)
    half = length // 2
    for r in range(n):
        a, b = offs[r], offs[r + 1]
        R = b - a
        for p in range(min(half, R)):
            x = flat[a + p]
            if x < 4:
                votes[p, x] += 1
        for q in range(length - half):
            p = length - 1 - q
            if q >= R:
                break
            x = flat[b - 1 - q]
            if x < 4:
                votes[p, x] += 1
    est = np.zeros(length, dtype=np.uint8)
    for p in range(length):
        est[p] = _argmax4(votes[p])
    return est


@nb.njit(cache=True, nogil=True)
def fast_majority_rows(flat, offs, rows, length, out):
    """:func:`_fast_majority` over the reads ``rows`` of a packed store, read where they lie
    (no copy: only the reads of the right length are touched)."""
    votes = np.zeros((length, 4), dtype=np.int32)
    m = 0
    for r in rows:
        a = offs[r]
        if offs[r + 1] - a != length:
            continue
        m += 1
        for p in range(length):
            x = flat[a + p]
            if x < 4:
                votes[p, x] += 1
    if m < 3:
        return False
    for p in range(length):
        b = _argmax4(votes[p])
        top = votes[p, b]
        second = 0
        for k in range(4):
            if k != b and votes[p, k] > second:
                second = votes[p, k]
        if 2 * top <= m or top - second < 2:
            return False
        out[p] = b
    return True


@nb.njit(cache=True, nogil=True)
def _fast_majority(flat, offs, length, out):
    """Fast path: when at least 3 reads have exactly ``length`` nt and their per-position majority
    is clear everywhere (top count above half and at least 2 ahead of the next), that majority
    is the answer and no alignment is needed.  Returns whether it applied."""
    return fast_majority_rows(flat, offs, np.arange(offs.shape[0] - 1), length, out)


@nb.njit(cache=True, nogil=True)
def consensus_packed(flat, offs, length):
    """Consensus of reads packed as ``flat[offs[r]:offs[r+1]]``; returns uint8[length]."""
    n = offs.shape[0] - 1
    fast = np.empty(length, dtype=np.uint8)
    if _fast_majority(flat, offs, length, fast):
        return fast
    if n > MAX_ALIGNED_READS:
        offs = offs[:MAX_ALIGNED_READS + 1]
        n = MAX_ALIGNED_READS
    est = _initial(flat, offs, length)
    if n <= 1 and n == 1 and offs[1] - offs[0] == length:
        return est
    maxR = 0
    for r in range(n):
        if offs[r + 1] - offs[r] > maxR:
            maxR = offs[r + 1] - offs[r]
    D = np.empty((n, maxR + 1, 2 * MAX_BAND + 1), dtype=np.int32)
    bw = np.empty(n, dtype=np.int64)
    dists = np.zeros(n, dtype=np.int64)
    for _ in range(MAX_ITERS):
        E = est.shape[0]
        base_v = np.zeros((E, 4), dtype=np.int64)
        del_v = np.zeros(E, dtype=np.int64)
        ins_v = np.zeros(E + 1, dtype=np.int64)
        ins_b = np.zeros((E + 1, 4), dtype=np.int64)
        # each read aligned once per round; reads far from the estimate (another oligo filed
        # here by mistake, chimeras) do not vote
        for r in range(n):
            read = flat[offs[r]:offs[r + 1]]
            bw[r] = min(MAX_BAND, abs(read.shape[0] - E) + BAND)
            dists[r] = _band_fill(est, read, bw[r], D[r])
        med = np.median(dists.astype(np.float64)) if n > 0 else 0.0
        limit = max(3.0 * med + 4.0, 0.15 * length)
        voters = 0
        for r in range(n):
            if dists[r] <= limit and dists[r] < _INF:
                _band_votes(est, flat[offs[r]:offs[r + 1]], bw[r], D[r], base_v, del_v, ins_v, ins_b)
                voters += 1
        if voters == 0:
            break
        # margins: > 0 means the reads support the edit
        delm = np.empty(E, dtype=np.int64)
        for j in range(E):
            mb = base_v[j, _argmax4(base_v[j])]
            delm[j] = del_v[j] - mb
        insm = np.empty(E + 1, dtype=np.int64)
        for j in range(E + 1):
            insm[j] = ins_v[j] - (voters - ins_v[j])
        do_del = delm > 0
        do_ins = insm > 0
        newlen = E - do_del.sum() + do_ins.sum()
        while newlen > length:   # shrink: cheapest of cancelling an insertion or adding a deletion
            best, bj, kind = 1 << 60, -1, 0
            for j in range(E + 1):
                if do_ins[j] and insm[j] < best:
                    best, bj, kind = insm[j], j, 0
            for j in range(E):
                if not do_del[j] and -delm[j] < best:
                    best, bj, kind = -delm[j], j, 1
            if kind == 0:
                do_ins[bj] = False
            else:
                do_del[bj] = True
            newlen -= 1
        while newlen < length:   # grow: cheapest of cancelling a deletion or adding an insertion
            best, bj, kind = 1 << 60, -1, 0
            for j in range(E):
                if do_del[j] and delm[j] < best:
                    best, bj, kind = delm[j], j, 0
            for j in range(E + 1):
                if not do_ins[j] and -insm[j] < best:
                    best, bj, kind = -insm[j], j, 1
            if kind == 0:
                do_del[bj] = False
            else:
                do_ins[bj] = True
            newlen += 1
        new = np.empty(length, dtype=np.uint8)
        p = 0
        for j in range(E + 1):
            if do_ins[j]:
                new[p] = _argmax4(ins_b[j])
                p += 1
            if j < E and not do_del[j]:
                new[p] = _argmax4_pref(base_v[j], est[j])
                p += 1
        same = True
        for j in range(length):
            if new[j] != est[j]:
                same = False
                break
        est = new
        if same:
            break
    return est


def pack(reads: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    offs = np.zeros(len(reads) + 1, dtype=np.int64)
    offs[1:] = np.cumsum([len(r) for r in reads])
    flat = np.concatenate(reads).astype(np.uint8) if reads else np.zeros(0, dtype=np.uint8)
    return flat, offs


def consensus_arrays(reads: list[np.ndarray], length: int) -> np.ndarray:
    """Reads of one oligo as uint8 arrays -> uint8 estimate of ``length`` nt."""
    if length <= 0:
        raise ValueError("length must be positive")
    if not reads:
        raise ValueError("no reads to build a consensus from")
    flat, offs = pack([np.asarray(r, dtype=np.uint8) for r in reads])
    return consensus_packed(flat, offs, int(length))


def consensus(reads: list[str], length: int) -> str:
    """Reads of one oligo (same strand, primers and all as they are) -> estimate of ``length`` nt.

    Characters other than A/C/G/T (such as N) never win a vote.
    """
    return dna.decode(consensus_arrays([dna.encode(r) for r in reads], length))
