"""Reads whose index is beyond repair are filed by their payload (nanopore reads: about half of
them at 10x), and an oligo read only by one or two reads with an indel keeps only its trusted
values (the rest is erased rather than guessed)."""
import numpy as np
import pytest
from PIL import Image

from dnaimg import api
from dnaimg.dna import alphabet as dna
from dnaimg.dna import container as C
from dnaimg.dna.payload_rescue import match_to_consensus

from conftest import EXAMPLE


def _mutate(seq, rng, rate):
    """Substitutions, insertions and deletions, each at rate/3 per base."""
    out = []
    for b in seq:
        u = rng.random()
        if u < rate / 3:
            continue                                   # deletion
        if u < 2 * rate / 3:
            out.append((b + 1 + rng.integers(3)) % 4)  # substitution
        else:
            out.append(b)
        if rng.random() < rate / 3:
            out.append(rng.integers(4))                # insertion
    return np.array(out, dtype=np.uint8)


def _pack(reads):
    offs = np.zeros(len(reads) + 1, dtype=np.int64)
    np.cumsum([len(r) for r in reads], out=offs[1:])
    return np.concatenate(reads).astype(np.uint8), offs


def test_noisy_reads_find_their_oligo_and_payload_start():
    rng = np.random.default_rng(7)
    est = rng.integers(0, 4, size=(80, 124), dtype=np.uint8)
    truth = rng.integers(0, 80, size=400)
    reads = [np.concatenate([rng.integers(0, 4, 36).astype(np.uint8), _mutate(est[t], rng, 0.08)]) for t in truth]
    junk = [rng.integers(0, 4, 160).astype(np.uint8) for _ in range(200)]
    flat, offs = _pack(reads + junk)
    row, start = match_to_consensus(flat, offs, np.zeros(len(offs) - 1, dtype=bool), est)
    got, junk_row = row[:400], row[400:]
    assert (got == truth).mean() >= 0.95
    assert not ((got >= 0) & (got != truth)).any()      # never filed under another oligo
    assert (junk_row == -1).all()
    assert (np.abs(start[:400][got >= 0] - 36) <= 2).mean() >= 0.9


def test_skipped_reads_and_empty_consensus_rows_are_not_matched():
    rng = np.random.default_rng(8)
    est = rng.integers(0, 4, size=(10, 124), dtype=np.uint8)
    est[3] = 255                                         # an oligo without reads
    reads = [est[i % 10].copy() for i in range(20)]
    flat, offs = _pack(reads)
    skip = np.zeros(20, dtype=bool)
    skip[:5] = True
    row, _ = match_to_consensus(flat, offs, skip, est)
    assert (row[:5] == -1).all()
    want = np.arange(5, 20) % 10
    assert np.array_equal(row[5:], np.where(want == 3, -1, want))


@pytest.fixture(scope="module")
def robust_small():
    img = np.asarray(Image.open(EXAMPLE).convert("RGB").crop((100, 80, 196, 176)))
    enc = api.encode(img, "robust")
    clean = api.decode([dna.decode(o) for o in enc.oligos])
    return enc, clean


def _reads(enc, rng, good_indel: bool, rescued_copies: int):
    """Per data oligo one read with its index (an indel in its payload if ``good_indel``) and
    ``rescued_copies`` reads with a random index (1 % substitutions in their payload); the header
    oligos read cleanly."""
    w = enc.written
    lay = w.layout
    lo, hi = len(lay.primer_f), len(lay.primer_f) + 36
    reads = []
    for i, o in enumerate(w.oligos):
        o = np.asarray(o, dtype=np.uint8)
        if i < w.n_header:
            reads.append(o)
            continue
        g = o.copy()
        if good_indel:
            g = np.delete(g, hi + 50)
        reads.append(g)
        for _ in range(rescued_copies):
            r = o.copy()
            r[lo:hi] = rng.integers(0, 4, hi - lo)
            sub = hi + np.flatnonzero(rng.random(len(r) - hi - len(lay.primer_r)) < 0.01)
            r[sub] = (r[sub] + 1) % 4
            reads.append(r)
    order = rng.permutation(len(reads))
    return [dna.decode(reads[j]) for j in order]


def test_reads_without_a_readable_index_are_filed_and_rebuild_the_image(robust_small):
    enc, clean = robust_small
    rng = np.random.default_rng(3)
    res = api.decode(_reads(enc, rng, good_indel=True, rescued_copies=4))
    n_data = enc.written.oligos.shape[0] - enc.written.n_header
    assert res.report["reads"]["index_rescued"] == 4 * n_data
    assert res.report["reads"]["rejected_bad_index"] == 0
    assert np.array_equal(res.symbols, clean.symbols)
    assert np.array_equal(res.image, clean.image)


