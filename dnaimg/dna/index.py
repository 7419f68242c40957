"""The oligo index: which oligo a read comes from, protected against sequencing errors.

Fields (32 bits): oligo number (20 bits), scrambling seed (4 bits), image tag (8 bits), as 8
nibbles, followed by 4 Reed-Solomon parity nibbles over GF(16) (``reedsolo``, primitive
polynomial x^4+x+1; a shortened RS(12, 8) code of minimum distance 5).  Each nibble is written
as a 3-nt word; 12 of the 16 words are at Hamming distance >= 2 from each other, so a single
substitution in a word usually gives an invalid word, which the decoder treats as an erasure.
All nibbles but the seed's own are XORed with a mask chosen by the scrambling seed, so that the
encoder's retries with another seed also change the index words (repeats can be avoided).

Decoding accepts up to 2 erasures and no error, or one error and no erasure (``2t + e <= 2``),
which leaves two parity nibbles of the distance-5 code for detection: a damaged index is corrected or the read
is rejected, and a read is filed under another oligo only if its index took at least two full
errors that happen to look like another codeword (and the number is then also checked against
the oligo count in the header).  For reads with an insertion or deletion inside the index,
:func:`read_index` tries every single-indel hypothesis and accepts only a unique answer.

:func:`quick_index` and :func:`read_index_ws`, called for every read, take the syndromes from a
table of packed per-position contributions (:data:`_SYN_T`) and allocate nothing.  (They were
compiled with numba's private ``_nrt=False``; with numba 0.68 that gained < 10 % on the index
path and nothing on error-free reads, so it was dropped.)

The numba kernels have allocation-free variants (:func:`read_index_ws`, :func:`rescue_index_ws`,
:func:`decode_index_nt_ws`) that take a scratch workspace from :func:`new_index_workspace`, to be
allocated once per thread; they give exactly the answers of the plain functions.
"""
from __future__ import annotations

import numba as nb
import numpy as np
import reedsolo

from dnaimg.dna.galois import tables

WORD = 3
DATA_NIBBLES = 8
PARITY_NIBBLES = 4
NIBBLES = DATA_NIBBLES + PARITY_NIBBLES
INDEX_NT = NIBBLES * WORD          # 36
NUMBER_BITS = 20
MAX_NUMBER = (1 << NUMBER_BITS) - 1
HEADER_BASE = MAX_NUMBER + 1 - 256   # oligo numbers >= this are header oligos
MAX_ERASURES = 2

#: nibble -> 3-nt word.  The first 12 are pairwise at Hamming distance 2.
NIBBLE_WORDS_TEXT = ["ACA", "AGC", "ATG", "CAT", "CGA", "CTC", "GAG", "GCT",
                     "GTA", "TAC", "TCG", "TGT", "ACT", "AGA", "CAC", "GTG"]
NIBBLE_WORDS = np.array([["ACGT".index(c) for c in w] for w in NIBBLE_WORDS_TEXT], dtype=np.uint8)
_WORD_TO_NIBBLE = np.full(64, -1, dtype=np.int8)
for _v, _w in enumerate(NIBBLE_WORDS):
    _WORD_TO_NIBBLE[_w[0] * 16 + _w[1] * 4 + _w[2]] = _v

# GF(16) tables, primitive polynomial x^4 + x + 1 (0x13), generator 2: as reedsolo builds them.
_GF_EXP, _GF_LOG = tables(4, 0x13)

SCRAMBLE_NIBBLE = 5   # position of the scrambling seed, written unmasked
N_SCRAMBLE = 12       # seeds 0..11: their words are the 12 at distance >= 2, so one substitution
                      # in the seed's word is always seen (an erasure)


def _make_masks() -> np.ndarray:
    """Per scrambling seed, a fixed nibble mask XORed onto the other 11 codeword nibbles, so that
    no oligo number gives the same index words for all 16 seeds (repeats are then avoidable)."""
    state = 0x5EED1D
    masks = np.zeros((16, NIBBLES), dtype=np.int64)
    for s in range(16):
        for k in range(NIBBLES):
            state = (state * 6364136223846793005 + 1442695040888963407) & (2**64 - 1)
            masks[s, k] = 0 if k == SCRAMBLE_NIBBLE else (state >> 60) & 15
    return masks


_MASKS = _make_masks()

_RS = reedsolo.RSCodec(nsym=PARITY_NIBBLES, nsize=15, c_exp=4, prim=0x13)


def pack_fields(number: int, scramble: int, tag: int) -> list[int]:
    if not 0 <= number <= MAX_NUMBER or not 0 <= scramble < N_SCRAMBLE or not 0 <= tag < 256:
        raise ValueError("index field out of range")
    bits = (number << 12) | (scramble << 8) | tag
    return [(bits >> (4 * (7 - i))) & 15 for i in range(DATA_NIBBLES)]


def encode_index(number: int, scramble: int, tag: int) -> np.ndarray:
    """Index fields -> 36 nucleotides."""
    nibbles = np.array(list(_RS.encode(bytes(pack_fields(number, scramble, tag)))), dtype=np.int64)
    return NIBBLE_WORDS[nibbles ^ _MASKS[scramble]].reshape(-1).copy()


def _parity_table() -> np.ndarray:
    """Parity nibbles of the message holding ``v`` at position ``i`` and 0 elsewhere, (8, 16, 4):
    RS encoding is linear, so a message's parity is the XOR of its positions' entries."""
    t = np.zeros((DATA_NIBBLES, 16, PARITY_NIBBLES), dtype=np.int64)
    for i in range(DATA_NIBBLES):
        for v in range(16):
            msg = [0] * DATA_NIBBLES
            msg[i] = v
            t[i, v] = list(_RS.encode(bytes(msg)))[DATA_NIBBLES:]
    return t


_PARITY_T = _parity_table()


