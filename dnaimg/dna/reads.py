"""From sequencer reads to oligo groups: orientation, primer trimming, index reading.

For each read the forward primer is searched at the start of the read and of its reverse
complement (semi-global edit distance, up to ``MAX_LEAD`` junk nt before it and about a third
of the primer in errors); the better strand wins.  The reverse primer is searched the same way
at the end.  A primer that matches there with more than ``SEARCH_ABOVE`` (4) errors is also looked
for anywhere in the read (the reverse one: after the forward one), and taken where it matches
with at most a fifth of its length in errors and ``ANYWHERE_MARGIN`` fewer than at the end
(a noisy primer in place, as nanopore reads have, stays the one): what lies outside the
primers (adapters, barcodes, random flanks) is ignored, and the common case (primers at the
read's ends) costs nothing more.  What lies between is the insert:
index, then payload.  Reads whose primers were trimmed off are taken as bare inserts (index at
the start, either strand): always with ``trimmed=True``, and with ``trimmed=None`` for the
reads without primers of a block where most reads have none.  The index is read with
indel hypotheses (:func:`dnaimg.index.read_index`); the payload that follows is kept, grouped
by (tag, oligo number, scrambling seed), for the consensus.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np

from dnaimg.dna import alphabet as dna
from dnaimg.dna.index import (INDEX_BUF_LEN, INDEX_NT, INDEX_WS_LEN, N_SCRAMBLE, TABLES, _word_at, all_index_patterns,
                              quick_index, read_index_ws, rescue_batch)
from dnaimg.dna.payload_rescue import match_to_consensus

MAX_LEAD = 4


@nb.njit(cache=True, nogil=True)
def _match(pattern, text, max_lead, from_end, prev, cur):
    """Best alignment of the whole ``pattern`` to a prefix of ``text`` (or, with ``from_end``, of
    the reversed text against the reversed pattern: a suffix match), the text may start with up
    to ``max_lead`` extra nt for free.  Returns (edit distance, nt of text consumed)."""
    m = pattern.shape[0]
    L = text.shape[0]
    n = min(L, m + m // 2 + max_lead)
    for j in range(n + 1):
        prev[j] = 0 if j <= max_lead else j - max_lead
    for i in range(1, m + 1):
        cur[0] = i
        pi = pattern[m - i] if from_end else pattern[i - 1]
        for j in range(1, n + 1):
            tj = text[L - j] if from_end else text[j - 1]
            best = prev[j - 1] + (0 if pi == tj else 1)
            a = prev[j] + 1
            if a < best:
                best = a
            b = cur[j - 1] + 1
            if b < best:
                best = b
            cur[j] = best
        for j in range(n + 1):
            prev[j] = cur[j]
    bd, bj = m + 1, 0
    for j in range(n + 1):
        if prev[j] < bd:
            bd, bj = prev[j], j
    return bd, bj


@nb.njit(cache=True, nogil=True)
def _match_bits(pattern, text, max_lead, from_end):
    """:func:`_match` by Myers' bit-parallel algorithm (one 64-bit word holds a column of the
    table: patterns up to 64 nt; Hyyrö's formulation with a horizontal input delta per column,
    as in Edlib, so that text beyond ``max_lead`` leading nt costs 1 each as in ``_match``).
    Same (distance, nt consumed) as :func:`_match`."""
    m = pattern.shape[0]
    L = text.shape[0]
    n = min(L, m + m // 2 + max_lead)
    one = np.uint64(1)
    p0 = p1 = p2 = p3 = np.uint64(0)       # match masks per base (scalars: no allocation)
    for i in range(m):
        c = pattern[m - 1 - i] if from_end else pattern[i]
        bit = one << np.uint64(i)
        if c == 0:
            p0 |= bit
        elif c == 1:
            p1 |= bit
        elif c == 2:
            p2 |= bit
        elif c == 3:
            p3 |= bit
    high = one << np.uint64(m - 1)
    full = np.uint64(0xFFFFFFFFFFFFFFFF)
    pv = full
    mv = np.uint64(0)
    score = m
    bd, bj = m, 0
    for j in range(1, n + 1):
        tj = text[L - j] if from_end else text[j - 1]
        if tj == 0:
            eq = p0
        elif tj == 1:
            eq = p1
        elif tj == 2:
            eq = p2
        elif tj == 3:
            eq = p3
        else:
            eq = np.uint64(0)
        xv = eq | mv
        xh = (((eq & pv) + pv) ^ pv) | eq
        ph = mv | ~(xh | pv)
        mh = pv & xh
        if ph & high:
            score += 1
        elif mh & high:
            score -= 1
        ph = ph << one
        mh = mh << one
        if j > max_lead:          # top row: D[0][j] = j - max_lead past the free lead
            ph |= one
        pv = mh | ~(xv | ph)
        mv = ph & xv
        if score < bd:
            bd, bj = score, j
    return bd, bj


@nb.njit(cache=True, nogil=True)
def _find(pattern, text, max_lead, from_end, prev, cur):
    """:func:`_match`, bit-parallel when the pattern fits a 64-bit word."""
    if pattern.shape[0] <= 64:
        return _match_bits(pattern, text, max_lead, from_end)
    return _match(pattern, text, max_lead, from_end, prev, cur)


@nb.njit(cache=True, nogil=True)
def _starts_with(seq, pat):
    if seq.shape[0] < pat.shape[0]:
        return False
    for i in range(pat.shape[0]):
        if seq[i] != pat[i]:
            return False
    return True


@nb.njit(cache=True, nogil=True)
def _ends_with(seq, pat):
    L, m = seq.shape[0], pat.shape[0]
    if L < m:
        return False
    for i in range(m):
        if seq[L - m + i] != pat[i]:
            return False
    return True


HAMMING_FAST = 2   # a primer in place with at most this many substitutions skips the alignment
SEARCH_ABOVE = 4   # a primer that matches the read's end worse than this is also looked for anywhere
ANYWHERE_PART = 5  # ... and taken there with at most 1/5 of its length in errors (a 20-nt primer: 4,
                   # which a random 160-nt read matches 0.2 % of the time; 6 errors: 22 %)
ANYWHERE_MARGIN = 3  # ... and this many fewer than at the end (a noisy primer in place stays the one)


@nb.njit(cache=True, nogil=True)
def _hamming_at(seq, pat, at_end):
    """Substitutions between ``pat`` and the start (or, with ``at_end``, the end) of ``seq``;
    ``len(pat)`` if ``seq`` is shorter."""
    L, m = seq.shape[0], pat.shape[0]
    if L < m:
        return m
    o = L - m if at_end else 0
    h = 0
    for i in range(m):
        if seq[o + i] != pat[i]:
            h += 1
    return h


@nb.njit(cache=True, nogil=True)
def _rc_into(a, out):
    n = a.shape[0]
    for i in range(n):
        x = a[n - 1 - i]
        out[i] = 3 - x if x < 4 else 255
    return out[:n]


@nb.njit(cache=True, nogil=True)
def orient(read, pf, pf_rc, pr_rc, max_err, scratch, prev, cur):
    """Orient ``read`` and find its insert.  Returns (status, oriented read, start, end):
    status 0 = no forward primer on either strand; 1 = forward primer found, reverse missing
    (the end is then estimated); 2 = both found.  The oriented read may live in ``scratch``."""
    L = read.shape[0]
    m = pf.shape[0]
    # fast path: an exact forward primer at either end
    flipped = False
    if _starts_with(read, pf):
        seq, d, start = read, 0, m
    elif _ends_with(read, pf_rc):
        seq, d, start, flipped = _rc_into(read, scratch), 0, m, True
    else:
        # next: a primer in place with a few substitutions (the common error), else alignment
        h1 = _hamming_at(read, pf, False)
        h2 = _hamming_at(read, pf_rc, True)
        if min(h1, h2) <= HAMMING_FAST and h1 != h2:
            if h1 < h2:
                seq, d, start = read, h1, m
            else:
                seq, d, start, flipped = _rc_into(read, scratch), h2, m, True
        else:
            d1, e1 = _find(pf, read, MAX_LEAD, False, prev, cur)
            d2, e2 = _find(pf_rc, read, MAX_LEAD, True, prev, cur)   # pf at the start of rc(read)
            if min(d1, d2) > SEARCH_ABOVE and m <= 64:
                # not near either end: anywhere in the read (adapters, barcodes, random flanks
                # before it), on either strand; only where it matches better
                d3, e3 = _find(pf, read, L, False, prev, cur)
                d4, e4 = _find(pf_rc, read, L, True, prev, cur)
                lim = min(max(2, m // ANYWHERE_PART), min(d1, d2) - ANYWHERE_MARGIN)
                if d3 <= lim and d3 <= d4:
                    d1, e1, d2 = d3, e3, L + 1
                elif d4 <= lim:
                    d2, e2, d1 = d4, e4, L + 1
            if d1 <= d2:
                seq, d, start = read, d1, e1
            else:
                seq, d, start, flipped = _rc_into(read, scratch), d2, e2, True
    if d > max_err:
        return 0, seq, 0, 0, flipped
    mr = pr_rc.shape[0]
    if _hamming_at(seq, pr_rc, True) <= HAMMING_FAST:
        if L - mr > start:
            return 2, seq, start, L - mr, flipped
    dr, er = _find(pr_rc, seq, MAX_LEAD, True, prev, cur)
    if dr > SEARCH_ABOVE and mr <= 64 and L - start > mr:
        # not at the end: anywhere after the forward primer (what follows it is ignored)
        tail = seq[start:]
        d5, e5 = _find(pr_rc, tail, tail.shape[0], True, prev, cur)
        if d5 <= min(max(2, mr // ANYWHERE_PART), dr - ANYWHERE_MARGIN):
            dr, er = d5, e5
    if dr <= max_err and L - er > start:
        return 2, seq, start, L - er, flipped
    return 1, seq, start, max(start, L - mr), flipped


ST_OK, ST_SHORT, ST_NO_PRIMER, ST_BAD_INDEX = 0, 1, 2, 3
TRIMMED_SHARE = 0.5     # a block with more reads than this without primers is tried as trimmed reads
LEN_HIST = 4096         # read lengths counted up to this (longer ones in the last bin)
CHUNK = 262144          # reads processed per numba call
MAX_READS_PER_OLIGO = 40  # reads kept per oligo for the consensus (more add nothing but time)
RESCUE_CAP_NT = 64_000_000  # nt of unreadable-index reads kept for the second pass
POOL_START_BYTES = 1 << 20  # the store of kept payloads starts at this size and doubles
NEAREST_MAX_DIST = 9        # substitutions allowed in an index matched by nearest search
NEAREST_MARGIN = 3          # ... and how much closer than the second nearest it must be
NEAREST_MAX_WORK = 4e8      # reads x candidate indexes above which the nearest search is skipped
ALIGNED_MAX_DIST = 7        # edits allowed in an index matched by alignment (rescue_aligned)
ALIGNED_SLACK = 8           # ... within the first INDEX_NT + this many nt of the insert
ALIGNED_WORK = 8            # an alignment costs about this many Hamming comparisons


@nb.njit(cache=True, nogil=True)
def _valid_words(seq, w2n):
    """How many of the index's 12 words are valid words at the start of ``seq``."""
    v = 0
    for k in range(12):
        if _word_at(seq, 3 * k, k, w2n) >= 0:
            v += 1
    return v


