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
from dataclasses import dataclass, field

import numba as nb
import numpy as np

from . import dna
from .index import TABLES, read_index

MAX_LEAD = 4


@nb.njit(cache=True, nogil=True)
def prefix_match(pattern, text, max_lead):
    """Best alignment of the whole ``pattern`` to a prefix of ``text`` (the text may start with
    up to ``max_lead`` extra nt for free).  Returns (edit distance, end position in text)."""
    m = pattern.shape[0]
    n = min(text.shape[0], m + m // 2 + max_lead)
    prev = np.empty(n + 1, dtype=np.int64)
    cur = np.empty(n + 1, dtype=np.int64)
    for j in range(n + 1):
        prev[j] = 0 if j <= max_lead else j - max_lead
    for i in range(1, m + 1):
        cur[0] = i
        pi = pattern[i - 1]
        for j in range(1, n + 1):
            best = prev[j - 1] + (0 if pi == text[j - 1] else 1)
            a = prev[j] + 1
            if a < best:
                best = a
            b = cur[j - 1] + 1
            if b < best:
                best = b
            cur[j] = best
        prev, cur = cur, prev
    bd, bj = m + 1, 0
    for j in range(n + 1):
        if prev[j] < bd:
            bd, bj = prev[j], j
    return bd, bj


@nb.njit(cache=True, nogil=True)
def _rc(a):
    n = a.shape[0]
    out = np.empty(n, dtype=np.uint8)
    for i in range(n):
        x = a[n - 1 - i]
        out[i] = 3 - x if x < 4 else 255
    return out


@nb.njit(cache=True, nogil=True)
def locate_insert(read, pf, pr_rc_rev, max_err):
    """Orient ``read`` and find its insert.  Returns (status, oriented read, start, end):
    status 0 = no forward primer on either strand; 1 = forward primer found, reverse missing
    (the end is then estimated); 2 = both found."""
    d1, e1 = prefix_match(pf, read, MAX_LEAD)
    rc = _rc(read)
    d2, e2 = prefix_match(pf, rc, MAX_LEAD)
    if d1 <= d2:
        seq, d, start = read, d1, e1
    else:
        seq, d, start = rc, d2, e2
    if d > max_err:
        return 0, seq, 0, 0
    rev = seq[::-1].copy()
    dr, er = prefix_match(pr_rc_rev, rev, MAX_LEAD)
    if dr <= max_err:
        end = seq.shape[0] - er
        if end > start:
            return 2, seq, start, end
    return 1, seq, start, max(start, seq.shape[0] - pr_rc_rev.shape[0])


@dataclass
class ReadStats:
    seen: int = 0
    used: int = 0
    no_primer: int = 0
    bad_index: int = 0
    too_short: int = 0
    index_repaired: int = 0
    unknown_oligo: int = 0
    other_tags: dict = field(default_factory=dict)

    @property
    def rejected(self) -> int:
        return self.seen - self.used

    def to_dict(self) -> dict:
        return {"seen": self.seen, "used": self.used, "rejected": self.rejected,
                "rejected_no_primer": self.no_primer, "rejected_bad_index": self.bad_index,
                "rejected_too_short": self.too_short, "rejected_unknown_oligo": self.unknown_oligo,
                "index_repaired": self.index_repaired}


class ReadSorter:
    """Accumulates reads into groups keyed by (tag, number, scramble)."""

    def __init__(self, primer_f: str, primer_r: str):
        self.pf = dna.encode(primer_f.upper())
        self.pr_rc_rev = dna.revcomp(dna.encode(primer_r.upper()))[::-1].copy()
        self.max_err = max(2, len(self.pf) // 3)
        self.groups: dict[tuple[int, int, int], list[np.ndarray]] = defaultdict(list)
        self.stats = ReadStats()

    def add(self, read: np.ndarray) -> None:
        self.stats.seen += 1
        if len(read) < len(self.pf) + 10:
            self.stats.too_short += 1
            return
        status, seq, start, end = locate_insert(read, self.pf, self.pr_rc_rev, self.max_err)
        if status == 0:
            self.stats.no_primer += 1
            return
        insert = seq[start:end]
        ok, number, scramble, tag, consumed, repaired = read_index(insert, *TABLES)
        if not ok:
            self.stats.bad_index += 1
            return
        if repaired:
            self.stats.index_repaired += 1
        self.stats.used += 1
        self.groups[(int(tag), int(number), int(scramble))].append(insert[consumed:].copy())

    def add_text(self, seq: str) -> None:
        self.add(dna.encode(seq))
