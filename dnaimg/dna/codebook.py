"""The constrained DNA codebook and the value-to-codeword assignment.

Construction rule (all words of length n over ACGT that satisfy every rule below):

1. **Edges**: the first two nucleotides differ and the last two differ.  Two words then never
   build a run longer than 2 across their junction.
2. **No homopolymer inside**: no run longer than 2 inside the word (with rule 1 a run of 2 can
   only sit away from the edges).  So a concatenation of codewords never has a run over 2.
3. **GC balance**: the number of G/C is within one of n/2 (``|2*GC - n| <= 2``).
4. **No repeat**: for n >= 4 the word is not itself a tandem repeat (period <= n/2), such as ACAC.

Sizes for n = 2..8 (``python -m dnaimg.dna.codebook``) sit beside the JPEG DNA codebooks in the
README.  Inside an oligo a position-dependent *whitening* permutes the nucleotides of each word
by one of the eight permutations of ACGT that keep the partition {G,C} / {A,T} (so GC balance,
run structure and Hamming distances are all preserved); see :data:`SIGMAS`.

Value assignment: the ``levels`` values 0..L-1 take L of the words in an order built so that a
single substitution, after nearest-Hamming repair, tends to land on a nearby value.  A greedy
Hamming-1 path gives the starting order; a seeded local search (swaps of two values, or a used
word exchanged for an unused one) then minimises the exact expected |value error| per
substituted codeword under the repair rule of :mod:`dnaimg.repair`.  The search uses its own
integer PRNG, so the codebook is the same on every platform; tests pin it.
"""
from __future__ import annotations

import functools
import itertools

import numba as nb
import numpy as np

from dnaimg.dna.repair import Repairer, nearest_value

#: JPEG DNA benchmark codec codebook sizes (DESIGN.md), for comparison.
JPEG_DNA_SIZES = {2: 10, 3: 24, 4: 130, 5: 586, 6: 1776, 7: 7998, 8: 24634}

#: The 8 permutations of (A, C, G, T) = (0, 1, 2, 3) that map {C,G} and {A,T} onto {C,G}/{A,T}.
SIGMAS = np.array([
    [0, 1, 2, 3], [3, 1, 2, 0], [0, 2, 1, 3], [3, 2, 1, 0],   # classes kept
    [1, 0, 3, 2], [2, 0, 3, 1], [1, 3, 0, 2], [2, 3, 0, 1],   # classes swapped
], dtype=np.uint8)
SIGMAS_INV = np.argsort(SIGMAS, axis=1).astype(np.uint8)


def _max_run(w) -> int:
    best = run = 1
    for a, b in zip(w, w[1:]):
        run = run + 1 if a == b else 1
        best = max(best, run)
    return best


