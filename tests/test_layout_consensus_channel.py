import numpy as np
import pytest

from dnaimg.dna import alphabet as dna
from dnaimg.dna.channel import PRESETS, Channel, preset, simulate
from dnaimg.dna.consensus import consensus, consensus_arrays
from dnaimg.dna.constraints import longest_repeat, longest_run, report
from dnaimg.dna.container import Layout, LayoutError, read_streams, sort_reads, write
from dnaimg.dna.header import Header, HeaderV1, StreamInfo, find_headers
from dnaimg.dna.prng import interleaver
from dnaimg.dna.streams import Encoded, Stream
from helpers import align_ops


def _words(sym, levels=9, n=2):
    return Encoded("robust", [Stream("words", np.asarray(sym, dtype=np.int64), n, levels)], b"meta")


def _read_back(oligos, layout=None):
    layout = layout or Layout()
    sorter = sort_reads(list(oligos), layout)
    headers, why, _ = find_headers(sorter)
    assert len(headers) == 1, why
    h = next(iter(headers.values()))
    return h, read_streams(sorter, h, Layout(oligo_length=h.oligo_length))


def test_header_pack_unpack_and_checksum():
    h = Header(codec_id=4, image_id=0x12345678, oligo_length=200, primer_f_nt=20, primer_r_nt=20,
               streams=[StreamInfo(0, 0, 10, 250, inner=4, blocks=1, parity=2, crc=7)], meta=b"abc")
    data = h.pack()
    assert Header.unpack(data + bytes(9)) == h          # padding after the header is allowed
    assert h.tag == 0x78
    bad = bytearray(data)
    bad[7] ^= 1
    with pytest.raises(ValueError, match="checksum"):
        Header.unpack(bytes(bad))


def test_version1_header_still_parses():
    h = HeaderV1(model_id=1, levels=9, codeword_nt=2, channels=4, height=40, width=48, n_data=0, oligo_length=200,
                 primer_f_nt=20, primer_r_nt=20, seed=99, tag=5, symbols_crc=0)
    assert HeaderV1.unpack(h.pack()) == h


def test_interleaver_is_a_pinned_permutation():
    p = interleaver(1000, 42)
    assert sorted(p.tolist()) == list(range(1000))
    assert p[:6].tolist() == interleaver(1000, 42)[:6].tolist()
    assert not np.array_equal(p, interleaver(1000, 43))
    assert interleaver(10, 7).tolist() == PINNED_PERM


@pytest.mark.parametrize("pattern", ["zeros", "max", "centre", "alternate", "random"])
def test_oligos_pass_constraints_whatever_the_latent(pattern, rng):
    lay = Layout()
    total = 4 * 5 * 6
    sym = {"zeros": np.zeros(total), "max": np.full(total, 8), "centre": np.full(total, 4),
           "alternate": np.arange(total) % 2 * 8, "random": rng.integers(0, 9, total)}[pattern].astype(np.int64)
    w = write(_words(sym), 0, lay, redundancy=0.3)
    for o in w.oligos:
        assert len(o) == 200
        r = report(o)
        assert r.ok, r.violations()
        assert longest_run(o) <= 3 and longest_repeat(o) <= 12


def test_words_stream_roundtrip_through_the_decoder(rng):
    sym = rng.integers(0, 9, 3 * 10 * 10)
    w = write(_words(sym), 0, Layout())
    h, (rec,) = _read_back(w.oligos)
    assert rec.exact and np.array_equal(rec.data, sym) and h.meta == b"meta"


