"""Reads as real runs hand them out: adapters and flanks around the oligos, primers trimmed off,
paired-end R1/R2 files, several files and standard input.  Each must decode as well as the
plain reads of the same simulation (the same pixels), and every failure must say what the
reads look like."""
import gzip

import numpy as np
import pytest
from PIL import Image


from conftest import EXAMPLE
from helpers import cli, cli_json


run = cli


_json = cli_json


@pytest.fixture(scope="module")
def oligos(tmp_path_factory):
    d = tmp_path_factory.mktemp("runs")
    img = d / "small.png"
    Image.open(EXAMPLE).convert("RGB").crop((100, 80, 164, 144)).save(img)
    fa = d / "small.fasta"
    r = run("encode", img, "-o", fa, "--codec", "avif", "--quality", "60", "-q")
    assert r.exit_code == 0, r.output
    return fa


def _simulate(fa, out, *extra, seed=3):
    r = run("simulate", fa, "-o", out, "--preset", "nextseq", "--coverage", "8", "--seed", seed, "-q", *extra)
    assert r.exit_code == 0, r.output
    return out


def _decode(out, *reads, extra=(), input=None):
    rep = _json(run("decode", *reads, "-o", out, "--json", "-q", *extra, input=input))
    return rep, np.asarray(Image.open(out))


@pytest.fixture(scope="module")
def plain(oligos, tmp_path_factory):
    """The plain reads of the simulation every other run is made from, and their decode."""
    d = tmp_path_factory.mktemp("plain")
    fq = _simulate(oligos, d / "plain.fastq")
    rep, px = _decode(d / "plain.png", fq)
    assert rep["exact"]
    return fq, rep, px


def _same_as_plain(plain, rep, px, share=0.99):
    _, prep, ppx = plain
    assert rep["exact"] == prep["exact"]
    assert np.array_equal(px, ppx)
    assert rep["reads"]["used"] >= share * prep["reads"]["used"], (rep["reads"], prep["reads"])


@pytest.mark.parametrize("extra", [["--flank", "10-60"], ["--adapter-tail", "30"], ["--adapter-tail", "10"],
                                   ["--flank", "25", "--adapter-tail", "40"]])
def test_adapters_and_flanks_are_ignored(oligos, plain, tmp_path, extra):
    fq = _simulate(oligos, tmp_path / "run.fastq", *extra)
    plain_lens = {len(s) for s in plain[0].read_text().splitlines()[1::4]}
    lens = {len(s) for s in fq.read_text().splitlines()[1::4]}
    assert min(lens) > max(plain_lens) - 5          # the reads really carry the extra bases
    rep, px = _decode(tmp_path / "out.png", fq)
    _same_as_plain(plain, rep, px)


def test_clean_oligos_with_a_random_tail_decode(oligos, tmp_path):
    """The issue's case: clean oligos with 30 random bases appended once read as 'format version 7'."""
    rng = np.random.default_rng(0)
    recs = oligos.read_text().split(">")[1:]
    with open(tmp_path / "tail.fasta", "w") as f:
        for i, rec in enumerate(recs * 3):
            seq = rec.split("\n", 1)[1].replace("\n", "")
            f.write(f">r{i}\n{seq}{''.join(rng.choice(list('ACGT'), 30))}\n")
    r = run("decode", tmp_path / "tail.fasta", "-o", tmp_path / "t.png", "--json", "-q")
    assert r.exit_code == 0, r.output
    assert "format version" not in r.output
    rep = _json(r)
    assert rep["exact"] and rep["reads"]["used"] == 3 * len(recs)


def test_trimmed_reads_detected_and_with_the_option(oligos, plain, tmp_path):
    fq = _simulate(oligos, tmp_path / "trimmed.fastq", "--trimmed")
    first = fq.read_text().splitlines()[1]
    assert not first.startswith("AGTGCACGCGCAGTTATATG")
    # (the channel draws its errors over shorter oligos here: other reads than the plain ones)
    rep, px = _decode(tmp_path / "auto.png", fq)
    _same_as_plain(plain, rep, px, share=0.97)
    rep2, px = _decode(tmp_path / "opt.png", fq, extra=["--trimmed"])
    _same_as_plain(plain, rep2, px, share=0.97)
    assert rep2["reads"]["used"] == rep["reads"]["used"]


