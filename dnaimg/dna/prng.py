"""Deterministic pseudo-randomness, the same on every platform (splitmix64).

Three keys, one meaning each:

- **interleaver key** (header, per words stream): seeds the Fisher-Yates permutation that spreads
  a words stream's values over its oligos (:func:`interleaver`);
- **scrambling seed** (index, per oligo, 0..11) and **selector** (bytes payloads, 0..11): the
  encoder's guided-scrambling choice, tried until the oligo meets the constraints;
  :func:`whitening_keys` (codeword permutations) and :func:`keystream` (bytes payloads) derive
  from (image tag, oligo number, seed[, selector]);
- **RNG seed**: only the channel simulator's and training's random generators (not in the DNA).
"""
from __future__ import annotations

import numba as nb
import numpy as np

from dnaimg.dna.codebook import SIGMAS, SIGMAS_INV


@nb.njit(cache=True, nogil=True)
def _mix(z):
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@nb.njit(cache=True, nogil=True)
def whitening_keys(tag, number, scramble, count):
    """The permutation (0..7) applied to each of ``count`` words of one oligo."""
    base = _mix(np.uint64(tag) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(number) * np.uint64(16)
                + np.uint64(scramble) + np.uint64(0x51ED27))
    out = np.empty(count, dtype=np.int64)
    for j in range(count):
        out[j] = int(_mix(base + np.uint64(j + 1) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(61))
    return out


@nb.njit(cache=True, nogil=True)
def interleaver(total, seed):
    """A permutation of 0..total-1 (Fisher-Yates driven by splitmix64)."""
    perm = np.arange(total, dtype=np.int64)
    state = np.uint64(seed) * np.uint64(0x2545F4914F6CDD1D) + np.uint64(1)
    for i in range(total - 1, 0, -1):
        state += np.uint64(0x9E3779B97F4A7C15)
        j = int(_mix(state) % np.uint64(i + 1))
        perm[i], perm[j] = perm[j], perm[i]
    return perm


@nb.njit(cache=True, nogil=True)
def _whiten(words_nt, n, keys, sigmas):
    out = np.empty_like(words_nt)
    for j in range(keys.shape[0]):
        s = sigmas[keys[j]]
        for t in range(n):
            out[j * n + t] = s[words_nt[j * n + t]]
    return out


def whiten(words_nt: np.ndarray, n: int, keys: np.ndarray) -> np.ndarray:
    return _whiten(np.ascontiguousarray(words_nt, dtype=np.uint8), n, keys, SIGMAS)


def unwhiten(words_nt: np.ndarray, n: int, keys: np.ndarray) -> np.ndarray:
    return _whiten(np.ascontiguousarray(words_nt, dtype=np.uint8), n, keys, SIGMAS_INV)


_GOLD = np.uint64(0x9E3779B97F4A7C15)


def _mix_np(z: np.ndarray) -> np.ndarray:
    """:func:`_mix` on a uint64 array (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def keystream(tag: int, numbers: np.ndarray, scramble: np.ndarray, selector: np.ndarray, n: int) -> np.ndarray:
    """(M, n) pseudo-random nucleotides 0..3 for bytes payloads of oligos ``numbers`` of image
    ``tag``: nucleotide ``t`` of oligo ``i`` is the top 2 bits of
    ``mix(base_i + (t + 1) * GOLD)``, ``base_i = mix(tag * GOLD + number * 256 + scramble * 16 + selector + 0xB17E5)``
    (uint64 arithmetic modulo 2^64; ``mix`` is the splitmix64 finaliser)."""
    numbers = np.asarray(numbers, dtype=np.uint64).reshape(-1)
    sc = np.broadcast_to(np.asarray(scramble, dtype=np.uint64), numbers.shape)
    sel = np.broadcast_to(np.asarray(selector, dtype=np.uint64), numbers.shape)
    with np.errstate(over="ignore"):
        base = _mix_np(np.uint64(tag) * _GOLD + numbers * np.uint64(256) + sc * np.uint64(16) + sel
                       + np.uint64(0xB17E5))
        steps = np.arange(1, n + 1, dtype=np.uint64) * _GOLD
        return (_mix_np(base[:, None] + steps[None, :]) >> np.uint64(62)).astype(np.uint8)
