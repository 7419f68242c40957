"""Real sequencing runs: paired-end mates, and what a run adds around the oligos.

**Mates** (:func:`merge_mates`): a paired-end run reads each DNA fragment from both ends, R1
from its start and R2 from its end, reverse-complemented; with 2x150 reads on 200-nt oligos
the two overlap by about 100 nt.  Each pair is merged into one read: the offset at which the
reverse complement of R2 continues R1 is the one with the fewest mismatches per overlapping
nt (ungapped; at least ``MIN_OVERLAP`` nt and at most ``MAX_MISMATCH`` mismatches per nt),
and the merged read is R1, then what R2 adds past it (R1's base where they disagree: no
qualities are read); for a fragment shorter than the reads, what either mate reads past the
other's end (the adapter) is left out.  A pair without such an overlap (e.g. an indel in one mate's overlap) is
dropped: it counts as a read too short.

**Runs as a simulator makes them** (:func:`shape_reads`, ``dnaimg simulate``): random flanks
on both ends (nanopore reads carry 10-60 nt of adapter and barcode), an adapter tail after the
read (Illumina reads longer than the fragment read on into the adapter), primers trimmed off,
and paired-end mates of a given read length.
"""
from __future__ import annotations

import numba as nb
import numpy as np

MIN_OVERLAP = 20
MAX_MISMATCH = 0.2
#: the start of the Illumina TruSeq adapter, read after a fragment shorter than the read
ADAPTER = "AGATCGGAAGAGCACACGTCTGAACTCCAGTCAC"


@nb.njit(cache=True, nogil=True)
def _best_offset(f1, a0, la, f2, b0, lb, min_overlap, max_mismatch):
    """Where rc(R2) starts in R1's coordinates (negative: before R1's start, a fragment shorter
    than the reads, both mates read on into the adapter), with the fewest mismatches per
    overlapping nt; ties to the larger overlap.  (offset, found)."""
    best_o = 0
    best_rate = 2.0
    best_ov = 0
    for o in range(-(lb - min_overlap), la - min_overlap + 1):
        t0 = max(0, -o)                    # the overlap: rc(R2)[t0:t1] against R1[o+t0:o+t1]
        t1 = min(lb, la - o)
        ov = t1 - t0
        if ov < min_overlap:
            continue
        limit = int(max_mismatch * ov)
        mm = 0
        for t in range(t0, t1):
            x = f2[b0 + lb - 1 - t]
            y = 3 - x if x < 4 else 255
            if y == 255 or f1[a0 + o + t] != y:
                mm += 1
                if mm > limit:
                    break
        if mm <= limit:
            rate = mm / ov
            if rate < best_rate or (rate == best_rate and ov > best_ov):
                best_rate = rate
                best_o = o
                best_ov = ov
    return best_o, best_rate <= 1.0


@nb.njit(cache=True, nogil=True, parallel=True)
def merge_mates(f1, o1, f2, o2, min_overlap, max_mismatch):
    """Pairs ``r`` = (R1 ``f1[o1[r]:o1[r+1]]``, R2 ``f2[o2[r]:o2[r+1]]``) -> merged reads packed
    as (flat, offs), and how many pairs merged; an unmerged pair gives an empty read.  The
    merged read spans R1's start to rc(R2)'s end (what either mate reads past the other's end
    is adapter), R1's bases where both read it."""
    n = o1.shape[0] - 1
    off = np.empty(n, dtype=np.int64)
    lens = np.zeros(n + 1, dtype=np.int64)
    for r in nb.prange(n):
        la, lb = o1[r + 1] - o1[r], o2[r + 1] - o2[r]
        o, found = _best_offset(f1, o1[r], la, f2, o2[r], lb, min_overlap, max_mismatch)
        off[r] = o if found else -(1 << 40)
        lens[r + 1] = o + lb if found and o + lb > 0 else 0
    merged = 0
    for r in range(n):
        if lens[r + 1] > 0:
            merged += 1
        lens[r + 1] += lens[r]
    out = np.empty(lens[n], dtype=np.uint8)
    for r in nb.prange(n):
        m = lens[r + 1] - lens[r]
        if m == 0:
            continue
        o = off[r]
        a0, la = o1[r], o1[r + 1] - o1[r]
        b0, lb = o2[r], o2[r + 1] - o2[r]
        q = lens[r]
        for i in range(m):
            t = i - o                       # the same position in rc(R2)
            y = 255
            if 0 <= t < lb:
                x = f2[b0 + lb - 1 - t]
                y = 3 - x if x < 4 else 255
            if i < la and (f1[a0 + i] < 4 or y == 255):
                out[q + i] = f1[a0 + i]
            else:
                out[q + i] = y
    return out, lens, merged