def test_trimmed_option_on_reads_with_primers_says_what_it_found(plain, tmp_path):
    r = run("decode", plain[0], "-o", tmp_path / "x.png", "--trimmed", "-q")
    assert r.exit_code == 1
    assert "--trimmed" in r.output and "reads are" in r.output
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("how", ["detected", "--paired", "detected, R2 first", "--paired, R2 first"])
def test_paired_end_r1_r2(oligos, plain, tmp_path, how):
    r1 = _simulate(oligos, tmp_path / "R1.fastq.gz", "--paired", tmp_path / "R2.fastq.gz", "--read-length", "150")
    with gzip.open(r1, "rt") as f:
        lines = f.read().splitlines()
    assert {len(s) for s in lines[1::4]} == {150} and lines[0].endswith(" 1:N:0:1")
    extra = ["--paired"] if how.startswith("--paired") else []
    files = [r1, tmp_path / "R2.fastq.gz"]          # (the mates' names say which file is R1)
    rep, px = _decode(tmp_path / "p.png", *(files[::-1] if "R2 first" in how else files), extra=extra)
    _same_as_plain(plain, rep, px, share=0.97)
    assert rep["reads"]["pairs"] == len(lines) // 4
    assert rep["reads"]["pairs_merged"] >= 0.97 * rep["reads"]["pairs"]


def test_one_mate_alone_fails_saying_the_reads_are_short(oligos, tmp_path):
    r1 = _simulate(oligos, tmp_path / "R1.fastq", "--paired", tmp_path / "R2.fastq", "--read-length", "150")
    r = run("decode", r1, "-o", tmp_path / "x.png", "-q")
    assert r.exit_code == 1
    assert "reads are 150 nt" in r.output, r.output


def test_mates_of_different_counts_refused(oligos, tmp_path):
    r1 = _simulate(oligos, tmp_path / "R1.fastq", "--paired", tmp_path / "R2.fastq", "--read-length", "150")
    lines = (tmp_path / "R2.fastq").read_text().splitlines()
    (tmp_path / "R2.fastq").write_text("\n".join(lines[:-8]) + "\n")
    n = len(lines) // 4
    r = run("decode", r1, tmp_path / "R2.fastq", "-o", tmp_path / "x.png", "--paired", "-q")
    assert r.exit_code == 1
    assert f"R1.fastq has {n} reads and" in r.output and f"R2.fastq {n - 2}" in r.output, r.output
    assert "Traceback" not in r.output


