import numpy as np
from hypothesis import given, settings, strategies as st

from dnaimg.dna.codebook import get_codebook
from dnaimg.dna.index import (INDEX_NT, _RS, encode_index, pack_fields, read_index_py)
from dnaimg.dna.repair import Repairer, repair_direct, repair_numpy, repair_with_table


@given(st.integers(2, 4), st.integers(0, 2**32 - 1))
@settings(max_examples=30, deadline=None)
def test_table_direct_and_numpy_agree(n, seed):
    levels = {2: 9, 3: 17, 4: 65}[n]
    cb = get_codebook(n, levels)
    rng = np.random.default_rng(seed)
    received = rng.integers(0, 4, (500, n)).astype(np.uint8)
    flat = received.reshape(-1)
    a = repair_with_table(flat, n, cb.repairer.table)
    b = repair_direct(flat, n, cb.words)
    c = repair_numpy(received, cb.words)
    assert np.array_equal(a, b) and np.array_equal(a, c)


def test_valid_words_repair_to_themselves_and_rule_is_nearest():
    cb = get_codebook(3, 17)
    assert np.array_equal(cb.decode(cb.words.reshape(-1)), np.arange(17))
    rng = np.random.default_rng(1)
    received = rng.integers(0, 4, (2000, 3)).astype(np.uint8)
    vals = cb.decode(received.reshape(-1))
    d_chosen = (cb.words[vals] != received).sum(1)
    d_min = (received[:, None, :] != cb.words[None]).sum(2).min(1)
    assert np.array_equal(d_chosen, d_min)


def test_tie_break_takes_lower_median():
    active = np.array([[0, 1], [0, 2], [0, 3]], dtype=np.uint8)   # AC, AG, AT
    r = Repairer(active)
    # "AA" is at distance 1 from all three: the median value (1) wins
    assert r(np.array([0, 0], dtype=np.uint8)).tolist() == [1]


def test_index_roundtrip_and_reedsolo_parity():
    for number, sc, tag in [(0, 0, 0), (12345, 7, 200), (2**20 - 1, 11, 255)]:
        nt = encode_index(number, sc, tag)
        assert len(nt) == INDEX_NT
        assert read_index_py(nt)[:4] == (number, sc, tag, INDEX_NT)
    # our parity is reedsolo's: the library decodes what we wrote
    msg = bytes(pack_fields(77, 3, 9))
    code = _RS.encode(msg)
    assert bytes(_RS.decode(code)[0]) == msg


def test_index_corrects_one_substitution_everywhere():
    nt = encode_index(4242, 5, 17)
    for pos in range(INDEX_NT):
        for d in (1, 2, 3):
            bad = nt.copy()
            bad[pos] = (bad[pos] + d) % 4
            got = read_index_py(bad)
            assert got is not None and got[:3] == (4242, 5, 17)


def test_index_tolerates_one_indel():
    nt = encode_index(999, 2, 33)
    tail = np.array([0, 1, 2, 3, 0, 2], dtype=np.uint8)
    for pos in range(0, INDEX_NT, 5):
        dele = np.concatenate([np.delete(nt, pos), tail])
        ins = np.concatenate([np.insert(nt, pos, (nt[pos] + 1) % 4), tail])
        for arr, consumed in ((dele, INDEX_NT - 1), (ins, INDEX_NT + 1)):
            got = read_index_py(arr.astype(np.uint8))
            assert got is not None and got[:3] == (999, 2, 33)


def test_index_never_misfiles_under_heavy_substitutions():
    rng = np.random.default_rng(7)
    wrong = ok = 0
    for _ in range(3000):
        num = int(rng.integers(0, 5000))
        sc = int(rng.integers(12))
        nt = encode_index(num, sc, 9)
        m = rng.random(INDEX_NT) < 0.04
        nt[m] = (nt[m] + rng.integers(1, 4, m.sum())) % 4
        got = read_index_py(np.concatenate([nt, rng.integers(0, 4, 8)]).astype(np.uint8))
        if got is not None:
            if got[:3] == (num, sc, 9):
                ok += 1
            else:
                wrong += 1
    assert wrong <= 1 and ok > 2000


