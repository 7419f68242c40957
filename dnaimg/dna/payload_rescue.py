"""Filing reads whose index could not be read by what their payload says.

A nanopore read carries indels everywhere, and its index (the first 36 nt of the insert) is
often beyond what the index decoder's indel hypotheses repair: at 10x about half of such reads
used to be set aside, halving the coverage the consensus saw.  Their payload is still mostly
right.  Once every oligo that has reads has a first consensus, each set-aside read is matched
to those consensuses by shared k-mers (``K`` nt, exact): the oligo with the most hits on
one diagonal, at least ``MIN_HITS`` of them and ``MARGIN`` times as many as any other
oligo, and not all within one stretch of ``2 K`` nt of the read, gets the read, its payload
taken from where the hits place the payload's start.  A random 12-mer hits a given 160-nt
payload with probability ~1e-5; but ``MIN_HITS`` overlapping hits are one chance match of
``K + MIN_HITS - 1`` nt, which a random 170-nt read found in a table of 300 random
consensuses once in ~3,000 reads (more often in a larger table): hence the spread.

Knows nothing of images: consensuses in, (read -> oligo row, payload start) out.
"""
from __future__ import annotations

import numba as nb
import numpy as np

K = 12            # k-mer length
MIN_HITS = 6      # k-mers a read must share with its oligo's consensus (on one diagonal, +-DIAG_SLACK)
MARGIN = 3        # ... and this many times more than with any other oligo
MAX_OCC = 4       # k-mers found in more consensus positions than this are not used
DIAG_SLACK = 6    # nt of indel drift allowed between hits on one diagonal


@nb.njit(cache=True, nogil=True, inline="always")
def _roll(code, valid, b, mask):
    """The rolling k-mer code and the count of valid bases behind it, one base further (a base
    > 3 starts over)."""
    if b > 3:
        return 0, 0
    return ((code << 2) | b) & mask, valid + 1


@nb.njit(cache=True, nogil=True)
def _kmers(seq, k):
    """The 2-bit code of the k-mer starting at each position of ``seq`` (-1 where it runs past
    the end or holds a base > 3)."""
    out = np.full(seq.shape[0], -1, dtype=np.int64)
    mask = (1 << (2 * k)) - 1
    code = 0
    valid = 0
    for p in range(seq.shape[0]):
        code, valid = _roll(code, valid, seq[p], mask)
        if valid >= k:
            out[p - k + 1] = code
    return out


@nb.njit(cache=True, nogil=True)
def kmer_table(est, k):
    """Sorted (code, row, position) of every k-mer of every row of ``est`` (n, P) uint8 (a
    k-mer with a base > 3, as rows of 255 for oligos without reads, is skipped)."""
    n, P = est.shape
    cap = n * P
    codes = np.empty(cap, dtype=np.int64)
    rows = np.empty(cap, dtype=np.int64)
    pos = np.empty(cap, dtype=np.int64)
    m = 0
    for i in range(n):
        km = _kmers(est[i], k)
        for p in range(P):
            if km[p] >= 0:
                codes[m] = km[p]
                rows[m] = i
                pos[m] = p
                m += 1
    order = np.argsort(codes[:m], kind="mergesort")
    return codes[:m][order], rows[:m][order], pos[:m][order]