BARE_MIN_WORDS = 6   # a bare insert whose index does not decode is kept if this many of its words are
                     # valid (a random read: 5 % of the time), else counted as a read without primers
TRIM_NO, TRIM_FALLBACK, TRIM_ALL = 0, 1, 2   # primers searched only / then bare inserts / bare inserts only


@nb.njit(cache=True, nogil=True)
def _process_range(flat, offs, lo, hi, pf, pf_rc, pr_rc, max_err, min_len, trim_mode, w2n, exp, log, masks,
                   maxlen, status, tag, number, scramble, repaired, flip, pstart, pend):
    """Orient, trim and index reads ``lo:hi`` (see :func:`process_chunk`), into its outputs;
    reads from the reverse strand are reverse-complemented in ``flat`` itself.  ``trim_mode``
    TRIM_FALLBACK: a read without primers, or whose index does not decode after them, is also
    tried as a bare insert (primers trimmed off), on either strand; TRIM_ALL: every read is
    taken so, without looking for primers."""
    w = 2 * max(pf.shape[0], pr_rc.shape[0]) + MAX_LEAD + 2
    scratch = np.empty(maxlen + 1, dtype=np.uint8)
    prev = np.empty(w, dtype=np.int64)
    cur = np.empty(w, dtype=np.int64)
    ws = np.empty(INDEX_WS_LEN, dtype=np.int64)
    ibuf = np.empty(INDEX_BUF_LEN, dtype=np.uint8)
    for r in range(lo, hi):
        read = flat[offs[r]:offs[r + 1]]
        if read.shape[0] < min_len:
            status[r] = ST_SHORT
            continue
        st, seq, start, end, flipped = 0, read, 0, 0, False
        if trim_mode != TRIM_ALL:
            st, seq, start, end, flipped = orient(read, pf, pf_rc, pr_rc, max_err, scratch, prev, cur)
        if st != 0:
            flip[r] = flipped
            if flipped:          # the read, turned to the forward strand in place
                read[:] = seq
                seq = read
            ok, nb_, sc, tg = quick_index(seq, start, end, w2n, exp, log, masks)
            consumed = INDEX_NT
            rep = False
            if not ok:
                ok, nb_, sc, tg, consumed, rep = read_index_ws(seq[start:end], w2n, exp, log, masks, ws, ibuf)
            if ok:
                tag[r] = tg
                number[r] = nb_
                scramble[r] = sc
                repaired[r] = rep
                pstart[r] = start + consumed
                pend[r] = max(end, start + consumed)
                continue
            if trim_mode == TRIM_NO:
                status[r] = ST_BAD_INDEX     # kept (whole insert) for a second chance
                pstart[r] = start
                pend[r] = end
                continue
        elif trim_mode == TRIM_NO:
            status[r] = ST_NO_PRIMER
            continue
        # a bare insert (primers trimmed off): the index at its start, on this strand or the other
        stat, fl, tg, nb_, sc, rep, ps, pe = _bare_insert(read, scratch, st, start, end, w2n, exp, log, masks,
                                                          ws, ibuf)
        status[r] = stat
        if stat == ST_OK:
            flip[r] = fl != flipped
            tag[r] = tg
            number[r] = nb_
            scramble[r] = sc
            repaired[r] = rep
        pstart[r] = ps
        pend[r] = pe


