"""The command line as a user runs it: outputs, reports, one-line errors and exit codes."""
import gzip
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from dnaimg.cli import main

from conftest import EXAMPLE
from helpers import cli


@pytest.fixture(scope="module")
def small_image(tmp_path_factory):
    p = tmp_path_factory.mktemp("img") / "small.png"
    Image.open(EXAMPLE).convert("RGB").crop((100, 80, 260, 200)).save(p)
    return p


@pytest.fixture(scope="module")
def fasta(small_image, tmp_path_factory):
    out = tmp_path_factory.mktemp("enc") / "small.fasta"
    r = CliRunner().invoke(main, ["encode", str(small_image), "-o", str(out), "--codec", "robust", "-q"])
    assert r.exit_code == 0, r.output
    return out


run = cli


def assert_one_line_error(r, *fragments):
    assert r.exit_code != 0
    assert "Traceback" not in r.output
    lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("dnaimg: error:"), r.output
    for f in fragments:
        assert f in lines[0], lines[0]


@pytest.mark.parametrize("cmd", ["encode", "decode", "simulate", "check", "info", "models"])
def test_help(cmd):
    r = run(cmd, "--help")
    assert r.exit_code == 0 and "Usage:" in r.output


def test_encode_summary_and_json(small_image, tmp_path):
    r = run("encode", small_image, "-o", tmp_path / "a.fasta", "--codec", "robust", "-q")
    assert r.exit_code == 0
    assert "nt/pixel total" in r.output and "oligos of 200 nt" in r.output
    r = run("encode", small_image, "-o", tmp_path / "b.fasta.gz", "--codec", "robust", "--json", "-q")
    d = json.loads(r.output)
    assert d["payload_nt_per_pixel"] == pytest.approx(1.0, rel=0.15)
    assert d["total_nt_per_pixel"] > d["payload_nt_per_pixel"]
    with gzip.open(tmp_path / "b.fasta.gz", "rt") as f:
        assert f.readline().startswith(">dnaimg_")


def test_check_passes_and_fails(fasta, tmp_path):
    r = run("check", fasta)
    assert r.exit_code == 0
    assert r.output.splitlines()[0].startswith("name\tlength\tlongest_run\tgc\tlongest_repeat")
    bad = tmp_path / "bad.fasta"
    bad.write_text(">x\n" + "A" * 10 + "CG" * 40 + "\n>y\n" + "ACGT" * 20 + "\n")
    r = run("check", bad)
    assert r.exit_code == 1
    assert "homopolymer of 10 nt" in r.output and "tandem repeat" in r.output


def test_simulate_decode_roundtrip_with_report(fasta, small_image, tmp_path):
    reads = tmp_path / "reads.fastq.gz"
    r = run("simulate", fasta, "-o", reads, "--sub-rate", "0.01", "--ins-rate", "0.005", "--del-rate", "0.005",
            "--seed", "3")
    assert r.exit_code == 0 and "simulated" in r.output
    with gzip.open(reads, "rt") as f:
        head = [f.readline() for _ in range(4)]
    assert head[0].startswith("@read1") and head[2].startswith("+") and len(head[1]) == len(head[3])
    out = tmp_path / "out.png"
    r = run("decode", reads, "-o", out, "--reference", small_image, "--json", "-q")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output)
    assert rep["reads"]["seen"] > 0 and rep["oligos"]["expected"] > 0
    assert rep["psnr_db"] > 20
    img = np.asarray(Image.open(out))
    assert img.shape == (120, 160, 3)
    r = run("decode", reads, "-o", tmp_path / "o2.png", "-q")
    assert "oligos:" in r.output and "codewords:" in r.output and "exact:" in r.output


def test_info_reads_the_header(fasta):
    r = run("info", fasta, "--json")
    assert r.exit_code == 0
    d = json.loads(r.output)
    assert (d["width"], d["height"]) == (160, 120)
    from dnaimg.zoo.registry import DEFAULT_MODEL, select_point
    pt = select_point(DEFAULT_MODEL)
    assert d["model"] == pt.model and d["version"] == 2 and d["codec"] == "robust" and (d["levels"], d["channels"]) == (pt.levels, pt.channels)


def test_seed_preset_one_read_per_oligo(fasta, tmp_path):
    r = run("simulate", fasta, "-o", tmp_path / "s.fasta", "--preset", "paper", "--sub-rate", "0.02")
    assert r.exit_code == 0
    n_oligos = sum(1 for ln in open(fasta) if ln.startswith(">"))
    n_reads = sum(1 for ln in open(tmp_path / "s.fasta") if ln.startswith(">"))
    assert n_reads == n_oligos


def test_models_lists_the_shipped_model():
    r = run("models")
    assert r.exit_code == 0 and "cae32-l9" in r.output and "cae32-mr:r050" in r.output
    # a gray model's medical numbers say when they cover only the images it could fit
    assert "microscopy/eval: 40.19 dB at 0.296 total nt/px (cap 0.3, the 3 of 5 images it fits; AVIF 50.13 dB on them)" \
        in r.output
    assert "microscopy/eval: 39.52 dB at 0.297 total nt/px (cap 0.3; AVIF 47.83 dB on them)" in r.output