def test_one_read_with_an_indel_keeps_only_its_trusted_ends(robust_small):
    """One read per oligo, one deletion 50 nt into its payload (in codeword 25 of 62): the values
    3 codewords clear of it on both sides are kept (nearly all right), the ones around it erased."""
    enc, clean = robust_small
    rng = np.random.default_rng(4)
    res = api.decode(_reads(enc, rng, good_indel=True, rescued_copies=0))
    stream = res.report["streams"][0]
    n_data = enc.written.oligos.shape[0] - enc.written.n_header
    assert stream["missing"] == 0
    assert 0.05 * stream["values"] < stream["values_erased"] < 0.3 * stream["values"]
    from dnaimg.dna.container import read_streams
    lay, sorter, headers, _, _ = api.open_reads(_reads(enc, np.random.default_rng(4), good_indel=True,
                                                       rescued_copies=0))
    (got,) = read_streams(sorter, headers[enc.written.header.tag], lay)
    kept = ~got.erased
    assert kept.sum() == got.data.size - stream["values_erased"]
    wrong = kept & (got.data != clean.symbols.reshape(-1))
    # the resync may place the deletion a few codewords early (2-nt codewords read one nt off are
    # often valid too): a few kept values are wrong, far fewer than the erasing rule lost
    assert wrong.sum() <= 0.01 * kept.sum(), (wrong.sum(), kept.sum())
    # the same reads without the deletion keep every value
    res2 = api.decode(_reads(enc, np.random.default_rng(4), good_indel=False, rescued_copies=0))
    assert res2.report["streams"][0]["values_erased"] == 0
    assert np.array_equal(res2.symbols, clean.symbols)
    assert n_data == stream["oligos"]


def test_unsure_values_only_where_reads_carry_indels():
    # slots: 0 = one read of 124, 1 = one read of 123, 2 = two reads (124, 125),
    # 3 = three reads with indels and codewords repaired at 2 and 5, 4 = three reads of 124 and
    # the same repairs (substitutions only: kept), 5 = three reads with indels and one repair
    lens = [124, 123, 124, 125, 120, 121, 122, 124, 124, 124, 124, 125, 124]
    offs = np.zeros(len(lens) + 1, dtype=np.int64)
    np.cumsum(lens, out=offs[1:])
    order = np.arange(len(lens))
    firsts = np.array([0, 1, 2, 4, 7, 10, 13])
    slot = np.array([0, 1, 2, 3, 4, 5, -1])
    bad = np.zeros((7, 8), dtype=bool)
    bad[3, [2, 5]] = bad[4, [2, 5]] = bad[5, 1] = True
    trust = np.zeros((7, 8), dtype=bool)
    trust[:, 0] = True                                       # e.g. the trusted end before a repair
    got = C.unsure_values(offs, order, firsts, slot, 124, bad, trust)
    assert got[:3].any(axis=1).tolist() == [False, True, True]
    assert got[1].tolist() == got[2].tolist() == got[3].tolist() == [False] + [True] * 7
    assert not got[4].any() and not got[5].any() and not got[6].any()


def test_header_read_once_with_an_indel_in_every_oligo_still_decodes(robust_small):
    """Every header oligo read once, each read with a deletion or an insertion in its payload
    (a consensus of one read keeps the shift; the resynchronising word decoder follows it)."""
    enc, clean = robust_small
    w = enc.written
    hi = len(w.layout.primer_f) + 36
    rng = np.random.default_rng(5)
    reads = []
    for i, o in enumerate(w.oligos):
        o = np.asarray(o, dtype=np.uint8)
        if i < w.n_header:
            d = hi + 10 + int(rng.integers(0, 40))
            o = np.delete(o, d) if i % 2 else np.insert(o, d, (o[d] + 1) % 4)
        reads.append(dna.decode(o))
    res = api.decode(reads)
    assert res.header.image_id == clean.header.image_id
    assert np.array_equal(res.image, clean.image)


def test_payload_rescue_needs_hits_spread_over_the_read():
    """Six overlapping 12-mer hits are one chance match of 17 nt, which random reads find in a
    table of a few hundred consensuses (20 of 60,000 reads were filed so): never filed now, while
    reads of the consensuses (8 % substitutions) all are, at their payload's start."""
    from dnaimg.dna.payload_rescue import match_to_consensus
    rng = np.random.default_rng(0)
    est = rng.integers(0, 4, (300, 160)).astype(np.uint8)
    reads, truth = [], []
    for i in range(20000):
        if i % 50 == 0:
            t = int(rng.integers(300))
            r = est[t].copy()
            m = rng.random(160) < 0.08
            r[m] = rng.integers(0, 4, m.sum())
            reads.append(np.concatenate([rng.integers(0, 4, 10).astype(np.uint8), r]))
            truth.append(t)
        else:
            reads.append(rng.integers(0, 4, 170).astype(np.uint8))
            truth.append(-1)
    offs = np.zeros(len(reads) + 1, dtype=np.int64)
    offs[1:] = np.cumsum([len(r) for r in reads])
    row, start = match_to_consensus(np.concatenate(reads), offs, np.zeros(len(reads), dtype=bool), est)
    truth = np.array(truth)
    assert np.array_equal(row, truth)
    assert (start[truth >= 0] == 10).all()