@nb.njit(cache=True, nogil=True)
def _bare_insert(read, scratch, st, start, end, w2n, exp, log, masks, ws, ibuf):
    """A read as a bare insert (primers trimmed off): its index at the start, on this strand or
    the other (then ``read`` is turned in place).  (status, flipped, tag, number, scramble,
    repaired, payload start, payload end); a read whose primers were found (``st`` != 0,
    insert ``start:end``) keeps that insert when it fails."""
    L = read.shape[0]
    ok, nb_, sc, tg = quick_index(read, 0, L, w2n, exp, log, masks)
    consumed, rep, bare_flip = INDEX_NT, False, False
    if not ok:
        rc = _rc_into(read, scratch)
        ok, nb_, sc, tg = quick_index(rc, 0, L, w2n, exp, log, masks)
        bare_flip = ok
        if not ok:
            ok, nb_, sc, tg, consumed, rep = read_index_ws(read, w2n, exp, log, masks, ws, ibuf)
            if not ok:
                ok, nb_, sc, tg, consumed, rep = read_index_ws(rc, w2n, exp, log, masks, ws, ibuf)
                bare_flip = ok
    if not ok:               # a second chance, as the whole insert
        if st != 0:          # primers found after all, the index unreadable
            return ST_BAD_INDEX, False, 0, 0, 0, False, start, end
        if L >= INDEX_NT and max(_valid_words(scratch, w2n), _valid_words(read, w2n)) >= BARE_MIN_WORDS:
            # an index with errors, on the strand where more of its words are valid
            if _valid_words(scratch, w2n) > _valid_words(read, w2n):
                read[:] = scratch[:L]
            return ST_BAD_INDEX, False, 0, 0, 0, False, 0, L
        return ST_NO_PRIMER, False, 0, 0, 0, False, 0, 0
    if bare_flip:
        read[:] = scratch[:L]
    return ST_OK, bare_flip, tg, nb_, sc, rep, consumed, max(L, consumed)


@nb.njit(cache=True, nogil=True)
def _outputs(offs):
    n = offs.shape[0] - 1
    maxlen = 0
    for r in range(n):
        if offs[r + 1] - offs[r] > maxlen:
            maxlen = offs[r + 1] - offs[r]
    return (np.zeros(n, dtype=np.int8), np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64),
            np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.bool_), np.zeros(n, dtype=np.bool_),
            np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64), maxlen)


@nb.njit(cache=True, nogil=True, parallel=True)
def process_chunk(flat, offs, pf, pr_rc, max_err, min_len, trim_mode, w2n, exp, log, masks):
    """Orient, trim and index a chunk of reads packed as ``flat[offs[r]:offs[r+1]]`` (0..3, 255),
    in parallel over blocks of reads.

    Reads found on the reverse strand are reverse-complemented in place (``flat`` is modified).
    Returns per read: status, tag, number, scramble, index repaired, strand flipped, and where
    its payload lies (``pstart:pend`` of the read, now on the forward strand: the part of the
    insert after the index, or the whole insert for reads whose index did not decode)."""
    n = offs.shape[0] - 1
    status, tag, number, scramble, repaired, flip, pstart, pend, maxlen = _outputs(offs)
    pf_rc = np.empty(pf.shape[0], dtype=np.uint8)
    _rc_into(pf, pf_rc)
    nblocks = 64
    bs = (n + nblocks - 1) // nblocks
    for blk in nb.prange(nblocks):
        _process_range(flat, offs, blk * bs, min(n, (blk + 1) * bs), pf, pf_rc, pr_rc, max_err, min_len,
                       trim_mode, w2n, exp, log, masks, maxlen, status, tag, number, scramble, repaired, flip, pstart, pend)
    return status, tag, number, scramble, repaired, flip, pstart, pend


@nb.njit(cache=True, nogil=True)
def process_block(flat, offs, pf, pr_rc, max_err, min_len, trim_mode, w2n, exp, log, masks):
    """:func:`process_chunk` on one thread (for callers that run several blocks side by side;
    releases the GIL)."""
    n = offs.shape[0] - 1
    status, tag, number, scramble, repaired, flip, pstart, pend, maxlen = _outputs(offs)
    pf_rc = np.empty(pf.shape[0], dtype=np.uint8)
    _rc_into(pf, pf_rc)
    _process_range(flat, offs, 0, n, pf, pf_rc, pr_rc, max_err, min_len, trim_mode, w2n, exp, log, masks, maxlen,
                   status, tag, number, scramble, repaired, flip, pstart, pend)
    return status, tag, number, scramble, repaired, flip, pstart, pend


@dataclass
class ReadStats:
    seen: int = 0
    used: int = 0
    no_primer: int = 0
    bad_index: int = 0
    too_short: int = 0
    index_repaired: int = 0
    unknown_oligo: int = 0
    capped: int = 0
    rescued: int = 0
    lengths: np.ndarray | None = None       # reads per length (the last bin: that long or longer)
    bare: bool = False                      # primers not looked for (--trimmed)

    def add_lengths(self, hist: np.ndarray) -> None:
        self.lengths = hist.copy() if self.lengths is None else self.lengths + hist

    def length_range(self, share: float = 0.9, nonempty: bool = False) -> tuple[int, int, int] | None:
        """(low, high, most common) read length, ``low``-``high`` holding the middle ``share`` of
        the reads (``nonempty``: of those not empty); None if no lengths were counted."""
        h = self.lengths
        if h is not None and nonempty:
            h = np.concatenate([[0], h[1:]])
        if h is None or h.sum() == 0:
            return None
        c = np.cumsum(h) / h.sum()
        lo = int(np.searchsorted(c, (1 - share) / 2))
        hi = int(np.searchsorted(c, 1 - (1 - share) / 2))
        return lo, hi, int(h.argmax())

    @property
    def rejected(self) -> int:
        return self.seen - self.used

    def to_dict(self) -> dict:
        return {"seen": self.seen, "used": self.used, "rejected": self.rejected,
                "rejected_no_primer": self.no_primer, "rejected_bad_index": self.bad_index - self.rescued,
                "index_rescued": self.rescued,
                "rejected_too_short": self.too_short, "rejected_unknown_oligo": self.unknown_oligo,
                "index_repaired": self.index_repaired, "not_needed_over_cap": self.capped}