def test_bytes_stream_rebuilt_from_parity_when_oligos_are_lost(rng):
    data = rng.integers(0, 256, 3000).astype(np.uint8).tobytes()
    w = write(Encoded("png", [Stream("bytes", data)], b"m"), 6, Layout(), redundancy=0.2)
    n_data = w.plans[0].n_data
    lost = set(rng.choice(n_data, size=n_data // 10, replace=False).tolist())
    keep = [o for i, o in enumerate(w.oligos) if (i - w.n_header) not in lost]
    _, (rec,) = _read_back(keep)
    assert rec.exact and rec.data == data
    assert rec.report["outer"]["rebuilt_cells"] > 0


def test_bytes_stream_without_parity_reports_damage(rng):
    data = rng.integers(0, 256, 1000).astype(np.uint8).tobytes()
    w = write(Encoded("png", [Stream("bytes", data)], b"m"), 6, Layout(), redundancy=0)
    keep = [o for i, o in enumerate(w.oligos) if i != w.n_header + 3]
    _, (rec,) = _read_back(keep)
    assert not rec.exact and rec.data != data and rec.report["missing"] == 1


def test_layout_validation():
    with pytest.raises(LayoutError, match="payload"):
        Layout(oligo_length=90)
    with pytest.raises(LayoutError, match="homopolymer"):
        Layout(primer_f="AAAAACGTACGTACGTACGT")
    with pytest.raises(LayoutError, match="A/C/G/T"):
        Layout(primer_r="ACGTNACGTACGTACGTACG")


def test_consensus_examples():
    assert consensus(["ACGTTGCA", "ACGTGCA", "ACGATGCA", "ACGTTGGCA", "CGTTGCA"], 8) == "ACGTTGCA"
    assert consensus(["ACGTNGCA", "ACGTTGCA", "ACNTTGCA"], 8) == "ACGTTGCA"
    assert consensus(["ACGT"], 4) == "ACGT"
    assert len(consensus(["ACG"], 6)) == 6
    with pytest.raises(ValueError):
        consensus([], 5)


def _nanopore_groups(n_oligos, reads_each, seed):
    rng = np.random.default_rng(seed)
    oligos = [rng.integers(0, 4, 200).astype(np.uint8) for _ in range(n_oligos)]
    ch = preset("nanopore", coverage=reads_each, exact_coverage=True, sigma=0.0, reverse_fraction=0.0)
    reads, which, _ = simulate(oligos, ch, seed=seed)
    groups = [[] for _ in range(n_oligos)]
    for r, k in zip(reads, which):
        groups[k].append(r)
    return oligos, groups


def test_consensus_rebuilds_nanopore_oligos_from_10_reads():
    oligos, groups = _nanopore_groups(300, 10, seed=11)
    exact = sum(np.array_equal(consensus_arrays(g, 200), o) for g, o in zip(groups, oligos))
    assert exact / len(oligos) >= 0.90


def test_consensus_beats_plain_majority():
    oligos, groups = _nanopore_groups(100, 10, seed=5)
    def majority(g):
        v = np.zeros((200, 4), int)
        for r in g:
            for i, x in enumerate(r[:200]):
                v[i, x] += 1
        return v.argmax(1)
    plain = sum(np.array_equal(majority(g), o) for g, o in zip(groups, oligos))
    ours = sum(np.array_equal(consensus_arrays(g, 200), o) for g, o in zip(groups, oligos))
    assert plain < 30 and ours > 85


def test_simulated_error_rates_match_parameters():
    rng = np.random.default_rng(0)
    oligos = [rng.integers(0, 4, 150).astype(np.uint8) for _ in range(40)]
    ch = Channel(sub=0.02, ins=0.01, dels=0.015, coverage=10, sigma=0.0, exact_coverage=True, reverse_fraction=0.5)
    reads, which, flip = simulate(oligos, ch, seed=4)
    assert len(reads) == 400 and 150 < flip.sum() < 250
    tot = np.zeros(3)
    for r, k, f in zip(reads, which, flip):
        r = dna.revcomp(r) if f else r
        tot += align_ops(oligos[k], r).sum(0)[[0, 2, 1]]   # subs, ins, dels
    rates = tot / (400 * 150)
    # the alignment finds the cheapest explanation, a little under the truth
    assert rates[0] == pytest.approx(0.02, rel=0.15)
    assert rates[1] == pytest.approx(0.01, rel=0.25)
    assert rates[2] == pytest.approx(0.015, rel=0.25)


def test_coverage_dropout_and_seed():
    rng = np.random.default_rng(0)
    oligos = [rng.integers(0, 4, 100).astype(np.uint8) for _ in range(2000)]
    ch = Channel(coverage=5, sigma=0.3, dropout=0.1)
    reads, which, _ = simulate(oligos, ch, seed=1)
    assert len(reads) == 10000
    lost = 2000 - len(np.unique(which))
    assert 150 < lost < 260
    again, which2, _ = simulate(oligos, ch, seed=1)
    assert np.array_equal(which, which2) and all(np.array_equal(a, b) for a, b in zip(reads, again))
    paper_ch = preset("paper", sub=0.05)
    r1, w1, _ = simulate(oligos, paper_ch, seed=2)
    assert sorted(w1.tolist()) == list(range(2000))
    assert all(len(r) == 100 for r in r1)
    assert set(PRESETS) >= {"miseq", "nextseq", "hedges", "nanopore", "paper"}


# format version 1: must never change
PINNED_PERM = [9, 7, 8, 4, 6, 0, 3, 1, 5, 2]