@nb.njit(cache=True, nogil=True)
def index_patterns(numbers, tag, parity_t, masks, words):
    """The 36-nt index of each of oligos ``numbers`` of image ``tag`` under every scrambling seed:
    row ``k * N_SCRAMBLE + seed`` (as :func:`encode_index`, in bulk)."""
    out = np.empty((numbers.shape[0] * N_SCRAMBLE, INDEX_NT), dtype=np.uint8)
    nib = np.empty(NIBBLES, dtype=np.int64)
    for k in range(numbers.shape[0]):
        for sc in range(N_SCRAMBLE):
            bits = (numbers[k] << 12) | (sc << 8) | tag
            for i in range(DATA_NIBBLES):
                nib[i] = (bits >> (4 * (DATA_NIBBLES - 1 - i))) & 15
            for j in range(PARITY_NIBBLES):
                x = 0
                for i in range(DATA_NIBBLES):
                    x ^= parity_t[i, nib[i], j]
                nib[DATA_NIBBLES + j] = x
            row = k * N_SCRAMBLE + sc
            for i in range(NIBBLES):
                w = nib[i] ^ masks[sc, i]
                for t in range(WORD):
                    out[row, WORD * i + t] = words[w, t]
    return out


def all_index_patterns(numbers: np.ndarray, tag: int) -> np.ndarray:
    return index_patterns(np.asarray(numbers, dtype=np.int64), int(tag), _PARITY_T, _MASKS, NIBBLE_WORDS)


# ---------------------------------------------------------------------------------------------
# Kernels.  The ``*_ws`` functions do the work without allocating: they take an int64 workspace
# ``ws`` of at least INDEX_WS_LEN entries (and a uint8 buffer of at least INDEX_BUF_LEN) that the
# caller allocates once (per thread, e.g. per ``prange`` block: :func:`new_index_workspace`) and
# reuses for every read; slices of it are views.  The workspace needs no initialisation and
# carries nothing from one call to the next.  The functions without ``_ws`` keep their old
# signatures and allocate a workspace per call.
# ---------------------------------------------------------------------------------------------
_WS_C = 0                      # parsed nibbles (12)
_WS_ERASED = _WS_C + NIBBLES   # erased positions (12)
_WS_U = _WS_ERASED + NIBBLES   # unmasked candidate codeword (12)
_WS_RES = _WS_U + NIBBLES      # decoding of one candidate (12)
_WS_OUT = _WS_RES + NIBBLES    # accepted decoding (12)
_WS_V0 = _WS_OUT + NIBBLES     # word values in frame 0 (12)
_WS_VP = _WS_V0 + NIBBLES      # word values in frame +1 (12)
_WS_VM = _WS_VP + NIBBLES      # word values in frame -1 (12)
_A_STRIDE = NIBBLES + 1        # row stride of the elimination matrix
_WS_A = _WS_VM + NIBBLES       # rescue: elimination matrix (4 x 13)
INDEX_WS_LEN = _WS_A + PARITY_NIBBLES * _A_STRIDE    # 148
INDEX_BUF_LEN = 64


@nb.njit(cache=True, nogil=True)
def new_index_workspace():
    """A fresh (int64 workspace, uint8 buffer) pair for the ``*_ws`` functions."""
    return np.empty(INDEX_WS_LEN, dtype=np.int64), np.empty(INDEX_BUF_LEN, dtype=np.uint8)


@nb.njit(cache=True, nogil=True)
def _gf_mul(a, b, exp, log):
    if a == 0 or b == 0:
        return 0
    return exp[log[a] + log[b]]


@nb.njit(cache=True, nogil=True)
def _syn4(c, exp, log):
    """The 4 syndromes S_i = c(alpha^i) of ``c`` (c[0] the highest-degree coefficient, reedsolo
    order), all in one Horner pass: multiplying by alpha^i is adding i to the logarithm."""
    s0 = s1 = s2 = s3 = 0
    for k in range(c.shape[0]):
        x = c[k]
        s0 = s0 ^ x
        s1 = (exp[log[s1] + 1] if s1 != 0 else 0) ^ x
        s2 = (exp[log[s2] + 2] if s2 != 0 else 0) ^ x
        s3 = (exp[log[s3] + 3] if s3 != 0 else 0) ^ x
    return s0, s1, s2, s3


@nb.njit(cache=True, nogil=True)
def _syndromes(c, exp, log, out):
    # c[0] is the highest-degree coefficient (reedsolo order); S_i = c(alpha^i), i = 0..3
    s0, s1, s2, s3 = _syn4(c, exp, log)
    out[0] = s0
    out[1] = s1
    out[2] = s2
    out[3] = s3
    return s0 != 0 or s1 != 0 or s2 != 0 or s3 != 0


@nb.njit(cache=True, nogil=True)
def _gf_div(a, b, exp, log):
    if a == 0:
        return 0
    return exp[(log[a] - log[b]) % 15]


