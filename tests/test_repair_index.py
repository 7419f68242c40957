import numpy as np
from hypothesis import given, settings, strategies as st

from dnaimg.codebook import get_codebook
from dnaimg.index import (INDEX_NT, _RS, encode_index, pack_fields, read_index_py)
from dnaimg.repair import Repairer, repair_direct, repair_numpy, repair_with_table


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
    from dnaimg.index import TABLES, rescue_index
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
