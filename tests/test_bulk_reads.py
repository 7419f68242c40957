"""The bulk read path: FASTA/FASTQ blocks parsed by numba into integer arrays, the read store
and the batch decoder, each checked against the simple path it replaces."""
import gzip

import numba as nb
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from dnaimg.dna import alphabet as dna
from dnaimg.dna.consensus import _band_fill, _band_votes, consensus_packed
from dnaimg.dna.seqio import InputError, ReadBatches, holds_fastq, iter_sequences, prefetched

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def batches_as_text(path, block=64):
    out = []
    for flat, offs in ReadBatches(path, block_bytes=block):
        for r in range(len(offs) - 1):
            out.append(flat[offs[r]:offs[r + 1]])
    return out


def dnaio_codes(path):
    return [dna.encode(s) for s in iter_sequences(path)]


def same(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


seq_text = st.text(alphabet="ACGTacgtNn", min_size=0, max_size=90)


@given(st.lists(seq_text, min_size=1, max_size=12), st.booleans(), st.booleans(), st.booleans(),
       st.sampled_from([16, 64, 1 << 16]))
@SETTINGS
def test_fastq_blocks_match_dnaio(tmp_path_factory, seqs, crlf, final_newline, gz, block):
    nl = "\r\n" if crlf else "\n"
    text = nl.join(f"@r{i} x{nl}{s}{nl}+{nl}{'I' * len(s)}" for i, s in enumerate(seqs))
    text += nl if final_newline else ""
    p = tmp_path_factory.mktemp("fq") / ("r.fastq.gz" if gz else "r.fastq")
    p.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
    try:
        ref = dnaio_codes(p)
    except InputError:      # dnaio refuses an empty last record without its final newline
        return
    assert same(batches_as_text(p, block), ref)


@given(st.lists(st.lists(seq_text, min_size=0, max_size=3), min_size=1, max_size=10), st.booleans(),
       st.sampled_from([16, 64, 1 << 16]))
@SETTINGS
def test_multiline_fasta_blocks_match_dnaio(tmp_path_factory, records, crlf, block):
    nl = "\r\n" if crlf else "\n"
    text = "".join(f">r{i}{nl}" + "".join(line + nl for line in lines) for i, lines in enumerate(records))
    p = tmp_path_factory.mktemp("fa") / "r.fasta"
    p.write_bytes(text.encode())
    assert same(batches_as_text(p, block), dnaio_codes(p))


@given(st.binary(max_size=300))
@SETTINGS
def test_any_bytes_parse_like_dnaio_or_fail_clearly(tmp_path_factory, data):
    p = tmp_path_factory.mktemp("fz") / "r.fastq"
    p.write_bytes(data)
    try:
        ref = dnaio_codes(p)
    except InputError:
        ref = None
    try:
        got = batches_as_text(p, 32)
    except InputError:
        got = None
    if ref is not None and ref:
        assert got is not None and same(got, ref)


@pytest.mark.parametrize("text, fragment", [
    ("@r1\nACGT\n+\nII\n", "malformed"),                   # quality shorter than the sequence
    ("@r1\nACGT\nIIII\n", "malformed"),                    # no '+' line
    ("@r1\nACGT\n+\nIIII\nACGT\n", "malformed"),           # junk after a record
    ("@r1\nACGT\n+\nIIII\n@r2\nAC", "malformed"),          # truncated last record
    ("hello world\n", "neither FASTA nor FASTQ"),
    ("\n\n\n", "no sequences"),
])
def test_malformed_files_give_one_clear_error(tmp_path, text, fragment):
    p = tmp_path / "r.fastq"
    p.write_text(text)
    with pytest.raises(InputError, match=fragment):
        list(ReadBatches(p))


@pytest.mark.parametrize("tail, where", [
    ("@r101\nACGTACGTAC\n+\nIIIII\n@r102\nACGT\n+\nIIII\n", "after record 100 at line 404: Length of sequence and qualities differ"),
    ("@r101\nACGTAC", "after record 100 at line 402: Premature end of file"),
])
def test_a_fault_is_placed_by_record_and_line_of_the_file(tmp_path, tail, where):
    p = tmp_path / "r.fastq"
    p.write_text("".join(f"@r{i}\nACGTACGTAC\n+\nIIIIIIIIII\n" for i in range(1, 101)) + tail)
    with pytest.raises(InputError, match=where):
        list(ReadBatches(p))


def test_truncated_gzip_is_reported(tmp_path):
    data = gzip.compress(("@r\nACGT\n+\nIIII\n" * 5000).encode())
    p = tmp_path / "r.fastq.gz"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="ends early"):
        list(ReadBatches(p))


