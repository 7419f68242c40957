"""The realistic nanopore preset (errors at the read ends and in homopolymer runs) and the
polished consensus that rebuilds oligos from its reads (issue 12, item 2)."""
import hashlib

import numpy as np
import pytest

from dnaimg.dna import alphabet as dna
from dnaimg.dna.channel import PRESETS, preset, simulate
from dnaimg.dna.consensus import consensus, consensus_packed, pack, polish
from helpers import align_ops


def _digest(name):
    rng = np.random.default_rng(0)
    oligos = [rng.integers(0, 4, 120).astype(np.uint8) for _ in range(50)]
    reads, which, flip = simulate(oligos, preset(name, coverage=8), seed=3)
    h = hashlib.sha256()
    for r in reads:
        h.update(bytes(r))
        h.update(b"|")
    h.update(which.tobytes())
    h.update(flip.tobytes())
    return h.hexdigest()[:16]


# the reads of the presets before the realistic nanopore profile (nanopore-uniform: the old
# nanopore preset): they must never change
@pytest.mark.parametrize("name,want", [("miseq", "d3070494ba52ff97"), ("nextseq", "1d9045d0b6a88f28"),
                                       ("hedges", "12a3d7747dd31e23"), ("paper", "586ad7770bf92c19"),
                                       ("nanopore-uniform", "b234d4acad1613c4")])
def test_other_presets_keep_their_reads(name, want):
    assert _digest(name) == want


def _profile(name, oligos, L):
    ch = preset(name, coverage=10, exact_coverage=True, sigma=0.0, reverse_fraction=0.0)
    reads, which, _ = simulate(oligos, ch, seed=2)
    ops = sum(align_ops(oligos[k], r) for r, k in zip(reads, which)) / len(reads)
    run = np.zeros(L, bool)
    for s in (30, 45, 60):
        run[s:s + 5] = True            # the run and the gap after it (where a repeat lands)
    mid = np.zeros(L, bool)
    mid[20:80] = True
    per = ops[:L].sum(1)
    indel = ops[:L, 1] + ops[:L, 2]
    return (per.sum() / L, per[np.r_[0:8, L - 8:L]].mean() / per[mid & ~run].mean(),
            indel[run].mean() / indel[mid & ~run].mean())


def test_nanopore_preset_has_errors_at_the_ends_and_indels_in_runs():
    rng = np.random.default_rng(1)
    L = 100
    oligos = []
    for _ in range(16):          # random oligos with runs of 4 planted in the middle
        o = rng.integers(0, 4, L).astype(np.uint8)
        for s in (30, 45, 60):
            o[s:s + 4] = o[s]
        oligos.append(o)
    total, ends, runs = _profile("nanopore", oligos, L)
    u_total, u_ends, u_runs = _profile("nanopore-uniform", oligos, L)
    # same error budget (~5.9 % of the nucleotides; the alignment finds a little less) ...
    assert 0.045 < total < 0.075 and 0.045 < u_total < 0.075
    # ... but more of it at the read ends and, for insertions and deletions, in the runs
    assert ends > 1.3 * u_ends and ends > 1.25
    assert runs > 1.3 * u_runs
    assert set(PRESETS) >= {"nanopore", "nanopore-uniform"}


def _groups(n, length, seed, name="nanopore"):
    rng = np.random.default_rng(seed)
    oligos = [rng.integers(0, 4, length).astype(np.uint8) for _ in range(n)]
    ch = preset(name, coverage=12, exact_coverage=True, sigma=0.0, reverse_fraction=0.0)
    reads, which, _ = simulate(oligos, ch, seed=seed + 1)
    groups = [[] for _ in range(n)]
    for r, k in zip(reads, which):
        groups[k].append(r)
    return oligos, groups


def test_consensus_rebuilds_realistic_nanopore_oligos_from_5_and_10_reads():
    oligos, groups = _groups(300, 110, seed=21)
    ex5 = sum(np.array_equal(consensus_packed(*pack(g[:5]), 110), o) for o, g in zip(oligos, groups))
    ex10 = sum(np.array_equal(consensus_packed(*pack(g[:10]), 110), o) for o, g in zip(oligos, groups))
    # before the polishing pass: 60-66 % and 93-95 % on such sets
    assert ex5 / 300 >= 0.86
    assert ex10 / 300 >= 0.98


def test_polish_moves_a_homopolymer_base_back():
    rng = np.random.default_rng(4)
    truth = rng.integers(0, 4, 60).astype(np.uint8)
    truth[20:24] = 0            # AAAA
    truth[19] = truth[24] = 1
    truth[40:43] = 2            # GGG
    truth[39] = truth[43] = 3
    # an estimate with the A run one short and the G run one long (same length)
    est = np.concatenate([truth[:20], truth[21:40], [2], truth[40:]]).astype(np.uint8)
    assert len(est) == 60 and not np.array_equal(est, truth)
    reads = [truth.copy() for _ in range(3)]
    reads.append(np.delete(truth, 50))
    reads.append(np.insert(truth, 10, 3).astype(np.uint8))
    assert np.array_equal(polish(est, *pack(reads)), truth)


