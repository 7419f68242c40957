"""The primer set: mutually distant primer pairs, one per file (or group of files) of a pool.

A pool can give each file (or each group of up to 256 files) its own primer pair, so that a
lab can PCR one file out of the pool (random access).  The pairs come from one set, generated
here by a fixed, documented procedure (and written out in ``docs/primers.tsv``); pair 0 is the
default primer pair of every dnaimg oligo, so a pool that uses one pair is ordinary dnaimg DNA.

Rules for every generated primer (20 nt):

- GC content 45-55 % (9 to 11 of the 20 nt are G or C);
- melting temperature 55-60 degC by :func:`melting_temperature` (SantaLucia 1998 unified
  nearest-neighbour parameters, 50 mM Na+, 250 nM primer);
- no homopolymer run longer than 2 nt; no tandem repeat (period 2-6 spanning at least two
  periods) longer than 5 nt;
- a safe 3' end: the last nucleotide is G or C (GC clamp) and the last 5 hold at most 3 G/C;
- no hairpin stem: no 5-nt stretch whose reverse complement also occurs in the primer, and
  no self dimer: the reverse complement of its last 4 nt does not occur in it;
- every two primers of the set, and every primer and the reverse complement of every primer
  (itself included), are at Levenshtein (edit) distance >= :data:`MIN_DISTANCE` (9 of 20 nt);
  the two default primers count as members of the set for this rule.

Rules for a pair (forward, reverse): melting temperatures within 2 degC, and no primer dimer
at the 3' ends: the reverse complement of neither primer's last 4 nt occurs in either primer.

Generation: candidates are drawn from splitmix64 (seed :data:`SET_SEED`), 2 bits per nt, and
taken greedily: a candidate that meets the rules joins the set, as the forward primer of the
next pair or, if it fits the pair rules with the previous one, as its reverse primer.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numba as nb
import numpy as np

from dnaimg.dna.prng import _mix

from dnaimg.dna import alphabet as dna

PRIMER_NT = 20
MIN_DISTANCE = 9              # Levenshtein distance between any two primers (and reverse complements)
N_PAIRS = 97                  # pair 0 (the default primers) and 96 generated pairs
SET_SEED = 0x5052494D4552     # "PRIMER"
GC_RANGE = (9, 11)            # G/C among the 20 nt
TM_RANGE = (55.0, 60.0)       # degC
MAX_TM_DIFF = 2.0             # degC, within a pair
MAX_PRIMER_REPEAT = 5         # longest tandem repeat (period 2..6)
NA_MOLAR = 0.05
PRIMER_MOLAR = 250e-9
DEFAULT_PAIR = ("AGTGCACGCGCAGTTATATG", "CTAACGGCAATGAGTTGCAC")
NO_PAIR_INDEX = 0xFFFF        # a primer pair that is not from the set (the header's primer pair field)

# SantaLucia (1998) unified nearest-neighbour parameters: dH (kcal/mol), dS (cal/(K mol)),
# indexed by 4 * first + second (A, C, G, T = 0..3) of the top strand's dinucleotide
_NN_DH = np.array([-7.9, -8.4, -7.8, -7.2, -8.5, -8.0, -10.6, -7.8,
                   -8.2, -9.8, -8.0, -8.4, -7.2, -8.2, -8.5, -7.9])
_NN_DS = np.array([-22.2, -22.4, -21.0, -20.4, -22.7, -19.9, -27.2, -21.0,
                   -22.2, -24.4, -19.9, -22.4, -21.3, -22.2, -22.7, -22.2])
_R = 1.987


@nb.njit(cache=True, nogil=True)
def _tm(s, na, ct, dh_t, ds_t):
    dh = 0.0
    ds = 0.0
    for e in (s[0], s[s.shape[0] - 1]):
        if e == 1 or e == 2:
            dh += 0.1
            ds += -2.8
        else:
            dh += 2.3
            ds += 4.1
    for i in range(s.shape[0] - 1):
        k = 4 * s[i] + s[i + 1]
        dh += dh_t[k]
        ds += ds_t[k]
    ds += 0.368 * (s.shape[0] - 1) * math.log(na)
    return dh * 1000.0 / (ds + _R * math.log(ct / 4.0)) - 273.15


def melting_temperature(seq: str, na: float = NA_MOLAR, primer: float = PRIMER_MOLAR) -> float:
    """Tm (degC) of a DNA oligo against its complement: SantaLucia (1998) unified nearest-neighbour
    parameters with terminal initiation, the entropy salt correction 0.368 (N-1) ln[Na+], and
    ``Tm = 1000 dH / (dS + R ln(C/4)) - 273.15`` with C the primer concentration."""
    return float(_tm(dna.encode(seq.upper()), na, primer, _NN_DH, _NN_DS))


@nb.njit(cache=True, nogil=True)
def edit_distance(a, b):
    """Levenshtein distance (substitutions, insertions, deletions all cost 1)."""
    n, m = a.shape[0], b.shape[0]
    prev = np.empty(m + 1, dtype=np.int64)
    cur = np.empty(m + 1, dtype=np.int64)
    for j in range(m + 1):
        prev[j] = j
    for i in range(1, n + 1):
        cur[0] = i
        for j in range(1, m + 1):
            c = prev[j - 1] + (0 if a[i - 1] == b[j - 1] else 1)
            if prev[j] + 1 < c:
                c = prev[j] + 1
            if cur[j - 1] + 1 < c:
                c = cur[j - 1] + 1
            cur[j] = c
        for j in range(m + 1):
            prev[j] = cur[j]
    return prev[m]


@nb.njit(cache=True, nogil=True)
def _fit_distance(p, t):
    """Smallest edit distance between the whole of ``p`` and any stretch of ``t``."""
    m, n = p.shape[0], t.shape[0]
    prev = np.zeros(n + 1, dtype=np.int64)
    cur = np.zeros(n + 1, dtype=np.int64)
    for i in range(1, m + 1):
        cur[0] = i
        for j in range(1, n + 1):
            c = prev[j - 1] + (0 if p[i - 1] == t[j - 1] else 1)
            if prev[j] + 1 < c:
                c = prev[j] + 1
            if cur[j - 1] + 1 < c:
                c = cur[j - 1] + 1
            cur[j] = c
        for j in range(n + 1):
            prev[j] = cur[j]
    best = m
    for j in range(n + 1):
        if prev[j] < best:
            best = prev[j]
    return best


@nb.njit(cache=True, nogil=True, parallel=True)
def min_distance_in(patterns, texts):
    """Smallest :func:`_fit_distance` of any pattern (rows) in any text (rows)."""
    P = patterns.shape[0]
    T = texts.shape[0]
    best = np.full(T, 1 << 30, dtype=np.int64)
    for k in nb.prange(T):
        for q in range(P):
            d = _fit_distance(patterns[q], texts[k])
            if d < best[k]:
                best[k] = d
    return best.min() if T else -1


@nb.njit(cache=True, nogil=True)
def _rc(s):
    n = s.shape[0]
    out = np.empty(n, dtype=np.uint8)
    for i in range(n):
        out[i] = 3 - s[n - 1 - i]
    return out


@nb.njit(cache=True, nogil=True)
def _contains(hay, needle):
    n, m = hay.shape[0], needle.shape[0]
    for i in range(n - m + 1):
        ok = True
        for j in range(m):
            if hay[i + j] != needle[j]:
                ok = False
                break
        if ok:
            return True
    return False


@nb.njit(cache=True, nogil=True)
def _longest_repeat(s):
    n = s.shape[0]
    best = 0
    for p in range(2, 7):
        run = 0
        for i in range(n - p):
            if s[i] == s[i + p]:
                run += 1
                if run + p >= 2 * p and run + p > best:
                    best = run + p
            else:
                run = 0
    return best


@nb.njit(cache=True, nogil=True)
def _dimer_free(p, q):
    """No 3' primer dimer between p and q (either may be the same primer): the reverse
    complement of neither's last 4 nt occurs in either."""
    for a in (p, q):
        tail = _rc(a[a.shape[0] - 4:])
        if _contains(p, tail) or _contains(q, tail):
            return False
    return True


