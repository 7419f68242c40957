"""Words payloads: values written as fixed-length constrained codewords (the robust codec's stream).

A data oligo of a words stream carries ``payload_nt // n`` codewords of ``n`` nt, one value each,
then filler nucleotides.  Values are spread over the oligos by the interleaver (a lost oligo
costs scattered values).  Each codeword is whitened by one of the 8 GC-class-preserving
permutations of ACGT (:data:`dnaimg.dna.codebook.SIGMAS`) chosen by
:func:`dnaimg.dna.prng.whitening_keys`: Hamming distances, runs and GC balance are unchanged, so
the repair works on the un-whitened word exactly as designed, but a flat image region no longer
writes ACACAC...  Guided scrambling: the encoder tries scrambling seeds 0..11 until the whole
oligo passes :func:`dnaimg.dna.constraints.oligo_ok`; the seed travels in the index.

Reading: :func:`payload_values_batch` decodes every data oligo in parallel (consensus of its
reads, or each read on its own with one or two reads, then the resynchronising codeword decoder,
which follows insertions and deletions by a Viterbi search over the frame drift).
"""
from __future__ import annotations

import numba as nb
import numpy as np

from dnaimg.dna.consensus import consensus_packed, fast_majority_rows
from dnaimg.dna.constraints import oligo_ok
from dnaimg.dna.index import N_SCRAMBLE, encode_index
from dnaimg.dna.prng import interleaver, whiten, whitening_keys
from dnaimg.dna.reads import gather_reads


class WordsError(ValueError):
    pass


def _filler(prev: int, nxt: int, count: int, salt: int) -> list[int]:
    out = []
    for i in range(count):
        follow = nxt if i == count - 1 else -1
        for d in range(4):
            c = (salt + i + d) % 4
            if c != prev and c != follow:
                break
        out.append(c)
        prev = c
    return out


# ---------------------------------------------------------------------------------------------
# assembling oligos

def assemble(layout, number: int, tag: int, words_nt: np.ndarray, n: int) -> tuple[np.ndarray, int]:
    """One oligo for a payload of codewords (un-whitened); tries scrambling seeds 0..11."""
    pf, prc = layout.pf, layout.pr_rc
    count = len(words_nt) // n
    pad = layout.payload_nt - count * n
    for scramble in range(N_SCRAMBLE):
        keys = whitening_keys(tag, number, scramble, count)
        body = whiten(words_nt, n, keys)
        last = int(body[-1]) if len(body) else -1
        fill = np.array(_filler(last, int(prc[0]), pad, number + scramble), dtype=np.uint8)
        oligo = np.concatenate([pf, encode_index(number, scramble, tag), body, fill, prc]).astype(np.uint8)
        if oligo_ok(oligo):
            return oligo, scramble
    raise WordsError(f"oligo {number}: no scrambling seed satisfies the constraints "
                      "(check the primers)")


def values_per_oligo(layout, n: int) -> int:
    return layout.payload_nt // n


