"""Bytes payloads: any bytes at 2 bits per nucleotide, constrained by guided scrambling.

Payload of a bytes oligo (``P = payload_nt`` nt, 124 by default)::

    selector word (3 nt) | B bytes, 4 nt each (2 bits per nt, high bits first), keyed | filler

- ``B = (P - 3) // 4`` (30 for 124 nt); the ``P - 3 - 4B`` filler nt (1 by default) each differ
  from both neighbours.
- **Inner code.**  The B bytes are one systematic Reed-Solomon codeword over GF(256) (the same
  code as :mod:`dnaimg.dna.outer`): ``B - inner`` data bytes then ``inner`` parity bytes
  (default 4).  Decoding corrects up to ``(inner - 2) // 2`` wrong bytes (1 by default) and keeps
  the rest of the code's distance to *detect* worse damage: such a payload is flagged and
  becomes an erasure for the outer code instead of an error.
- **Keying.**  Each data nucleotide is added (mod 4) to a keystream nucleotide
  (:func:`dnaimg.dna.prng.keystream` of (tag, oligo number, scrambling seed, selector)).  A
  substitution changes one nucleotide, so it damages exactly one byte.
- **Guided scrambling.**  The encoder tries the 144 (scrambling seed, selector) pairs until the
  whole oligo (primers, index, payload and junctions) passes
  :func:`dnaimg.dna.constraints.oligo_ok` (runs <= 3, GC 40-60 %, tandem repeats <= 12).  A
  random payload passes with probability ~0.22, so all 144 fail with probability ~1e-15.  The
  seed travels in the index; the selector is the first word, one of the 12 nibble words at
  Hamming distance >= 2 from each other (a substitution in it is seen; the decoder then tries
  the selectors one substitution away and keeps the one whose inner code checks).

Density: 8 bits per 4 nt = 2 bits per data nucleotide; with the selector and filler
``8B / P`` = 1.935 bits per payload nucleotide at 124 nt (before the inner and outer codes).
"""
from __future__ import annotations

import numba as nb
import numpy as np
import reedsolo

from dnaimg.dna.constraints import oligo_ok
from dnaimg.dna.index import N_SCRAMBLE, NIBBLE_WORDS, _WORD_TO_NIBBLE, all_index_patterns
from dnaimg.dna.outer import gf_inv, gf_matmul, gf_mul, parity_matrix
from dnaimg.dna.prng import keystream

SELECTOR_NT = 3
N_SELECT = 12              # selectors: the 12 nibble words pairwise at Hamming distance >= 2
DEFAULT_INNER = 4


class BytesError(ValueError):
    pass


#: the longest oligos byte streams are written in: guided scrambling finds, for random data, a
#: scrambling that keeps every oligo within the constraints up to here (30,000 random oligos of
#: 300 nt, default primers: all written; 9 of 30,000 at 320 nt, 11 of 3,000 at 350 nt, 170 at 400 nt
#: could not be: a longer oligo is likelier to hold a homopolymer or a repeat in every scrambling)
MAX_OLIGO_NT = 300


def bytes_per_payload(payload_nt: int) -> int:
    return (payload_nt - SELECTOR_NT) // 4


def data_bytes_per_payload(payload_nt: int, inner: int) -> int:
    b = bytes_per_payload(payload_nt) - inner
    if b < 1:
        raise BytesError(f"a {payload_nt}-nt payload holds {bytes_per_payload(payload_nt)} bytes: "
                         f"no room for data beside {inner} inner parity bytes")
    return b