@nb.njit(cache=True, nogil=True)
def _local_ok(s, gc_lo, gc_hi, max_rep):
    """The rules on one primer alone (GC, runs, repeats, 3' end, hairpin); not the Tm."""
    n = s.shape[0]
    gc = 0
    for x in s:
        if x == 1 or x == 2:
            gc += 1
    if gc < gc_lo or gc > gc_hi:
        return False
    for i in range(2, n):
        if s[i] == s[i - 1] and s[i] == s[i - 2]:
            return False
    if _longest_repeat(s) > max_rep:
        return False
    last = s[n - 1]
    if not (last == 1 or last == 2):
        return False
    g5 = 0
    for i in range(n - 5, n):
        if s[i] == 1 or s[i] == 2:
            g5 += 1
    if g5 > 3:
        return False
    rc = _rc(s)
    for i in range(n - 4):
        if _contains(rc, s[i:i + 5]):
            return False
    return _dimer_free(s, s)


@nb.njit(cache=True, nogil=True)
def _generate(seed_primers, n_total, length, seed, min_dist, gc_lo, gc_hi, max_rep, tm_lo, tm_hi, max_dtm,
              na, ct, dh_t, ds_t, max_candidates):
    """Greedy generation (see the module text); returns (primers (n, length), candidates drawn)."""
    out = np.zeros((n_total, length), dtype=np.uint8)
    rcs = np.zeros((n_total, length), dtype=np.uint8)
    k = seed_primers.shape[0]
    for i in range(k):
        out[i] = seed_primers[i]
        rcs[i] = _rc(seed_primers[i])
    state = np.uint64(seed)
    cand = np.empty(length, dtype=np.uint8)
    drawn = 0
    while k < n_total and drawn < max_candidates:
        drawn += 1
        for i in range(length):
            if i % 32 == 0:
                state += np.uint64(0x9E3779B97F4A7C15)
                z = _mix(state)
            cand[i] = (z >> np.uint64(2 * (i % 32))) & np.uint64(3)
        if not _local_ok(cand, gc_lo, gc_hi, max_rep):
            continue
        t = _tm(cand, na, ct, dh_t, ds_t)
        if t < tm_lo or t > tm_hi:
            continue
        crc = _rc(cand)
        if edit_distance(cand, crc) < min_dist:
            continue
        if k % 2 == 1:          # the reverse primer of pair k // 2: the pair rules
            if abs(t - _tm(out[k - 1], na, ct, dh_t, ds_t)) > max_dtm or not _dimer_free(out[k - 1], cand):
                continue
        ok = True
        for j in range(k):
            if edit_distance(cand, out[j]) < min_dist or edit_distance(cand, rcs[j]) < min_dist:
                ok = False
                break
        if not ok:
            continue
        out[k] = cand
        rcs[k] = crc
        k += 1
    return out[:k], drawn


