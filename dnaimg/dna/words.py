"""Words payloads: values written as fixed-length constrained codewords (the robust codec's stream).

A data oligo of a words stream carries ``payload_nt // n`` codewords of ``n`` nt, one value each,
then filler nucleotides.  Values are spread over the oligos by the interleaver (a lost oligo
costs scattered values).  Each codeword is whitened by one of the 8 GC-class-preserving
permutations of ACGT (:data:`dnaimg.dna.codebook.SIGMAS`) chosen by
:func:`dnaimg.dna.prng.whitening_keys`: Hamming distances, runs and GC balance are unchanged, so
the repair works on the un-whitened word exactly as designed, but a flat image region no longer
writes ACACAC...  Guided scrambling: the encoder tries scrambling seeds 0..11 until the whole
oligo passes :func:`dnaimg.dna.constraints.oligo_ok`; the seed travels in the index.

**Markers** (stream kind 2, format version 4; ``dnaimg encode --markers``): a marker code after
Wang et al. 2012 (concatenated marker codes): after every :func:`marker_every` codewords
(8 nt of codewords or a little more) come ``MARKER_NT`` = 2 known nucleotides, marker ``i`` of an
oligo being ``MARKER_PAIRS[(i + seed) % 4]`` (AC, GT, CA, TG; ``seed`` the scrambling seed).  The
resync decoder scores them as segments of known nucleotides, so that an insertion or deletion is
found within a few codewords, and the values of a block between two markers that both match at the
same drift, with no repaired codeword, are trusted even on a read with indels
(:func:`_trusted_blocks`); the container erases the others instead of guessing them.

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

MARKER_NT = 2
MARKER_PAIRS = np.array([[0, 1], [2, 3], [1, 0], [3, 2]], dtype=np.uint8)   # AC, GT, CA, TG


def marker_every(n: int) -> int:
    """Codewords between two markers: ceil(8 / n) (4 for 2-nt codewords, 3 for 3-nt, 2 for 4-nt)."""
    return -(-8 // n)


def segments(payload_nt: int, n: int, marked: bool = False, every: int | None = None,
             marker_nt: int = MARKER_NT) -> tuple[np.ndarray, np.ndarray, int]:
    """The payload's segments in order: start (nt) and kind (0 codeword, 1 marker) of each, and the
    number of codewords.  Unmarked: ``payload_nt // n`` codewords back to back.  Marked: groups of
    :func:`marker_every` codewords, each followed by a marker while another codeword still fits
    after it.  What is left after the last segment is filler.  (``every``, ``marker_nt``: other
    spacings, for measurements only; the format has the defaults.)"""
    if not marked:
        count = payload_nt // n
        return np.arange(count, dtype=np.int64) * n, np.zeros(count, dtype=np.uint8), count
    K = every or marker_every(n)
    starts, kinds = [], []
    pos = 0
    while pos + n <= payload_nt:
        for _ in range(K):
            if pos + n > payload_nt:
                break
            starts.append(pos)
            kinds.append(0)
            pos += n
        if pos + marker_nt + n > payload_nt:
            break
        starts.append(pos)
        kinds.append(1)
        pos += marker_nt
    kinds = np.array(kinds, dtype=np.uint8)
    return np.array(starts, dtype=np.int64), kinds, int((kinds == 0).sum())


def segments_end(starts: np.ndarray, kinds: np.ndarray, n: int) -> int:
    return int(starts[-1] + (MARKER_NT if kinds[-1] else n)) if len(starts) else 0


def assemble(layout, number: int, tag: int, words_nt: np.ndarray, n: int,
             marked: bool = False) -> tuple[np.ndarray, int]:
    """One oligo for a payload of codewords (un-whitened; markers between them when ``marked``);
    tries scrambling seeds 0..11."""
    pf, prc = layout.pf, layout.pr_rc
    count = len(words_nt) // n
    starts, kinds, _ = segments(layout.payload_nt, n, marked) if marked else (None, None, count)
    used = segments_end(starts, kinds, n) if marked else count * n
    pad = layout.payload_nt - used
    for scramble in range(N_SCRAMBLE):
        keys = whitening_keys(tag, number, scramble, count)
        body = whiten(words_nt, n, keys)
        if marked:
            body = _with_markers(body, starts, kinds, n, scramble)
        last = int(body[-1]) if len(body) else -1
        fill = np.array(_filler(last, int(prc[0]), pad, number + scramble), dtype=np.uint8)
        oligo = np.concatenate([pf, encode_index(number, scramble, tag), body, fill, prc]).astype(np.uint8)
        if oligo_ok(oligo):
            return oligo, scramble
    raise WordsError(f"oligo {number}: no scrambling seed satisfies the constraints "
                      "(check the primers)")


def _with_markers(body: np.ndarray, starts: np.ndarray, kinds: np.ndarray, n: int, scramble: int) -> np.ndarray:
    out = np.empty(segments_end(starts, kinds, n), dtype=np.uint8)
    j = i = 0
    for st, kd in zip(starts, kinds):
        if kd:
            out[st:st + MARKER_NT] = MARKER_PAIRS[(i + scramble) % 4]
            i += 1
        else:
            out[st:st + n] = body[j * n:(j + 1) * n]
            j += 1
    return out


def values_per_oligo(layout, n: int, marked: bool = False) -> int:
    return segments(layout.payload_nt, n, marked)[2]


def data_oligos(layout, tag: int, key: int, symbols: np.ndarray, words: np.ndarray, first: int = 0,
                progress=None, marked: bool = False) -> list[np.ndarray]:
    """Values (flat) -> data oligos ``first, first+1, ...`` of image ``tag``, using codeword table
    ``words`` (L, n); the values are spread by the interleaver of ``key``; ``marked``: markers."""
    n = words.shape[1]
    V = values_per_oligo(layout, n, marked)
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
        oligo, _ = assemble(layout, first + k, tag, words[vals].reshape(-1), n, marked)
        out.append(oligo)
        if progress is not None:
            progress(1)
    return out


def n_data_oligos(layout, n: int, total_values: int, marked: bool = False) -> int:
    return -(-total_values // values_per_oligo(layout, n, marked))


# ---------------------------------------------------------------------------------------------
# reading payloads back

RESYNC_DRIFT = 8        # largest frame shift (nt) the resynchronising decoder follows
RESYNC_INDEL_COST = 2.0  # cost of one indel, in units of Hamming distance


@nb.njit(cache=True, nogil=True)
def _resync_segments(read, n, starts, kinds, wkeys, mnt, expected_len, sig_inv, table, dist, indel_cost, dmax):
    """Codeword-aware alignment of a payload read to its segments (Viterbi over the frame drift
    d): segment s is read at ``starts[s] + d``; a codeword's cost (``kinds[s] == 0``, whitening key
    ``wkeys[s]``) is its Hamming distance to the nearest valid codeword after un-whitening, a
    marker's (``kinds[s] == 1``) its Hamming distance to the known ``mnt[s]`` (markers are
    ``mnt.shape[1]`` nt long); each nt of drift
    change between segments costs ``indel_cost``; the final drift should match the read's
    length.  Returns per segment: value (codewords; -1 for markers), repaired (codeword) or
    mismatched (marker), and drift."""
    S = starts.shape[0]
    R = read.shape[0]
    M = mnt.shape[1]
    vals = np.full(S, -1, dtype=np.int64)
    bad = np.zeros(S, dtype=np.bool_)
    drift = np.zeros(S, dtype=np.int64)
    if R == expected_len:
        # every segment exact in frame: that frame costs 0 and any other costs an indel, so it is
        # the Viterbi answer; no need to run it
        clean = True
        for s in range(S):
            p = starts[s]
            if kinds[s] == 1:
                for t in range(M):
                    if read[p + t] != mnt[s, t]:
                        clean = False
                        break
            else:
                if p + n > R:
                    clean = False
                    break
                sinv = sig_inv[wkeys[s]]
                code = 0
                for t in range(n):
                    x = read[p + t]
                    if x > 3:
                        clean = False
                        break
                    code = code * 4 + sinv[x]
                if clean and dist[code] != 0:
                    clean = False
                if clean:
                    vals[s] = table[code]
            if not clean:
                break
        if clean:
            return vals, bad, drift
    W = 2 * dmax + 1
    INF = 1e18
    cost = np.full((S + 1, W), INF)
    back = np.zeros((S + 1, W), dtype=np.int64)
    cost[0, dmax] = 0.0
    cost[0, dmax - 1] = indel_cost
    cost[0, dmax + 1] = indel_cost
    wcost = np.empty(W)
    wval = np.full((S, W), -1, dtype=np.int64)
    wbad = np.zeros((S, W), dtype=np.bool_)
    for s in range(S):
        ln = M if kinds[s] == 1 else n
        for di in range(W):
            pos = starts[s] + di - dmax
            if pos < 0 or pos + ln > R:
                wcost[di] = ln
                wbad[s, di] = True
                continue
            if kinds[s] == 1:
                d = 0
                for t in range(ln):
                    if read[pos + t] != mnt[s, t]:
                        d += 1
                wcost[di] = d
                wbad[s, di] = d > 0
                continue
            sinv = sig_inv[wkeys[s]]
            code = 0
            extra = 0
            for t in range(ln):
                x = read[pos + t]
                if x > 3:
                    x = 0
                    extra += 1
                code = code * 4 + sinv[x]
            dd = dist[code] + extra
            wcost[di] = dd
            wval[s, di] = table[code]
            wbad[s, di] = dd > 0
        for di in range(W):
            best = INF
            bi = di
            for dp in range(max(0, di - 2), min(W, di + 3)):
                c = cost[s, dp] + indel_cost * abs(di - dp)
                if c < best:
                    best = c
                    bi = dp
            cost[s + 1, di] = best + wcost[di]
            back[s + 1, di] = bi
    target = R - expected_len
    bd = 0
    best = INF
    for di in range(W):
        c = cost[S, di] + indel_cost * abs(di - dmax - target)
        if c < best:
            best = c
            bd = di
    di = bd
    for s in range(S, 0, -1):
        vals[s - 1] = wval[s - 1, di]
        bad[s - 1] = wbad[s - 1, di]
        drift[s - 1] = di - dmax
        di = back[s, di]
    return vals, bad, drift


@nb.njit(cache=True, nogil=True)
def _resync(read, n, count, expected_len, keys, sig_inv, table, dist, indel_cost, dmax):
    """:func:`_resync_segments` for ``count`` codewords back to back (no markers): (values, per
    word: was it repaired)."""
    starts = np.arange(count) * n
    kinds = np.zeros(count, dtype=np.uint8)
    mnt = np.zeros((count, MARKER_NT), dtype=np.uint8)
    v, bad, _ = _resync_segments(read, n, starts, kinds, keys, mnt, expected_len, sig_inv, table, dist,
                                 indel_cost, dmax)
    return v, bad


TRUST_MARGIN = 3    # unmarked payloads: codewords distrusted on each side of an indel or repair


@nb.njit(cache=True, nogil=True)
def _trusted_ends(bad, drift, end, margin):
    """Per codeword of an unmarked payload: trusted when it lies before the first repaired codeword
    or frame shift (at drift 0), or after the last one (at the read's final drift ``end``), and at
    least ``margin`` codewords away from it (an indel is often noticed a few codewords late)."""
    S = bad.shape[0]
    ok = np.zeros(S, dtype=np.bool_)
    first = S
    last = -1
    for t in range(S):
        if bad[t] or drift[t] != 0:
            first = t
            break
    for t in range(S - 1, -1, -1):
        if bad[t] or drift[t] != end:
            last = t
            break
    if first == S and end == 0:
        ok[:] = True
        return ok
    for t in range(0, min(S, first - margin)):
        ok[t] = True
    for t in range(max(0, last + 1 + margin), S):
        ok[t] = True
    return ok


@nb.njit(cache=True, nogil=True)
def _trusted_blocks(bad, drift, kinds, end):
    """Per segment of a marked payload: does it lie in a block whose two bounding markers (or the
    payload's start, at drift 0) the resync matched exactly at the same drift, with no repaired
    codeword in it?  The codewords after the last marker: when that marker matched, they are not
    repaired and their drift is the marker's and the read's (``end`` = read length - payload
    length).  Unmarked payloads: :func:`_trusted_ends`."""
    S = kinds.shape[0]
    marked = False
    for t in range(S):
        if kinds[t] == 1:
            marked = True
            break
    if not marked:
        return _trusted_ends(bad, drift, end, TRUST_MARGIN)
    ok = np.zeros(S, dtype=np.bool_)
    lo = -1
    for hi in range(S + 1):
        if hi < S and kinds[hi] == 0:
            continue
        if hi == S:
            good = lo >= 0 and not bad[lo] and drift[lo] == end
            if good:
                for t in range(lo + 1, hi):
                    if drift[t] != end:
                        good = False
        else:
            good = not bad[hi] and (drift[lo] if lo >= 0 else 0) == drift[hi]
            if lo >= 0 and bad[lo]:
                good = False
        if good:
            for t in range(lo + 1, hi):
                if bad[t]:
                    good = False
                    break
        for t in range(lo + 1, hi):
            ok[t] = good
        lo = hi
    return ok


@nb.njit(cache=True, nogil=True)
def _segment_keys(keys, kinds, seed, mnt, wkeys):
    """Whitening key per segment (codewords) and marker nucleotides (markers) of one oligo."""
    j = 0
    i = 0
    for s in range(kinds.shape[0]):
        if kinds[s] == 1:
            for t in range(MARKER_NT):
                mnt[s, t] = MARKER_PAIRS[(i + seed) % 4, t]
            i += 1
        else:
            wkeys[s] = keys[j]
            j += 1


@nb.njit(cache=True, nogil=True, parallel=True)
def payload_values_batch(flat, offs, order, first, slot, seed, k0, tag, payload_nt, n, starts, kinds, table, dist,
                         sig_inv, few_reads, indel_cost, dmax):
    """The values of every data oligo of a words stream at once, in parallel (the resynchronising
    codeword decoder :func:`_resync_segments` on each oligo's consensus or reads).

    Oligo ``k0 + k`` has the reads ``order[first[slot[k]]:first[slot[k]+1]]`` of the packed store
    (read ``r`` is ``flat[offs[r]:offs[r+1]]``), or none when ``slot[k] < 0``; its scrambling seed is
    ``seed[k]``; its payload's segments are ``starts``, ``kinds`` (:func:`segments`).  From
    ``few_reads + 1`` reads up the payload is their nucleotide consensus; with fewer, each read is
    decoded on its own and, with two, each value is taken from the read whose codeword was valid
    (the first read where both or neither were; with markers, first the read whose block was
    trusted).  Returns per value: the value (-1 for unreadable or missing), whether its codeword
    had to be repaired, and whether it is trusted on a read with indels (:func:`_trusted_blocks`)."""
    K = slot.shape[0]
    S = starts.shape[0]
    count = 0
    for s in range(S):
        if kinds[s] == 0:
            count += 1
    vals = np.full((K, count), -1, dtype=np.int64)
    badv = np.zeros((K, count), dtype=np.bool_)
    trust = np.zeros((K, count), dtype=np.bool_)
    for k in nb.prange(K):
        s = slot[k]
        if s < 0:
            continue
        rows = order[first[s]:first[s + 1]]
        m = rows.shape[0]
        keys = whitening_keys(tag, k0 + k, seed[k], count)
        wkeys = np.zeros(S, dtype=np.int64)
        mnt = np.zeros((S, MARKER_NT), dtype=np.uint8)
        _segment_keys(keys, kinds, seed[k], mnt, wkeys)
        if m > few_reads:
            # the fast path of the consensus reads the right-length reads where they lie; only
            # when it does not apply are the reads gathered for the alignment rounds
            est = np.empty(payload_nt, dtype=np.uint8)
            if not fast_majority_rows(flat, offs, rows, payload_nt, est):
                rf, ro = gather_reads(flat, offs, rows)
                est = consensus_packed(rf, ro, payload_nt)
            v, bad, dr = _resync_segments(est, n, starts, kinds, wkeys, mnt, payload_nt, sig_inv, table, dist,
                                          indel_cost, dmax)
            ok = _trusted_blocks(bad, dr, kinds, 0)
            j = 0
            for t in range(S):
                if kinds[t] == 0:
                    vals[k, j] = v[t]
                    badv[k, j] = bad[t]
                    trust[k, j] = ok[t]
                    j += 1
            continue
        rf, ro = gather_reads(flat, offs, rows)
        v1, b1, d1 = _resync_segments(rf[ro[0]:ro[1]], n, starts, kinds, wkeys, mnt, payload_nt, sig_inv, table,
                                      dist, indel_cost, dmax)
        t1 = _trusted_blocks(b1, d1, kinds, ro[1] - ro[0] - payload_nt)
        if m == 1:
            v2, b2, t2 = v1, b1, t1
        else:
            v2, b2, d2 = _resync_segments(rf[ro[1]:ro[2]], n, starts, kinds, wkeys, mnt, payload_nt, sig_inv,
                                          table, dist, indel_cost, dmax)
            t2 = _trusted_blocks(b2, d2, kinds, ro[2] - ro[1] - payload_nt)
        j = 0
        for t in range(S):
            if kinds[t] != 0:
                continue
            if (t2[t] and not t1[t]) or (t2[t] == t1[t] and b1[t] and not b2[t]):
                vals[k, j] = v2[t]
            else:
                vals[k, j] = v1[t]
            badv[k, j] = b1[t] and b2[t]
            trust[k, j] = t1[t] or t2[t]
            j += 1
    return vals, badv, trust
