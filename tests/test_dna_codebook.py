import itertools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from dnaimg.dna import alphabet as dna
from dnaimg.dna.codebook import (SIGMAS, SIGMAS_INV, Codebook, candidate_words, codebook_size, get_codebook,
                             is_valid_word, random_assignment_error)
from dnaimg.dna.constraints import longest_run


def test_dna_roundtrip_and_revcomp():
    s = "ACGTTGCAN"
    a = dna.encode(s)
    assert a.tolist() == [0, 1, 2, 3, 3, 2, 1, 0, 255]
    assert dna.decode(dna.encode("acgt")) == "ACGT"
    assert dna.revcomp_str("AACGTG") == "CACGTT"
    with pytest.raises(ValueError):
        dna.decode(a)


def test_codebook_sizes_pinned():
    # documented in the README beside the JPEG DNA sizes; any change breaks old DNA
    assert [codebook_size(n) for n in range(2, 9)] == [12, 32, 128, 400, 1752, 5040, 23664]


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_every_word_follows_the_rules(n):
    W = candidate_words(n)
    for w in W:
        assert w[0] != w[1] and w[-1] != w[-2]
        assert longest_run(w) <= 2
        gc = int(np.isin(w, [1, 2]).sum())
        assert abs(2 * gc - n) <= 2
    # the rule is complete: every word passing is_valid_word is present
    assert len(W) == sum(is_valid_word(w) for w in itertools.product(range(4), repeat=n))


@given(st.lists(st.integers(0, 31), min_size=2, max_size=60), st.lists(st.integers(0, 7), min_size=60, max_size=60))
@settings(max_examples=200, deadline=None)
def test_concatenation_never_runs_over_two(idx, sig):
    W = candidate_words(3)
    seq = np.concatenate([SIGMAS[sig[i]][W[j]] for i, j in enumerate(idx)])
    assert longest_run(seq) <= 2


def test_whitening_preserves_hamming_and_gc_balance():
    W = candidate_words(4)
    for s in range(8):
        P = SIGMAS[s][W]
        assert np.array_equal(SIGMAS_INV[s][P], W)
        d0 = (W[:, None] != W[None]).sum(2)
        d1 = (P[:, None] != P[None]).sum(2)
        assert np.array_equal(d0, d1)
        gc0 = np.isin(W, [1, 2]).sum(1)
        gc1 = np.isin(P, [1, 2]).sum(1)
        assert np.all((gc1 == gc0) | (gc1 == 4 - gc0))


def test_codebook_pinned_assignment():
    cb = get_codebook(2, 9)
    assert cb.strings() == PINNED_2_9
    assert get_codebook(3, 17).strings()[:4] == PINNED_3_17_HEAD


def test_assignment_beats_random():
    for n, L in [(2, 9), (3, 17), (4, 65)]:
        ours = get_codebook(n, L).expected_error()
        assert ours < 0.8 * random_assignment_error(n, L)


def test_codebook_roundtrip_and_bad_levels(rng):
    cb = get_codebook(2, 9)
    v = rng.integers(0, 9, 1000)
    assert np.array_equal(cb.decode(cb.encode(v)), v)
    with pytest.raises(ValueError):
        Codebook(2, 13)


# the generated assignment of format version 1: must never change
PINNED_2_9 = ['CT', 'AT', 'AG', 'AC', 'GC', 'TC', 'TG', 'TA', 'GA']
PINNED_3_17_HEAD = ['ACA', 'TCA', 'TCT', 'TGA']


def test_decode_many_equals_decode_each():
    rng = np.random.default_rng(3)
    arrs = [rng.integers(0, 4, int(rng.integers(0, 40))).astype(np.uint8) for _ in range(300)]
    assert dna.decode_many(arrs) == [dna.decode(a) for a in arrs]
    assert dna.decode_many([]) == []
