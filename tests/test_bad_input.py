"""The bad-input matrix: every case gives a correct result or a clear one-line error."""
import dataclasses
import json
import pickle

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import EXAMPLE
from dnaimg.dna import alphabet as dna
from helpers import cli
from dnaimg.codecs.robust import DecodeError, decode_reads, encode_image
from dnaimg.image import load_image
from dnaimg.dna.container import Layout
from dnaimg.dna.header import header_oligos
from dnaimg.zoo.registry import ModelError, load_weights
from dnaimg.zoo.model import CompressiveAutoencoder, ModelConfig


def run(*args):
    return cli(*args, debug=True)


def one_line_error(r, fragment=""):
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dnaimg: error:") and fragment in lines[0], r.output
    assert not lines[0].startswith("dnaimg: error: unexpected "), r.output


@pytest.fixture(scope="module")
def two_images():
    base = Image.open(EXAMPLE).convert("RGB")
    a = np.asarray(base.crop((0, 0, 192, 128)))
    b = np.asarray(base.crop((300, 200, 428, 328)))
    return encode_image(a), encode_image(b)


@pytest.mark.parametrize("kind", ["gray", "palette", "rgba", "gray16", "tiny1x1", "tiny5x3", "cmyk"])
def test_odd_images_encode_and_decode(kind, tmp_path):
    base = Image.open(EXAMPLE).convert("RGB").crop((200, 100, 248, 140))
    im = {"gray": base.convert("L"), "palette": base.convert("P"), "rgba": base.convert("RGBA"),
          "gray16": Image.fromarray((np.asarray(base.convert("L")).astype(np.uint16) * 257)),
          "tiny1x1": base.crop((0, 0, 1, 1)), "tiny5x3": base.crop((0, 0, 5, 3)),
          "cmyk": base.convert("CMYK")}[kind]
    p = tmp_path / f"{kind}.{'jpg' if kind == 'cmyk' else 'png'}"
    im.save(p)
    arr = load_image(p)
    assert arr.dtype == np.uint8 and arr.shape == (im.height, im.width, 3)
    if kind == "gray16":   # 16-bit is scaled to 8 bits, not clipped
        assert arr.max() > 100
    extra = {"rgba": ["--flatten"], "gray16": ["--to-8bit"]}.get(kind, [])     # else refused (test_image_modes)
    r = run("encode", p, "-o", tmp_path / "x.fasta", "--codec", "robust", "-q", *extra)
    assert r.exit_code == 0, r.output
    r = run("decode", tmp_path / "x.fasta", "-o", tmp_path / "x.png", "-q", "--strict")
    assert r.exit_code == 0, r.output
    out = Image.open(tmp_path / "x.png")
    assert out.size == im.size and out.mode == ("L" if kind in ("gray", "gray16") else "RGB")


def test_reads_with_n_lowercase_and_wrong_lengths(two_images):
    enc, _ = two_images
    rng = np.random.default_rng(1)
    reads = []
    for o in enc.oligos:
        s = dna.decode(o)
        for copy in range(3):
            t = list(s.lower() if copy == 0 else s)
            if copy == 1:
                t[rng.integers(60, 180)] = "N"
            reads.append("".join(t))
        reads.append(s[: rng.integers(5, 120)])          # truncated read
        reads.append(s + "ACGTTGCA" * 10)                  # overlong read (adapter read-through)
    rng.shuffle(reads)
    res = decode_reads(reads)
    assert res.report["latent_exact"]
    assert res.report["reads"]["rejected_too_short"] + res.report["reads"]["rejected_bad_index"] > 0


@pytest.mark.parametrize("fraction", [0.1, 0.5])
def test_other_image_mixed_in_is_never_blended(two_images, fraction, tmp_path):
    a, b = two_images
    rng = np.random.default_rng(2)
    na = 10 * len(a.oligos)
    nb = int(na * fraction / (1 - fraction))
    reads = [dna.decode(a.oligos[i]) for i in rng.integers(0, len(a.oligos), na)]
    reads += [dna.decode(b.oligos[i]) for i in rng.integers(0, len(b.oligos), nb)]
    reads += [dna.decode(o) for o in a.oligos + b.oligos]   # every oligo at least once
    rng.shuffle(reads)
    res = decode_reads(reads)
    chosen = a if res.header.tag == a.header.tag else b
    assert res.report["latent_exact"] and np.array_equal(res.symbols, chosen.symbols)
    assert len(res.report["images_present"]) == 2
    other = b if chosen is a else a
    res2 = decode_reads(reads, tag=other.header.tag)
    assert res2.report["latent_exact"] and np.array_equal(res2.symbols, other.symbols)
    # the CLI says so and offers --select
    p = tmp_path / "mixed.fasta"
    p.write_text("".join(f">r{i}\n{s}\n" for i, s in enumerate(reads)))
    r = run("decode", p, "-o", tmp_path / "m.png", "-q")
    assert r.exit_code == 0 and "--select" in r.output and "warning: the reads hold" in r.output
    r = run("decode", p, "-o", tmp_path / "m2.png", "-q", "--json", "--select", f"{other.header.tag:02x}")
    assert r.exit_code == 0 and json.loads(r.output)["image"]["tag"] == f"{other.header.tag:02x}"


