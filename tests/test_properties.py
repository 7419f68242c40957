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
from dnaimg.dna.layout import Header, Layout, data_oligos, interleaver, payload_values, values_per_oligo
from dnaimg.dna.seqio import InputError, iter_sequences

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@given(st.lists(st.integers(0, 8), min_size=1, max_size=300))
@SETTINGS
def test_codebook_round_trip(values):
    cb = get_codebook(2, 9)
    assert cb.decode(cb.encode(np.array(values))).tolist() == values


@given(st.lists(st.integers(0, 8), min_size=1, max_size=400), st.integers(0, 2**32 - 1),
       st.sampled_from([160, 200, 250]))
@SETTINGS
def test_layout_round_trip_and_constraints_for_any_latent(values, seed, length):
    lay = Layout(oligo_length=length)
    cb = get_codebook(2, 9)
    sym = np.array(values)
    h = Header(model_id=1, levels=9, codeword_nt=2, channels=1, height=8, width=8 * len(values), n_data=0,
               oligo_length=length, primer_f_nt=20, primer_r_nt=20, seed=seed, tag=seed & 255, symbols_crc=0)
    ols = data_oligos(lay, h, sym, cb.words)
    assert all(len(o) == length and oligo_ok(o) for o in ols)
    vpo = values_per_oligo(lay, 2)
    perm = interleaver(len(sym), seed)
    out = np.full(len(sym), -1)
    for k, o in enumerate(ols):
        got = read_index_py(o[20:])
        assert got[0] == k
        vals, bad = payload_values(o[56:56 + lay.payload_nt], k, got[1], h.tag, cb.repairer, vpo)
        lo, hi = k * vpo, min((k + 1) * vpo, len(sym))
        out[perm[lo:hi]] = vals[:hi - lo]
    assert np.array_equal(out, sym)


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


@given(st.binary(max_size=400), st.booleans())
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_fuzz_fastq_bytes(tmp_path_factory, data, gz):
    p = tmp_path_factory.mktemp("fz") / ("r.fastq.gz" if gz else "r.fastq")
    p.write_bytes(gzip.compress(data) if gz else data)
    try:
        list(iter_sequences(p))
    except InputError:
        pass
    r = CliRunner().invoke(main, ["decode", str(p), "-o", str(p.with_suffix(".png")), "-q"])
    assert r.exit_code in (0, 1)
    assert "Traceback" not in r.output
    if r.exit_code == 1:
        assert r.output.startswith("dnaimg: error:") and len(r.output.strip().splitlines()) == 1


@given(st.text(alphabet="@+ACGTN\nI!#", max_size=300))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_fuzz_fastq_like_text(tmp_path_factory, text):
    p = tmp_path_factory.mktemp("fz") / "r.fastq"
    p.write_text(text)
    r = CliRunner().invoke(main, ["decode", str(p), "-o", str(p.with_suffix(".png")), "-q"])
    assert r.exit_code in (0, 1) and "Traceback" not in r.output