def test_prefetched_passes_items_and_errors_through():
    assert list(prefetched(iter(range(50)))) == list(range(50))

    def broken():
        yield 1
        raise InputError("x: boom")
    got = []
    with pytest.raises(InputError, match="boom"):
        for v in prefetched(broken()):
            got.append(v)
    assert got == [1]


# the full-table alignment that the banded one replaced, kept here as the reference
@nb.njit
def _align_votes(est, read, D, base_v, del_v, ins_v, ins_b):
    """Global alignment of ``read`` to ``est`` (unit costs), votes added; returns edit distance."""
    E = est.shape[0]
    R = read.shape[0]
    for j in range(E + 1):
        D[0, j] = j
    for i in range(1, R + 1):
        D[i, 0] = i
        ri = read[i - 1]
        for j in range(1, E + 1):
            best = D[i - 1, j - 1] + (0 if ri == est[j - 1] else 1)
            a = D[i, j - 1] + 1
            if a < best:
                best = a
            b = D[i - 1, j] + 1
            if b < best:
                best = b
            D[i, j] = best
    dist = D[R, E]
    i, j = R, E
    while i > 0 or j > 0:
        if i > 0 and j > 0 and D[i, j] == D[i - 1, j - 1] + (0 if read[i - 1] == est[j - 1] else 1):
            if read[i - 1] < 4:
                base_v[j - 1, read[i - 1]] += 1
            i -= 1
            j -= 1
        elif j > 0 and D[i, j] == D[i, j - 1] + 1:
            del_v[j - 1] += 1
            j -= 1
        else:
            ins_v[j] += 1
            if read[i - 1] < 4:
                ins_b[j, read[i - 1]] += 1
            i -= 1
    return dist


def test_banded_alignment_equals_full_alignment():
    rng = np.random.default_rng(5)
    for _ in range(300):
        est = rng.integers(0, 4, rng.integers(20, 130)).astype(np.uint8)
        read = est.copy().tolist()
        for _ in range(rng.integers(0, 6)):          # a few substitutions and indels
            k = rng.integers(0, len(read))
            op = rng.integers(0, 3)
            if op == 0:
                read[k] = int(rng.integers(0, 4))
            elif op == 1:
                read.insert(k, int(rng.integers(0, 4)))
            elif len(read) > 1:
                del read[k]
        read = np.array(read, dtype=np.uint8)
        E, R = len(est), len(read)
        full = [np.zeros((E, 4), np.int64), np.zeros(E, np.int64), np.zeros(E + 1, np.int64), np.zeros((E + 1, 4), np.int64)]
        band = [np.zeros_like(a) for a in full]
        d_full = _align_votes(est, read, np.empty((R + 1, E + 1), np.int32), *full)
        w = min(32, abs(R - E) + 10)
        D = np.empty((R + 1, 2 * 32 + 1), np.int32)
        d_band = _band_fill(est, read, w, D)
        _band_votes(est, read, w, D, *band)
        assert d_band == d_full
        for a, b in zip(full, band):
            assert np.array_equal(a, b)


def test_consensus_recovers_oligos_under_nanopore_errors():
    from dnaimg.dna.channel import preset, simulate
    rng = np.random.default_rng(2)
    oligos = [rng.integers(0, 4, 124).astype(np.uint8) for _ in range(60)]
    reads, src, flips = simulate(oligos, preset("nanopore", coverage=12), seed=4)
    by = {}
    for r, s, f in zip(reads, src, flips):
        by.setdefault(int(s), []).append(dna.revcomp(r) if f else np.asarray(r, np.uint8))
    errors = 0
    for k, rs in by.items():
        flat = np.concatenate(rs)
        offs = np.concatenate([[0], np.cumsum([len(r) for r in rs])])
        errors += int((consensus_packed(flat, offs, 124) != oligos[k]).sum())
    assert errors / (124 * len(by)) < 0.02