def max_fix(inner: int) -> int:
    """Wrong bytes the inner code corrects (the rest of its distance detects)."""
    return max(0, (inner - 2) // 2)


def bits_per_payload_nt(payload_nt: int) -> float:
    return 8.0 * bytes_per_payload(payload_nt) / payload_nt


def inner_encode(data: np.ndarray, inner: int) -> np.ndarray:
    """(M, k) data bytes -> (M, k + inner) inner codewords."""
    data = np.asarray(data, dtype=np.int64)
    if inner == 0:
        return data.copy()
    par = gf_matmul(parity_matrix(data.shape[1], inner), data.T).T
    return np.concatenate([data, par], axis=1)


def _to_nt(rows: np.ndarray) -> np.ndarray:
    """(M, B) bytes -> (M, 4B) nt, high bits first."""
    r = np.asarray(rows, dtype=np.uint8)
    out = np.empty((r.shape[0], r.shape[1], 4), dtype=np.uint8)
    for i in range(4):
        out[:, :, i] = (r >> (6 - 2 * i)) & 3
    return out.reshape(r.shape[0], -1)


def _from_nt(nt: np.ndarray) -> np.ndarray:
    n = np.asarray(nt, dtype=np.int64).reshape(nt.shape[0], -1, 4)
    return (n[:, :, 0] << 6) | (n[:, :, 1] << 4) | (n[:, :, 2] << 2) | n[:, :, 3]


@nb.njit(cache=True, nogil=True)
def _ok_rows(oligos):
    out = np.zeros(oligos.shape[0], dtype=np.bool_)
    for i in range(oligos.shape[0]):
        out[i] = oligo_ok(oligos[i])
    return out


def _fill(body_last: np.ndarray, nxt: int, count: int) -> np.ndarray:
    """(M, count) filler nt, each differing from its neighbours."""
    out = np.zeros((len(body_last), count), dtype=np.uint8)
    prev = body_last.astype(np.int64)
    for i in range(count):
        follow = nxt if i == count - 1 else -1
        c = np.full(len(prev), -1)
        for d in range(4):
            take = (c < 0) & (prev != d) & (follow != d)
            c[take] = d
        out[:, i] = c
        prev = c
    return out


def encode_oligos(layout, tag: int, numbers: np.ndarray, codewords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inner codewords (M, B) -> oligos (M, oligo_length) for oligo ``numbers`` of image ``tag``,
    by guided scrambling.  Returns (oligos, scrambling seed * 16 + selector per oligo)."""
    numbers = np.asarray(numbers, dtype=np.int64)
    M, B = codewords.shape
    P = layout.payload_nt
    if B != bytes_per_payload(P):
        raise BytesError(f"rows of {B} bytes for a payload of {bytes_per_payload(P)}")
    data_nt = _to_nt(codewords)
    pf, prc = layout.pf, layout.pr_rc
    pats = all_index_patterns(numbers, tag).reshape(M, N_SCRAMBLE, -1)
    n_fill = P - SELECTOR_NT - 4 * B
    out = np.zeros((M, layout.oligo_length), dtype=np.uint8)
    choice = np.full(M, -1, dtype=np.int64)
    pending = np.arange(M)
    lp, li = len(pf), pats.shape[2]
    for s in range(N_SCRAMBLE):
        for sel in range(N_SELECT):
            if pending.size == 0:
                break
            ks = keystream(tag, numbers[pending], s, sel, 4 * B)
            body = (data_nt[pending] + ks) & 3
            cand = np.empty((pending.size, layout.oligo_length), dtype=np.uint8)
            cand[:, :lp] = pf
            cand[:, lp:lp + li] = pats[pending, s]
            o = lp + li
            cand[:, o:o + SELECTOR_NT] = NIBBLE_WORDS[sel]
            cand[:, o + SELECTOR_NT:o + SELECTOR_NT + 4 * B] = body
            cand[:, o + P - n_fill:o + P] = _fill(body[:, -1], int(prc[0]), n_fill)
            cand[:, o + P:] = prc
            ok = _ok_rows(cand)
            out[pending[ok]] = cand[ok]
            choice[pending[ok]] = s * 16 + sel
            pending = pending[~ok]
    if pending.size:
        raise BytesError(f"{pending.size} of {M} oligos: no scrambling seed and selector keeps them within the "
                         "synthesis constraints (primers with runs or repeats make this likelier; shorter oligos "
                         "less likely)")
    return out, choice


def _selector_candidates() -> list[list[int]]:
    """Per 3-nt word code (0..63): the selectors to try, nearest first."""
    out = []
    for code in range(64):
        w = np.array([code >> 4, (code >> 2) & 3, code & 3])
        d = (NIBBLE_WORDS[:N_SELECT] != w).sum(axis=1)
        out.append([int(i) for i in np.argsort(d, kind="stable") if d[i] <= 1])
    return out


_SEL_CANDIDATES = _selector_candidates()


def _fix_one(words: np.ndarray, inner: int) -> tuple[np.ndarray, np.ndarray]:
    """Inner codewords with at most one wrong byte, vectorised: (corrected words, per row the
    number of bytes corrected: 0, 1, or -1 when the row is not within one byte of a codeword).
    With ``inner`` >= 4 parity bytes (distance >= 5) a row with up to 3 wrong bytes is never
    mistaken for one with 1."""
    words = np.asarray(words, dtype=np.int64).copy()
    N, B = words.shape
    k = B - inner
    d = _syndrome(words, inner)                                                     # (N, inner)
    n_err = np.where(d.any(axis=1), -1, 0)
    if inner < 4:
        return words, n_err
    H = np.concatenate([parity_matrix(k, inner), np.eye(inner, dtype=np.int64)], axis=1)   # (inner, B)
    hits = np.zeros(N, dtype=np.int64)
    where = np.zeros(N, dtype=np.int64)
    value = np.zeros(N, dtype=np.int64)
    for j in range(B):
        r = int(np.flatnonzero(H[:, j])[0])
        e = gf_mul(d[:, r], gf_inv(int(H[r, j])))
        match = (e != 0) & (gf_mul(e[:, None], H[None, :, j]) == d).all(axis=1)
        hits += match
        where[match] = j
        value[match] = e[match]
    one = (n_err < 0) & (hits == 1)
    rows = np.flatnonzero(one)
    words[rows, where[rows]] ^= value[rows]
    n_err[one] = 1
    return words, n_err


def _syndrome(words: np.ndarray, inner: int) -> np.ndarray:
    """(N, inner): the parity the data bytes imply, XOR the parity read (all 0 for a codeword)."""
    k = words.shape[1] - inner
    return gf_matmul(parity_matrix(k, inner), words[:, :k].T).T ^ words[:, k:]


def _check(words: np.ndarray, inner: int) -> np.ndarray:
    """Per row: is it an inner codeword (zero syndrome)?"""
    if inner == 0:
        return np.ones(len(words), dtype=bool)
    return ~_syndrome(words, inner).any(axis=1)


def _selector(est: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per payload estimate: (its selector word's code 0..63, or -1 with an unknown nt;
    its selector, or -1 if the word is not one of the 12 selector words)."""
    w = np.asarray(est)[:, :SELECTOR_NT].astype(np.int64)
    code = np.where((w > 3).any(axis=1), -1, w[:, 0] * 16 + w[:, 1] * 4 + w[:, 2])
    nib = np.where(code >= 0, _WORD_TO_NIBBLE[np.maximum(code, 0)], -1)
    return code, np.where((nib >= 0) & (nib < N_SELECT), nib, -1)


def selector_valid(est: np.ndarray) -> np.ndarray:
    """Per payload estimate: is its selector one of the 12 selector words?"""
    return _selector(est)[1] >= 0


def _unkey(est: np.ndarray, numbers: np.ndarray, scramble, tag: int, sel) -> np.ndarray:
    """Payload estimates -> their B bytes (as read: not checked), un-keyed with selectors ``sel``;
    unknown nt read as 0."""
    B = bytes_per_payload(est.shape[1])
    body = np.asarray(est)[:, SELECTOR_NT:SELECTOR_NT + 4 * B].astype(np.int64)
    body = np.where(body > 3, 0, body)
    return _from_nt((body - keystream(tag, numbers, scramble, sel, 4 * B)) & 3)


def decode_payloads(est: np.ndarray, numbers: np.ndarray, scramble: np.ndarray, tag: int,
                    inner: int, correct: bool = True) -> tuple[np.ndarray, np.ndarray, int]:
    """Payload estimates (M, payload_nt) of oligos ``numbers`` with their scrambling seeds ->
    (data bytes (M, B - inner), ok per row, rows corrected by the inner code).  Without
    ``correct``, only rows that are codewords as read are accepted."""
    est = np.asarray(est, dtype=np.uint8)
    M, P = est.shape
    B = bytes_per_payload(P)
    numbers = np.asarray(numbers, dtype=np.int64)
    scramble = np.asarray(scramble, dtype=np.int64)
    code, sel = _selector(est)
    words = _unkey(est, numbers, scramble, tag, np.maximum(sel, 0))
    ok = _check(words, inner) & (sel >= 0) & (est[:, SELECTOR_NT:SELECTOR_NT + 4 * B] <= 3).all(axis=1)
    fixed = 0
    rs = reedsolo.RSCodec(nsym=inner, nsize=255) if inner else None
    mf = max_fix(inner)
    for i in (np.flatnonzero(~ok).tolist() if correct else []):
        cands = [int(sel[i])] if sel[i] >= 0 else (_SEL_CANDIDATES[code[i]] if code[i] >= 0 else [])
        unknown = est[i, SELECTOR_NT:SELECTOR_NT + 4 * B] > 3
        for sc in cands:
            row = _unkey(est[i:i + 1], numbers[i:i + 1], scramble[i], tag, sc)[0]
            if _check(row[None], inner)[0]:
                words[i], ok[i] = row, True
                break
            if rs is None:
                continue
            erase = sorted(set((np.flatnonzero(unknown) // 4).tolist()))
            try:
                dec, _, errata = rs.decode(bytearray(row.astype(np.uint8).tobytes()), erase_pos=erase or None)
            except (reedsolo.ReedSolomonError, ZeroDivisionError, IndexError, ValueError):
                continue
            if len(errata) - len(erase) > mf or len(erase) > inner - 2:
                continue
            words[i, :B - inner] = np.frombuffer(bytes(dec), dtype=np.uint8)
            ok[i] = True
            fixed += 1
            break
    return words[:, :B - inner], ok, fixed


def _indel_candidates(read: np.ndarray, P: int) -> np.ndarray:
    """Payloads of ``P`` nt a read could be under at most one insertion or deletion (or none)."""
    r = np.asarray(read, dtype=np.uint8)
    L = len(r)
    if L == P:
        return r[None]
    if L == P + 1:            # one insertion: drop each position in turn
        idx = np.arange(P)[None, :]
        return r[idx + (idx >= np.arange(P + 1)[:, None])]
    if L == P - 1:            # one deletion: each nt at each position in turn
        out = np.empty((4 * P, P), dtype=np.uint8)
        for j in range(P):
            out[4 * j:4 * j + 4, :j] = r[:j]
            out[4 * j:4 * j + 4, j] = np.arange(4)
            out[4 * j:4 * j + 4, j + 1:] = r[j:]
        return out
    if L > P:                 # longer: the first P nt (an insertion near the end is then harmless)
        return r[None, :P]
    return np.concatenate([r, np.full(P - L, 255, dtype=np.uint8)])[None]


def decode_from_reads(reads: list[np.ndarray], number: int, scramble: int, tag: int, inner: int,
                      P: int) -> np.ndarray | None:
    """Second chance for a payload whose consensus did not decode: each read on its own under
    every single-indel hypothesis,
    then two reads of the right length with their disagreements as erasures.  Returns the data
    bytes, or None.  The inner code decides: its detection margin is what rejects wrong
    hypotheses."""
    B = bytes_per_payload(P)
    cands = [c for r in reads[:8] for c in _indel_candidates(r, P)]
    if not cands:
        return None
    cands = np.stack(cands)
    sel = _selector(cands)[1]
    fixed, n_err = _fix_one(_unkey(cands, np.full(len(cands), number), scramble, tag, np.maximum(sel, 0)), inner)
    good = (sel >= 0) & (n_err >= 0)
    exact = good & (n_err == 0)
    if exact.any():
        return fixed[int(np.argmax(exact)), :B - inner]
    if good.any():          # one wrong byte besides the indel: accept only an unambiguous answer
        options = np.unique(fixed[good, :B - inner], axis=0)
        if len(options) == 1:
            return options[0]
    same = [np.asarray(r, dtype=np.uint8) for r in reads if len(r) == P]
    if same:
        rows, ok, _ = decode_payloads(np.stack(same[:8]), np.full(min(8, len(same)), number),
                                      np.full(min(8, len(same)), scramble), tag, inner)
        if ok.any():
            return rows[int(np.argmax(ok))]
    if inner < 2:
        return None
    rs = reedsolo.RSCodec(nsym=inner, nsize=255)
    for i in range(len(same)):
        for j in range(i + 1, min(len(same), 6)):
            a, b = same[i], same[j]
            sel = _selector(a[None])[1][0]
            if (a[:SELECTOR_NT] != b[:SELECTOR_NT]).any() or sel < 0:
                continue
            row = _unkey(a[None], np.array([number]), scramble, tag, sel)[0]
            diff = (a != b)[SELECTOR_NT:SELECTOR_NT + 4 * B] | (a > 3)[SELECTOR_NT:SELECTOR_NT + 4 * B]
            erase = sorted(set((np.flatnonzero(diff) // 4).tolist()))
            if not 0 < len(erase) <= inner - 1:
                continue
            try:
                dec = rs.decode(bytearray(row.astype(np.uint8).tobytes()), erase_pos=erase)[0]
            except (reedsolo.ReedSolomonError, ZeroDivisionError, IndexError, ValueError):
                continue
            cw = inner_encode(np.frombuffer(bytes(dec), dtype=np.uint8)[None], inner)[0]
            if (cw != row).sum() <= len(erase):
                return cw[:B - inner]
    return None