def test_random_junk_is_rejected():
    rng = np.random.default_rng(3)
    accepted = sum(read_index_py(rng.integers(0, 4, 50).astype(np.uint8)) is not None for _ in range(3000))
    assert accepted <= 3


def test_rescue_pass_recovers_most_failures_and_never_takes_junk():
    from dnaimg.dna.index import TABLES, rescue_index
    rng = np.random.default_rng(5)
    wanted = np.zeros(3000, dtype=bool)
    wanted[rng.choice(3000, 100, replace=False)] = True
    targets = np.flatnonzero(wanted)
    failed = rescued = wrong = 0
    for _ in range(1500):
        num, sc = int(rng.choice(targets)), int(rng.integers(12))
        nt = encode_index(num, sc, 9)
        m = rng.random(INDEX_NT) < 0.05
        nt[m] = (nt[m] + rng.integers(1, 4, m.sum())) % 4
        ins = np.concatenate([nt, rng.integers(0, 4, 20)]).astype(np.uint8)
        if read_index_py(ins) is not None:
            continue
        failed += 1
        ok, n2, s2, _ = rescue_index(ins, 9, wanted, *TABLES)
        if ok:
            rescued += (n2, s2) == (num, sc)
            wrong += (n2, s2) != (num, sc)
    assert rescued > 0.6 * failed and wrong <= 2
    junk = sum(rescue_index(rng.integers(0, 4, 60).astype(np.uint8), 9, wanted, *TABLES)[0] for _ in range(5000))
    assert junk == 0


# ------------------------------------------------------------------------------------------------
# Equivalence of the allocation-free index kernels with the previous implementation.  The
# reference below is a verbatim copy of the old dnaimg/index.py kernels (allocating per call and
# per hypothesis), renamed with a ``_ref`` prefix; the new kernels must give bit-identical answers.
# ------------------------------------------------------------------------------------------------
import numba as nb  # noqa: E402

from dnaimg.dna.index import (MAX_ERASURES, N_SCRAMBLE, NIBBLES, PARITY_NIBBLES,  # noqa: E402
                          SCRAMBLE_NIBBLE, DATA_NIBBLES)


@nb.njit(cache=True)
def _ref_gf_mul(a, b, exp, log):
    if a == 0 or b == 0:
        return 0
    return exp[log[a] + log[b]]


@nb.njit(cache=True)
def _ref_syndromes(c, exp, log, out):
    # c[0] is the highest-degree coefficient (reedsolo order); S_i = c(alpha^i), i = 0..3
    n = c.shape[0]
    nz = False
    for i in range(PARITY_NIBBLES):
        s = 0
        a = exp[i % 15]
        for k in range(n):
            s = _ref_gf_mul(s, a, exp, log) ^ c[k]
        out[i] = s
        if s != 0:
            nz = True
    return nz


@nb.njit(cache=True)
def _ref_gf_div(a, b, exp, log):
    if a == 0:
        return 0
    return exp[(log[a] - log[b]) % 15]


@nb.njit(cache=True)
def _ref_gf_pow(x, e, exp, log):
    if x == 0:
        return 0 if e > 0 else 1
    return exp[(log[x] * e) % 15]