def mate_id(name: str) -> tuple[str, int | None]:
    """A read name -> (its id without the mate number, mate 1 or 2 or None): "x/1", "x/2", or
    Illumina's "x 1:N:0:..." / "x 2:N:0:..."."""
    first, _, comment = name.replace("\t", " ").partition(" ")
    if comment[:2] in ("1:", "2:"):
        return first, int(comment[0])
    if first.endswith(("/1", "/2")):
        return first[:-2], int(first[-1])
    return first, None


def are_mates(names1: list[str], names2: list[str]) -> bool:
    """Do these first names of two files pair up (same ids, mate 1 in the first, 2 in the second)?"""
    if not names1 or len(names1) != len(names2):
        return False
    for a, b in zip(names1, names2):
        (ia, ma), (ib, mb) = mate_id(a), mate_id(b)
        if ia != ib or ma != 1 or mb != 2:
            return False
    return True


# ---------------------------------------------------------------------------------------------
# what a run adds: for the simulator

def _random_bases(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 4, n, dtype=np.uint8)


def parse_span(text: str) -> tuple[int, int]:
    """"30" -> (30, 30); "10-60" -> (10, 60)."""
    try:
        lo, _, hi = str(text).partition("-")
        a, b = int(lo), int(hi or lo)
    except ValueError:
        raise ValueError(f"expected N or LOW-HIGH (nt), got {text!r}") from None
    if a < 0 or b < a:
        raise ValueError(f"expected 0 <= LOW <= HIGH, got {text!r}")
    return a, b


def shape_reads(reads: list[np.ndarray], rng: np.random.Generator, flank: tuple[int, int] | None = None,
                adapter_tail: int = 0) -> list[np.ndarray]:
    """Reads as a run hands them out: ``flank`` (low, high): random bases before and after each
    read, each end's length drawn from low..high; ``adapter_tail``: that many nt after each read,
    the Illumina adapter then random bases."""
    if not flank and not adapter_tail:
        return reads
    adapter = np.frombuffer(ADAPTER.encode(), dtype=np.uint8)
    adapter = np.searchsorted(np.frombuffer(b"ACGT", dtype=np.uint8), adapter).astype(np.uint8)
    out = []
    for r in reads:
        parts = []
        if flank:
            parts.append(_random_bases(rng, int(rng.integers(flank[0], flank[1] + 1))))
        parts.append(np.asarray(r, dtype=np.uint8))
        if adapter_tail:
            tail = adapter[:adapter_tail]
            parts.append(tail)
            if adapter_tail > len(tail):
                parts.append(_random_bases(rng, adapter_tail - len(tail)))
        if flank:
            parts.append(_random_bases(rng, int(rng.integers(flank[0], flank[1] + 1))))
        out.append(np.concatenate(parts))
    return out


def mates(read: np.ndarray, read_length: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(R1, R2) of a fragment: its first ``read_length`` nt, and the first ``read_length`` of its
    reverse complement; a fragment shorter than that is read on into the adapter."""
    read = np.asarray(read, dtype=np.uint8)
    rc = (3 - read[::-1]).astype(np.uint8)

    def cut(s):
        if len(s) >= read_length:
            return s[:read_length]
        adapter = np.searchsorted(np.frombuffer(b"ACGT", dtype=np.uint8),
                                  np.frombuffer(ADAPTER.encode(), dtype=np.uint8)).astype(np.uint8)
        fill = np.concatenate([adapter, _random_bases(rng, max(0, read_length - len(s) - len(adapter)))])
        return np.concatenate([s, fill[:read_length - len(s)]])
    return cut(read), cut(rc)
