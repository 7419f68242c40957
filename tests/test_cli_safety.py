"""What a new user hit (issue 12, item 6): inputs overwritten, image files of the wrong format,
--reference checked too late, a closed pipe, the model list, mixed FASTA/FASTQ files."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


from conftest import EXAMPLE, ROOT
from helpers import cli, cli_json


run = cli


def one_line_error(r, *fragments):
    assert r.exit_code == 1, r.output
    lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("dnaimg: error:"), r.output
    for f in fragments:
        assert f in lines[0], lines[0]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("safety")
    img = d / "photo.png"
    Image.open(EXAMPLE).convert("RGB").crop((100, 80, 164, 144)).save(img)
    fa = d / "photo.fasta"
    r = run("encode", img, "-o", fa, "--codec", "png", "-q")
    assert r.exit_code == 0, r.output
    fq = d / "reads.fastq"
    r = run("simulate", fa, "-o", fq, "--preset", "miseq", "--coverage", "6", "-q")
    assert r.exit_code == 0, r.output
    return d, img, fa, fq


def test_encode_refuses_to_overwrite_its_image(work, tmp_path):
    _, img, _, _ = work
    victim = tmp_path / "victim.png"
    victim.write_bytes(img.read_bytes())
    before = victim.read_bytes()
    for out in (victim, tmp_path / "." / "victim.png"):
        one_line_error(run("encode", victim, "-o", out, "-q"), "is an input")
    link = tmp_path / "link.png"
    link.symlink_to(victim)
    one_line_error(run("encode", victim, "-o", link, "-q"), "is an input")
    assert victim.read_bytes() == before


def test_simulate_and_decode_refuse_to_overwrite_their_inputs(work, tmp_path):
    _, img, fa, fq = work
    oligos = tmp_path / "o.fasta"
    oligos.write_bytes(fa.read_bytes())
    one_line_error(run("simulate", oligos, "-o", tmp_path / "." / "o.fasta", "-q"), "is an input")
    one_line_error(run("simulate", oligos, "-o", tmp_path / "r1.fastq", "--paired", oligos, "-q"), "is an input")
    assert oligos.read_bytes() == fa.read_bytes()
    ref = tmp_path / "ref.png"
    ref.write_bytes(img.read_bytes())
    one_line_error(run("decode", fq, "-o", ref, "--reference", ref, "-q"), "is an input")
    assert ref.read_bytes() == img.read_bytes()
    reads = tmp_path / "reads.png"          # reads under an image's name: still never overwritten
    reads.write_bytes(fq.read_bytes())
    one_line_error(run("decode", reads, "-o", reads, "-q"), "is an input")
    one_line_error(run("decode", reads, "-o", reads, "--only", "x", "-q"), "is an input")     # the pool path
    assert reads.read_bytes() == fq.read_bytes()


@pytest.mark.parametrize("suffix,fmt,exact", [(".png", "PNG", True), (".tif", "TIFF", True),
                                              (".webp", "WEBP", True), (".jpg", "JPEG", False)])
def test_decode_writes_the_format_its_suffix_names(work, tmp_path, suffix, fmt, exact):
    _, img, _, fq = work
    out = tmp_path / f"out{suffix}"
    r = run("decode", fq, "-o", out, "-q")
    assert r.exit_code == 0, r.output
    with Image.open(out) as im:
        assert im.format == fmt
        px = np.asarray(im.convert("RGB"))
    orig = np.asarray(Image.open(img).convert("RGB"))
    if exact:
        assert np.array_equal(px, orig)            # png codec: lossless, and so is the file
        assert "warning" not in r.output
    else:
        assert "lossy" in r.output and "warning" in r.output
        assert 30 < 10 * np.log10(255 ** 2 / np.mean((px.astype(float) - orig) ** 2))


def test_decode_refuses_an_unknown_suffix_before_decoding(work, tmp_path):
    _, _, _, fq = work
    for name in ("out.xyz", "out"):
        one_line_error(run("decode", fq, "-o", tmp_path / name, "-q"), "unknown image suffix")
        assert not (tmp_path / name).exists()


def test_reference_missing_is_reported_before_decoding(work, tmp_path):
    _, _, _, fq = work
    out = tmp_path / "out.png"
    missing = tmp_path / "nope.png"
    broken = tmp_path / "broken.fastq"            # would fail the decode: the reference must fail first
    broken.write_text("@r1\nACGT\n+\nIIII\n")
    one_line_error(run("decode", broken, "-o", out, "--reference", missing, "-q"), "nope.png", "no such file")
    assert not out.exists()


def test_reference_of_another_size_leaves_no_image(work, tmp_path):
    _, img, _, fq = work
    other = tmp_path / "other.png"
    Image.open(img).crop((0, 0, 32, 32)).save(other)
    out = tmp_path / "out.png"
    one_line_error(run("decode", fq, "-o", out, "--reference", other, "-q"), "32x32", "64x64", "nothing written")
    assert not out.exists()


def test_closed_pipe_is_quiet(work, tmp_path):
    _, _, fa, _ = work
    big = tmp_path / "many.fasta"
    text = fa.read_text()
    big.write_text(text * 400)                   # ~13,000 lines of output: more than a pipe holds
    exe = Path(sys.executable).parent / "dnaimg"
    cmd = [str(exe), "check", str(big)] if exe.exists() else [sys.executable, "-m", "dnaimg.cli", "check", str(big)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    first = p.stdout.readline()
    p.stdout.close()                            # as `| head -1` does
    err = p.stderr.read().decode()
    p.wait(timeout=120)
    assert first.startswith(b"name\t")
    assert "BrokenPipe" not in err and "unexpected" not in err and "Traceback" not in err, err
    assert p.returncode in (0, 141)


def test_models_show_the_cards_numbers():
    r = run("models")
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    noise = [ln for ln in lines if ln.startswith("  cae32-mr-noise:")]
    assert noise and not any("not measured" in ln for ln in noise), "\n".join(noise)
    assert all("Kodak" in ln and "nt/px" in ln for ln in noise)
    assert any(ln.strip().startswith("substitutions 1 %") for ln in lines)
    if any(ln.rstrip().endswith("*") for ln in lines):
        assert any(ln.startswith("* ") and "default point" in ln for ln in lines)


def test_fasta_then_fastq_refused_by_every_reader(work, tmp_path):
    _, _, fa, fq = work
    mixed = tmp_path / "mixed.fasta"
    mixed.write_text(fa.read_text() + fq.read_text())
    one_line_error(run("decode", mixed, "-o", tmp_path / "x.png", "-q"), "FASTQ records after FASTA ones")
    one_line_error(run("info", mixed), "FASTQ records after FASTA ones")


def test_readme_says_how_to_run_dnaimg_and_on_which_cpu():
    text = (ROOT / "README.md").read_text()
    assert "source .venv/bin/activate" in text and ".venv/bin/dnaimg" in text
    assert "../shared" not in text and "DESIGN.md" not in text
    assert "AMD EPYC" in text
    assert "## Decoding a real sequencing run" in text


def test_oligos_to_standard_output_carry_no_summary(tmp_path):
    # `-o -` writes the FASTA to standard output: the summary (and --json) go to standard error
    src = tmp_path / "a.png"
    Image.open(EXAMPLE).convert("RGB").crop((0, 0, 40, 24)).save(src)
    for extra in ([], ["--json"]):
        p = subprocess.run([sys.executable, "-m", "dnaimg.cli", "encode", str(src), "-o", "-", *extra],
                           capture_output=True, text=True, cwd=ROOT)
        assert p.returncode == 0, p.stderr
        lines = p.stdout.splitlines()
        assert lines and all(ln.startswith(">") or set(ln) <= set("ACGT") for ln in lines), lines[:3]
        assert ("wrote -:" in p.stderr) if not extra else ('"output": "-"' in p.stderr)


def test_gray_decoded_to_webp_is_rgb_with_a_warning(tmp_path):
    src = tmp_path / "g.png"
    Image.open(EXAMPLE).convert("L").crop((0, 0, 40, 24)).save(src)
    fa = tmp_path / "g.fasta"
    assert run("encode", src, "-o", fa, "--codec", "png", "-q").exit_code == 0
    out = tmp_path / "g.webp"
    r = run("decode", fa, "-o", out, "-q")
    assert r.exit_code == 0 and "WebP has no gray mode, so the gray image is written as R = G = B" in r.output, r.output
    with Image.open(out) as im:
        assert im.mode == "RGB" and np.array_equal(np.asarray(im)[..., 0], np.asarray(Image.open(src)))
    r = run("decode", fa, "-o", tmp_path / "g2.png", "-q")
    assert r.exit_code == 0 and "warning" not in r.output


def test_interrupted_simulate_leaves_no_partial_file(work, tmp_path, monkeypatch):
    from dnaimg.dna import seqio
    fa = work[2]
    out = tmp_path / "reads.fastq"
    out.write_text("an earlier run's reads\n")

    def interrupted(path, records):
        with open(path, "w") as f:
            f.write("@read1\nACGT\n+\nIIII\n")          # part of the reads, then ^C
        raise KeyboardInterrupt
    monkeypatch.setattr(seqio, "write_fastq", interrupted)
    r = run("simulate", fa, "-o", out, "-q")
    assert r.exit_code == 1 and "dnaimg: error: interrupted" in r.output, r.output
    assert out.read_text() == "an earlier run's reads\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reads.fastq"]


def test_simulate_refuses_fractional_exact_coverage_and_warns_of_no_reads(work, tmp_path):
    fa = work[2]
    one_line_error(run("simulate", fa, "-o", tmp_path / "a.fastq", "--coverage", "2.5", "--exact-coverage"),
                   "--exact-coverage draws a whole number of reads per oligo, not 2.5")
    r = run("simulate", fa, "-o", tmp_path / "b.fastq", "--coverage", "1", "--dropout", "1", "-q")
    assert r.exit_code == 0 and "dnaimg: warning: no read was drawn" in r.output, r.output


def test_simulate_refuses_off_target_without_an_amplification(work, tmp_path):
    """--off-target only means something with --amplify: given alone it is refused, not ignored."""
    fa = work[2]
    one_line_error(run("simulate", fa, "-o", tmp_path / "a.fastq", "--off-target", "0.2", "-q"),
                   "--off-target is the share of reads from the rest of the pool", "give --amplify too")
    assert not (tmp_path / "a.fastq").exists()
    assert run("simulate", fa, "-o", tmp_path / "b.fastq", "-q").exit_code == 0     # (its default alone: fine)


@pytest.mark.parametrize("name", ["x.png", "x.JPG", "x.fastq", "x.fq.gz", "x.tif"])
def test_encode_refuses_an_output_named_as_an_image_or_reads(work, tmp_path, name):
    _, img, _, _ = work
    one_line_error(run("encode", img, "-o", tmp_path / name, "-q"), "encode writes the oligos as FASTA")
    assert not (tmp_path / name).exists()


def test_check_simulate_and_info_read_standard_input(work, tmp_path):
    """``-`` is standard input for check, simulate and info too (``encode -o - | dnaimg simulate -``),
    gzipped or not: the same lines and the same reads as from the file."""
    import gzip
    _, _, fa, _ = work
    text = fa.read_bytes()
    a, b = run("check", fa), run("check", "-", input=text)
    assert a.exit_code == b.exit_code == 0 and a.output == b.output and "OK" in a.output
    assert run("check", "-", "--summary", input=gzip.compress(text)).output == run("check", fa, "--summary").output
    ra, rb = tmp_path / "a.fastq", tmp_path / "b.fastq"
    assert run("simulate", fa, "-o", ra, "--seed", "3", "-q").exit_code == 0
    r = run("simulate", "-", "-o", rb, "--seed", "3", "-q", input=text)
    assert r.exit_code == 0, r.output
    assert rb.read_text() == ra.read_text() and ra.stat().st_size > 0
    a, b = run("info", fa), run("info", "-", input=text)
    assert a.exit_code == b.exit_code == 0 and a.output == b.output and "codec" in a.output


def test_standard_input_errors_name_it(work, tmp_path):
    _, _, fa, _ = work
    one_line_error(run("check", "-", input=b""), "standard input: no sequences")
    one_line_error(run("check", "-", input=b"hello\n"), "standard input: neither FASTA nor FASTQ")
    one_line_error(run("simulate", "-", "-o", tmp_path / "r.fastq", "--amplify", "photo.png", input=fa.read_bytes()),
                   "--amplify NAME", "standard input (-)", "pair:N")
    assert not (tmp_path / "r.fastq").exists()


def test_info_says_a_classic_codecs_image(work, tmp_path):
    """info reads a classic codec's metadata: size, channels and bit depth (not a hex string)."""
    _, _, fa, _ = work
    r = run("info", fa)
    assert r.exit_code == 0 and "image            64x64 px, 3 channels of 8 bits" in r.output, r.output
    img = tmp_path / "g16.png"
    Image.fromarray((np.arange(48 * 40, dtype=np.uint16).reshape(40, 48) * 27).astype(np.uint16)).save(img)
    f16 = tmp_path / "g16.fasta"
    assert run("encode", img, "-o", f16, "-q").exit_code == 0
    r = run("info", f16)
    assert r.exit_code == 0 and "codec            png" in r.output, r.output
    assert "image            48x40 px, 1 channel of 16 bits" in r.output, r.output
    d = cli_json(run("info", f16, "--json"))
    assert (d["width"], d["height"], d["channels"], d["bit_depth"]) == (48, 40, 1, 16)