def test_two_files_and_stdin(oligos, plain, tmp_path):
    """The plain reads cut into three parts: two files and standard input (gzipped)."""
    lines = plain[0].read_text().splitlines(keepends=True)
    n = len(lines) // 4
    cut = [0, n // 3 * 4, 2 * n // 3 * 4, len(lines)]
    parts = ["".join(lines[cut[i]:cut[i + 1]]) for i in range(3)]
    (tmp_path / "a.fastq").write_text(parts[0])
    with gzip.open(tmp_path / "b.fastq.gz", "wt") as f:
        f.write(parts[1])
    rep, px = _decode(tmp_path / "s.png", tmp_path / "a.fastq", "-", tmp_path / "b.fastq.gz",
                      input=gzip.compress(parts[2].encode()))
    _same_as_plain(plain, rep, px, share=1.0)
    assert rep["reads"]["seen"] == n


def test_stdin_alone_single_image_and_pool(plain, tmp_path):
    text = plain[0].read_bytes()
    rep, px = _decode(tmp_path / "s.png", "-", input=text)
    _same_as_plain(plain, rep, px, share=1.0)
    r = run("decode", "-", "-o", f"{tmp_path}/dir/", "-q", input=text)
    assert r.exit_code == 0, r.output
    (out,) = list((tmp_path / "dir").glob("*.png"))
    assert np.array_equal(np.asarray(Image.open(out)), plain[2])


def test_merge_mates_rebuilds_the_fragment():
    from dnaimg.dna.runs import mates, merge_mates
    rng = np.random.default_rng(1)
    frags = [rng.integers(0, 4, L).astype(np.uint8) for L in (200, 180, 320, 140)]
    pairs = [mates(f, 150, rng) for f in frags]
    r2 = pairs[0][1].copy()
    r2[10] = (r2[10] + 1) % 4             # a substitution in R2 past R1's end (fragment nt 189) ...
    r2[100] = (r2[100] + 1) % 4           # ... and one in the overlap (nt 99: R1's base wins)
    pairs[0] = (pairs[0][0], r2)

    def pack(arrs):
        offs = np.zeros(len(arrs) + 1, dtype=np.int64)
        np.cumsum([len(a) for a in arrs], out=offs[1:])
        return np.concatenate(arrs), offs
    out, offs, merged = merge_mates(*pack([p[0] for p in pairs]), *pack([p[1] for p in pairs]), 20, 0.2)
    got = [out[offs[i]:offs[i + 1]] for i in range(len(frags))]
    want0 = frags[0].copy()
    want0[189] = 3 - r2[10]
    assert np.array_equal(got[0], want0)
    assert np.array_equal(got[1], frags[1])
    assert np.array_equal(got[3], frags[3])          # shorter than a mate: R1 read on into the adapter
    assert len(got[2]) == 0 and merged == 3          # 320 nt: the 2x150 mates do not overlap


def test_mate_names():
    from dnaimg.dna.runs import are_mates, mate_id
    assert mate_id("SRR1.7 1:N:0:ACGT") == ("SRR1.7", 1)
    assert mate_id("frag7/2") == ("frag7", 2)
    assert mate_id("read7") == ("read7", None)
    assert are_mates(["a/1", "b/1"], ["a/2", "b/2"])
    assert not are_mates(["read1", "read2"], ["read1", "read2"])     # two single-end runs
    assert not are_mates(["a/1"], ["b/2"])


def test_junk_reads_say_what_they_are(tmp_path):
    rng = np.random.default_rng(0)
    with open(tmp_path / "junk.fasta", "w") as f:
        for i in range(300):
            f.write(f">j{i}\n{''.join(rng.choice(list('ACGT'), int(rng.integers(230, 261))))}\n")
    r = run("decode", tmp_path / "junk.fasta", "-o", tmp_path / "x.png", "-q")
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert "reads are 2" in r.output and "oligos are 200 nt" in r.output and "adapters" in r.output, r.output
    assert "format version" not in r.output


def test_fasta_then_fastq_in_one_file_refused(plain, oligos, tmp_path):
    mixed = tmp_path / "mixed.fasta"
    mixed.write_text(oligos.read_text() + plain[0].read_text())
    r = run("decode", mixed, "-o", tmp_path / "x.png", "-q")
    assert r.exit_code == 1
    assert "FASTQ records after FASTA ones" in r.output, r.output
    fq_then_fa = tmp_path / "mixed.fastq"
    fq_then_fa.write_text(plain[0].read_text() + oligos.read_text())
    r = run("decode", fq_then_fa, "-o", tmp_path / "y.png", "-q")
    assert r.exit_code == 1
    assert "FASTA records after FASTQ ones" in r.output, r.output


def test_one_short_mate_alone_is_partial_reads_not_two_images(oligos, tmp_path):
    """R1 of 80 nt alone: the payload left after the primer and the index is a few nt, too short to
    compare; the decoder said the reads came from two images.  It says they are partial reads."""
    r1 = _simulate(oligos, tmp_path / "R1.fastq", "--paired", tmp_path / "R2.fastq", "--read-length", "80")
    r = run("decode", r1, "-o", tmp_path / "x.png", "-q")
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    assert "two different images" not in r.output, r.output
    assert "reads are 80 nt, oligos are 200 nt" in r.output and "partial reads?" in r.output, r.output
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("to", ["x.png", "dir/"])
def test_mates_that_do_not_overlap_are_named_as_such(oligos, tmp_path, to):
    r1 = _simulate(oligos, tmp_path / "R1.fastq", "--paired", tmp_path / "R2.fastq", "--read-length", "80")
    r = run("decode", r1, tmp_path / "R2.fastq", "-o", f"{tmp_path}/{to}", "-q")
    n = len((tmp_path / "R1.fastq").read_text().splitlines()) // 4
    assert r.exit_code == 1, r.output
    lines = [ln for ln in r.output.splitlines() if ln.startswith("dnaimg: error:")]
    assert lines == [f"dnaimg: error: none of the {n} read pairs merged: their mates do not overlap (R1 and R2 must "
                     "together be at least 20 nt longer than the oligo; shorter mates cannot be merged into one "
                     "read)"], r.output
