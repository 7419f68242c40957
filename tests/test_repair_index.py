import numpy as np
from hypothesis import given, settings, strategies as st

from dnaimg.dna.codebook import get_codebook
from dnaimg.dna.index import (INDEX_NT, N_SCRAMBLE, NIBBLES, PARITY_NIBBLES, SCRAMBLE_NIBBLE, _RS, encode_index,
                              pack_fields, read_index_py)
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
    """The second pass as decoding runs it: rescue_batch over packed reads."""
    from dnaimg.dna.consensus import pack
    from dnaimg.dna.index import TABLES, rescue_batch
    rng = np.random.default_rng(5)
    wanted = np.zeros(3000, dtype=bool)
    wanted[rng.choice(3000, 100, replace=False)] = True
    targets = np.flatnonzero(wanted)
    failed, truth = [], []
    for _ in range(1500):
        num, sc = int(rng.choice(targets)), int(rng.integers(12))
        nt = encode_index(num, sc, 9)
        m = rng.random(INDEX_NT) < 0.05
        nt[m] = (nt[m] + rng.integers(1, 4, m.sum())) % 4
        ins = np.concatenate([nt, rng.integers(0, 4, 20)]).astype(np.uint8)
        if read_index_py(ins) is None:
            failed.append(ins)
            truth.append((num, sc))
    ok, number, scramble, _ = rescue_batch(*pack(failed), 9, wanted, *TABLES)
    got = [(int(n), int(s)) for n, s in zip(number[ok], scramble[ok])]
    want = [t for t, k in zip(truth, ok) if k]
    rescued = sum(g == w for g, w in zip(got, want))
    assert rescued > 0.6 * len(failed) and len(got) - rescued <= 2
    junk = rescue_batch(*pack([rng.integers(0, 4, 60).astype(np.uint8) for _ in range(5000)]), 9, wanted, *TABLES)[0]
    assert junk.sum() == 0


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


def test_single_edits_decode_to_the_truth_or_are_rejected_and_quick_index_agrees():
    """Every single substitution, insertion and deletion of an index (and pairs of edits): the
    reader returns the true fields or rejects the read; where quick_index (the fast path) answers,
    read_index_ws answers the same."""
    from dnaimg.dna.index import TABLES, new_index_workspace, quick_index, read_index_ws
    w2n, exp, log, masks = TABLES
    ws, buf = new_index_workspace()
    rng = np.random.default_rng(22)
    n = wrong_single = decoded_single = quick_answers = 0
    for num, sc, tag in [(0, 0, 0), (4242, 5, 9), (2**20 - 1, 11, 255), (123456, 3, 9), (77, 7, 200)]:
        nt = encode_index(num, sc, tag).astype(np.uint8)
        clean = np.ascontiguousarray(np.concatenate([nt, rng.integers(0, 4, 20)]).astype(np.uint8))
        assert tuple(quick_index(clean, 0, len(clean), w2n, exp, log, masks)[:4]) == (True, num, sc, tag)
        for i, s in enumerate(_edit_neighbourhood(nt, rng)):
            single = i < 3 * len(nt)            # the first 3L are the single substitutions
            tail = rng.integers(0, 4, int(rng.choice([0, 3, 40])))
            x = np.ascontiguousarray(np.concatenate([s, tail]).astype(np.uint8))
            ok, number, scramble, t, consumed, _ = read_index_ws(x, w2n, exp, log, masks, ws, buf)
            if single:
                decoded_single += ok
                wrong_single += ok and (number, scramble, t) != (num, sc, tag)
            q = quick_index(x, 0, len(x), w2n, exp, log, masks)
            if q[0]:
                quick_answers += 1
                assert ok and (q[1], q[2], q[3]) == (number, scramble, t)
            n += 1
    assert n > 3000 and wrong_single == 0 and decoded_single == 5 * 3 * 36 and quick_answers > 0


def test_one_error_on_the_seed_is_not_corrected():
    """All words valid and the syndromes those of a single error in the seed's nibble: the
    decoder must not "correct" the seed it unmasked with (an earlier decoder did)."""
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
        ok, number, scramble, t, _, _ = read_index_ws(x, w2n, exp, log, masks, ws, buf)
        assert not (ok and scramble == s_true)
        n_ok += ok
    assert n_ok < 300