@nb.njit(cache=True, nogil=True)
def _decode_nibbles_ws(c, erased, n_erased, exp, log, out):
    """Fill up to two erasures (no error then) or, without erasures, correct one error; solved
    algebraically from the syndromes S_i = sum_k E_k X_k^i, X_k = alpha^(degree of position k).
    ``out`` (12,) receives the result (it is also the trial word: no other storage needed).

    Returns 0 = fail, 1 = exact or erasures filled, 2 = one error corrected."""
    for k in range(NIBBLES):
        out[k] = c[k]
    for k in range(n_erased):
        out[erased[k]] = 0
    s0, s1, s2, s3 = _syn4(out, exp, log)
    if s0 == 0 and s1 == 0 and s2 == 0 and s3 == 0:
        return 1
    if n_erased == 2:
        X1 = exp[NIBBLES - 1 - erased[0]]
        X2 = exp[NIBBLES - 1 - erased[1]]
        E1 = _gf_div(s1 ^ _gf_mul(s0, X2, exp, log), X1 ^ X2, exp, log)
        E2 = s0 ^ E1
        P1 = _gf_mul(X1, X1, exp, log)      # X^2, then X^3 (X != 0)
        P2 = _gf_mul(X2, X2, exp, log)
        if (_gf_mul(E1, P1, exp, log) ^ _gf_mul(E2, P2, exp, log)) != s2:
            return 0
        P1 = _gf_mul(P1, X1, exp, log)
        P2 = _gf_mul(P2, X2, exp, log)
        if (_gf_mul(E1, P1, exp, log) ^ _gf_mul(E2, P2, exp, log)) != s3:
            return 0
        out[erased[0]] ^= E1
        out[erased[1]] ^= E2
        return 1
    if n_erased == 1:
        X = exp[NIBBLES - 1 - erased[0]]
        E = s0
        P = X
        if _gf_mul(E, P, exp, log) != s1:
            return 0
        P = _gf_mul(P, X, exp, log)
        if _gf_mul(E, P, exp, log) != s2:
            return 0
        P = _gf_mul(P, X, exp, log)
        if _gf_mul(E, P, exp, log) != s3:
            return 0
        out[erased[0]] ^= E
        return 1
    if n_erased > 2:
        return 0
    # one unknown error: S_i = E * X^i
    if s0 == 0 or s1 == 0:
        return 0
    X = _gf_div(s1, s0, exp, log)
    if _gf_mul(s1, X, exp, log) != s2 or _gf_mul(s2, X, exp, log) != s3:
        return 0
    p = log[X]
    if p >= NIBBLES:
        return 0
    out[NIBBLES - 1 - p] ^= s0
    return 2


@nb.njit(cache=True, nogil=True)
def _word_value(seq, p, k, w2n):
    """Nibble of the 3-nt word at seq[p:p+3] for codeword position k, or -1 if it is not a valid
    word there (the seed's position takes only the 12 strong words)."""
    if p < 0 or p + 3 > seq.shape[0]:
        return -1
    a, b, c = seq[p], seq[p + 1], seq[p + 2]
    if a > 3 or b > 3 or c > 3:
        return -1
    v = w2n[a * 16 + b * 4 + c]
    if k == SCRAMBLE_NIBBLE and v >= N_SCRAMBLE:
        return -1
    return v


@nb.njit(cache=True, nogil=True)
def _parse_words(nts, w2n, c, erased):
    """36 nt -> nibbles in ``c`` (0 where invalid); the invalid positions other than the seed's
    go to ``erased``.  Returns (number of those, whether the seed's word is invalid)."""
    ne = 0
    s_erased = False
    for k in range(NIBBLES):
        v = _word_value(nts, 3 * k, k, w2n)
        c[k] = v if v >= 0 else 0
        if v < 0:
            if k == SCRAMBLE_NIBBLE:
                s_erased = True
            else:
                erased[ne] = k
                ne += 1
    return ne, s_erased


@nb.njit(cache=True, nogil=True)
def _frame_values(seq, w2n, v0, vp, vm):
    """Word values (-1 = invalid, as :func:`_word_value`) of the 12 index words of ``seq`` in
    frame 0 (``seq[3k:3k+3]``), +1 (``seq[3k+1:...]``, after a deletion) and -1
    (``seq[3k-1:...]``, after an insertion; -1 for k = 0), in one rolling pass over the first
    38 nt.  Returns the three masks of invalid words (bit k = word k)."""
    L = seq.shape[0]
    m0 = mp = 0
    mm = 1
    vm[0] = -1
    code = 0      # the last 3 nt as a 6-bit word
    bad = 0       # bit i: the nt i places back is not A/C/G/T
    top = min(L, INDEX_NT + 2)
    for q in range(top):
        x = seq[q]
        if x > 3:
            bad = ((bad << 1) | 1) & 7
            code = (code << 2) & 63
        else:
            bad = (bad << 1) & 7
            code = ((code << 2) | x) & 63
        if q < 2:
            continue
        p = q - 2                 # the word seq[p:p+3] is word k in frame f
        k = (p + 1) // 3
        f = p - 3 * k
        v = -1
        if bad == 0:
            v = w2n[code]
            if k == SCRAMBLE_NIBBLE and v >= N_SCRAMBLE:
                v = -1
        if f == 0:
            v0[k] = v
            if v < 0:
                m0 |= 1 << k
        elif k < NIBBLES:
            if f == 1:
                vp[k] = v
                if v < 0:
                    mp |= 1 << k
            else:
                vm[k] = v
                if v < 0:
                    mm |= 1 << k
    for p in range(max(top - 2, 0), INDEX_NT + 1):   # words that run past the end of seq
        k = (p + 1) // 3
        f = p - 3 * k
        if k >= NIBBLES:
            continue
        if f == 0:
            v0[k] = -1
            m0 |= 1 << k
        elif f == 1:
            vp[k] = -1
            mp |= 1 << k
        else:
            vm[k] = -1
            mm |= 1 << k
    return m0, mp, mm


@nb.njit(cache=True, nogil=True)
def _deleted_word(seq, kj, j, k, w2n):
    """Value at position k of the word seq[3kj:3kj+4] without seq[j], 3kj <= j < 3kj+3 (-1 if
    invalid): word kj of the read with the nt at j deleted."""
    p = 3 * kj
    a = seq[p] if j > p else seq[p + 1]
    b = seq[p + 1] if j > p + 1 else seq[p + 2]
    c = seq[p + 3]
    if a > 3 or b > 3 or c > 3:
        return -1
    v = w2n[a * 16 + b * 4 + c]
    if k == SCRAMBLE_NIBBLE and v >= N_SCRAMBLE:
        return -1
    return v