def data_oligos(layout, tag: int, key: int, symbols: np.ndarray, words: np.ndarray, first: int = 0,
                progress=None) -> list[np.ndarray]:
    """Values (flat) -> data oligos ``first, first+1, ...`` of image ``tag``, using codeword table
    ``words`` (L, n); the values are spread by the interleaver of ``key``."""
    n = words.shape[1]
    V = values_per_oligo(layout, n)
    flat = np.asarray(symbols, dtype=np.int64).reshape(-1)
    total = flat.size
    N = -(-total // V)
    perm = interleaver(total, key)
    slots = np.empty(N * V, dtype=np.int64)
    slots[:total] = flat[perm]
    # the tail of the last oligo: deterministic filler values (i % levels; the container's outer
    # code computes its parity over the same values)
    slots[total:] = np.arange(N * V - total) % words.shape[0]
    out = []
    for k in range(N):
        vals = slots[k * V:(k + 1) * V]
        oligo, _ = assemble(layout, first + k, tag, words[vals].reshape(-1), n)
        out.append(oligo)
        if progress is not None:
            progress(1)
    return out


def n_data_oligos(layout, n: int, total_values: int) -> int:
    return -(-total_values // values_per_oligo(layout, n))


# ---------------------------------------------------------------------------------------------
# reading payloads back

RESYNC_DRIFT = 8        # largest frame shift (nt) the resynchronising decoder follows
RESYNC_INDEL_COST = 2.0  # cost of one indel, in units of Hamming distance


@nb.njit(cache=True, nogil=True)
def _resync(read, n, count, expected_len, keys, sig_inv, table, dist, indel_cost, dmax):
    """Codeword-aware alignment of a payload read to ``count`` codewords (Viterbi over the frame
    drift d): word j is read at ``j*n + d``; its cost is its Hamming distance to the nearest valid
    codeword after un-whitening; each nt of drift change between words costs ``indel_cost``; the
    final drift should match the read's length.  Returns (values, per word: was it repaired)."""
    R = read.shape[0]
    if R == expected_len and R >= count * n:
        # every word valid in frame: that frame costs 0 and any other costs an indel, so it is
        # the Viterbi answer; no need to run it
        vals = np.empty(count, dtype=np.int64)
        clean = True
        for j in range(count):
            sinv = sig_inv[keys[j]]
            code = 0
            for t in range(n):
                x = read[j * n + t]
                if x > 3:
                    clean = False
                    break
                code = code * 4 + sinv[x]
            if not clean or dist[code] != 0:
                clean = False
                break
            vals[j] = table[code]
        if clean:
            return vals, np.zeros(count, dtype=np.bool_)
    W = 2 * dmax + 1
    INF = 1e18
    cost = np.full((count + 1, W), INF)
    back = np.zeros((count + 1, W), dtype=np.int64)
    cost[0, dmax] = 0.0
    cost[0, dmax - 1] = indel_cost
    cost[0, dmax + 1] = indel_cost
    wcost = np.empty(W)
    wval = np.empty((count, W), dtype=np.int64)
    wbad = np.empty((count, W), dtype=np.int64)
    for j in range(count):
        sinv = sig_inv[keys[j]]
        for di in range(W):
            pos = j * n + di - dmax
            if pos < 0 or pos + n > R:
                wcost[di] = n
                wval[j, di] = -1
                wbad[j, di] = 1
                continue
            code = 0
            extra = 0
            for t in range(n):
                x = read[pos + t]
                if x > 3:
                    x = 0
                    extra += 1
                code = code * 4 + sinv[x]
            dd = dist[code] + extra
            wcost[di] = dd
            wval[j, di] = table[code]
            wbad[j, di] = 1 if dd > 0 else 0
        for di in range(W):
            best = INF
            bi = di
            for dp in range(max(0, di - 2), min(W, di + 3)):
                c = cost[j, dp] + indel_cost * abs(di - dp)
                if c < best:
                    best = c
                    bi = dp
            cost[j + 1, di] = best + wcost[di]
            back[j + 1, di] = bi
    target = R - expected_len
    bd = 0
    best = INF
    for di in range(W):
        c = cost[count, di] + indel_cost * abs(di - dmax - target)
        if c < best:
            best = c
            bd = di
    vals = np.empty(count, dtype=np.int64)
    bad = np.zeros(count, dtype=np.bool_)
    di = bd
    for j in range(count, 0, -1):
        vals[j - 1] = wval[j - 1, di]
        bad[j - 1] = wbad[j - 1, di] > 0
        di = back[j, di]
    return vals, bad


@nb.njit(cache=True, nogil=True, parallel=True)
def payload_values_batch(flat, offs, order, first, slot, seed, k0, tag, payload_nt, n, count, table, dist, sig_inv,
                         few_reads, indel_cost, dmax):
    """The values of every data oligo of a words stream at once, in parallel (the resynchronising
    codeword decoder :func:`_resync` on each oligo's consensus or reads).

    Oligo ``k0 + k`` has the reads ``order[first[slot[k]]:first[slot[k]+1]]`` of the packed store
    (read ``r`` is ``flat[offs[r]:offs[r+1]]``), or none when ``slot[k] < 0``; its scrambling seed is
    ``seed[k]``.  From ``few_reads + 1`` reads up the payload is their nucleotide consensus; with
    fewer, each read is decoded on its own and, with two, each value is taken from the read whose
    codeword was valid (the first read where both or neither were).  Returns values (-1 for
    unreadable or missing) and per value whether its codeword had to be repaired."""
    K = slot.shape[0]
    vals = np.full((K, count), -1, dtype=np.int64)
    badv = np.zeros((K, count), dtype=np.bool_)
    for k in nb.prange(K):
        s = slot[k]
        if s < 0:
            continue
        rows = order[first[s]:first[s + 1]]
        m = rows.shape[0]
        keys = whitening_keys(tag, k0 + k, seed[k], count)
        if m > few_reads:
            # the fast path of the consensus reads the right-length reads where they lie; only
            # when it does not apply are the reads gathered for the alignment rounds
            est = np.empty(payload_nt, dtype=np.uint8)
            if not fast_majority_rows(flat, offs, rows, payload_nt, est):
                rf, ro = gather_reads(flat, offs, rows)
                est = consensus_packed(rf, ro, payload_nt)
            v, bad = _resync(est, n, count, payload_nt, keys, sig_inv, table, dist, indel_cost, dmax)
            vals[k] = v
            badv[k] = bad
            continue
        rf, ro = gather_reads(flat, offs, rows)
        if m == 1:
            v, bad = _resync(rf, n, count, payload_nt, keys, sig_inv, table, dist, indel_cost, dmax)
            vals[k] = v
            badv[k] = bad
        else:
            v1, b1 = _resync(rf[ro[0]:ro[1]], n, count, payload_nt, keys, sig_inv, table, dist, indel_cost, dmax)
            v2, b2 = _resync(rf[ro[1]:ro[2]], n, count, payload_nt, keys, sig_inv, table, dist, indel_cost, dmax)
            for j in range(count):
                if b1[j] and not b2[j]:
                    vals[k, j] = v2[j]
                else:
                    vals[k, j] = v1[j]
                badv[k, j] = b1[j] and b2[j]
    return vals, badv