def _is_tandem(w) -> bool:
    n = len(w)
    for p in range(1, n // 2 + 1):
        if n % p == 0 and all(w[i] == w[i % p] for i in range(n)):
            return True
    return False


def is_valid_word(w) -> bool:
    n = len(w)
    if n < 2 or w[0] == w[1] or w[-1] == w[-2]:
        return False
    if _max_run(w) > 2:
        return False
    gc = sum(1 for x in w if x in (1, 2))
    if abs(2 * gc - n) > 2:
        return False
    if n >= 4 and _is_tandem(w):
        return False
    return True


@functools.lru_cache(maxsize=None)
def candidate_words(n: int) -> np.ndarray:
    """All words of length n satisfying the construction rule, in lexicographic order."""
    if not 2 <= n <= 10:
        raise ValueError("codeword length must be between 2 and 10")
    words = [w for w in itertools.product(range(4), repeat=n) if is_valid_word(w)]
    return np.array(words, dtype=np.uint8).reshape(-1, n)


def codebook_size(n: int) -> int:
    return len(candidate_words(n))


@nb.njit(cache=True)
def _rand(state):
    # splitmix64 step; state is a 1-element uint64 array
    state[0] += np.uint64(0x9E3779B97F4A7C15)
    z = state[0]
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@nb.njit(cache=True)
def expected_error(active):
    """Mean |value error| after one random substitution in a codeword and repair."""
    L, n = active.shape
    total = 0.0
    word = np.empty(n, dtype=np.uint8)
    for v in range(L):
        for j in range(n):
            for b in range(4):
                if b == active[v, j]:
                    continue
                for t in range(n):
                    word[t] = active[v, t]
                word[j] = b
                total += abs(nearest_value(word, active) - v)
    return total / (L * n * 3)


@nb.njit(cache=True)
def _local_search(pool, order, L, iters, seed):
    """order: permutation of pool rows; the first L are the active words in value order."""
    state = np.array([np.uint64(seed)], dtype=np.uint64)
    M = pool.shape[0]
    active = pool[order[:L]].copy()
    cost = expected_error(active)
    for it in range(iters):
        i = int(_rand(state) % np.uint64(L))
        j = int(_rand(state) % np.uint64(M))
        if i == j:
            continue
        a, b = order[i], order[j]
        order[i], order[j] = b, a
        cand = pool[order[:L]].copy()
        c = expected_error(cand)
        if c <= cost:
            cost = c
            active = cand
        else:
            order[i], order[j] = a, b
    return order, cost


def _greedy_path(pool: np.ndarray) -> np.ndarray:
    """An order of the pool where consecutive words are at Hamming distance 1 where possible."""
    M = len(pool)
    dist = (pool[:, None, :] != pool[None, :, :]).sum(axis=2) if M <= 4096 else None
    used = np.zeros(M, dtype=bool)
    order = [0]
    used[0] = True
    for _ in range(M - 1):
        cur = order[-1]
        d = dist[cur].astype(float) if dist is not None else (pool != pool[cur]).sum(axis=1).astype(float)
        d[used] = np.inf
        order.append(int(np.argmin(d)))
        used[order[-1]] = True
    return np.array(order, dtype=np.int64)


class Codebook:
    """``levels`` values written as n-nt codewords; ``words[v]`` is the codeword of value v."""

    SEARCH_ITERS = 4000
    SEARCH_SEED = 20190902

    def __init__(self, n: int, levels: int, optimise: bool = True):
        pool = candidate_words(n)
        if levels > len(pool):
            raise ValueError(f"{levels} levels need more than the {len(pool)} codewords of length {n}")
        if levels < 2:
            raise ValueError("a codebook needs at least 2 levels")
        self.n, self.levels = n, levels
        order = _greedy_path(pool)
        if optimise and n <= 4:
            order, _ = _local_search(pool, order.copy(), levels, self.SEARCH_ITERS, self.SEARCH_SEED)
        self.words = np.ascontiguousarray(pool[order[:levels]])
        self.repairer = Repairer(self.words)

    @property
    def bits_per_nt(self) -> float:
        return float(np.log2(self.levels) / self.n)

    def encode(self, values: np.ndarray) -> np.ndarray:
        """Values (K,) -> flat nucleotides (K*n,), unwhitened."""
        return self.words[np.asarray(values, dtype=np.int64)].reshape(-1)

    def decode(self, nts: np.ndarray) -> np.ndarray:
        """Flat nucleotides (K*n,) -> repaired values (K,)."""
        return self.repairer(nts)

    def expected_error(self) -> float:
        return float(expected_error(self.words))

    def strings(self) -> list[str]:
        return ["".join("ACGT"[x] for x in w) for w in self.words]


@functools.lru_cache(maxsize=None)
def get_codebook(n: int, levels: int) -> Codebook:
    return Codebook(n, levels)


def random_assignment_error(n: int, levels: int, trials: int = 20, seed: int = 0) -> float:
    """Mean |value error| per substituted codeword for random subsets/orders of the same pool."""
    pool = candidate_words(n)
    rng = np.random.default_rng(seed)
    errs = [expected_error(np.ascontiguousarray(pool[rng.permutation(len(pool))[:levels]]))
            for _ in range(trials)]
    return float(np.mean(errs))


def size_table() -> list[dict]:
    rows = []
    for n in range(2, 9):
        m = codebook_size(n)
        rows.append({"n": n, "codewords": m, "bits_per_nt": float(np.log2(m) / n),
                     "jpeg_dna": JPEG_DNA_SIZES[n], "jpeg_dna_bits_per_nt": float(np.log2(JPEG_DNA_SIZES[n]) / n)})
    return rows


def main():
    print("| n | dnaimg codewords | bits/nt | JPEG DNA codewords | bits/nt |")
    print("|---|---|---|---|---|")
    for r in size_table():
        print(f"| {r['n']} | {r['codewords']} | {r['bits_per_nt']:.3f} | {r['jpeg_dna']} | {r['jpeg_dna_bits_per_nt']:.3f} |")
    print()
    print("| n | levels | mean abs value error per substituted codeword: ours | random assignment |")
    print("|---|---|---|---|")
    for n, levels in [(2, 9), (2, 12), (3, 17), (3, 32), (4, 65)]:
        cb = get_codebook(n, levels)
        print(f"| {n} | {levels} | {cb.expected_error():.3f} | {random_assignment_error(n, levels):.3f} |")


if __name__ == "__main__":
    main()