@nb.njit(cache=True)
def _ref_decode_nibbles(c, erased, n_erased, exp, log, out):
    """Fill up to two erasures (no error then) or, without erasures, correct one error; solved
    algebraically from the syndromes S_i = sum_k E_k X_k^i, X_k = alpha^(degree of position k).

    Returns 0 = fail, 1 = exact or erasures filled, 2 = one error corrected."""
    syn = np.zeros(PARITY_NIBBLES, dtype=np.int64)
    trial = c.copy()
    for k in range(n_erased):
        trial[erased[k]] = 0
    nz = _ref_syndromes(trial, exp, log, syn)
    out[:] = trial
    if not nz:
        return 1
    if n_erased == 2:
        X1 = exp[NIBBLES - 1 - erased[0]]
        X2 = exp[NIBBLES - 1 - erased[1]]
        E1 = _ref_gf_div(syn[1] ^ _ref_gf_mul(syn[0], X2, exp, log), X1 ^ X2, exp, log)
        E2 = syn[0] ^ E1
        for i in range(2, PARITY_NIBBLES):
            if (_ref_gf_mul(E1, _ref_gf_pow(X1, i, exp, log), exp, log)
                    ^ _ref_gf_mul(E2, _ref_gf_pow(X2, i, exp, log), exp, log)) != syn[i]:
                return 0
        out[erased[0]] ^= E1
        out[erased[1]] ^= E2
        return 1
    if n_erased == 1:
        X = exp[NIBBLES - 1 - erased[0]]
        E = syn[0]
        for i in range(1, PARITY_NIBBLES):
            if _ref_gf_mul(E, _ref_gf_pow(X, i, exp, log), exp, log) != syn[i]:
                return 0
        out[erased[0]] ^= E
        return 1
    if n_erased > 2:
        return 0
    # one unknown error: S_i = E * X^i
    s0 = syn[0]
    if s0 == 0 or syn[1] == 0:
        return 0
    X = _ref_gf_div(syn[1], s0, exp, log)
    if _ref_gf_mul(syn[1], X, exp, log) != syn[2] or _ref_gf_mul(syn[2], X, exp, log) != syn[3]:
        return 0
    p = log[X]
    if p >= NIBBLES:
        return 0
    out[NIBBLES - 1 - p] ^= s0
    return 2


@nb.njit(cache=True)
def _ref_word_value(seq, p, k, w2n):
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


@nb.njit(cache=True)
def _ref_parse_words(nts, w2n, c, erased):
    """36 nt -> nibbles in ``c`` (0 where invalid); the invalid positions other than the seed's
    go to ``erased``.  Returns (number of those, whether the seed's word is invalid)."""
    ne = 0
    s_erased = False
    for k in range(NIBBLES):
        v = _ref_word_value(nts, 3 * k, k, w2n)
        c[k] = v if v >= 0 else 0
        if v < 0:
            if k == SCRAMBLE_NIBBLE:
                s_erased = True
            else:
                erased[ne] = k
                ne += 1
    return ne, s_erased


@nb.njit(cache=True)
def _ref_decode_index_nt(nts, w2n, exp, log, masks, out):
    """36 nt -> unmasked codeword nibbles in ``out`` (12,).

    Returns (status, erasures): status 0 fail, 1 exact or erasures filled, 2 one error corrected."""
    c = np.zeros(NIBBLES, dtype=np.int64)
    erased = np.zeros(NIBBLES, dtype=np.int64)
    ne, s_erased = _ref_parse_words(nts, w2n, c, erased)
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
        st = _ref_decode_nibbles(u, erased, ne, exp, log, res)
        if st == 0 or (st == 2 and total_e > 0) or res[SCRAMBLE_NIBBLE] != sc:
            continue
        if found == 0 or not np.array_equal(out, res):
            found += 1
            out[:] = res
            status = st
    if found != 1:
        return 0, total_e
    return status, total_e


@nb.njit(cache=True)
def _ref_fields(nib):
    bits = 0
    for i in range(DATA_NIBBLES):
        bits = (bits << 4) | nib[i]
    return bits >> 12, (bits >> 8) & 15, bits & 255


@nb.njit(cache=True)
def _ref_word_ok(seq, p, k, w2n):
    return _ref_word_value(seq, p, k, w2n) >= 0


