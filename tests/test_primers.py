"""The primer set (random access): generated as documented, its rules hold, its primers are far
apart, and the demultiplexer sends reads to their pair."""
import numpy as np
import pytest

from dnaimg.dna import alphabet as dna
from dnaimg.dna import primers
from dnaimg.dna.channel import preset, simulate
from dnaimg.dna.pool import Demux


def test_shipped_set_is_the_generated_one():
    assert primers.generate() == primers.primer_pairs()
    assert len(primers.primer_pairs()) == primers.N_PAIRS == 97
    assert (primers.pair(0).forward, primers.pair(0).reverse) == primers.DEFAULT_PAIR
    assert primers.set_digest() == "a9694958ae4748ad"
    table = (primers.SET_FILE.parent.parent.parent / "docs" / "primers.tsv").read_text()
    assert table == primers.table()


def _levenshtein(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Edit distance of each row of ``a`` to the same row of ``b`` (numpy, one DP for all rows)."""
    n, m = a.shape[1], b.shape[1]
    prev = np.tile(np.arange(m + 1), (len(a), 1))
    for i in range(1, n + 1):
        cur = np.empty_like(prev)
        cur[:, 0] = i
        for j in range(1, m + 1):
            cur[:, j] = np.minimum(np.minimum(prev[:, j - 1] + (a[:, i - 1] != b[:, j - 1]), prev[:, j] + 1),
                                   cur[:, j - 1] + 1)
        prev = cur
    return prev[:, m]


def test_every_two_primers_are_at_edit_distance_9_or_more():
    seqs = [x for p in primers.primer_pairs() for x in (p.forward, p.reverse)]
    arr = np.stack([dna.encode(s) for s in seqs])
    rcs = np.stack([dna.revcomp(a) for a in arr])
    i, j = np.triu_indices(len(arr), 1)
    d_same = _levenshtein(arr[i], arr[j])
    ii, jj = np.meshgrid(np.arange(len(arr)), np.arange(len(arr)), indexing="ij")
    d_rc = _levenshtein(arr[ii.ravel()], rcs[jj.ravel()])
    assert min(d_same.min(), d_rc.min()) == primers.MIN_DISTANCE == 9
    assert primers.min_pairwise_distance(seqs) == 9
    assert _levenshtein(dna.encode("ACGTTGCA")[None], dna.encode("ACGTGCA")[None])[0] == 1


def test_rules_of_the_generated_primers():
    for p in primers.primer_pairs()[1:]:
        tf, tr = p.tm
        assert abs(tf - tr) <= 2.0
        for s, t in ((p.forward, tf), (p.reverse, tr)):
            assert len(s) == 20 and 9 <= sum(c in "GC" for c in s) <= 11
            assert 55.0 <= t <= 60.0
            assert not any(s[i] == s[i + 1] == s[i + 2] for i in range(18))
            assert s[-1] in "GC" and sum(c in "GC" for c in s[-5:]) <= 3
            assert not any(dna.revcomp_str(s[i:i + 5]) in s for i in range(16))
        for tail_of in (p.forward, p.reverse):          # no 3' dimer within the pair
            tail = dna.revcomp_str(tail_of[-4:])
            assert tail not in p.forward and tail not in p.reverse


def test_melting_temperature_reference_values():
    # SantaLucia 1998, 50 mM Na+, 250 nM primer (Biopython 1.88's Tm_NN with DNA_NN3, Na=50,
    # dnac1=dnac2=125, saltcorr=5 gives the same three values)
    for s, want in [("AGTGCACGCGCAGTTATATG", 55.582), ("CTAACGGCAATGAGTTGCAC", 54.279),
                    ("GTTGCGCTACGATTGCTCTG", 56.531)]:
        assert primers.melting_temperature(s) == pytest.approx(want, abs=0.001)


@pytest.mark.parametrize("name,cov", [("nextseq", 3), ("nanopore", 2)])
def test_demux_sends_reads_to_their_pair(name, cov):
    rng = np.random.default_rng(7)
    pairs = list(primers.primer_pairs()[:8])
    oligos, truth = [], []
    for g, p in enumerate(pairs):
        for _ in range(60):
            ins = rng.integers(0, 4, 160).astype(np.uint8)
            oligos.append(np.concatenate([dna.encode(p.forward), ins, dna.revcomp(dna.encode(p.reverse))]))
            truth.append(g)
    reads, which, _ = simulate(oligos, preset(name, coverage=cov), seed=3)
    lens = np.array([len(r) for r in reads])
    offs = np.zeros(len(reads) + 1, dtype=np.int64)
    offs[1:] = np.cumsum(lens)
    got = Demux(pairs)(np.concatenate(reads), offs)
    want = np.array(truth)[which]
    assigned = got >= 0
    assert (got[assigned] == want[assigned]).all()              # never to a wrong pair
    assert assigned.mean() > (0.995 if name == "nextseq" else 0.97)
    # and the whole primer set (97 pairs) is as exact, for the reads of pair 5
    sel = np.flatnonzero(want == 5)[:200]
    sub = [reads[i] for i in sel]
    o2 = np.zeros(len(sub) + 1, dtype=np.int64)
    o2[1:] = np.cumsum([len(r) for r in sub])
    g2 = Demux(list(primers.primer_pairs()))(np.concatenate(sub), o2)
    assert set(g2[g2 >= 0].tolist()) == {5} and (g2 >= 0).mean() > 0.95