def test_file_path_and_list_path_decode_identically(tmp_path):
    from PIL import Image

    from conftest import EXAMPLE
    from dnaimg.dna.channel import preset, simulate
    from dnaimg.codecs.robust import decode_reads, encode_image
    from dnaimg.dna.seqio import write_fastq
    img = np.asarray(Image.open(EXAMPLE).convert("RGB").crop((0, 0, 160, 96)))
    enc = encode_image(img)
    reads, _, _ = simulate(enc.oligos, preset("nanopore", coverage=6), seed=1)
    p = tmp_path / "r.fastq"
    write_fastq(p, ((f"r{i}", dna.decode(r), "I" * len(r)) for i, r in enumerate(reads)))
    a = decode_reads(ReadBatches(p, block_bytes=1 << 14))
    b = decode_reads([dna.decode(r) for r in reads])
    assert np.array_equal(a.symbols, b.symbols) and np.array_equal(a.image, b.image)
    assert a.report["reads"] == b.report["reads"] and a.report["codewords"] == b.report["codewords"]


def test_bit_parallel_primer_search_equals_the_table():
    from dnaimg.dna.reads import _match, _match_bits
    rng = np.random.default_rng(9)
    prev, cur = np.empty(200, np.int64), np.empty(200, np.int64)
    for _ in range(20000):
        m = int(rng.integers(1, 30))
        pat = rng.integers(0, 4, m).astype(np.uint8)
        text = rng.integers(0, 5, int(rng.integers(0, 60))).astype(np.uint8)
        text[text == 4] = 255
        if rng.random() < 0.5 and len(text) >= m:          # the pattern near the start, damaged
            k = int(rng.integers(0, 5))
            text[k:k + m] = pat[:len(text[k:k + m])]
            text[rng.integers(0, len(text), int(rng.integers(0, 4)))] = rng.integers(0, 4)
        lead, from_end = int(rng.integers(0, 6)), bool(rng.random() < 0.5)
        assert _match_bits(pat, text, lead, from_end) == _match(pat, text, lead, from_end, prev, cur)


def test_slot_table_files_like_a_dict():
    """The key -> slot table (open addressing, grown as it fills) gives every key the slot a plain
    dict would, over many blocks, and caps the reads per slot."""
    from dnaimg.dna.reads import SLOT_TABLE_START, _assign_slots
    rng = np.random.default_rng(6)
    cap = 3
    table = np.full(SLOT_TABLE_START, -1, dtype=np.int64)
    n_keys = 5 * SLOT_TABLE_START                   # several doublings
    slot_keys = np.zeros(n_keys + 10, dtype=np.int64)
    counts = np.zeros(n_keys + 10, dtype=np.int64)
    universe = rng.integers(0, 1 << 40, n_keys)
    ref, ref_counts, n = {}, {}, 0
    for _ in range(12):
        keys = universe[rng.integers(0, n_keys, 4000)]
        out, n, table = _assign_slots(keys, table, slot_keys, counts, n, cap)
        for k, s in zip(keys.tolist(), out.tolist()):
            want = ref.setdefault(k, len(ref))
            ref_counts[k] = ref_counts.get(k, 0) + 1
            assert s == (want if ref_counts[k] <= cap else -1)
    assert n == len(ref) and len(table) >= 2 * n
    assert [slot_keys[s] for s in range(n)] == sorted(ref, key=ref.get)


@pytest.mark.parametrize("text,fastq", [("@r\nACGT\n+\nIIII\n", True), ("\n \r\n@r\nACGT\n+\nIIII\n", True),
                                        (">r\nACGT\n", False), ("\n\n>r\nACGT\n", False), ("", False)])
@pytest.mark.parametrize("gz", [False, True])
def test_holds_fastq_decides_as_the_readers_do(tmp_path, text, fastq, gz):
    p = tmp_path / ("f.gz" if gz else "f")
    p.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
    assert holds_fastq(p) is fastq