@nb.njit(cache=True)
def _ref_read_index(insert, w2n, exp, log, masks):
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
        st, ne = _ref_decode_index_nt(insert[:INDEX_NT], w2n, exp, log, masks, out)
        if st == 1 and ne == 0:
            nb_, sc, tg = _ref_fields(out)
            return True, nb_, sc, tg, INDEX_NT, False
        if st != 0:
            nb_, sc, tg = _ref_fields(out)
            return True, nb_, sc, tg, INDEX_NT, True
    # Frame checks first: a hypothesis can only succeed if every word outside the one holding
    # the indel is a valid nibble word in its frame (0 before, +1 after a deletion, -1 after an
    # insertion), so most hypotheses are discarded without decoding.
    bad0 = np.zeros(NIBBLES + 1, dtype=np.int64)     # invalid words in frame 0 among 0..k-1
    badp = np.zeros(NIBBLES + 2, dtype=np.int64)     # invalid words in frame +1 among k..11
    badm = np.zeros(NIBBLES + 2, dtype=np.int64)     # invalid words in frame -1 among k..11
    for k in range(NIBBLES):
        bad0[k + 1] = bad0[k] + (0 if _ref_word_ok(insert, 3 * k, k, w2n) else 1)
    for k in range(NIBBLES - 1, -1, -1):
        badp[k] = badp[k + 1] + (0 if _ref_word_ok(insert, 3 * k + 1, k, w2n) else 1)
        badm[k] = badm[k + 1] + (0 if (k > 0 and _ref_word_ok(insert, 3 * k - 1, k, w2n)) else 1)
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
            st, ne = _ref_decode_index_nt(buf, w2n, exp, log, masks, out)
            if st == 1 and ne == 0:
                nb_, sc, tg = _ref_fields(out)
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
            st, ne = _ref_decode_index_nt(buf, w2n, exp, log, masks, out)
            if st == 1 and ne <= 1:
                nb_, sc, tg = _ref_fields(out)
                if have and (nb_ != r_nb or sc != r_sc or tg != r_tg):
                    return False, 0, 0, 0, 0, True
                if not have:
                    have = True
                    r_nb, r_sc, r_tg, r_cons = nb_, sc, tg, INDEX_NT - 1
    if have:
        return True, r_nb, r_sc, r_tg, r_cons, True
    return False, 0, 0, 0, 0, True


@nb.njit(cache=True)
def _ref_solve_erasures(u, pos, npos, exp, log, out):
    """Fill ``npos`` (<= 4) erased positions of codeword ``u`` so that all 4 syndromes vanish
    (Gaussian elimination over GF(16) on sum_k E_k X_k^i = S_i).  Returns whether a consistent
    filling exists; it is unique when it does."""
    trial = u.copy()
    for k in range(npos):
        trial[pos[k]] = 0
    syn = np.zeros(PARITY_NIBBLES, dtype=np.int64)
    _ref_syndromes(trial, exp, log, syn)
    A = np.zeros((PARITY_NIBBLES, npos + 1), dtype=np.int64)
    for i in range(PARITY_NIBBLES):
        for k in range(npos):
            A[i, k] = _ref_gf_pow(exp[NIBBLES - 1 - pos[k]], i, exp, log)
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
            A[row, c] = _ref_gf_mul(A[row, c], inv, exp, log)
        for r in range(PARITY_NIBBLES):
            if r != row and A[r, col] != 0:
                f = A[r, col]
                for c in range(npos + 1):
                    A[r, c] ^= _ref_gf_mul(f, A[row, c], exp, log)
        row += 1
    for r in range(row, PARITY_NIBBLES):
        if A[r, npos] != 0:
            return False
    out[:] = trial
    for k in range(npos):
        out[pos[k]] = A[k, npos]
    return True