@nb.njit(cache=True, nogil=True)
def _collect(vlo, vhi, kj, vk, c, erased):
    """Like :func:`_parse_words` for a read with one indel in word ``kj``: word values from
    ``vlo`` before kj, ``vk`` at kj, ``vhi`` after (kj = NIBBLES: all from ``vlo``)."""
    ne = 0
    s_erased = False
    for k in range(NIBBLES):
        v = vlo[k] if k < kj else (vk if k == kj else vhi[k])
        c[k] = v if v >= 0 else 0
        if v < 0:
            if k == SCRAMBLE_NIBBLE:
                s_erased = True
            else:
                erased[ne] = k
                ne += 1
    return ne, s_erased


@nb.njit(cache=True, nogil=True)
def _popcount(x):
    n = 0
    while x:
        x &= x - 1
        n += 1
    return n


@nb.njit(cache=True, nogil=True)
def _decode_parsed(c, erased, ne, s_erased, exp, log, masks, out, u, res):
    """The decoding step of :func:`decode_index_nt_ws` on parsed words (``u``, ``res``: scratch)."""
    total_e = ne + (1 if s_erased else 0)
    if total_e > MAX_ERASURES:
        return 0, total_e
    found = 0
    status = 0
    s_lo, s_hi = (0, N_SCRAMBLE) if s_erased else (c[SCRAMBLE_NIBBLE], c[SCRAMBLE_NIBBLE] + 1)
    for sc in range(s_lo, s_hi):
        for k in range(NIBBLES):
            u[k] = c[k] ^ masks[sc, k]
        u[SCRAMBLE_NIBBLE] = sc
        st = _decode_nibbles_ws(u, erased, ne, exp, log, res)
        if st == 0 or (st == 2 and total_e > 0) or res[SCRAMBLE_NIBBLE] != sc:
            continue
        same = found != 0
        if same:
            for k in range(NIBBLES):
                if out[k] != res[k]:
                    same = False
                    break
        if not same:
            found += 1
            for k in range(NIBBLES):
                out[k] = res[k]
            status = st
    if found != 1:
        return 0, total_e
    return status, total_e


@nb.njit(cache=True, nogil=True)
def decode_index_nt_ws(nts, w2n, exp, log, masks, out, ws):
    """36 nt -> unmasked codeword nibbles in ``out`` (12,), with an int64 workspace ``ws``
    (>= INDEX_WS_LEN): no allocation.  Returns (status, erasures): status 0 fail, 1 exact or
    erasures filled, 2 one error corrected."""
    c = ws[_WS_C:_WS_C + NIBBLES]
    erased = ws[_WS_ERASED:_WS_ERASED + NIBBLES]
    ne, s_erased = _parse_words(nts, w2n, c, erased)
    return _decode_parsed(c, erased, ne, s_erased, exp, log, masks, out,
                          ws[_WS_U:_WS_U + NIBBLES], ws[_WS_RES:_WS_RES + NIBBLES])


@nb.njit(cache=True, nogil=True)
def _fields(nib):
    bits = 0
    for i in range(DATA_NIBBLES):
        bits = (bits << 4) | nib[i]
    return bits >> 12, (bits >> 8) & 15, bits & 255


def _make_syn_table() -> np.ndarray:
    """Packed syndrome contributions: entry 16 k + v holds, for nibble v at codeword position k,
    v alpha^(i (11 - k)) in bits 4i..4i+3 (i = 0..3).  The syndromes are linear, so the packed
    syndromes of a codeword are the XOR of its 12 entries (what :func:`_syn4` computes).  Built
    from the module's GF(16) tables, i.e. the ``exp`` / ``log`` of :data:`TABLES`."""
    t = np.zeros(NIBBLES * 16, dtype=np.int64)
    for k in range(NIBBLES):
        d = NIBBLES - 1 - k
        for v in range(1, 16):
            packed = 0
            for i in range(PARITY_NIBBLES):
                packed |= int(_GF_EXP[(_GF_LOG[v] + i * d) % 15]) << (4 * i)
            t[16 * k + v] = packed
    return t


_SYN_T = _make_syn_table()


@nb.njit(cache=True, nogil=True)
def _word_at(seq, p, k, w2n):
    """:func:`_word_value` (p >= 0): nibble of seq[p:p+3] at position k, -1 if invalid.  Written
    without early exits after the loads (with them, numba left reference counting in the
    callers' loops: ten times slower)."""
    if p + 3 > seq.shape[0]:
        return -1
    a, b, c = seq[p], seq[p + 1], seq[p + 2]
    v = np.int64(w2n[((a << 4) | (b << 2) | c) & 63])
    if k == SCRAMBLE_NIBBLE and v >= N_SCRAMBLE:
        v = -1
    if (a | b | c) > 3:
        v = -1
    return v


@nb.njit(cache=True, nogil=True)
def _deleted_word_at(seq, kj, j, w2n):
    """:func:`_deleted_word` (k = kj, seq long enough), written like :func:`_word_at`."""
    p = 3 * kj
    a = seq[p] if j > p else seq[p + 1]
    b = seq[p + 1] if j > p + 1 else seq[p + 2]
    c = seq[p + 3]
    v = np.int64(w2n[((a << 4) | (b << 2) | c) & 63])
    if kj == SCRAMBLE_NIBBLE and v >= N_SCRAMBLE:
        v = -1
    if (a | b | c) > 3:
        v = -1
    return v


@nb.njit(cache=True, nogil=True)
def _first_bit(m):
    """Index of the lowest set bit of m > 0 (64 for m = 0)."""
    k = 0
    while k < 64 and (m >> k) & 1 == 0:
        k += 1
    return k