@dataclass(frozen=True)
class PrimerPair:
    """Pair ``index`` of the set (0: the default primers); the reverse primer's reverse
    complement ends every oligo."""
    index: int
    forward: str
    reverse: str

    @property
    def tm(self) -> tuple[float, float]:
        return melting_temperature(self.forward), melting_temperature(self.reverse)


def generate(n_pairs: int = N_PAIRS) -> tuple[PrimerPair, ...]:
    """Run the generation (about 2 s): the first ``n_pairs`` pairs (pair 0: the default primers).
    Deterministic; a longer set starts with the same pairs."""
    seeds = np.stack([dna.encode(DEFAULT_PAIR[0]), dna.encode(DEFAULT_PAIR[1])])
    arr, _ = _generate(seeds, 2 * n_pairs, PRIMER_NT, SET_SEED, MIN_DISTANCE, GC_RANGE[0], GC_RANGE[1],
                       MAX_PRIMER_REPEAT, TM_RANGE[0], TM_RANGE[1], MAX_TM_DIFF, NA_MOLAR, PRIMER_MOLAR,
                       _NN_DH, _NN_DS, 200_000_000)
    if len(arr) < 2 * n_pairs:
        raise ValueError(f"the primer rules allow only {len(arr) // 2} pairs")
    seqs = [dna.decode(a) for a in arr]
    return tuple(PrimerPair(i, seqs[2 * i], seqs[2 * i + 1]) for i in range(n_pairs))