@nb.njit(cache=True)
def _ref_rescue_index(insert, want_tag, wanted, w2n, exp, log, masks):
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
        ne, s_erased = _ref_parse_words(buf, w2n, c, pos)
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
                if not _ref_solve_erasures(u, pos, npos, exp, log, res):
                    continue
                if extra >= 0 and res[extra] == u[extra]:
                    continue   # no error there after all: the t = 0 pass has it
                if res[SCRAMBLE_NIBBLE] != sc:
                    continue
                nb_, sc2, tg = _ref_fields(res)
                if tg != want_tag or nb_ >= wanted.shape[0] or not wanted[nb_]:
                    continue
                if nfound == 0 or nb_ != found_nb or sc2 != found_sc:
                    nfound += 1
                    found_nb, found_sc, found_cons = nb_, sc2, cons
    if nfound == 1:
        return True, found_nb, found_sc, found_cons
    return False, 0, 0, 0


def _damaged_inserts(n, seed):
    """Realistic and adversarial inserts: clean, 1-2 substitutions, one insertion or deletion
    (also repeating a neighbour), indel + substitution, damage in the seed's word, N bases (255),
    truncated inserts, and random junk."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        kind = i % 12
        num = int(rng.integers(0, 3000))
        sc = int(rng.integers(N_SCRAMBLE))
        tag = 9 if rng.random() < 0.7 else int(rng.integers(256))
        nt = encode_index(num, sc, tag).astype(np.uint8)
        payload = rng.integers(0, 4, int(rng.integers(0, 100))).astype(np.uint8)

        def sub(a, k=1, lo=0, hi=None):
            a = a.copy()
            for p in rng.choice(np.arange(lo, hi or len(a)), k, replace=False):
                a[p] = (a[p] + rng.integers(1, 4)) % 4
            return a

        def ins(a, same=False):
            p = int(rng.integers(0, len(a) + 1))
            x = a[min(p, len(a) - 1)] if same else rng.integers(0, 4)
            return np.insert(a, p, x).astype(np.uint8)

        def dele(a):
            return np.delete(a, int(rng.integers(0, len(a)))).astype(np.uint8)

        if kind == 0:
            s = nt
        elif kind == 1:
            s = sub(nt, 1)
        elif kind == 2:
            s = sub(nt, 2)
        elif kind == 3:
            s = ins(nt, same=rng.random() < 0.5)
        elif kind == 4:
            s = dele(nt)
        elif kind == 5:
            s = sub(ins(nt) if rng.random() < 0.5 else dele(nt), int(rng.integers(1, 3)))
        elif kind == 6:
            s = sub(nt, int(rng.integers(1, 3)), 3 * SCRAMBLE_NIBBLE, 3 * SCRAMBLE_NIBBLE + 3)
        elif kind == 7:
            s = sub(nt, int(rng.integers(0, 2))) if rng.random() < 0.5 else ins(nt)
            s = s.copy()
            s[rng.choice(len(s), int(rng.integers(1, 3)), replace=False)] = 255
        elif kind == 8:
            s = ins(nt) if rng.random() < 0.5 else dele(nt)
            payload = payload[:int(rng.integers(0, 3))]      # L around 35..39
        elif kind == 9:
            s = rng.integers(0, 4, int(rng.integers(30, 80))).astype(np.uint8)
            payload = payload[:0]
        elif kind == 10:
            s = sub(nt, int(rng.integers(3, 6)))
        else:
            s = ins(dele(nt), same=True)                      # two indels
        full = np.concatenate([s, payload]).astype(np.uint8)
        if rng.random() < 0.05:
            full = full[:int(rng.integers(0, 40))]            # very short, empty included
        out.append((np.ascontiguousarray(full), num, sc, tag))
    return out


def test_index_kernels_match_the_previous_implementation():
    from dnaimg.dna.index import (TABLES, decode_index_nt, decode_index_nt_ws, new_index_workspace,
                              read_index, read_index_ws)
    w2n, exp, log, masks = TABLES
    ws, buf = new_index_workspace()
    ws[:] = 12345                     # a dirty workspace, reused for every call
    buf[:] = 77
    cases = _damaged_inserts(4000, 11)
    outcomes = {"clean": 0, "repaired": 0, "indel": 0, "rejected": 0}
    for ins_, *_ in cases:
        want = _ref_read_index(ins_, w2n, exp, log, masks)
        assert read_index(ins_, w2n, exp, log, masks) == want
        assert read_index_ws(ins_, w2n, exp, log, masks, ws, buf) == want
        got_py = read_index_py(ins_)
        assert got_py == (tuple(int(x) for x in want[1:5]) + (bool(want[5]),) if want[0] else None)
        if not want[0]:
            outcomes["rejected"] += 1
        elif want[4] != INDEX_NT:
            outcomes["indel"] += 1
        else:
            outcomes["repaired" if want[5] else "clean"] += 1
        # the decoder on the first 36 nt, with the same initial contents of ``out``
        o_ref = np.arange(NIBBLES, dtype=np.int64) + 100
        o_new = o_ref.copy()
        o_ws = o_ref.copy()
        r = _ref_decode_index_nt(ins_, w2n, exp, log, masks, o_ref)
        assert decode_index_nt(ins_, w2n, exp, log, masks, o_new) == r
        assert decode_index_nt_ws(ins_, w2n, exp, log, masks, o_ws, ws) == r
        assert np.array_equal(o_new, o_ref) and np.array_equal(o_ws, o_ref)
    # every path was exercised
    assert min(outcomes.values()) > 200, outcomes


def test_rescue_kernels_match_the_previous_implementation():
    from dnaimg.dna.index import TABLES, new_index_workspace, rescue_batch, rescue_index, rescue_index_ws
    w2n, exp, log, masks = TABLES
    ws, buf = new_index_workspace()
    ws[:] = -7
    rng = np.random.default_rng(12)
    cases = _damaged_inserts(3000, 13)
    inserts = [c[0] for c in cases]
    nums = np.array([c[1] for c in cases])
    sparse = np.zeros(3000, dtype=np.bool_)
    sparse[rng.choice(nums, 600, replace=False)] = True
    wanteds = [sparse, np.ones(3000, dtype=np.bool_), np.ones(1000, dtype=np.bool_),
               np.zeros(3000, dtype=np.bool_)]
    flat = np.concatenate(inserts).astype(np.uint8)
    offs = np.zeros(len(inserts) + 1, dtype=np.int64)
    offs[1:] = np.cumsum([len(x) for x in inserts])
    hits = 0
    for want_tag in (9, 200):
        for wanted in wanteds:
            ref = np.array([_ref_rescue_index(x, want_tag, wanted, w2n, exp, log, masks)
                            for x in inserts], dtype=np.int64)
            new = np.array([rescue_index(x, want_tag, wanted, w2n, exp, log, masks)
                            for x in inserts], dtype=np.int64)
            new_ws = np.array([rescue_index_ws(x, want_tag, wanted, w2n, exp, log, masks, ws, buf)
                               for x in inserts], dtype=np.int64)
            batch = np.stack([a.astype(np.int64) for a in
                              rescue_batch(flat, offs, want_tag, wanted, w2n, exp, log, masks)], 1)
            assert np.array_equal(new, ref) and np.array_equal(new_ws, ref)
            assert np.array_equal(batch, ref)
            hits += int(ref[:, 0].sum())
    assert hits > 1000


def test_gf_helpers_match_the_previous_implementation():
    from dnaimg.dna.index import TABLES, _decode_nibbles, _solve_erasures, _syndromes
    _, exp, log, _ = TABLES
    rng = np.random.default_rng(14)
    n_ok = 0
    for _ in range(5000):
        c = rng.integers(0, 16, NIBBLES).astype(np.int64)
        if rng.random() < 0.5:            # a codeword with a few changes
            c = np.array(list(_RS.encode(bytes(rng.integers(0, 16, DATA_NIBBLES).tolist()))),
                         dtype=np.int64)
            for p in rng.choice(NIBBLES, int(rng.integers(0, 3)), replace=False):
                c[p] ^= int(rng.integers(1, 16))
        s_ref = np.zeros(PARITY_NIBBLES, dtype=np.int64)
        s_new = np.zeros(PARITY_NIBBLES, dtype=np.int64)
        assert _syndromes(c, exp, log, s_new) == _ref_syndromes(c, exp, log, s_ref)
        assert np.array_equal(s_new, s_ref)
        npos = int(rng.integers(0, 5))
        pos = np.zeros(NIBBLES, dtype=np.int64)
        pos[:npos] = rng.choice(NIBBLES, npos, replace=False)
        o_ref = np.full(NIBBLES, -3, dtype=np.int64)
        o_new = o_ref.copy()
        r = _ref_solve_erasures(c, pos, npos, exp, log, o_ref)
        assert _solve_erasures(c, pos, npos, exp, log, o_new) == r
        assert np.array_equal(o_new, o_ref)
        n_ok += r
        ne = min(npos, MAX_ERASURES + 1)
        o_ref[:] = -3
        o_new[:] = -3
        assert (_decode_nibbles(c, pos, ne, exp, log, o_new)
                == _ref_decode_nibbles(c, pos, ne, exp, log, o_ref))
        assert np.array_equal(o_new, o_ref)
    assert n_ok > 500


# ------------------------------------------------------------------------------------------------
# The table-driven quick_index / read_index_ws: a verbatim copy of the previous quick_index, the
# packed syndrome table against the Horner syndromes, and every single and many double edits of
# a few indices (each branch of the direct decoder: one error anywhere, the seed's word or any
# other word invalid, alone or with a second one, indels in every word, short inserts, N bases).
# ------------------------------------------------------------------------------------------------
@nb.njit(cache=True)
def _ref_quick_index(seq, start, end, w2n, exp, log, masks):
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
        s1 = _ref_gf_mul(s1, exp[1], exp, log) ^ u
        s2 = _ref_gf_mul(s2, exp[2], exp, log) ^ u
        s3 = _ref_gf_mul(s3, exp[3], exp, log) ^ u
        if k < DATA_NIBBLES:
            bits = (bits << 4) | u
    if s0 != 0 or s1 != 0 or s2 != 0 or s3 != 0:
        return False, 0, 0, 0
    return True, bits >> 12, (bits >> 8) & 15, bits & 255


def test_packed_syndrome_table_matches_the_syndromes():
    from dnaimg.dna.index import TABLES, _SYN_T, _syndromes
    _, exp, log, _ = TABLES
    rng = np.random.default_rng(21)
    s = np.zeros(PARITY_NIBBLES, dtype=np.int64)
    for _ in range(3000):
        c = rng.integers(0, 16, NIBBLES).astype(np.int64)
        _syndromes(c, exp, log, s)
        packed = 0
        for k in range(NIBBLES):
            packed ^= int(_SYN_T[16 * k + c[k]])
        assert [(packed >> (4 * i)) & 15 for i in range(PARITY_NIBBLES)] == s.tolist()


def _edit_neighbourhood(nt, rng):
    """Every single substitution, deletion and insertion of ``nt``, N bases, every word at the
    seed's place, and random pairs of edits (two words, or an indel and a substitution)."""
    out = []
    L = len(nt)
    for p in range(L):
        for d in (1, 2, 3):
            s = nt.copy()
            s[p] = (s[p] + d) % 4
            out.append(s)
        s = nt.copy()
        s[p] = 255
        out.append(s)
        out.append(np.delete(nt, p))
        for x in range(4):
            out.append(np.insert(nt, p, x))
    for w in range(64):                       # any word at the seed's place, with another damage
        s = nt.copy()
        s[3 * SCRAMBLE_NIBBLE:3 * SCRAMBLE_NIBBLE + 3] = (w >> 4, (w >> 2) & 3, w & 3)
        out.append(s)
        t = s.copy()
        q = int(rng.integers(L))
        t[q] = (t[q] + 1 + rng.integers(3)) % 4
        out.append(t)
        out.append(np.delete(s, int(rng.integers(L))))
        out.append(np.insert(s, int(rng.integers(L + 1)), int(rng.integers(4))))
    for _ in range(400):
        s = nt.copy()
        for p in rng.choice(L, 2, replace=False):
            s[p] = (s[p] + 1 + rng.integers(3)) % 4
        out.append(s)
        q = int(rng.integers(L))
        out.append(np.insert(s, q, int(rng.integers(4))) if rng.random() < 0.5 else np.delete(s, q))
    return out


