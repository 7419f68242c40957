"""Property tests and fuzzing: any input gives a result or a clear error, never a crash."""
import gzip

import numpy as np
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings, strategies as st

from dnaimg.cli import main
from dnaimg.dna.codebook import get_codebook
from dnaimg.codecs.robust import DecodeError, decode_reads
from dnaimg.dna.consensus import consensus
from dnaimg.dna.constraints import oligo_ok
from dnaimg.dna.index import read_index_py
from dnaimg.dna.container import Layout, read_streams, sort_reads, write
from dnaimg.dna.header import find_headers
from dnaimg.dna.streams import Encoded, Stream
from dnaimg.dna.seqio import InputError, iter_sequences

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@given(st.lists(st.integers(0, 8), min_size=1, max_size=300))
@SETTINGS
def test_codebook_round_trip(values):
    cb = get_codebook(2, 9)
    assert cb.decode(cb.encode(np.array(values))).tolist() == values


@given(st.lists(st.integers(0, 8), min_size=1, max_size=400), st.sampled_from([160, 200, 250]))
@SETTINGS
def test_layout_round_trip_and_constraints_for_any_latent(values, length):
    """Any words stream: every oligo meets the constraints, and the decoder gives it back."""
    lay = Layout(oligo_length=length)
    sym = np.array(values)
    w = write(Encoded("robust", [Stream("words", sym, 2, 9)], b""), 0, lay)
    assert all(len(o) == length and oligo_ok(o) for o in w.oligos)
    sorter = sort_reads(list(w.oligos), lay)
    headers, _, _ = find_headers(sorter)
    (rec,) = read_streams(sorter, headers[w.header.tag], lay)
    assert rec.exact and np.array_equal(rec.data, sym)


@given(st.binary(min_size=1, max_size=600), st.sampled_from([0.0, 0.3]))
@SETTINGS
def test_bytes_round_trip_and_constraints_for_any_bytes(data, redundancy):
    lay = Layout()
    w = write(Encoded("png", [Stream("bytes", data)], b""), 6, lay, redundancy=redundancy)
    assert all(oligo_ok(o) for o in w.oligos)
    sorter = sort_reads(list(w.oligos), lay)
    headers, _, _ = find_headers(sorter)
    (rec,) = read_streams(sorter, headers[w.header.tag], lay)
    assert rec.exact and rec.data == data


@given(st.lists(st.text(alphabet="ACGTN", max_size=60), min_size=1, max_size=12), st.integers(1, 50))
@SETTINGS
def test_consensus_always_answers(reads, length):
    out = consensus(reads, length)
    assert len(out) == length and set(out) <= set("ACGT")


@given(st.lists(st.text(alphabet="ACGTNacgt", max_size=250), max_size=30))
@SETTINGS
def test_decode_of_any_read_stream_is_a_result_or_a_decode_error(reads):
    try:
        decode_reads(reads)
    except DecodeError:
        pass


@given(st.lists(st.integers(0, 3), min_size=0, max_size=120))
@SETTINGS
def test_index_reader_never_raises(seq):
    read_index_py(np.array(seq, dtype=np.uint8))


def cli(*args):
    """The CLI with DNAIMG_DEBUG=1: an unexpected exception (a bug, which a user sees as
    "dnaimg: error: unexpected ...") propagates and fails the test instead of passing as exit 1."""
    return CliRunner(env={"DNAIMG_DEBUG": "1"}).invoke(main, [str(a) for a in args], catch_exceptions=False)


@given(st.binary(max_size=400), st.booleans())
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_fuzz_fastq_bytes(tmp_path_factory, data, gz):
    p = tmp_path_factory.mktemp("fz") / ("r.fastq.gz" if gz else "r.fastq")
    p.write_bytes(gzip.compress(data) if gz else data)
    try:
        list(iter_sequences(p))
    except InputError:
        pass
    r = cli("decode", p, "-o", p.with_suffix(".png"), "-q")
    assert r.exit_code in (0, 1)
    assert "Traceback" not in r.output and "error: unexpected " not in r.output, r.output
    if r.exit_code == 1:
        assert r.output.startswith("dnaimg: error:") and len(r.output.strip().splitlines()) == 1


@given(st.text(alphabet="@+ACGTN\nI!#", max_size=300))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_fuzz_fastq_like_text(tmp_path_factory, text):
    p = tmp_path_factory.mktemp("fz") / "r.fastq"
    p.write_text(text)
    r = cli("decode", p, "-o", p.with_suffix(".png"), "-q")
    assert r.exit_code in (0, 1) and "Traceback" not in r.output and "error: unexpected " not in r.output, r.output