class Group:
    """The reads of one (tag, oligo number, scrambling seed), packed: a view into the sorter's
    store (``len`` is the number of reads kept, at most the sorter's cap)."""
    __slots__ = ("flat", "offs")

    def __init__(self, flat: np.ndarray, offs: np.ndarray):
        self.flat = flat
        self.offs = offs

    @property
    def count(self) -> int:
        return len(self.offs) - 1

    def packed(self) -> tuple[np.ndarray, np.ndarray]:
        """(flat, offs): read ``r`` is ``flat[offs[r]:offs[r+1]]``."""
        return self.flat, self.offs

    def reads(self) -> list[np.ndarray]:
        return [self.flat[self.offs[i]:self.offs[i + 1]] for i in range(self.count)]

    def __len__(self) -> int:
        return self.count


class _Pending:
    """Reads set aside (packed pieces), e.g. those whose index did not decode."""
    __slots__ = ("pieces", "lens", "count", "nt")

    def __init__(self):
        self.pieces: list[np.ndarray] = []
        self.lens: list[np.ndarray] = []
        self.count = 0
        self.nt = 0

    def add(self, flat: np.ndarray, lens: np.ndarray) -> None:
        self.pieces.append(flat)
        self.lens.append(lens)
        self.count += len(lens)
        self.nt += len(flat)

    def packed(self) -> tuple[np.ndarray, np.ndarray]:
        if len(self.pieces) > 1:
            self.pieces = [np.concatenate(self.pieces)]
            self.lens = [np.concatenate(self.lens)]
        if not self.pieces:
            return np.zeros(0, dtype=np.uint8), np.zeros(1, dtype=np.int64)
        lens = self.lens[0]
        offs = np.zeros(len(lens) + 1, dtype=np.int64)
        np.cumsum(lens, out=offs[1:])
        return self.pieces[0], offs


SLOT_TABLE_START = 1 << 12     # the key -> slot table (open addressing) starts at this size (a power of 2) ...
_HASH_MUL = 0x9E3779B97F4A7C15  # ... and keys are spread by Fibonacci hashing


@nb.njit(cache=True, nogil=True)
def _slot_find(table, slot_keys, k, shift):
    """(table position, slot) of key ``k``: the slot, or -1 and the free position to put it."""
    m = table.shape[0] - 1
    h = np.int64((np.uint64(k) * np.uint64(_HASH_MUL)) >> np.uint64(shift))
    while True:
        s = table[h]
        if s < 0 or slot_keys[s] == k:
            return h, s
        h = (h + 1) & m


@nb.njit(cache=True, nogil=True)
def _assign_slots(keys, table, slot_keys, counts, n_slots, cap):
    """File each read under the slot of its key (a new slot for a new key); reads past ``cap``
    per slot get -1.  ``table``: key -> slot, open addressing over ``slot_keys`` (doubled when
    half full).  Returns (slot per read, number of slots, the table)."""
    out = np.empty(keys.shape[0], dtype=np.int64)
    shift = 64
    size = table.shape[0]
    while size > 1:
        size >>= 1
        shift -= 1
    for r in range(keys.shape[0]):
        k = keys[r]
        h, s = _slot_find(table, slot_keys, k, shift)
        if s < 0:
            if 2 * (n_slots + 1) > table.shape[0]:
                table = np.full(2 * table.shape[0], -1, dtype=np.int64)
                shift -= 1
                for t in range(n_slots):
                    ht, _ = _slot_find(table, slot_keys, slot_keys[t], shift)
                    table[ht] = t
                h, s = _slot_find(table, slot_keys, k, shift)
            s = n_slots
            table[h] = s
            slot_keys[s] = k
            counts[s] = 0
            n_slots += 1
        if counts[s] < cap:
            counts[s] += 1
            out[r] = s
        else:
            out[r] = -1
    return out, n_slots, table


@nb.njit(cache=True, nogil=True)
def _add_tags(bits, r, hi, lo):
    """Set the bits of tags ``hi * 16 + lo`` (``hi``/``lo`` -1: any nibble) for read ``r``."""
    for h in range(16):
        if hi >= 0 and h != hi:
            continue
        for low in range(16):
            if lo >= 0 and low != lo:
                continue
            t = h * 16 + low
            bits[r, t >> 6] |= np.uint64(1) << np.uint64(t & 63)


@nb.njit(cache=True, nogil=True)
def tag_candidates(flat, offs, w2n, masks):
    """For each set-aside read (its insert), the tags its index words 5-7 can name, as a 256-bit
    mask (4 uint64), with the seed its word 5 names (every seed if that word is invalid): in
    frame 0 the tag of words 6 and 7, or every tag that agrees with the one of them that is a
    valid word; shifted by one nt either way (an indel before them), the tag of words 6 and 7 if
    both are valid there.  A read with none of these: any tag."""
    n = offs.shape[0] - 1
    bits = np.zeros((n, 4), dtype=np.uint64)
    for r in range(n):
        ins = flat[offs[r]:offs[r + 1]]
        found = False
        for s in (0, -1, 1):
            w5 = _word_at(ins, 15 + s, 5, w2n)
            w6 = _word_at(ins, 18 + s, 6, w2n)
            w7 = _word_at(ins, 21 + s, 7, w2n)
            if w6 < 0 and w7 < 0:
                continue
            if s != 0 and (w6 < 0 or w7 < 0):
                continue
            found = True
            lo_s, hi_s = (w5, w5 + 1) if w5 >= 0 else (0, N_SCRAMBLE)
            for sc in range(lo_s, hi_s):
                _add_tags(bits, r, w6 ^ masks[sc, 6] if w6 >= 0 else -1, w7 ^ masks[sc, 7] if w7 >= 0 else -1)
        if not found:
            for q in range(4):
                bits[r, q] = np.uint64(0xFFFFFFFFFFFFFFFF)
    return bits


def _key(tag, number, scramble):
    return (tag << 28) | (number << 4) | scramble


