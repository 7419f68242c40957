"""From sequencer reads to oligo groups: orientation, primer trimming, index reading.

For each read the forward primer is searched at the start of the read and of its reverse
complement (semi-global edit distance, up to ``MAX_LEAD`` junk nt before it and about a third
of the primer in errors); the better strand wins.  The reverse primer is searched the same way
at the end.  What lies between is the insert: index, then payload.  The index is read with
indel hypotheses (:func:`dnaimg.index.read_index`); the payload that follows is kept, grouped
by (tag, oligo number, scrambling seed), for the consensus.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numba as nb
import numpy as np

from . import dna
from .index import INDEX_NT, TABLES, quick_index, read_index, rescue_batch

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
        d1, e1 = _match(pf, read, MAX_LEAD, False, prev, cur)
        d2, e2 = _match(pf_rc, read, MAX_LEAD, True, prev, cur)   # pf at the start of rc(read)
        if d1 <= d2:
            seq, d, start = read, d1, e1
        else:
            seq, d, start, flipped = _rc_into(read, scratch), d2, e2, True
    if d > max_err:
        return 0, seq, 0, 0, flipped
    mr = pr_rc.shape[0]
    if _ends_with(seq, pr_rc):
        if L - mr > start:
            return 2, seq, start, L - mr, flipped
    dr, er = _match(pr_rc, seq, MAX_LEAD, True, prev, cur)
    if dr <= max_err and L - er > start:
        return 2, seq, start, L - er, flipped
    return 1, seq, start, max(start, L - mr), flipped


ST_OK, ST_SHORT, ST_NO_PRIMER, ST_BAD_INDEX = 0, 1, 2, 3
CHUNK = 262144          # reads processed per numba call
MAX_READS_PER_OLIGO = 40  # reads kept per oligo for the consensus (more add nothing but time)
RESCUE_CAP_NT = 64_000_000  # nt of unreadable-index reads kept for the second pass


@nb.njit(cache=True, nogil=True, parallel=True)
def process_chunk(flat, offs, pf, pr_rc, max_err, min_len, w2n, exp, log, masks):
    """Orient, trim and index a chunk of reads packed as ``flat[offs[r]:offs[r+1]]`` (0..3, 255),
    in parallel over blocks of reads.

    Returns per read: status, tag, number, scramble, index repaired; and the payloads (the part
    of the insert after the index, on the forward strand; the whole insert for reads whose index
    did not decode), packed in ``out[out_offs[r]:out_offs[r+1]]``."""
    n = offs.shape[0] - 1
    status = np.zeros(n, dtype=np.int8)
    tag = np.zeros(n, dtype=np.int64)
    number = np.zeros(n, dtype=np.int64)
    scramble = np.zeros(n, dtype=np.int64)
    repaired = np.zeros(n, dtype=np.bool_)
    flip = np.zeros(n, dtype=np.bool_)
    pstart = np.zeros(n, dtype=np.int64)
    pend = np.zeros(n, dtype=np.int64)
    maxlen = 0
    for r in range(n):
        if offs[r + 1] - offs[r] > maxlen:
            maxlen = offs[r + 1] - offs[r]
    pf_rc = np.empty(pf.shape[0], dtype=np.uint8)
    _rc_into(pf, pf_rc)
    w = 2 * max(pf.shape[0], pr_rc.shape[0]) + MAX_LEAD + 2
    nblocks = 64
    bs = (n + nblocks - 1) // nblocks
    for blk in nb.prange(nblocks):
        scratch = np.empty(maxlen + 1, dtype=np.uint8)
        prev = np.empty(w, dtype=np.int64)
        cur = np.empty(w, dtype=np.int64)
        for r in range(blk * bs, min(n, (blk + 1) * bs)):
            read = flat[offs[r]:offs[r + 1]]
            if read.shape[0] < min_len:
                status[r] = ST_SHORT
                continue
            st, seq, start, end, flipped = orient(read, pf, pf_rc, pr_rc, max_err, scratch, prev, cur)
            if st == 0:
                status[r] = ST_NO_PRIMER
                continue
            flip[r] = flipped
            ok, nb_, sc, tg = quick_index(seq, start, end, w2n, exp, log, masks)
            consumed = INDEX_NT
            rep = False
            if not ok:
                ok, nb_, sc, tg, consumed, rep = read_index(seq[start:end], w2n, exp, log, masks)
            if not ok:
                status[r] = ST_BAD_INDEX     # kept (whole insert) for a second chance
                pstart[r] = start
                pend[r] = end
                continue
            tag[r] = tg
            number[r] = nb_
            scramble[r] = sc
            repaired[r] = rep
            pstart[r] = start + consumed
            pend[r] = max(end, start + consumed)
    out_offs = np.zeros(n + 1, dtype=np.int64)
    for r in range(n):
        keep = status[r] == ST_OK or status[r] == ST_BAD_INDEX
        out_offs[r + 1] = out_offs[r] + (pend[r] - pstart[r] if keep else 0)
    out = np.empty(out_offs[n], dtype=np.uint8)
    for blk in nb.prange(nblocks):
        for r in range(blk * bs, min(n, (blk + 1) * bs)):
            if status[r] != ST_OK and status[r] != ST_BAD_INDEX:
                continue
            o = out_offs[r]
            L = offs[r + 1] - offs[r]
            base = offs[r]
            for i in range(pstart[r], pend[r]):
                if flip[r]:
                    x = flat[base + L - 1 - i]
                    out[o] = 3 - x if x < 4 else 255
                else:
                    out[o] = flat[base + i]
                o += 1
    return status, tag, number, scramble, repaired, out, out_offs


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
    """The reads of one (tag, oligo number, scrambling seed), packed, at most ``cap`` of them."""
    __slots__ = ("pieces", "lens", "count")

    def __init__(self):
        self.pieces: list[np.ndarray] = []
        self.lens: list[np.ndarray] = []
        self.count = 0

    def packed(self) -> tuple[np.ndarray, np.ndarray]:
        if len(self.pieces) > 1:
            self.pieces = [np.concatenate(self.pieces)]
            self.lens = [np.concatenate(self.lens)]
        lens = self.lens[0]
        offs = np.zeros(len(lens) + 1, dtype=np.int64)
        np.cumsum(lens, out=offs[1:])
        return self.pieces[0], offs

    def reads(self) -> list[np.ndarray]:
        flat, offs = self.packed()
        return [flat[offs[i]:offs[i + 1]] for i in range(len(offs) - 1)]

    def __len__(self) -> int:
        return self.count


class ReadSorter:
    """Streams reads into groups keyed by (tag, number, scramble), in chunks through numba.

    Memory holds at most ``cap`` reads per oligo, whatever the number of reads."""

    def __init__(self, primer_f: str, primer_r: str, cap: int = MAX_READS_PER_OLIGO):
        self.pf = dna.encode(primer_f.upper())
        self.pr_rc = dna.revcomp(dna.encode(primer_r.upper()))
        self.max_err = max(2, len(self.pf) // 3)
        self.min_len = len(self.pf) + 10
        self.cap = cap
        self.groups: dict[tuple[int, int, int], Group] = {}
        self.by_oligo: dict[tuple[int, int], list[int]] = defaultdict(list)
        self.stats = ReadStats()
        self._pending: list = []
        self.rescue = Group()          # inserts of reads whose index did not decode
        self.rescue_cap_nt = RESCUE_CAP_NT

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
        status, tag, number, scramble, repaired, out, out_offs = process_chunk(
            flat, offs, self.pf, self.pr_rc, self.max_err, self.min_len, *TABLES)
        st = self.stats
        counts = np.bincount(status, minlength=4)
        st.seen += len(status)
        st.too_short += int(counts[ST_SHORT])
        st.no_primer += int(counts[ST_NO_PRIMER])
        st.bad_index += int(counts[ST_BAD_INDEX])
        bad = np.flatnonzero(status == ST_BAD_INDEX)
        if bad.size and sum(len(p) for p in self.rescue.pieces) < self.rescue_cap_nt:
            blens = (out_offs[1:] - out_offs[:-1])[bad]
            self.rescue.pieces.append(_gather(out, out_offs, bad))
            self.rescue.lens.append(blens)
            self.rescue.count += int(bad.size)
        ok = np.flatnonzero(status == ST_OK)
        st.index_repaired += int(np.count_nonzero(repaired[ok]))
        if ok.size == 0:
            return
        keys = (tag[ok] << 28) | (number[ok] << 4) | scramble[ok]
        order = ok[np.argsort(keys, kind="stable")]
        skeys = keys[np.argsort(keys, kind="stable")]
        lens = (out_offs[1:] - out_offs[:-1])[order]
        gathered = _gather(out, out_offs, order)
        bounds = np.flatnonzero(np.diff(skeys)) + 1
        starts = np.concatenate([[0], bounds])
        ends = np.concatenate([bounds, [len(skeys)]])
        goffs = np.zeros(len(order) + 1, dtype=np.int64)
        np.cumsum(lens, out=goffs[1:])
        for a, b in zip(starts.tolist(), ends.tolist()):
            k = int(skeys[a])
            key = (k >> 28, (k >> 4) & 0xFFFFFF, k & 15)
            g = self.groups.get(key)
            if g is None:
                g = self.groups[key] = Group()
                self.by_oligo[(key[0], key[1])].append(key[2])
            take = min(b - a, self.cap - g.count)
            if take <= 0:
                st.capped += b - a
                continue
            st.capped += (b - a) - take
            g.pieces.append(gathered[goffs[a]:goffs[a + take]].copy())
            g.lens.append(lens[a:a + take].copy())
            g.count += take
        st.used += int(ok.size)

    def finish(self) -> "ReadSorter":
        self.flush()
        return self

    def rescue_missing(self, tag: int, wanted: np.ndarray) -> int:
        """Second pass over the reads whose index did not decode: file those that decode, with
        relaxed rules, to one of the ``wanted`` (still missing) oligos of image ``tag``."""
        if self.rescue.count == 0 or not wanted.any():
            return 0
        flat, offs = self.rescue.packed()
        ok, number, scramble, consumed = rescue_batch(flat, offs, tag, wanted, *TABLES)
        n = 0
        for r in np.flatnonzero(ok).tolist():
            key = (tag, int(number[r]), int(scramble[r]))
            g = self.groups.get(key)
            if g is None:
                g = self.groups[key] = Group()
                self.by_oligo[(tag, key[1])].append(key[2])
            if g.count >= self.cap:
                continue
            piece = flat[offs[r] + consumed[r]:offs[r + 1]].copy()
            g.pieces.append(piece)
            g.lens.append(np.array([len(piece)], dtype=np.int64))
            g.count += 1
            n += 1
        self.stats.rescued += n
        self.stats.used += n
        return n

    # -- queries ---------------------------------------------------------------------------
    def best_group(self, tag: int, number: int) -> tuple[int, Group] | None:
        """The scrambling seed with the most reads for this oligo, and its group."""
        seeds = self.by_oligo.get((tag, number))
        if not seeds:
            return None
        s = max(seeds, key=lambda x: (self.groups[(tag, number, x)].count, -x))
        return s, self.groups[(tag, number, s)]


@nb.njit(cache=True, nogil=True)
def _gather(out, out_offs, order):
    total = 0
    for r in order:
        total += out_offs[r + 1] - out_offs[r]
    g = np.empty(total, dtype=np.uint8)
    p = 0
    for r in order:
        for i in range(out_offs[r], out_offs[r + 1]):
            g[p] = out[i]
            p += 1
    return g