def test_table_driven_index_kernels_match_on_edit_neighbourhoods():
    from dnaimg.dna.index import TABLES, new_index_workspace, quick_index, read_index_ws
    w2n, exp, log, masks = TABLES
    ws, buf = new_index_workspace()
    ws[:] = -99
    rng = np.random.default_rng(22)
    n = 0
    for num, sc, tag in [(0, 0, 0), (4242, 5, 9), (2**20 - 1, 11, 255), (123456, 3, 9),
                         (77, 7, 200)]:
        nt = encode_index(num, sc, tag).astype(np.uint8)
        for s in _edit_neighbourhood(nt, rng):
            tail = rng.integers(0, 4, int(rng.choice([0, 1, 2, 3, 40])))
            full = np.ascontiguousarray(np.concatenate([s, tail]).astype(np.uint8))
            for cut in (len(full), 35, 36, 37, 38):
                x = full[:cut]
                want = _ref_read_index(x, w2n, exp, log, masks)
                assert read_index_ws(x, w2n, exp, log, masks, ws, buf) == want
                # quick_index at an offset inside a longer read, as the pipeline calls it
                lead = rng.integers(0, 4, int(rng.integers(0, 5))).astype(np.uint8)
                y = np.concatenate([lead, x]).astype(np.uint8)
                for end in (len(y), len(y) - 1):
                    assert (quick_index(y, len(lead), end, w2n, exp, log, masks)
                            == _ref_quick_index(y, len(lead), end, w2n, exp, log, masks))
                n += 1
    assert n > 20000