class ReadSorter:
    """Streams reads into groups keyed by (tag, number, scramble), in chunks through numba.

    Memory holds at most ``cap`` reads per oligo, whatever the number of reads: a hash table
    (open addressing, in numba) maps each key to a slot, reads over the cap are counted and
    dropped, and the kept reads are sorted by slot once, when the groups are first asked for."""

    def __init__(self, primer_f: str, primer_r: str, cap: int = MAX_READS_PER_OLIGO, trimmed: bool | None = None):
        self.trimmed = trimmed     # primers trimmed off the reads: True, False, None (per block, detected)
        self.pf = dna.encode(primer_f.upper())
        self.stats = ReadStats(bare=bool(trimmed))
        self.pr_rc = dna.revcomp(dna.encode(primer_r.upper()))
        self.max_err = max(2, len(self.pf) // 3)
        self.min_len = len(self.pf) + 10
        self.cap = cap
        self._pending: list = []
        self.rescue = _Pending()       # inserts of reads whose index did not decode
        self.rescue_cap_nt = RESCUE_CAP_NT
        self._rescue_used = np.zeros(0, dtype=np.bool_)
        self._scope = None             # rescue_scope: the set-aside reads a rescue may look at
        self._cands = None
        self._slot_table = np.full(SLOT_TABLE_START, -1, dtype=np.int64)
        self._slot_keys = np.zeros(1024, dtype=np.int64)
        self._counts = np.zeros(1024, dtype=np.int64)
        self.n_slots = 0
        self._buf = np.empty(POOL_START_BYTES, dtype=np.uint8)   # the kept payloads, one after another
        self._used = 0
        self._lens: list[np.ndarray] = []                       # their lengths and slots
        self._slots: list[np.ndarray] = []
        self._sorted = None      # (flat, read offsets, first read of each slot) once sorted
        self._slot_index = None

    # -- input -----------------------------------------------------------------------------
    def add(self, read) -> None:
        """One read: str, bytes or uint8 array (0..3)."""
        self._pending.append(read)
        if len(self._pending) >= CHUNK:
            self.flush()

    def add_many(self, reads: list) -> None:
        """A batch of reads (a list of str, bytes or uint8 arrays)."""
        self.flush()
        self._pending = list(reads)
        self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        items, self._pending = self._pending, []
        if isinstance(items[0], str) and all(isinstance(x, str) for x in items):
            lens = np.fromiter(map(len, items), dtype=np.int64, count=len(items))
            try:
                flat = dna.encode("".join(items).encode("ascii"))
            except UnicodeEncodeError:
                flat = dna.encode("".join(items))
        else:
            arrs = [dna.encode(x) if isinstance(x, (str, bytes)) else np.asarray(x, dtype=np.uint8) for x in items]
            lens = np.fromiter(map(len, arrs), dtype=np.int64, count=len(arrs))
            flat = np.concatenate(arrs) if arrs else np.zeros(0, dtype=np.uint8)
        offs = np.zeros(len(lens) + 1, dtype=np.int64)
        np.cumsum(lens, out=offs[1:])
        self.add_packed(np.ascontiguousarray(flat, dtype=np.uint8), offs)

    def add_packed(self, flat: np.ndarray, offs: np.ndarray) -> None:
        """Reads packed as ``flat[offs[r]:offs[r+1]]`` (codes 0..3, 255; turned to the forward
        strand in place)."""
        self.file_classified(self._classify(process_chunk, flat, offs))

    def classify(self, flat: np.ndarray, offs: np.ndarray) -> tuple:
        """Orient, trim and index a block on the calling thread, and pack what is kept of it
        (no state touched: several blocks may be classified side by side); file the result
        with :meth:`file_classified`, in file order."""
        return self._classify(process_block, flat, offs)

    def _classify(self, kernel, flat: np.ndarray, offs: np.ndarray) -> tuple:
        """``kernel`` on a block in the trimming mode asked for; detected (``trimmed`` None): a
        block where most reads carry no primer is done again with the reads without primers
        also tried as bare inserts (primers trimmed off)."""
        mode = TRIM_ALL if self.trimmed else TRIM_NO
        classified = kernel(flat, offs, self.pf, self.pr_rc, self.max_err, self.min_len, mode, *TABLES)
        if self.trimmed is None and len(offs) > 1 and \
                np.count_nonzero(classified[0] == ST_NO_PRIMER) > TRIMMED_SHARE * (len(offs) - 1):
            classified = kernel(flat, offs, self.pf, self.pr_rc, self.max_err, self.min_len, TRIM_FALLBACK, *TABLES)
        lens = np.diff(offs)
        return compact_block(flat, offs, *classified) + (np.bincount(np.minimum(lens, LEN_HIST - 1),
                                                                     minlength=LEN_HIST),)

    def file_classified(self, compact: tuple) -> None:
        counts, n_repaired, keys, okbuf, oklens, badbuf, badlens = compact[:7]
        st = self.stats
        if len(compact) > 7:
            st.add_lengths(compact[7])
        st.seen += int(counts.sum())
        st.too_short += int(counts[ST_SHORT])
        st.no_primer += int(counts[ST_NO_PRIMER])
        st.bad_index += int(counts[ST_BAD_INDEX])
        self.add_rescue(badbuf, badlens)
        st.index_repaired += int(n_repaired)
        st.used += len(keys)
        if len(keys):
            offs = np.zeros(len(oklens) + 1, dtype=np.int64)
            np.cumsum(oklens, out=offs[1:])
            self._file(keys, okbuf, offs, np.arange(len(keys)), np.zeros(len(keys), np.int64), oklens)

    def add_rescue(self, badbuf: np.ndarray, badlens: np.ndarray) -> None:
        """Keep reads whose index did not decode (packed inserts) for the second chance: in read
        order, each read while fewer than ``rescue_cap_nt`` nt are kept (so the pool is the same
        however the reads were cut into blocks)."""
        if not len(badlens) or self.rescue.nt >= self.rescue_cap_nt:
            return
        starts = self.rescue.nt + np.cumsum(badlens) - badlens
        m = int(np.searchsorted(starts, self.rescue_cap_nt, side="left"))
        if m < len(badlens):
            badbuf, badlens = badbuf[:int(badlens[:m].sum())], badlens[:m]
        self.rescue.add(badbuf, badlens)

    def reset_rescue_marks(self) -> None:
        """Forget which set-aside reads were already filed by a rescue: the next image's rescue
        sees them all (a pool decodes each image as if it were alone in its reads)."""
        self._rescue_used[:] = False

    def rescue_scope(self, tag: int | None) -> None:
        """Let the rescues see only the set-aside reads whose index words can name ``tag``
        (:func:`tag_candidates`; None: all).  For pools: every image's rescue would otherwise
        go over every image's set-aside reads.  (A read whose tag word took a substitution into
        another valid word is then not tried for its own tag.)"""
        if tag is None:
            self._scope = None
            return
        flat, offs, _ = self._rescue_pool()
        if self._cands is None or len(self._cands) != len(offs) - 1:
            self._cands = tag_candidates(flat, offs, TABLES[0], TABLES[3])
        scope = ((self._cands[:, tag >> 6] >> np.uint64(tag & 63)) & np.uint64(1)).astype(bool)
        self._scope = scope

    def _file(self, keys, flat, offs, rows, pstart, pend) -> int:
        """Keep reads ``rows`` (their payload ``pstart:pend``) under ``keys``, up to the cap per
        key; returns how many were kept."""
        need = self.n_slots + len(keys)
        if need > len(self._counts):
            size = max(need, 2 * len(self._counts))
            self._counts = np.concatenate([self._counts, np.zeros(size - len(self._counts), np.int64)])
            self._slot_keys = np.concatenate([self._slot_keys, np.zeros(size - len(self._slot_keys), np.int64)])
        slots, self.n_slots, self._slot_table = _assign_slots(keys, self._slot_table, self._slot_keys,
                                                              self._counts, self.n_slots, self.cap)
        keep = slots >= 0
        n_keep = int(np.count_nonzero(keep))
        self.stats.capped += len(keys) - n_keep
        if n_keep:
            rows = rows[keep]
            lens = np.maximum(pend[rows] - pstart[rows], 0)
            need = self._used + int(lens.sum())
            if need > len(self._buf):
                self.reserve(max(need, 2 * len(self._buf)))
            if n_keep == len(keys) and n_keep == len(offs) - 1 and not pstart.any() and \
                    np.array_equal(pend, offs[1:] - offs[:-1]):
                self._buf[self._used:self._used + len(flat)] = flat      # a packed block, all kept
                self._used += len(flat)
            else:
                self._used = copy_payloads(flat, offs, rows, pstart, pend, self._buf, self._used)
            self._lens.append(lens)
            self._slots.append(slots[keep])
            self._sorted = None
        return n_keep

    def reserve(self, nt: int) -> None:
        """Room for ``nt`` nt of kept payloads (address space only: pages are used as filled)."""
        if nt > len(self._buf):
            grown = np.empty(nt, dtype=np.uint8)
            grown[:self._used] = self._buf[:self._used]
            self._buf = grown

    def finish(self) -> "ReadSorter":
        self.flush()
        return self

    def _rescue_pool(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        flat, offs = self.rescue.packed()
        if len(self._rescue_used) < len(offs) - 1:
            self._rescue_used = np.concatenate(
                [self._rescue_used, np.zeros(len(offs) - 1 - len(self._rescue_used), dtype=np.bool_)])
        return flat, offs, self._rescue_used

    def rescue_missing(self, tag: int, wanted: np.ndarray) -> int:
        """Second pass over the reads whose index did not decode: file those that decode, with
        relaxed rules, to one of the ``wanted`` (still missing) oligos of image ``tag``."""
        if self.rescue.count == 0 or not wanted.any():
            return 0
        flat, offs, used = self._rescue_pool()
        if self._scope is not None:             # only the reads that may be this tag's
            sel = np.flatnonzero(self._scope & ~used)
            sflat, soffs = gather_reads(flat, offs, sel)
            ok_s, num_s, scr_s, con_s = rescue_batch(sflat, soffs, tag, wanted, *TABLES)
            ok = np.zeros(len(offs) - 1, dtype=np.bool_)
            number = np.zeros(len(offs) - 1, dtype=np.int64)
            scramble, consumed = number.copy(), number.copy()
            ok[sel], number[sel], scramble[sel], consumed[sel] = ok_s, num_s, scr_s, con_s
        else:
            ok, number, scramble, consumed = rescue_batch(flat, offs, tag, wanted, *TABLES)
        ok &= ~used
        rows = np.flatnonzero(ok)
        if rows.size == 0:
            return 0
        return self._file_rescued(tag, rows, number[rows], scramble[rows], consumed)

    def rescue_nearest(self, tag: int, numbers: np.ndarray, wanted: np.ndarray | None = None,
                       insert_len: int | None = None, max_work: float = NEAREST_MAX_WORK) -> int:
        """Third pass, for reads with many substitutions in the index: a still unused read of
        exactly ``insert_len`` nt (index and payload; default: the most common length of these
        reads; an indel would shift the payload) whose first 36 nt are within
        ``NEAREST_MAX_DIST`` substitutions of the index of one of oligos ``numbers`` of image
        ``tag`` (any seed), and at least ``NEAREST_MARGIN`` closer to it than to any other of
        them, is filed under that oligo (if ``wanted[number]``, when given).  ``numbers`` must
        be all the oligos the read could come from: two indexes can be a few substitutions
        apart, so a read of an oligo left out could land on its neighbour.  A random 36-nt read
        is that close to a given index with probability ~1e-12.  Skipped (returns 0) when reads
        x candidates exceeds ``max_work``."""
        numbers = np.asarray(numbers, dtype=np.int64)
        if self.rescue.count == 0 or numbers.size == 0:
            return 0
        flat, offs, used = self._rescue_pool()
        lens = offs[1:] - offs[:-1]
        if insert_len is None:
            insert_len = int(np.bincount(lens).argmax())
        skip = used | (lens != insert_len)
        if self._scope is not None:
            skip = skip | ~self._scope
        n_free = int(np.count_nonzero(~skip))
        if n_free == 0 or n_free * numbers.size * N_SCRAMBLE > max_work:
            return 0
        pats = all_index_patterns(numbers, tag)
        best = nearest_index(flat, offs, skip, pats, NEAREST_MAX_DIST, NEAREST_MARGIN)
        if wanted is not None:
            hit = best >= 0
            best[hit] = np.where(wanted[numbers[best[hit] // N_SCRAMBLE]], best[hit], -1)
        rows = np.flatnonzero(best >= 0)
        if rows.size == 0:
            return 0
        which = best[rows]
        return self._file_rescued(tag, rows, numbers[which // N_SCRAMBLE], which % N_SCRAMBLE,
                                  np.full(len(offs) - 1, INDEX_NT, dtype=np.int64))

    def rescue_aligned(self, tag: int, numbers: np.ndarray, max_work: float = NEAREST_MAX_WORK) -> int:
        """Another pass for the reads of a few oligos (the header's) whose index took several
        indels: a still unused read whose first nt match the index of one of oligos ``numbers``
        of image ``tag`` (any seed) within ``ALIGNED_MAX_DIST`` edits, ``NEAREST_MARGIN`` fewer
        than any other of them, is filed under it, its payload starting where the match ends.
        Skipped (returns 0) when reads x candidates exceeds ``max_work``."""
        numbers = np.asarray(numbers, dtype=np.int64)
        if self.rescue.count == 0 or numbers.size == 0:
            return 0
        flat, offs, used = self._rescue_pool()
        skip = used if self._scope is None else used | ~self._scope
        if int(np.count_nonzero(~skip)) * numbers.size * N_SCRAMBLE * ALIGNED_WORK > max_work:
            return 0
        best, took = aligned_index(flat, offs, skip, all_index_patterns(numbers, tag), ALIGNED_MAX_DIST,
                                   NEAREST_MARGIN, ALIGNED_SLACK)
        rows = np.flatnonzero(best >= 0)
        if rows.size == 0:
            return 0
        which = best[rows]
        return self._file_rescued(tag, rows, numbers[which // N_SCRAMBLE], which % N_SCRAMBLE, took)

    def rescue_by_payload(self, tag: int, est: np.ndarray, numbers: np.ndarray, seeds: np.ndarray) -> int:
        """Fourth pass, for reads whose index is beyond repair (nanopore indels): a still unused
        read whose payload matches one of the consensuses ``est`` (one row per oligo: its
        number in ``numbers``, its seed in ``seeds``) clearly (:mod:`dnaimg.dna.payload_rescue`)
        is filed under that oligo, its payload from where the match places it."""
        if self.rescue.count == 0 or len(numbers) == 0:
            return 0
        flat, offs, used = self._rescue_pool()
        skip = used.copy()
        if self._scope is not None:
            skip |= ~self._scope
        if skip.all():
            return 0
        row, start = match_to_consensus(flat, offs, skip, est)
        rows = np.flatnonzero(row >= 0)
        if rows.size == 0:
            return 0
        which = row[rows]
        consumed = np.zeros(len(offs) - 1, dtype=np.int64)
        consumed[rows] = np.minimum(start[rows], (offs[1:] - offs[:-1])[rows])
        return self._file_rescued(tag, rows, np.asarray(numbers)[which], np.asarray(seeds)[which], consumed)

    def free_rescue_reads(self) -> int:
        """Set-aside reads not yet filed by a rescue (within the rescue scope, if one is set)."""
        if self.rescue.count == 0:
            return 0
        _, _, used = self._rescue_pool()
        free = ~used if self._scope is None else (~used & self._scope)
        return int(np.count_nonzero(free))

    def _file_rescued(self, tag, rows, numbers, seeds, consumed) -> int:
        """File rescue-pool reads ``rows`` (their payload after ``consumed[row]`` nt) under
        (tag, numbers, seeds), mark them used, and count them."""
        flat, offs, used = self._rescue_pool()
        used[rows] = True
        n = self._file(_key(np.int64(tag), numbers, seeds), flat, offs, rows, consumed, offs[1:] - offs[:-1])
        self.stats.rescued += n
        self.stats.used += n
        return n

    # -- the store, sorted -----------------------------------------------------------------
    def store(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(flat, offs, order, first): the kept reads, read ``r`` being ``flat[offs[r]:offs[r+1]]``;
        the reads of slot ``s`` are ``order[first[s]:first[s+1]]``, in the order they came.  Only
        the read numbers are sorted, the bases stay where they are."""
        if self._sorted is None:
            if len(self._lens) > 1:
                self._lens = [np.concatenate(self._lens)]
                self._slots = [np.concatenate(self._slots)]
            flat = self._buf[:self._used]
            lens = self._lens[0] if self._lens else np.zeros(0, np.int64)
            slots = self._slots[0] if self._slots else np.zeros(0, np.int64)
            offs = np.zeros(len(lens) + 1, dtype=np.int64)
            np.cumsum(lens, out=offs[1:])
            first = np.zeros(self.n_slots + 1, dtype=np.int64)
            np.cumsum(np.bincount(slots, minlength=self.n_slots), out=first[1:])
            self._sorted = (flat, offs, _order_by_slot(slots, first), first)
        return self._sorted

    def slot_fields(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per slot: tag, oligo number, scrambling seed, reads kept."""
        k = self._slot_keys[:self.n_slots]
        return k >> 28, (k >> 4) & 0xFFFFFF, k & 15, self._counts[:self.n_slots].copy()

    def group(self, slot: int) -> Group:
        """The kept reads of one slot, packed."""
        flat, offs, order, first = self.store()
        return Group(*gather_reads(flat, offs, order[first[slot]:first[slot + 1]]))

    def _index(self) -> dict[int, int]:
        if self._slot_index is None or len(self._slot_index) != self.n_slots:
            self._slot_index = dict(zip(self._slot_keys[:self.n_slots].tolist(), range(self.n_slots)))
        return self._slot_index

    @property
    def groups(self) -> dict[tuple[int, int, int], Group]:
        """Every (tag, number, seed) and its reads (built on demand: prefer :meth:`best_slots`)."""
        tags, numbers, seeds, _ = self.slot_fields()
        return {key: self.group(s) for s, key in enumerate(zip(tags.tolist(), numbers.tolist(), seeds.tolist()))}

    def reads_per_tag(self) -> dict[int, int]:
        tags, _, _, counts = self.slot_fields()
        u, inv = np.unique(tags, return_inverse=True)
        tot = np.bincount(inv, weights=counts, minlength=len(u))
        return {int(t): int(c) for t, c in zip(u, tot)}

    def numbers(self, tag: int, lo: int = 0, hi: int = 1 << 24) -> list[int]:
        """The oligo numbers in [lo, hi) seen for image ``tag``, ascending."""
        tags, numbers, _, _ = self.slot_fields()
        return sorted(set(numbers[(tags == tag) & (numbers >= lo) & (numbers < hi)].tolist()))

    def best_group(self, tag: int, number: int) -> tuple[int, Group] | None:
        """The scrambling seed with the most reads for this oligo, and its group."""
        index = self._index()
        best = None
        for seed in range(16):
            slot = index.get(_key(tag, number, seed))
            if slot is not None and (best is None or self._counts[slot] > self._counts[best[1]]):
                best = (seed, slot)
        if best is None:
            return None
        return best[0], self.group(best[1])

    def best_slots(self, tag: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """For oligos 0..n-1 of image ``tag``: the slot of the seed with the most reads (-1 if
        none; ties to the lower seed, as :meth:`best_group`) and that seed."""
        tags, numbers, seeds, counts = self.slot_fields()
        sel = np.flatnonzero((tags == tag) & (numbers < n))
        best = np.full(n, -1, dtype=np.int64)
        seed = np.zeros(n, dtype=np.int64)
        if sel.size:
            # order: by number, then fewer reads first, then higher seed first: the last wins
            order = sel[np.lexsort((-seeds[sel], counts[sel], numbers[sel]))]
            best[numbers[order]] = order
            seed[numbers[order]] = seeds[order]
        return best, seed


_EVEN = np.uint64(0x5555555555555555)


@nb.njit(cache=True, nogil=True)
def _pack2(seq, a, m):
    """``seq[a:a+m]`` (m <= 64) as two uint64 of 2-bit codes (nt 0..31, 32..63); ok=False if a
    code is not 0..3."""
    lo = np.uint64(0)
    hi = np.uint64(0)
    for t in range(m):
        x = seq[a + t]
        if x > 3:
            return False, lo, hi
        if t < 32:
            lo |= np.uint64(x) << np.uint64(2 * t)
        else:
            hi |= np.uint64(x) << np.uint64(2 * (t - 32))
    return True, lo, hi


@nb.njit(cache=True, nogil=True)
def _popcount(x):
    x = x - ((x >> np.uint64(1)) & _EVEN)
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return int((x * np.uint64(0x0101010101010101)) >> np.uint64(56))


@nb.njit(cache=True, nogil=True)
def _nt_mismatches(a, b):
    x = a ^ b
    return _popcount((x | (x >> np.uint64(1))) & _EVEN)


@nb.njit(cache=True, nogil=True, parallel=True)
def nearest_index(flat, offs, used, patterns, max_dist, margin):
    """Per read (not ``used``), the pattern nearest its first nt in Hamming distance if it is at
    most ``max_dist`` away and ``margin`` closer than the second nearest; else -1.  (Patterns of
    up to 64 nt and reads of A/C/G/T there are compared 32 nt at a time, 2 bits per nt.)"""
    n = offs.shape[0] - 1
    P, m = patterns.shape
    best = np.full(n, -1, dtype=np.int64)
    plo = np.zeros(P, dtype=np.uint64)
    phi = np.zeros(P, dtype=np.uint64)
    packed = m <= 64
    if packed:
        for p in range(P):
            ok, plo[p], phi[p] = _pack2(patterns[p], 0, m)
            packed = packed and ok
    for r in nb.prange(n):
        if used[r] or offs[r + 1] - offs[r] < m:
            continue
        a = offs[r]
        b1 = m + 1
        b2 = m + 1
        bi = -1
        fast = False
        rlo = np.uint64(0)
        rhi = np.uint64(0)
        if packed:
            fast, rlo, rhi = _pack2(flat, a, m)
        for p in range(P):
            if fast:
                d = _nt_mismatches(rlo, plo[p]) + _nt_mismatches(rhi, phi[p])
            else:
                d = 0
                for t in range(m):
                    if flat[a + t] != patterns[p, t]:
                        d += 1
                        if d >= b2:
                            break
            if d < b1:
                b2 = b1
                b1 = d
                bi = p
            elif d < b2:
                b2 = d
        if b1 <= max_dist and b2 - b1 >= margin:
            best[r] = bi
    return best


@nb.njit(cache=True, nogil=True)
def _myers_start(peq, m, flat, a, n_text):
    """Edit distance of an ``m``-nt pattern (``peq``: per base the bit mask of its positions,
    m <= 63) to its best match in ``flat[a:a + n_text]``, and where that match ends (the first
    such end): Myers' bit-parallel approximate matching."""
    one = np.uint64(1)
    mask = (one << np.uint64(m)) - one
    high = one << np.uint64(m - 1)
    pv = mask
    mv = np.uint64(0)
    score = m
    best = m
    end = 0
    for j in range(n_text):
        c = flat[a + j]
        eq = peq[c] if c < 4 else np.uint64(0)
        xv = eq | mv
        xh = ((((eq & pv) + pv) & mask) ^ pv) | eq
        ph = mv | (~(xh | pv) & mask)
        mh = pv & xh
        if ph & high:
            score += 1
        elif mh & high:
            score -= 1
        ph = (ph << one) & mask
        mh = (mh << one) & mask
        pv = mh | (~(xv | ph) & mask)
        mv = ph & xv
        if score < best:
            best = score
            end = j + 1
    return best, end


@nb.njit(cache=True, nogil=True, parallel=True)
def aligned_index(flat, offs, used, patterns, max_dist, margin, slack):
    """Per read (not ``used``): the pattern that best matches its first ``m + slack`` nt in edit
    distance (insertions and deletions too) if at most ``max_dist`` edits and ``margin`` fewer
    than any other pattern, and the nt the match takes; else -1.  For reads whose index is
    beyond the per-word decoder (several indels in it)."""
    n = offs.shape[0] - 1
    P, m = patterns.shape
    peq = np.zeros((P, 4), dtype=np.uint64)
    for p in range(P):
        for t in range(m):
            if patterns[p, t] < 4:
                peq[p, patterns[p, t]] |= np.uint64(1) << np.uint64(t)
    best = np.full(n, -1, dtype=np.int64)
    took = np.zeros(n, dtype=np.int64)
    for r in nb.prange(n):
        R = offs[r + 1] - offs[r]
        if used[r] or R < m - max_dist:
            continue
        T = min(R, m + slack)
        b1 = m + 1
        b2 = m + 1
        bi = -1
        be = 0
        for p in range(P):
            d, e = _myers_start(peq[p], m, flat, offs[r], T)
            if d < b1:
                b2 = b1
                b1 = d
                bi = p
                be = e
            elif d < b2:
                b2 = d
        if b1 <= max_dist and b2 - b1 >= margin:
            best[r] = bi
            took[r] = be
    return best, took


@nb.njit(cache=True, nogil=True)
def _order_by_slot(slots, first):
    """Read numbers sorted by slot, stable (a counting sort: ``first`` holds the slot starts)."""
    nxt = first[:-1].copy()
    order = np.empty(slots.shape[0], dtype=np.int64)
    for r in range(slots.shape[0]):
        s = slots[r]
        order[nxt[s]] = r
        nxt[s] += 1
    return order


@nb.njit(cache=True, nogil=True)
def gather_reads(flat, offs, rows):
    """Reads ``rows`` of the packed ``flat``/``offs``, packed on their own: (flat, offs)."""
    lens = np.empty(rows.shape[0] + 1, dtype=np.int64)
    lens[0] = 0
    for i in range(rows.shape[0]):
        lens[i + 1] = lens[i] + offs[rows[i] + 1] - offs[rows[i]]
    out = np.empty(lens[-1], dtype=np.uint8)
    for i in range(rows.shape[0]):
        out[lens[i]:lens[i + 1]] = flat[offs[rows[i]]:offs[rows[i] + 1]]
    return out, lens


@nb.njit(cache=True, nogil=True)
def compact_block(flat, offs, status, tag, number, scramble, repaired, flip, pstart, pend):
    """What a classified block leaves to file: status counts, index repairs among the good
    reads, and packed on their own the good reads' keys and payloads and the inserts of the
    reads whose index did not decode: (counts, repaired, keys, payloads, lengths, inserts,
    lengths)."""
    n = status.shape[0]
    counts = np.zeros(4, dtype=np.int64)
    n_ok_nt = 0
    n_bad_nt = 0
    for r in range(n):
        counts[status[r]] += 1
        if status[r] == ST_OK:
            n_ok_nt += max(pend[r] - pstart[r], 0)
        elif status[r] == ST_BAD_INDEX:
            n_bad_nt += max(pend[r] - pstart[r], 0)
    keys = np.empty(counts[ST_OK], dtype=np.int64)
    oklens = np.empty(counts[ST_OK], dtype=np.int64)
    badlens = np.empty(counts[ST_BAD_INDEX], dtype=np.int64)
    okbuf = np.empty(n_ok_nt, dtype=np.uint8)
    badbuf = np.empty(n_bad_nt, dtype=np.uint8)
    i = j = po = pb = 0
    rep = 0
    for r in range(n):
        L = max(pend[r] - pstart[r], 0)
        a = offs[r] + pstart[r]
        if status[r] == ST_OK:
            keys[i] = (tag[r] << 28) | (number[r] << 4) | scramble[r]
            oklens[i] = L
            okbuf[po:po + L] = flat[a:a + L]
            po += L
            i += 1
            if repaired[r]:
                rep += 1
        elif status[r] == ST_BAD_INDEX:
            badlens[j] = L
            badbuf[pb:pb + L] = flat[a:a + L]
            pb += L
            j += 1
    return counts, rep, keys, okbuf, oklens, badbuf, badlens


@nb.njit(cache=True, nogil=True)
def copy_payloads(flat, offs, rows, pstart, pend, out, used):
    """Append the payloads ``pstart:pend`` of reads ``rows`` to ``out`` from position ``used``;
    returns the new end."""
    o = used
    for r in rows:
        a, b = offs[r] + pstart[r], offs[r] + pend[r]
        if b > a:
            out[o:o + b - a] = flat[a:b]
            o += b - a
    return o