@nb.njit(cache=True, nogil=True)
def _match_one(read, codes, present, rows, pos, k, min_hits, margin, max_occ, slack, hrow, hdiag, hpos):
    """(row, payload start in the read) of the read's oligo, or (-1, 0).  ``present``: a bit per
    k-mer code, set for the codes in ``codes`` (most of a read's k-mers are in no consensus: one
    bit tested instead of a search)."""
    h = 0
    mask = (1 << (2 * k)) - 1
    code = 0
    valid = 0
    for q in range(read.shape[0]):
        code, valid = _roll(code, valid, read[q], mask)
        if valid < k or not (present[code >> 6] >> np.uint64(code & 63)) & np.uint64(1):
            continue
        p = q - k + 1
        lo = np.searchsorted(codes, code)
        hi = lo
        while hi < codes.shape[0] and codes[hi] == code:
            hi += 1
        if hi == lo or hi - lo > max_occ:
            continue
        for j in range(lo, hi):
            if h < hrow.shape[0]:
                hrow[h] = rows[j]
                hdiag[h] = p - pos[j]
                hpos[h] = p
                h += 1
    if h < min_hits:
        return -1, 0
    # per row: the largest set of its hits within +-slack of one diagonal
    order = np.argsort(hrow[:h] * (1 << 22) + (hdiag[:h] + (1 << 21)))
    best_row, best_n, best_diag, second_n = -1, 0, 0, 0
    i = 0
    while i < h:
        r = hrow[order[i]]
        j = i
        while j < h and hrow[order[j]] == r:
            j += 1
        # hits of row r sorted by diagonal: widest window of width 2 * slack
        top, top_d = 0, 0
        a = i
        for b in range(i, j):
            while hdiag[order[b]] - hdiag[order[a]] > 2 * slack:
                a += 1
            if b - a + 1 > top:
                top = b - a + 1
                top_d = hdiag[order[(a + b) // 2]]
        if top > best_n:
            second_n = best_n
            best_row, best_n, best_diag = r, top, top_d
        elif top > second_n:
            second_n = top
        i = j
    if best_n < min_hits or best_n < margin * second_n:
        return -1, 0
    # the payload's start: the diagonal of the first hits (indels drift it along the read); the
    # hits must not all come from one stretch of k + a few nt: MIN_HITS overlapping k-mers are a
    # single chance match of k + MIN_HITS - 1 nt, which a large table meets in a random read
    first_d = 0
    seen = 0
    lo_p = -1
    hi_p = -1
    for q in range(h):
        if hrow[q] == best_row and abs(hdiag[q] - best_diag) <= 2 * slack:
            if seen < 3:
                first_d += hdiag[q]
            seen += 1
            if lo_p < 0:
                lo_p = hpos[q]
            hi_p = hpos[q]
    if hi_p - lo_p < k:
        return -1, 0
    start = int(round(first_d / min(seen, 3)))
    return best_row, max(start, 0)


@nb.njit(cache=True, nogil=True, parallel=True)
def match_reads(flat, offs, skip, codes, present, rows, pos, k, min_hits, margin, max_occ, slack):
    """For each read ``flat[offs[r]:offs[r+1]]`` not in ``skip``: the consensus row it belongs to
    (-1: none, or not clear) and where its payload starts in it."""
    n = offs.shape[0] - 1
    row = np.full(n, -1, dtype=np.int64)
    start = np.zeros(n, dtype=np.int64)
    nblocks = 64
    bs = (n + nblocks - 1) // nblocks
    for blk in nb.prange(nblocks):
        maxlen = 0
        for r in range(blk * bs, min(n, (blk + 1) * bs)):
            maxlen = max(maxlen, offs[r + 1] - offs[r])
        hrow = np.empty(maxlen * max_occ + 1, dtype=np.int64)
        hdiag = np.empty(maxlen * max_occ + 1, dtype=np.int64)
        hpos = np.empty(maxlen * max_occ + 1, dtype=np.int64)
        for r in range(blk * bs, min(n, (blk + 1) * bs)):
            if skip[r]:
                continue
            row[r], start[r] = _match_one(flat[offs[r]:offs[r + 1]], codes, present, rows, pos, k, min_hits,
                                          margin, max_occ, slack, hrow, hdiag, hpos)
    return row, start


def match_to_consensus(flat: np.ndarray, offs: np.ndarray, skip: np.ndarray,
                       est: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reads (packed) against consensus rows ``est`` (n, P): (row or -1, payload start) per read."""
    codes, rows, pos = kmer_table(np.ascontiguousarray(est, dtype=np.uint8), K)
    if codes.size == 0:
        n = len(offs) - 1
        return np.full(n, -1, dtype=np.int64), np.zeros(n, dtype=np.int64)
    return match_reads(flat, offs, skip, codes, _present(codes, K), rows, pos, K, MIN_HITS, MARGIN, MAX_OCC,
                       DIAG_SLACK)


@nb.njit(cache=True, nogil=True)
def _present(codes, k):
    """A bit per k-mer code (4**k bits), set for each of ``codes``."""
    bits = np.zeros(max(1, (1 << (2 * k)) >> 6), dtype=np.uint64)
    for c in codes:
        bits[c >> 6] |= np.uint64(1) << np.uint64(c & 63)
    return bits