def test_contradictory_headers(two_images):
    a, _ = two_images
    meta = dataclasses.replace(a.params, width=a.params.width + 8).pack()
    fake = dataclasses.replace(a.header, meta=meta)
    parts = a.n_header // 3
    # copy 0 says one thing, copy 1 another: both pass their checksum
    reads = a.oligos[a.n_header:] + header_oligos(Layout(), a.header.pack(), a.header.tag, 2)[:parts] + \
        header_oligos(Layout(), fake.pack(), fake.tag, 2)[parts:]
    with pytest.raises(DecodeError, match="contradictory headers"):
        decode_reads(reads)


def test_unknown_format_version(two_images):
    a, _ = two_images
    v5 = dataclasses.replace(a.header, version=5)     # (3: pools, 4: markers, both read since dnaimg 0.3)
    with pytest.raises(DecodeError, match="format version 5"):
        decode_reads(a.oligos[a.n_header:] + header_oligos(Layout(), v5.pack(), v5.tag))


def test_unknown_model_id(two_images):
    a, _ = two_images
    other = dataclasses.replace(a.header, meta=dataclasses.replace(a.params, model_id=12345).pack())
    with pytest.raises(ModelError, match="not among the installed models"):
        decode_reads(a.oligos[a.n_header:] + header_oligos(Layout(), other.pack(), other.tag))


def test_strict_exit_status(two_images, tmp_path):
    a, _ = two_images
    p = tmp_path / "a.fasta"
    p.write_text("".join(f">o{i}\n{dna.decode(o)}\n" for i, o in enumerate(a.oligos)))
    assert run("decode", p, "-o", tmp_path / "a.png", "-q", "--strict").exit_code == 0
    dropped = tmp_path / "d.fasta"
    dropped.write_text("".join(f">o{i}\n{dna.decode(o)}\n" for i, o in enumerate(a.oligos) if i % 7 != 3))
    r = run("decode", dropped, "-o", tmp_path / "d.png", "-q", "--strict")
    assert r.exit_code == 3 and "strict" in r.output
    assert (tmp_path / "d.png").exists()


def test_hostile_model_files_are_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))
    p = tmp_path / "evil.safetensors"
    p.write_bytes(pickle.dumps({"w": Evil()}))
    with pytest.raises(ModelError, match="cannot read"):
        load_weights(CompressiveAutoencoder(ModelConfig(channels=4)), p)


def test_broken_model_folder_gives_one_line_error(tmp_path, monkeypatch, two_images):
    a, _ = two_images
    name = a.model      # the model the fixture's DNA names
    (tmp_path / f"{name}.json").write_text(json.dumps({"name": name, "architecture": {"channels": 32, "levels": 9},
                                                       "codeword_nt": 2}))
    (tmp_path / f"{name}.safetensors").write_bytes(b"garbage")
    monkeypatch.setenv("DNAIMG_MODELS", str(tmp_path))
    import dnaimg.zoo.registry as reg
    monkeypatch.setattr(reg, "_CACHE", {})
    p = tmp_path / "a.fasta"
    p.write_text("".join(f">o{i}\n{dna.decode(o)}\n" for i, o in enumerate(a.oligos)))
    one_line_error(run("decode", p, "-o", tmp_path / "a.png"), "cannot read model weights")


def test_unexpected_errors_one_line_for_users_raised_under_debug():
    """friendly(): a library error is one line either way; an unexpected exception is one line
    ("unexpected ...") for a user, and raised as it is with DNAIMG_DEBUG=1 (as the tests run)."""
    import click
    from dnaimg.cli import friendly

    @click.command()
    @click.argument("what")
    @friendly
    def boom(what):
        raise ModelError("no such model") if what == "model" else RuntimeError("a bug")

    plain = CliRunner(env={"DNAIMG_DEBUG": None})
    debug = CliRunner(env={"DNAIMG_DEBUG": "1"})
    for runner in (plain, debug):
        r = runner.invoke(boom, ["model"])
        assert r.exit_code == 1 and r.output == "dnaimg: error: no such model\n", r.output
    r = plain.invoke(boom, ["bug"])
    assert r.exit_code == 1 and r.output == "dnaimg: error: unexpected RuntimeError: a bug\n", r.output
    with pytest.raises(RuntimeError, match="a bug"):
        debug.invoke(boom, ["bug"], catch_exceptions=False)


def test_model_of_another_codec_and_noise_trained_mismatch(tmp_path):
    src = tmp_path / "a.png"
    Image.open(EXAMPLE).convert("RGB").crop((0, 0, 48, 32)).save(src)
    out = tmp_path / "a.fasta"
    one_line_error(run("encode", src, "-o", out, "--codec", "robust", "--model", "compact-ms-v3"),
                   "model compact-ms-v3 is a compact-codec model, not a robust-codec one")
    one_line_error(run("encode", src, "-o", out, "--codec", "robust", "--noise-trained", "--model", "cae32-mr"),
                   "model cae32-mr is not noise-trained")
    assert not out.exists()
    # --noise-trained alone: the default model's noise-trained twin (it was ignored before)
    r = run("encode", src, "-o", out, "--codec", "robust", "--noise-trained", "--json", "-q")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output[r.output.index("{"):])["model"] == "cae32-l9-noise"
