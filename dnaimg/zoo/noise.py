"""The DNA substitution channel seen from the latent, for noise-aware training.

With a per-nucleotide substitution rate ``p`` (each nucleotide replaced by one of the three
others with probability p/3 each), fixed-length codewords and nearest-Hamming repair, a written
value v is read back as v' with probability ``T[v, v']``: :func:`transition_matrix` computes it
exactly by summing over all 4^n received words.  Whitening permutes nucleotides position by
position and the channel is symmetric, so it does not change T.

:func:`sample_channel` draws v' ~ T[v] for a tensor of symbols (the exact channel);
:func:`gaussian_sigma` gives the standard deviation of the seed paper's Gaussian model matched to
the same channel (same mean squared value error).
"""
from __future__ import annotations

import numpy as np
import torch

from dnaimg.dna.codebook import Codebook


def transition_matrix(cb: Codebook, p: float) -> np.ndarray:
    """(L, L) row-stochastic matrix of the value read back after substitutions at rate p."""
    if not 0.0 <= p <= 1.0:
        raise ValueError("substitution rate must be in [0, 1]")
    n, L = cb.n, cb.levels
    table = cb.repairer.table
    if table is None:
        raise ValueError("transition matrix needs a lookup-table codebook (n <= 10)")
    codes = np.arange(4 ** n)
    digits = np.stack([(codes >> (2 * (n - 1 - j))) & 3 for j in range(n)], axis=1)    # (4^n, n)
    T = np.zeros((L, L))
    for v in range(L):
        d = (digits != cb.words[v][None, :]).sum(axis=1)
        prob = (p / 3.0) ** d * (1.0 - p) ** (n - d)
        np.add.at(T[v], table, prob)
    return T


def gaussian_sigma(cb: Codebook, p: float) -> float:
    """Std of the value error (in latent units, i.e. times q) of the exact channel at rate p,
    averaged over uniformly used values: the seed's Gaussian noise matched to it."""
    T = transition_matrix(cb, p)
    L = cb.levels
    v = np.arange(L)
    mse = np.mean([(T[i] * (v - i) ** 2).sum() for i in range(L)])
    return float(np.sqrt(mse) * 2.0 / (L - 1))


def sample_channel(symbols: torch.Tensor, T: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw v' ~ T[v] for every integer symbol v (any shape)."""
    flat = symbols.reshape(-1)
    cdf = torch.cumsum(T, dim=1)[flat]                            # (N, L)
    u = torch.rand(flat.shape[0], 1, generator=generator, device=symbols.device)
    out = (u > cdf).sum(dim=1).clamp_(max=T.shape[0] - 1)
    return out.reshape(symbols.shape)