# ---- bad input: one line, non-zero exit, never a traceback -------------------------------

def test_missing_image(tmp_path):
    assert_one_line_error(run("encode", tmp_path / "nope.png", "-o", tmp_path / "x.fasta"), "no such file")


def test_not_an_image(tmp_path):
    p = tmp_path / "x.png"
    p.write_bytes(b"this is not a png")
    assert_one_line_error(run("encode", p, "-o", tmp_path / "x.fasta"), "not a readable image")


def test_unwritable_output(small_image, tmp_path):
    assert_one_line_error(run("encode", small_image, "-o", tmp_path / "no" / "dir" / "x.fasta"), "does not exist")


def test_empty_and_garbage_reads(tmp_path):
    e = tmp_path / "e.fastq"
    e.write_text("")
    assert_one_line_error(run("decode", e, "-o", tmp_path / "o.png"), "empty")
    g = tmp_path / "g.fastq"
    g.write_text("@r1\nACGT\n+\nII\n")
    assert_one_line_error(run("decode", g, "-o", tmp_path / "o.png"))
    junk = tmp_path / "j.fasta"
    junk.write_text(">a\n" + "ACGT" * 50 + "\n")
    assert_one_line_error(run("decode", junk, "-o", tmp_path / "o.png"), "primers")


def test_truncated_gzip(fasta, tmp_path):
    data = gzip.compress(open(fasta, "rb").read())
    p = tmp_path / "t.fasta.gz"
    p.write_bytes(data[: len(data) // 2])
    assert_one_line_error(run("decode", p, "-o", tmp_path / "o.png"))


def test_bad_options(fasta, tmp_path, small_image):
    assert_one_line_error(run("encode", small_image, "-o", tmp_path / "x.fasta", "--model", "nope"), "unknown model")
    assert_one_line_error(run("encode", small_image, "-o", tmp_path / "x.fasta", "--oligo-length", "80"),
                          "oligo length 80 is too short: the primers and the index take 76 nt, and at least 24 nt "
                          "of payload are needed (so at least 100 nt)")
    # byte streams: 300 nt at most (guided scrambling cannot keep longer ones within the constraints)
    assert_one_line_error(run("encode", small_image, "-o", tmp_path / "x.fasta", "--oligo-length", "400"),
                          "oligos of 400 nt: byte streams (every codec but robust) are written in oligos of at most 300 nt")
    assert not (tmp_path / "x.fasta").exists()
    for codec in ("png", "jxl-lossless"):
        assert_one_line_error(run("encode", small_image, "-o", tmp_path / "x.fasta", "--codec", codec, "--quality", "50"),
                              f"{codec} is lossless: it has no --quality")
    assert_one_line_error(run("encode", small_image, "-o", tmp_path / "x.fasta", "--primer-f", "AAAAAAAAAAAAAAAAAAAA"),
                          "primer")
    r = run("simulate", fasta, "-o", tmp_path / "r.fq", "--sub-rate", "2")
    assert r.exit_code != 0 and "Traceback" not in r.output


@pytest.mark.parametrize("args, fragment", [
    (["encode", "x.png", "-o", "y.fasta", "--rate", "0"], "Invalid value for '--rate'"),
    (["simulate", "x.fasta", "-o", "y.fq", "--coverage", "0"], "Invalid value for '--coverage'"),
    (["encode"], "Missing argument 'IMAGE...'"),
    (["encode", "x.png", "-o", "y.fasta", "--rate", "nan"], "'nan' is not a finite number"),
    (["encode", "x.png", "-o", "y.fasta", "--quality", "nan"], "'nan' is not a finite number"),
    (["--bogus"], "No such option '--bogus'"),
    (["nosuchcommand"], "No such command 'nosuchcommand'"),
])
def test_usage_errors_are_one_line(args, fragment):
    r = CliRunner().invoke(main, args)
    lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
    assert r.exit_code == 2 and len(lines) == 1, r.output
    assert lines[0].startswith("dnaimg: error: ") and fragment in lines[0] and "--help)" in lines[0], lines[0]


def test_help_shows_ranges_only_where_there_are_bounds():
    r = run("encode", "--help")
    assert r.exit_code == 0 and "--quality Q" in r.output and "None]" not in r.output, r.output
    assert "[x>0]" in r.output                                   # --rate keeps its bound


def test_models_are_listed_with_their_numbers_in_order():
    from dnaimg.zoo.registry import list_models, natural_key
    names = [c["name"] for c in list_models("compact") if c["name"].startswith("compact-gray-v")]
    assert names == sorted(names, key=lambda n: int(n.rsplit("v", 1)[1])) and "compact-gray-v10" in names
    assert natural_key("a-v10") > natural_key("a-v9") and natural_key("b") > natural_key("a-v10")