@nb.njit(cache=True, nogil=True)
def quick_index(seq, start, end, w2n, exp, log, masks):
    """Allocation-free check of an error-free index at ``seq[start:start+36]``: returns
    (ok, number, scramble, tag); ok is False whenever anything would need correcting.

    (The syndromes from :data:`_SYN_T` and the words read without branches, nothing
    allocated: several times faster than with the Horner steps of :func:`_gf_mul`, same
    answers.)"""
    if end - start < INDEX_NT:
        return False, 0, 0, 0
    sc = _word_at(seq, start + 3 * SCRAMBLE_NIBBLE, SCRAMBLE_NIBBLE, w2n)
    if sc < 0:
        return False, 0, 0, 0
    bad = False
    P = 0
    bits = 0
    for k in range(NIBBLES):
        p = start + 3 * k
        a, b, c = seq[p], seq[p + 1], seq[p + 2]
        v = np.int64(w2n[((a << 4) | (b << 2) | c) & 63])
        bad |= ((a | b | c) > 3) | (v < 0)
        u = (v ^ masks[sc, k]) & 15          # (& 15: a table index even for v = -1)
        P ^= _SYN_T[16 * k + u]
        if k < DATA_NIBBLES:
            bits = (bits << 4) | u
    if bad or P != 0:
        return False, 0, 0, 0
    return True, bits >> 12, (bits >> 8) & 15, bits & 255