SET_FILE = Path(__file__).with_name("primer_set.txt")


@lru_cache(maxsize=None)
def primer_pairs() -> tuple[PrimerPair, ...]:
    """The set, as shipped in ``primer_set.txt`` (what :func:`generate` gives; a test checks it):
    a decoder reads it instead of generating it again."""
    pairs = []
    for line in SET_FILE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            f, r = line.split()
            pairs.append(PrimerPair(len(pairs), f, r))
    return tuple(pairs)


def write_set_file(path: Path = SET_FILE) -> None:
    path.write_text("# dnaimg primer set: pair i = line i (forward, reverse); python -m dnaimg.dna.primers --write\n"
                    + "".join(f"{p.forward} {p.reverse}\n" for p in generate()))


def pair(index: int) -> PrimerPair:
    if not 0 <= index < N_PAIRS:
        raise ValueError(f"primer pair {index} is not in the set (0..{N_PAIRS - 1})")
    return primer_pairs()[index]


def pair_of(forward: str, reverse: str) -> int | None:
    """The set's index of a primer pair, or None."""
    f, r = forward.upper(), reverse.upper()
    for p in primer_pairs():
        if p.forward == f and p.reverse == r:
            return p.index
    return None


def set_digest(pairs: tuple[PrimerPair, ...] | None = None) -> str:
    """SHA-256 (first 16 hex digits) of the set written as ``forward,reverse`` lines."""
    pairs = pairs or primer_pairs()
    text = "".join(f"{p.forward},{p.reverse}\n" for p in pairs)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def min_pairwise_distance(seqs: list[str]) -> int:
    """Smallest edit distance between two of ``seqs``, or between one and the reverse complement
    of one (itself included)."""
    arr = [dna.encode(s) for s in seqs]
    rcs = [dna.revcomp(a) for a in arr]
    best = 10 ** 9
    for i, a in enumerate(arr):
        best = min(best, int(edit_distance(a, rcs[i])))
        for j in range(i + 1, len(arr)):
            best = min(best, int(edit_distance(a, arr[j])), int(edit_distance(a, rcs[j])))
    return best


def table() -> str:
    """The set as TSV (what docs/primers.tsv holds)."""
    lines = ["pair\tforward\treverse\treverse_complement\ttm_forward\ttm_reverse\tgc_forward\tgc_reverse"]
    for p in primer_pairs():
        tf, tr = p.tm
        lines.append(f"{p.index}\t{p.forward}\t{p.reverse}\t{dna.revcomp_str(p.reverse)}\t{tf:.1f}\t{tr:.1f}\t"
                     f"{gc(p.forward):.2f}\t{gc(p.reverse):.2f}")
    return "\n".join(lines) + "\n"


def gc(seq: str) -> float:
    return sum(c in "GC" for c in seq.upper()) / max(1, len(seq))


if __name__ == "__main__":       # python -m dnaimg.dna.primers [--write] > docs/primers.tsv
    import sys
    if "--write" in sys.argv:
        write_set_file()
    sys.stdout.write(table())