def test_consensus_examples_with_nanopore_like_errors():
    truth = "ACGTTTGCAAGCTAGGGCATCGATCCA"
    reads = ["ACGTTGCAAGCTAGGGCATCGATCCA",      # a T of the run lost
             "ACGTTTGCAAAGCTAGGCATCGATCCA",     # an A too many, a G too few
             "ACGTTTGCAAGCTAGGGCATCGATCCA",
             "CCGTTTGCAAGCTAGGGCATCGTTCCA",     # two substitutions
             "ACGTTTTGCAAGCTAGGGCATCGATCC"]     # a T too many, the last base lost
    assert consensus(reads, len(truth)) == truth
    assert dna.decode(consensus_packed(*pack([dna.encode(r) for r in reads]), len(truth))) == truth


def _scan(reads, group_of, G):
    from dnaimg.dna import mixture
    order = np.argsort(group_of, kind="stable").astype(np.int64)
    flat, offs = pack(reads)
    counts = np.bincount(group_of, minlength=G).astype(np.int64)
    first = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    gs = np.arange(G + 1, dtype=np.int64)
    return mixture.scan_groups(flat, offs, order, first, counts, gs, gs[:-1].copy(), mixture.K, 12, 24,
                               mixture.MIN_SHARED, mixture.MIN_READ_NT)


def test_noisy_reads_of_one_oligo_are_not_taken_for_two_oligos():
    # nanopore reads of very unequal quality: a noisy first read used to leave reads of its own
    # oligo out of its cluster (2 of these 600 groups looked "split" before single linkage)
    G, per = 600, 12
    rng = np.random.default_rng(5)
    oligos = [rng.integers(0, 4, 200).astype(np.uint8) for _ in range(G)]
    ch = preset("nanopore", coverage=per, exact_coverage=True, reverse_fraction=0.0, read_spread=0.7)
    reads, which, _ = simulate(oligos, ch, seed=6)
    out = _scan(reads, which, G)
    assert (out[:, 0] == per).all()
    assert int((out[:, 2] >= 2).sum()) == 0
    # two oligos under one number stay two: every group of 6 + 6 reads is split
    pair = which // 2
    out2 = _scan(reads, pair, G // 2)
    assert (out2[:, 2] >= 2).all()


def _edit_distance(a, b):
    D = np.arange(len(b) + 1)
    for i in range(1, len(a) + 1):
        prev, D[0] = D.copy(), i
        for j in range(1, len(b) + 1):
            D[j] = min(prev[j] + 1, D[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1]))
    return int(D[-1])


def test_edit_costs_are_the_distances_of_every_one_edit_variant():
    """What the polishing pass reads off one forward and one backward alignment equals the edit
    distance of the read to each variant (a deletion, a substitution, an insertion) computed
    from scratch (short sequences: the band holds every path that matters)."""
    from dnaimg.dna.consensus import POLISH_BAND, _bwd, _edit_costs, _fwd, _pband
    rng = np.random.default_rng(9)
    for _ in range(40):
        E = int(rng.integers(6, 14))
        est = rng.integers(0, 4, E).astype(np.uint8)
        read = est.copy()
        for _e in range(int(rng.integers(0, 3))):
            p = int(rng.integers(0, len(read)))
            op = rng.integers(0, 3)
            if op == 0:
                read[p] = rng.integers(0, 4)
            elif op == 1:
                read = np.insert(read, p, rng.integers(0, 4)).astype(np.uint8)
            elif len(read) > 1:
                read = np.delete(read, p)
        if rng.random() < 0.3:      # an unreadable base (N as 4, or 255): a mismatch for every base
            read[int(rng.integers(0, len(read)))] = rng.choice([4, 255])
        lo, W = _pband(E, len(read), POLISH_BAND)
        F = np.empty((E + 2, W), dtype=np.int32)
        B = np.empty((E + 2, W), dtype=np.int32)
        S = _fwd(est, read, lo, W, F)
        _bwd(est, read, lo, W, B)
        assert S == _edit_distance(est, read)
        Td, Ts, Ti = np.zeros(E), np.zeros((E, 4)), np.zeros((E + 1, 4))
        _edit_costs(est, read, lo, W, F, B, S, 1.0, Td, Ts, Ti)
        for j in range(E):
            assert Td[j] == _edit_distance(np.delete(est, j), read)
            for x in range(4):
                v = est.copy()
                v[j] = x
                assert Ts[j, x] == _edit_distance(v, read)
        for j in range(E + 1):
            for x in range(4):
                assert Ti[j, x] == _edit_distance(np.insert(est, j, x), read)