@nb.njit(cache=True, nogil=True)
def read_index_ws(insert, w2n, exp, log, masks, ws, buf):
    """:func:`read_index` without allocation: ``ws`` an int64 workspace of >= INDEX_WS_LEN
    entries, ``buf`` a uint8 buffer of >= INDEX_BUF_LEN (reserved, not written).  Same results
    as :func:`read_index` for every input.

    The syndromes come from :data:`_SYN_T` (12 table look-ups, packed into one integer), and the
    cases are solved directly: one error (S_i = E X^i), one erasure at e (the packed syndromes
    must be the table entry of (e, S_0)), two erasures; with the seed's word invalid, each of
    the 12 seeds.  The +1 / -1 frame words are read only when the as-read index does not decode,
    from the end down to the first invalid one (the indel must be before it), and only the
    hypotheses that the frame checks allow are tried.

    Speed: everything is written out in this one function (no helper taking an array but the
    small branch-free word readers).  Compiling it with numba's private ``_nrt=False`` (no
    reference counting of the arrays passed around) saved only about 9 % here with numba
    0.68, so it is not used."""
    T = _SYN_T
    L = insert.shape[0]
    V0, VP, VM, U = _WS_V0, _WS_VP, _WS_VM, _WS_U
    SN = SCRAMBLE_NIBBLE
    bad0 = 0
    nbad = 0
    for k in range(NIBBLES):
        v = _word_at(insert, 3 * k, k, w2n)
        ws[V0 + k] = v
        if v < 0:
            bad0 |= 1 << k
            nbad += 1
    # ---- as read: up to 2 erasures, or one error -------------------------------------------
    fixed = 0                 # 1: exact, 2: corrected; the codeword is then in ws[U:U+12]
    if L >= INDEX_NT and nbad <= MAX_ERASURES:
        if (bad0 >> SN) & 1 == 0:
            sc = ws[V0 + SN]
            P = T[16 * SN + sc]
            ws[U + SN] = sc
            for k in range(NIBBLES):
                if k != SN:
                    v = ws[V0 + k]
                    x = (v ^ masks[sc, k]) if v >= 0 else 0      # erasures zeroed
                    ws[U + k] = x
                    P ^= T[16 * k + x]
            s0 = P & 15
            if nbad == 0:
                if P == 0:
                    fixed = 1
                else:
                    s1 = (P >> 4) & 15
                    if s0 != 0 and s1 != 0:
                        p = (log[s1] - log[s0] + 15) % 15       # X = S1 / S0 = alpha^p
                        k = NIBBLES - 1 - p
                        if p < NIBBLES and k != SN and T[16 * k + s0] == P:
                            ws[U + k] ^= s0
                            fixed = 2
            elif nbad == 1:
                e = _first_bit(bad0)
                if T[16 * e + s0] == P:
                    ws[U + e] = s0
                    fixed = 2
            else:
                e1 = _first_bit(bad0)
                e2 = _first_bit(bad0 >> (e1 + 1)) + e1 + 1
                s1 = (P >> 4) & 15
                lx1 = NIBBLES - 1 - e1                          # X_k = alpha^lx_k
                lx2 = NIBBLES - 1 - e2
                num = s1 ^ (exp[log[s0] + lx2] if s0 != 0 else 0)
                E1 = exp[(log[num] - log[exp[lx1] ^ exp[lx2]] + 15) % 15] if num != 0 else 0
                E2 = s0 ^ E1
                if T[16 * e1 + E1] ^ T[16 * e2 + E2] == P:
                    ws[U + e1] = E1
                    ws[U + e2] = E2
                    fixed = 2
        else:
            # the seed's word is invalid: every seed, with the other invalid word (if any)
            # erased; no error correction then, and the answer must be unique
            e = -1 if nbad == 1 else _first_bit(bad0 & ~(1 << SN))
            hit = -1
            for sc in range(N_SCRAMBLE):
                P = T[16 * SN + sc]
                for k in range(NIBBLES):
                    if k != SN and k != e:
                        P ^= T[16 * k + (ws[V0 + k] ^ masks[sc, k])]
                if (P == 0) if e < 0 else (T[16 * e + (P & 15)] == P):
                    if hit >= 0:
                        hit = -2
                        break
                    hit = sc
            if hit >= 0:
                P = T[16 * SN + hit]
                ws[U + SN] = hit
                for k in range(NIBBLES):
                    if k != SN and k != e:
                        x = ws[V0 + k] ^ masks[hit, k]
                        ws[U + k] = x
                        P ^= T[16 * k + x]
                if e >= 0:
                    ws[U + e] = P & 15
                fixed = 2
    r_nb, r_sc, r_tg, r_cons = 0, 0, 0, 0
    if fixed != 0:
        bits = 0
        for i in range(DATA_NIBBLES):
            bits = (bits << 4) | ws[U + i]
        r_nb, r_sc, r_tg, r_cons = bits >> 12, (bits >> 8) & 15, bits & 255, INDEX_NT
    have = False           # an indel hypothesis decoded (to r_*)
    clash = False          # two of them disagree: reject
    if fixed == 0 and L >= INDEX_NT - 1:
        # ---- one indel in word kj -----------------------------------------------------------
        # A hypothesis needs every word before kj valid in frame 0 (so kj <= lo0, the first
        # invalid one), and every word after kj valid in frame +1 (deletion: an extra nt in the
        # read) or -1 (insertion: a missing nt), so kj >= the last invalid one there.
        lo0 = _first_bit(bad0 | (1 << (NIBBLES - 1)))
        if L >= INDEX_NT + 1:
            # deletion hypotheses (the nt at j is extra): only an exact codeword is accepted
            hp = 0
            for k in range(NIBBLES - 1, 0, -1):
                v = _word_at(insert, 3 * k + 1, k, w2n)
                ws[VP + k] = v
                if v < 0:
                    hp = k
                    break
            for kj in range(hp, lo0 + 1):
                if clash:
                    break
                sc = -1
                Q = 0
                for j in range(3 * kj, 3 * kj + 3):
                    vk = _deleted_word_at(insert, kj, j, w2n)
                    if vk < 0:
                        continue
                    if kj == SN or sc < 0:       # the other words, unmasked with this seed
                        sc = vk if kj == SN else (ws[V0 + SN] if kj > SN else ws[VP + SN])
                        Q = T[16 * SN + sc]
                        ws[U + SN] = sc
                        for k in range(NIBBLES):
                            if k != kj and k != SN:
                                x = (ws[V0 + k] if k < kj else ws[VP + k]) ^ masks[sc, k]
                                ws[U + k] = x
                                Q ^= T[16 * k + x]
                    P = Q
                    if kj != SN:
                        x = vk ^ masks[sc, kj]
                        ws[U + kj] = x
                        P ^= T[16 * kj + x]
                    if P == 0:
                        bits = 0
                        for i in range(DATA_NIBBLES):
                            bits = (bits << 4) | ws[U + i]
                        nb_, sc2, tg = bits >> 12, (bits >> 8) & 15, bits & 255
                        if have and (nb_ != r_nb or sc2 != r_sc or tg != r_tg):
                            clash = True
                            break
                        have = True
                        r_nb, r_sc, r_tg, r_cons = nb_, sc2, tg, INDEX_NT + 1
        # insertion hypotheses: the missing nt is filled in as an erasure of word kj (the
        # three places of the nt in the word read the same)
        hm = 0
        for k in range(NIBBLES - 1, 0, -1):
            v = _word_at(insert, 3 * k - 1, k, w2n)
            ws[VM + k] = v
            if v < 0:
                hm = k
                break
        for kj in range(hm, lo0 + 1):
            if clash:
                break
            if kj != SN:
                sc = ws[V0 + SN] if kj > SN else ws[VM + SN]
                P = T[16 * SN + sc]
                ws[U + SN] = sc
                for k in range(NIBBLES):
                    if k != kj and k != SN:
                        x = (ws[V0 + k] if k < kj else ws[VM + k]) ^ masks[sc, k]
                        ws[U + k] = x
                        P ^= T[16 * k + x]
                s0 = P & 15
                if T[16 * kj + s0] != P:
                    continue
                ws[U + kj] = s0
            else:
                # the seed's word is the erased one: every seed, exact, unique
                hit = -1
                for sc in range(N_SCRAMBLE):
                    P = T[16 * SN + sc]
                    for k in range(NIBBLES):
                        if k != SN:
                            x = (ws[V0 + k] if k < SN else ws[VM + k]) ^ masks[sc, k]
                            P ^= T[16 * k + x]
                    if P == 0:
                        if hit >= 0:
                            hit = -2
                            break
                        hit = sc
                if hit < 0:
                    continue
                ws[U + SN] = hit
                for k in range(NIBBLES):
                    if k != SN:
                        ws[U + k] = (ws[V0 + k] if k < SN else ws[VM + k]) ^ masks[hit, k]
            bits = 0
            for i in range(DATA_NIBBLES):
                bits = (bits << 4) | ws[U + i]
            nb_, sc2, tg = bits >> 12, (bits >> 8) & 15, bits & 255
            if have and (nb_ != r_nb or sc2 != r_sc or tg != r_tg):
                clash = True
                break
            if not have:
                have = True
                r_nb, r_sc, r_tg, r_cons = nb_, sc2, tg, INDEX_NT - 1
    ok = fixed != 0 or (have and not clash)
    if not ok:
        r_nb, r_sc, r_tg, r_cons = 0, 0, 0, 0
    return ok, r_nb, r_sc, r_tg, r_cons, fixed != 1


@nb.njit(cache=True, nogil=True)
def read_index(insert, w2n, exp, log, masks):
    """Read the index at the start of a trimmed insert, tolerating one indel.

    Returns (ok, number, scramble, tag, consumed, repaired) where ``consumed`` is how many
    nucleotides of the insert the index took (36 without indel) and ``repaired`` says whether
    anything had to be corrected.  Hypotheses: as is; one deletion (an extra nt in the read at
    position j); one insertion (a missing nt at position j, filled in as an erasure).  Only an
    exact decode (erasures of missing nt allowed) is accepted for an indel hypothesis, and all
    accepted hypotheses must agree.  (Allocates a workspace per call: in a loop over reads, use
    :func:`read_index_ws` with one workspace.)
    """
    ws, buf = new_index_workspace()
    return read_index_ws(insert, w2n, exp, log, masks, ws, buf)


