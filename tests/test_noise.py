import numpy as np
import torch

from dnaimg.dna.codebook import get_codebook
from dnaimg.zoo.noise import gaussian_sigma, sample_channel, transition_matrix


def test_rows_sum_to_one_and_zero_noise_is_identity():
    for n, L in [(2, 9), (3, 17)]:
        cb = get_codebook(n, L)
        assert np.allclose(transition_matrix(cb, 0.0), np.eye(L))
        for p in (0.01, 0.05, 0.2):
            T = transition_matrix(cb, p)
            assert np.allclose(T.sum(1), 1.0)
            assert np.all(np.diag(T) > 0.5)


def test_matches_monte_carlo_through_the_real_repair_kernel():
    cb = get_codebook(2, 9)
    p = 0.08
    T = transition_matrix(cb, p)
    rng = np.random.default_rng(0)
    N = 200_000
    vals = rng.integers(0, 9, N)
    words = cb.words[vals].copy()
    hit = rng.random(words.shape) < p
    words[hit] = (words[hit] + rng.integers(1, 4, hit.sum())) % 4
    got = cb.decode(words.reshape(-1))
    emp = np.zeros((9, 9))
    np.add.at(emp, (vals, got), 1)
    emp /= emp.sum(1, keepdims=True)
    assert np.abs(emp - T).max() < 0.01


def test_sampling_follows_the_matrix_and_gaussian_match():
    cb = get_codebook(2, 9)
    T = torch.tensor(transition_matrix(cb, 0.05), dtype=torch.float32)
    s = torch.full((100_000,), 4, dtype=torch.int64)
    out = sample_channel(s, T, torch.Generator().manual_seed(0))
    freq = torch.bincount(out, minlength=9).float() / len(out)
    assert torch.allclose(freq, T[4], atol=0.01)
    assert gaussian_sigma(cb, 0.0) == 0.0 and 0 < gaussian_sigma(cb, 0.05) < gaussian_sigma(cb, 0.1)