def test_one_error_on_the_seed_is_not_corrected():
    """All words valid and the syndromes those of a single error in the seed's nibble: the
    decoder must not "correct" the seed it unmasked with (as the previous code)."""
    from dnaimg.dna.index import _MASKS, NIBBLE_WORDS, TABLES, new_index_workspace, read_index_ws
    w2n, exp, log, masks = TABLES
    ws, buf = new_index_workspace()
    rng = np.random.default_rng(24)
    n_ok = 0
    for _ in range(300):
        num, s_true = int(rng.integers(0, 2**20)), int(rng.integers(12))
        tag = int(rng.integers(256))
        cw = np.array(list(_RS.encode(bytes(pack_fields(num, s_true, tag)))), dtype=np.int64)
        s_read = int(rng.choice([s for s in range(N_SCRAMBLE) if s != s_true]))
        c = cw ^ _MASKS[s_read]
        c[SCRAMBLE_NIBBLE] = s_read
        x = np.concatenate([NIBBLE_WORDS[c].reshape(-1), rng.integers(0, 4, 30)]).astype(np.uint8)
        want = _ref_read_index(x, w2n, exp, log, masks)
        assert read_index_ws(x, w2n, exp, log, masks, ws, buf) == want
        n_ok += want[0]
    assert n_ok < 300


def test_quick_index_matches_the_previous_implementation():
    from dnaimg.dna.index import TABLES, quick_index
    w2n, exp, log, masks = TABLES
    hits = 0
    for ins_, *_ in _damaged_inserts(4000, 23):
        want = _ref_quick_index(ins_, 0, len(ins_), w2n, exp, log, masks)
        assert quick_index(ins_, 0, len(ins_), w2n, exp, log, masks) == want
        hits += want[0]
    assert hits > 300