@nb.njit(cache=True, nogil=True)
def _solve_syn(u, pos, npos, s0, s1, s2, s3, exp, log, out, A):
    """Fill ``npos`` erased positions of codeword ``u`` so that all 4 syndromes vanish, given the
    syndromes S_i of ``u`` with those positions zeroed (Gaussian elimination over GF(16) on
    sum_k E_k X_k^i = S_i; ``A``: flat scratch of >= 4 * 13).  Returns whether a consistent
    filling exists (it is unique when it does); then ``out`` is ``u`` with the positions filled."""
    W = _A_STRIDE
    nc = npos + 1
    for k in range(npos):
        X = exp[NIBBLES - 1 - pos[k]]
        A[k] = 1
        P = X
        A[W + k] = P
        P = _gf_mul(P, X, exp, log)
        A[2 * W + k] = P
        A[3 * W + k] = _gf_mul(P, X, exp, log)
    A[npos] = s0
    A[W + npos] = s1
    A[2 * W + npos] = s2
    A[3 * W + npos] = s3
    row = 0
    for col in range(npos):
        piv = -1
        for r in range(row, PARITY_NIBBLES):
            if A[r * W + col] != 0:
                piv = r
                break
        if piv < 0:
            return False
        if piv != row:
            for cc in range(nc):
                A[row * W + cc], A[piv * W + cc] = A[piv * W + cc], A[row * W + cc]
        inv = exp[(15 - log[A[row * W + col]]) % 15]
        for cc in range(nc):
            A[row * W + cc] = _gf_mul(A[row * W + cc], inv, exp, log)
        for r in range(PARITY_NIBBLES):
            if r != row and A[r * W + col] != 0:
                f = A[r * W + col]
                for cc in range(nc):
                    A[r * W + cc] ^= _gf_mul(f, A[row * W + cc], exp, log)
        row += 1
    for r in range(row, PARITY_NIBBLES):
        if A[r * W + npos] != 0:
            return False
    for k in range(NIBBLES):
        out[k] = u[k]
    for k in range(npos):
        out[pos[k]] = A[k * W + npos]
    return True


@nb.njit(cache=True, nogil=True)
def _solve_erasures_ws(u, pos, npos, exp, log, out, trial, A):
    """Fill ``npos`` (<= 4) erased positions of codeword ``u`` so that all 4 syndromes vanish
    (Gaussian elimination over GF(16) on sum_k E_k X_k^i = S_i), with scratch ``trial`` (12,) and
    ``A`` (>= 4 * 13).  Returns whether a consistent filling exists; it is unique when it does."""
    for k in range(NIBBLES):
        trial[k] = u[k]
    for k in range(npos):
        trial[pos[k]] = 0
    s0, s1, s2, s3 = _syn4(trial, exp, log)
    return _solve_syn(u, pos, npos, s0, s1, s2, s3, exp, log, out, A)


