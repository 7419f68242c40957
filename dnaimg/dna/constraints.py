"""Biochemical constraints of an oligo, checked on integer-encoded sequences.

- longest homopolymer run: at most ``MAX_RUN`` (3);
- GC content of the whole oligo: between ``GC_MIN`` and ``GC_MAX`` (40-60 %);
- longest tandem repeat: the longest stretch that repeats itself with a period of 2 to 6 nt
  and spans at least two periods (ACACAC..., ACGACG...); at most ``MAX_REPEAT`` (12) nt.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np

MAX_RUN = 3
GC_MIN, GC_MAX = 0.40, 0.60
MAX_REPEAT = 12
REPEAT_PERIODS = (2, 6)


@nb.njit(cache=True, nogil=True)
def longest_run(s):
    if s.shape[0] == 0:
        return 0
    best = run = 1
    for i in range(1, s.shape[0]):
        if s[i] == s[i - 1]:
            run += 1
            if run > best:
                best = run
        else:
            run = 1
    return best


@nb.njit(cache=True, nogil=True)
def gc_count(s):
    c = 0
    for x in s:
        if x == 1 or x == 2:
            c += 1
    return c


@nb.njit(cache=True, nogil=True)
def longest_repeat(s):
    """Longest stretch with period p in 2..6 covering at least 2p nt (0 if none)."""
    n = s.shape[0]
    best = 0
    for p in range(REPEAT_PERIODS[0], REPEAT_PERIODS[1] + 1):
        run = 0  # number of consecutive i with s[i] == s[i+p]
        for i in range(n - p):
            if s[i] == s[i + p]:
                run += 1
                length = run + p
                if length >= 2 * p and length > best:
                    best = length
            else:
                run = 0
    return best


@nb.njit(cache=True, nogil=True)
def oligo_ok(s):
    n = s.shape[0]
    if n == 0:
        return False
    gc = gc_count(s) / n
    return (longest_run(s) <= MAX_RUN and GC_MIN <= gc <= GC_MAX
            and longest_repeat(s) <= MAX_REPEAT)


@dataclass
class OligoReport:
    length: int
    longest_run: int
    gc: float
    longest_repeat: int
    ok: bool

    def violations(self) -> list[str]:
        v = []
        if self.longest_run > MAX_RUN:
            v.append(f"homopolymer of {self.longest_run} nt (max {MAX_RUN})")
        if not GC_MIN <= self.gc <= GC_MAX:
            v.append(f"GC {self.gc:.1%} (allowed {GC_MIN:.0%}-{GC_MAX:.0%})")
        if self.longest_repeat > MAX_REPEAT:
            v.append(f"tandem repeat of {self.longest_repeat} nt (max {MAX_REPEAT})")
        return v


def report(seq: np.ndarray) -> OligoReport:
    s = np.ascontiguousarray(seq, dtype=np.uint8)
    if s.size and s.max() > 3:
        return OligoReport(len(s), int(longest_run(s)), gc_count(s) / max(len(s), 1),
                           int(longest_repeat(s)), False)
    r = OligoReport(len(s), int(longest_run(s)), gc_count(s) / max(len(s), 1), int(longest_repeat(s)), True)
    r.ok = not r.violations() and len(s) > 0
    return r
