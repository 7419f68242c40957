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
"""
from __future__ import annotations

import numba as nb
import numpy as np
import reedsolo

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
_GF_EXP = np.zeros(32, dtype=np.int64)
_GF_LOG = np.zeros(16, dtype=np.int64)
_x = 1
for _i in range(15):
    _GF_EXP[_i] = _x
    _GF_LOG[_x] = _i
    _x <<= 1
    if _x & 0x10:
        _x ^= 0x13
for _i in range(15, 32):
    _GF_EXP[_i] = _GF_EXP[_i - 15]

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


@nb.njit(cache=True, nogil=True)
def _gf_mul(a, b, exp, log):
    if a == 0 or b == 0:
        return 0
    return exp[log[a] + log[b]]


@nb.njit(cache=True, nogil=True)
def _syndromes(c, exp, log, out):
    # c[0] is the highest-degree coefficient (reedsolo order); S_i = c(alpha^i), i = 0..3
    n = c.shape[0]
    nz = False
    for i in range(PARITY_NIBBLES):
        s = 0
        a = exp[i % 15]
        for k in range(n):
            s = _gf_mul(s, a, exp, log) ^ c[k]
        out[i] = s
        if s != 0:
            nz = True
    return nz


@nb.njit(cache=True, nogil=True)
def _gf_div(a, b, exp, log):
    if a == 0:
        return 0
    return exp[(log[a] - log[b]) % 15]


@nb.njit(cache=True, nogil=True)
def _gf_pow(x, e, exp, log):
    if x == 0:
        return 0 if e > 0 else 1
    return exp[(log[x] * e) % 15]


@nb.njit(cache=True, nogil=True)
def _decode_nibbles(c, erased, n_erased, exp, log, out):
    """Fill up to two erasures (no error then) or, without erasures, correct one error; solved
    algebraically from the syndromes S_i = sum_k E_k X_k^i, X_k = alpha^(degree of position k).

    Returns 0 = fail, 1 = exact or erasures filled, 2 = one error corrected."""
    syn = np.zeros(PARITY_NIBBLES, dtype=np.int64)
    trial = c.copy()
    for k in range(n_erased):
        trial[erased[k]] = 0
    nz = _syndromes(trial, exp, log, syn)
    out[:] = trial
    if not nz:
        return 1
    if n_erased == 2:
        X1 = exp[NIBBLES - 1 - erased[0]]
        X2 = exp[NIBBLES - 1 - erased[1]]
        E1 = _gf_div(syn[1] ^ _gf_mul(syn[0], X2, exp, log), X1 ^ X2, exp, log)
        E2 = syn[0] ^ E1
        for i in range(2, PARITY_NIBBLES):
            if (_gf_mul(E1, _gf_pow(X1, i, exp, log), exp, log)
                    ^ _gf_mul(E2, _gf_pow(X2, i, exp, log), exp, log)) != syn[i]:
                return 0
        out[erased[0]] ^= E1
        out[erased[1]] ^= E2
        return 1
    if n_erased == 1:
        X = exp[NIBBLES - 1 - erased[0]]
        E = syn[0]
        for i in range(1, PARITY_NIBBLES):
            if _gf_mul(E, _gf_pow(X, i, exp, log), exp, log) != syn[i]:
                return 0
        out[erased[0]] ^= E
        return 1
    if n_erased > 2:
        return 0
    # one unknown error: S_i = E * X^i
    s0 = syn[0]
    if s0 == 0 or syn[1] == 0:
        return 0
    X = _gf_div(syn[1], s0, exp, log)
    if _gf_mul(syn[1], X, exp, log) != syn[2] or _gf_mul(syn[2], X, exp, log) != syn[3]:
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
def decode_index_nt(nts, w2n, exp, log, masks, out):
    """36 nt -> unmasked codeword nibbles in ``out`` (12,).

    Returns (status, erasures): status 0 fail, 1 exact or erasures filled, 2 one error corrected."""
    c = np.zeros(NIBBLES, dtype=np.int64)
    erased = np.zeros(NIBBLES, dtype=np.int64)
    ne, s_erased = _parse_words(nts, w2n, c, erased)
    total_e = ne + (1 if s_erased else 0)
    if total_e > MAX_ERASURES:
        return 0, total_e
    u = np.zeros(NIBBLES, dtype=np.int64)
    res = np.zeros(NIBBLES, dtype=np.int64)
    found = 0
    status = 0
    s_lo, s_hi = (0, N_SCRAMBLE) if s_erased else (c[SCRAMBLE_NIBBLE], c[SCRAMBLE_NIBBLE] + 1)
    for sc in range(s_lo, s_hi):
        for k in range(NIBBLES):
            u[k] = c[k] ^ masks[sc, k]
        u[SCRAMBLE_NIBBLE] = sc
        st = _decode_nibbles(u, erased, ne, exp, log, res)
        if st == 0 or (st == 2 and total_e > 0) or res[SCRAMBLE_NIBBLE] != sc:
            continue
        if found == 0 or not np.array_equal(out, res):
            found += 1
            out[:] = res
            status = st
    if found != 1:
        return 0, total_e
    return status, total_e


@nb.njit(cache=True, nogil=True)
def _fields(nib):
    bits = 0
    for i in range(DATA_NIBBLES):
        bits = (bits << 4) | nib[i]
    return bits >> 12, (bits >> 8) & 15, bits & 255


@nb.njit(cache=True, nogil=True)
def quick_index(seq, start, end, w2n, exp, log, masks):
    """Allocation-free check of an error-free index at ``seq[start:start+36]``: returns
    (ok, number, scramble, tag); ok is False whenever anything would need correcting."""
    if end - start < INDEX_NT:
        return False, 0, 0, 0
    p = start + 3 * SCRAMBLE_NIBBLE
    a, b, c = seq[p], seq[p + 1], seq[p + 2]
    if a > 3 or b > 3 or c > 3:
        return False, 0, 0, 0
    sc = w2n[a * 16 + b * 4 + c]
    if sc < 0 or sc >= N_SCRAMBLE:
        return False, 0, 0, 0
    s0 = s1 = s2 = s3 = 0
    bits = 0
    for k in range(NIBBLES):
        p = start + 3 * k
        a, b, c = seq[p], seq[p + 1], seq[p + 2]
        if a > 3 or b > 3 or c > 3:
            return False, 0, 0, 0
        v = w2n[a * 16 + b * 4 + c]
        if v < 0:
            return False, 0, 0, 0
        u = v ^ masks[sc, k]
        s0 = s0 ^ u
        s1 = _gf_mul(s1, exp[1], exp, log) ^ u
        s2 = _gf_mul(s2, exp[2], exp, log) ^ u
        s3 = _gf_mul(s3, exp[3], exp, log) ^ u
        if k < DATA_NIBBLES:
            bits = (bits << 4) | u
    if s0 != 0 or s1 != 0 or s2 != 0 or s3 != 0:
        return False, 0, 0, 0
    return True, bits >> 12, (bits >> 8) & 15, bits & 255


@nb.njit(cache=True, nogil=True)
def _word_ok(seq, p, k, w2n):
    return _word_value(seq, p, k, w2n) >= 0


@nb.njit(cache=True, nogil=True)
def read_index(insert, w2n, exp, log, masks):
    """Read the index at the start of a trimmed insert, tolerating one indel.

    Returns (ok, number, scramble, tag, consumed, repaired) where ``consumed`` is how many
    nucleotides of the insert the index took (36 without indel) and ``repaired`` says whether
    anything had to be corrected.  Hypotheses: as is; one deletion (an extra nt in the read at
    position j); one insertion (a missing nt at position j, filled in as an erasure).  Only an
    exact decode (erasures of missing nt allowed) is accepted for an indel hypothesis, and all
    accepted hypotheses must agree.
    """
    L = insert.shape[0]
    out = np.zeros(NIBBLES, dtype=np.int64)
    if L >= INDEX_NT:
        st, ne = decode_index_nt(insert[:INDEX_NT], w2n, exp, log, masks, out)
        if st == 1 and ne == 0:
            nb_, sc, tg = _fields(out)
            return True, nb_, sc, tg, INDEX_NT, False
        if st != 0:
            nb_, sc, tg = _fields(out)
            return True, nb_, sc, tg, INDEX_NT, True
    # Frame checks first: a hypothesis can only succeed if every word outside the one holding
    # the indel is a valid nibble word in its frame (0 before, +1 after a deletion, -1 after an
    # insertion), so most hypotheses are discarded without decoding.
    bad0 = np.zeros(NIBBLES + 1, dtype=np.int64)     # invalid words in frame 0 among 0..k-1
    badp = np.zeros(NIBBLES + 2, dtype=np.int64)     # invalid words in frame +1 among k..11
    badm = np.zeros(NIBBLES + 2, dtype=np.int64)     # invalid words in frame -1 among k..11
    for k in range(NIBBLES):
        bad0[k + 1] = bad0[k] + (0 if _word_ok(insert, 3 * k, k, w2n) else 1)
    for k in range(NIBBLES - 1, -1, -1):
        badp[k] = badp[k + 1] + (0 if _word_ok(insert, 3 * k + 1, k, w2n) else 1)
        badm[k] = badm[k + 1] + (0 if (k > 0 and _word_ok(insert, 3 * k - 1, k, w2n)) else 1)
    buf = np.empty(INDEX_NT, dtype=np.uint8)
    have = False
    r_nb, r_sc, r_tg, r_cons = 0, 0, 0, 0
    # deletion hypotheses: read has an extra nt at position j
    if L >= INDEX_NT + 1:
        for j in range(INDEX_NT):
            kj = j // 3
            if bad0[kj] != 0 or badp[kj + 1] != 0:
                continue
            for t in range(INDEX_NT):
                buf[t] = insert[t] if t < j else insert[t + 1]
            st, ne = decode_index_nt(buf, w2n, exp, log, masks, out)
            if st == 1 and ne == 0:
                nb_, sc, tg = _fields(out)
                if have and (nb_ != r_nb or sc != r_sc or tg != r_tg):
                    return False, 0, 0, 0, 0, True
                have = True
                r_nb, r_sc, r_tg, r_cons = nb_, sc, tg, INDEX_NT + 1
    # insertion hypotheses: read is missing the nt at position j
    if L >= INDEX_NT - 1:
        for j in range(INDEX_NT):
            kj = j // 3
            if bad0[kj] != 0 or badm[kj + 1] != 0:
                continue
            for t in range(INDEX_NT):
                if t < j:
                    buf[t] = insert[t]
                elif t == j:
                    buf[t] = 255
                else:
                    buf[t] = insert[t - 1]
            st, ne = decode_index_nt(buf, w2n, exp, log, masks, out)
            if st == 1 and ne <= 1:
                nb_, sc, tg = _fields(out)
                if have and (nb_ != r_nb or sc != r_sc or tg != r_tg):
                    return False, 0, 0, 0, 0, True
                if not have:
                    have = True
                    r_nb, r_sc, r_tg, r_cons = nb_, sc, tg, INDEX_NT - 1
    if have:
        return True, r_nb, r_sc, r_tg, r_cons, True
    return False, 0, 0, 0, 0, True


@nb.njit(cache=True, nogil=True)
def _solve_erasures(u, pos, npos, exp, log, out):
    """Fill ``npos`` (<= 4) erased positions of codeword ``u`` so that all 4 syndromes vanish
    (Gaussian elimination over GF(16) on sum_k E_k X_k^i = S_i).  Returns whether a consistent
    filling exists; it is unique when it does."""
    trial = u.copy()
    for k in range(npos):
        trial[pos[k]] = 0
    syn = np.zeros(PARITY_NIBBLES, dtype=np.int64)
    _syndromes(trial, exp, log, syn)
    A = np.zeros((PARITY_NIBBLES, npos + 1), dtype=np.int64)
    for i in range(PARITY_NIBBLES):
        for k in range(npos):
            A[i, k] = _gf_pow(exp[NIBBLES - 1 - pos[k]], i, exp, log)
        A[i, npos] = syn[i]
    row = 0
    for col in range(npos):
        piv = -1
        for r in range(row, PARITY_NIBBLES):
            if A[r, col] != 0:
                piv = r
                break
        if piv < 0:
            return False
        for c in range(npos + 1):
            A[row, c], A[piv, c] = A[piv, c], A[row, c]
        inv = exp[(15 - log[A[row, col]]) % 15]
        for c in range(npos + 1):
            A[row, c] = _gf_mul(A[row, c], inv, exp, log)
        for r in range(PARITY_NIBBLES):
            if r != row and A[r, col] != 0:
                f = A[r, col]
                for c in range(npos + 1):
                    A[r, c] ^= _gf_mul(f, A[row, c], exp, log)
        row += 1
    for r in range(row, PARITY_NIBBLES):
        if A[r, npos] != 0:
            return False
    out[:] = trial
    for k in range(npos):
        out[pos[k]] = A[k, npos]
    return True


@nb.njit(cache=True, nogil=True)
def rescue_index(insert, want_tag, wanted, w2n, exp, log, masks):
    """Second chance for a read whose index did not decode, once the header is known: up to 4
    erasures, or one error with up to 2, or one indel with up to 3, but the answer is taken only
    if its tag is ``want_tag`` and its number is one of the still-missing oligos (``wanted[k]``)
    and it is unique: a random index lands there with probability ~ missing/2^20/256.
    Returns (ok, number, scramble, consumed)."""
    L = insert.shape[0]
    buf = np.empty(INDEX_NT, dtype=np.uint8)
    c = np.zeros(NIBBLES, dtype=np.int64)
    u = np.zeros(NIBBLES, dtype=np.int64)
    res = np.zeros(NIBBLES, dtype=np.int64)
    pos = np.zeros(NIBBLES, dtype=np.int64)
    found_nb, found_sc, found_cons, nfound = -1, -1, 0, 0
    for h in range(1 + 2 * INDEX_NT):
        # h == 0: as read; 1..36: deletion at j; 37..72: insertion at j
        if h == 0:
            if L < INDEX_NT:
                continue
            for t in range(INDEX_NT):
                buf[t] = insert[t]
            cons, max_e = INDEX_NT, 4
        elif h <= INDEX_NT:
            j = h - 1
            if L < INDEX_NT + 1:
                continue
            for t in range(INDEX_NT):
                buf[t] = insert[t] if t < j else insert[t + 1]
            cons, max_e = INDEX_NT + 1, 3
        else:
            j = h - 1 - INDEX_NT
            if L < INDEX_NT - 1:
                continue
            for t in range(INDEX_NT):
                buf[t] = insert[t] if t < j else (255 if t == j else insert[t - 1])
            cons, max_e = INDEX_NT - 1, 3
        ne, s_erased = _parse_words(buf, w2n, c, pos)
        total_e = ne + (1 if s_erased else 0)
        if total_e > max_e:
            continue
        s_lo, s_hi = (0, N_SCRAMBLE) if s_erased else (c[SCRAMBLE_NIBBLE], c[SCRAMBLE_NIBBLE] + 1)
        for sc in range(s_lo, s_hi):
            for k in range(NIBBLES):
                u[k] = c[k] ^ masks[sc, k]
            u[SCRAMBLE_NIBBLE] = sc
            # t = 0 with the erasures; then (as read, e <= 2) one extra unknown error position
            extra_hi = NIBBLES if (h == 0 and total_e <= 2) else 0
            for extra in range(-1, extra_hi):
                npos = ne
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
                if not _solve_erasures(u, pos, npos, exp, log, res):
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
    """:func:`rescue_index` over reads packed as ``flat[offs[r]:offs[r+1]]``, in parallel."""
    n = offs.shape[0] - 1
    ok = np.zeros(n, dtype=np.bool_)
    number = np.zeros(n, dtype=np.int64)
    scramble = np.zeros(n, dtype=np.int64)
    consumed = np.zeros(n, dtype=np.int64)
    for r in nb.prange(n):
        a, b, c, d = rescue_index(flat[offs[r]:offs[r + 1]], want_tag, wanted, w2n, exp, log, masks)
        ok[r] = a
        number[r] = b
        scramble[r] = c
        consumed[r] = d
    return ok, number, scramble, consumed