@nb.njit(cache=True, nogil=True)
def _may_be_wanted(u, emask, want_tag, wanted):
    """Can filling the positions in ``emask`` (bit k = position k) of ``u`` give an index with tag
    ``want_tag`` and a wanted number?  The other nibbles are kept as they are, so this is known
    before solving; False means that :func:`rescue_index_ws` would drop the solution anyway."""
    for k in range(DATA_NIBBLES - 2, DATA_NIBBLES):      # the tag's two nibbles
        if (emask >> k) & 1 == 0 and u[k] != (want_tag >> (4 * (DATA_NIBBLES - 1 - k))) & 15:
            return False
    lo = 0
    known = True
    for k in range(NUMBER_BITS // 4):                    # the number's five nibbles
        if (emask >> k) & 1:
            known = False
            lo = lo << 4                                 # smallest value the filling can give
        else:
            lo = (lo << 4) | u[k]
    if lo >= wanted.shape[0]:
        return False
    if known and not wanted[lo]:
        return False
    return True


@nb.njit(cache=True, nogil=True)
def rescue_index_ws(insert, want_tag, wanted, w2n, exp, log, masks, ws, buf):
    """Second chance for a read whose index did not decode, once the header is known: up to 4
    erasures, or one error with up to 2, or one indel with up to 3, but the answer is taken only
    if its tag is ``want_tag`` and its number is one of the still-missing oligos (``wanted[k]``)
    and it is unique: a random index lands there with probability ~ missing/2^20/256.
    Returns (ok, number, scramble, consumed).  No allocation (``ws``, ``buf`` as for
    :func:`read_index_ws`).

    Same results as the plain hypothesis-by-hypothesis search: the answer is taken only if every
    solution found has the same (number, seed), so the search stops at the second distinct one,
    and a hypothesis that reads exactly like an earlier one (deleting either of two equal
    neighbours; a missing nt at any of the 3 places of one word) is not tried again."""
    L = insert.shape[0]
    c = ws[_WS_C:_WS_C + NIBBLES]
    pos = ws[_WS_ERASED:_WS_ERASED + NIBBLES]
    u = ws[_WS_U:_WS_U + NIBBLES]
    res = ws[_WS_RES:_WS_RES + NIBBLES]
    trial = ws[_WS_OUT:_WS_OUT + NIBBLES]
    v0 = ws[_WS_V0:_WS_V0 + NIBBLES]
    vp = ws[_WS_VP:_WS_VP + NIBBLES]
    vm = ws[_WS_VM:_WS_VM + NIBBLES]
    A = ws[_WS_A:_WS_A + PARITY_NIBBLES * _A_STRIDE]
    bad0, badp, badm = _frame_values(insert, w2n, v0, vp, vm)
    found_nb, found_sc, found_cons, nfound = -1, -1, 0, 0
    for h in range(1 + 2 * INDEX_NT):
        # h == 0: as read; 1..36: deletion at j; 37..72: insertion at j
        if h == 0:
            if L < INDEX_NT:
                continue
            kj, vk, vhi = NIBBLES, 0, v0
            total_e = _popcount(bad0)
            cons, max_e = INDEX_NT, 4
        elif h <= INDEX_NT:
            j = h - 1
            if L < INDEX_NT + 1:
                continue
            if j > 0 and insert[j - 1] == insert[j]:
                continue          # same read as the deletion at j - 1
            kj = j // 3
            vk = _deleted_word(insert, kj, j, kj, w2n)
            vhi = vp
            total_e = (_popcount(bad0 & ((1 << kj) - 1)) + _popcount(badp >> (kj + 1))
                       + (1 if vk < 0 else 0))
            cons, max_e = INDEX_NT + 1, 3
        else:
            j = h - 1 - INDEX_NT
            if L < INDEX_NT - 1:
                continue
            if j % 3 != 0:
                continue          # same words as the insertion at the start of this word
            kj = j // 3
            vk = -1
            vhi = vm
            total_e = _popcount(bad0 & ((1 << kj) - 1)) + _popcount(badm >> (kj + 1)) + 1
            cons, max_e = INDEX_NT - 1, 3
        if total_e > max_e:
            continue
        ne, s_erased = _collect(v0, vhi, kj, vk, c, pos)
        s_lo, s_hi = (0, N_SCRAMBLE) if s_erased else (c[SCRAMBLE_NIBBLE], c[SCRAMBLE_NIBBLE] + 1)
        # t = 0 with the erasures; then (as read, e <= 2) one extra unknown error position
        extra_hi = NIBBLES if (h == 0 and total_e <= 2) else 0
        base_mask = 0
        for k in range(ne):
            base_mask |= 1 << pos[k]
        for sc in range(s_lo, s_hi):
            for k in range(NIBBLES):
                u[k] = c[k] ^ masks[sc, k]
            u[SCRAMBLE_NIBBLE] = sc
            have_t = False        # syndromes of u with the erasures zeroed, once needed
            t0 = t1 = t2 = t3 = 0
            for extra in range(-1, extra_hi):
                npos = ne
                emask = base_mask
                if extra >= 0:
                    if extra == SCRAMBLE_NIBBLE:
                        continue
                    dup = False
                    for k in range(ne):
                        if pos[k] == extra:
                            dup = True
                    if dup:
                        continue
                    pos[ne] = extra
                    npos = ne + 1
                    emask = base_mask | (1 << extra)
                if not _may_be_wanted(u, emask, want_tag, wanted):
                    continue
                if not have_t:
                    for k in range(NIBBLES):
                        trial[k] = u[k]
                    for k in range(ne):
                        trial[pos[k]] = 0
                    t0, t1, t2, t3 = _syn4(trial, exp, log)
                    have_t = True
                s0, s1, s2, s3 = t0, t1, t2, t3
                if extra >= 0:
                    x = u[extra]
                    if x != 0:     # zero it too: the syndromes are linear
                        X = exp[NIBBLES - 1 - extra]
                        P = _gf_mul(x, X, exp, log)
                        s0 ^= x
                        s1 ^= P
                        P = _gf_mul(P, X, exp, log)
                        s2 ^= P
                        s3 ^= _gf_mul(P, X, exp, log)
                if not _solve_syn(u, pos, npos, s0, s1, s2, s3, exp, log, res, A):
                    continue
                if extra >= 0 and res[extra] == u[extra]:
                    continue   # no error there after all: the t = 0 pass has it
                if res[SCRAMBLE_NIBBLE] != sc:
                    continue
                nb_, sc2, tg = _fields(res)
                if tg != want_tag or nb_ >= wanted.shape[0] or not wanted[nb_]:
                    continue
                if nfound == 0 or nb_ != found_nb or sc2 != found_sc:
                    nfound += 1
                    if nfound > 1:
                        return False, 0, 0, 0
                    found_nb, found_sc, found_cons = nb_, sc2, cons
    if nfound == 1:
        return True, found_nb, found_sc, found_cons
    return False, 0, 0, 0


TABLES = (_WORD_TO_NIBBLE, _GF_EXP, _GF_LOG, _MASKS)


def read_index_py(insert: np.ndarray):
    """Convenience wrapper: -> None or (number, scramble, tag, consumed, repaired)."""
    ok, number, scramble, tag, consumed, repaired = read_index(
        np.ascontiguousarray(insert, dtype=np.uint8), *TABLES)
    return (int(number), int(scramble), int(tag), int(consumed), bool(repaired)) if ok else None


@nb.njit(cache=True, nogil=True, parallel=True)
def rescue_batch(flat, offs, want_tag, wanted, w2n, exp, log, masks):
    """:func:`rescue_index_ws` over reads packed as ``flat[offs[r]:offs[r+1]]``, in parallel (over
    blocks of reads, one workspace per block)."""
    n = offs.shape[0] - 1
    ok = np.zeros(n, dtype=np.bool_)
    number = np.zeros(n, dtype=np.int64)
    scramble = np.zeros(n, dtype=np.int64)
    consumed = np.zeros(n, dtype=np.int64)
    nblocks = 64
    bs = (n + nblocks - 1) // nblocks
    for blk in nb.prange(nblocks):
        ws, buf = new_index_workspace()
        for r in range(blk * bs, min(n, (blk + 1) * bs)):
            a, b, c, d = rescue_index_ws(flat[offs[r]:offs[r + 1]], want_tag, wanted, w2n, exp, log,
                                         masks, ws, buf)
            ok[r] = a
            number[r] = b
            scramble[r] = c
            consumed[r] = d
    return ok, number, scramble, consumed
