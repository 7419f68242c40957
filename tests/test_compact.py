"""The compact codec: entropy-coded latent through the container, exact tables, lost oligos.

Most tests use the small model committed beside the golden file (tests/golden/compact-model),
trained by `dnaimg train --arch compact` for a few hundred steps: its pixels are poor, but every
mechanism is the shipped models' one.  The last tests load every shipped compact model."""
from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dnaimg.image import load_image, psnr

ROOT = Path(__file__).resolve().parent
TINY = ROOT / "golden" / "compact-model"
KODAK = ROOT.parent.parent / "shared" / "data" / "kodak"
EXAMPLE = ROOT.parent / "examples"


@pytest.fixture
def tiny_models(monkeypatch):
    monkeypatch.setenv("DNAIMG_MODELS", str(TINY))
    from dnaimg.codecs import compact
    compact._CACHE.clear()
    yield "compact-tiny"
    compact._CACHE.clear()


def _image(h=96, w=128):
    p = ROOT / "golden" / "v2" / "source.png"
    img = load_image(p)                                  # 64 x 96, tiled to the size asked
    reps = (-(-h // img.shape[0]), -(-w // img.shape[1]), 1)
    return np.ascontiguousarray(np.tile(img, reps)[:h, :w])


def test_round_trip_is_exact_and_reports_rates(tiny_models):
    from dnaimg import api
    img = _image()
    enc = api.encode(img, "compact", model=tiny_models, quality=4)
    r = enc.rates()
    assert r["codec"] == "compact" and r["rate_index"] == 4.0
    assert len(enc.written.header.streams) == 2
    z, y = enc.written.plans
    assert z.outer.blocks and z.parity_oligos >= 0.5 * z.n_data - 1       # the hyper-latent: stronger outer code
    dec = api.decode([s for _, s in enc.fasta_records()])
    assert dec.exact and dec.codec == "compact"
    assert dec.report["latent"]["latent_values_lost"] == 0
    assert dec.image.shape == img.shape and dec.image.dtype == np.uint8
    again = api.decode([s for _, s in enc.fasta_records()][::-1])
    assert np.array_equal(again.image, dec.image)


def test_rate_index_orders_the_rate(tiny_models):
    from dnaimg import api
    img = _image()
    sizes = [api.encode(img, "compact", model=tiny_models, quality=q).rates()["data_oligos"] for q in (0, 3, 6)]
    assert sizes[0] <= sizes[1] <= sizes[2] and sizes[0] < sizes[2]


def test_rate_cap_is_met(tiny_models):
    from dnaimg import api
    img = _image()
    top = api.encode(img, "compact", model=tiny_models, quality=6).rates()["total_nt_per_pixel"]
    low = api.encode(img, "compact", model=tiny_models, quality=0).rates()["total_nt_per_pixel"]
    cap = (top + low) / 2
    r = api.encode(img, "compact", model=tiny_models, rate=cap).rates()
    assert r["total_nt_per_pixel"] <= cap
    from dnaimg.codecs.base import RateError
    with pytest.raises(RateError, match=f"compact: even its lowest rate needs {low:.3f} total nt/px, above --rate "):
        api.encode(img, "compact", model=tiny_models, rate=low * 0.5)


def test_off_grid_rate_index_is_refused(tiny_models):
    from dnaimg import api
    from dnaimg.codecs.base import CodecError
    with pytest.raises(CodecError, match=r"rate indexes \(--quality\) 0 to \d+ in steps of 1/8, not 1.3"):
        api.encode(_image(), "compact", model=tiny_models, quality=1.3)


def test_lost_oligos_beyond_the_outer_code_cost_scattered_values(tiny_models):
    from dnaimg import api
    img = _image(192, 256)
    enc = api.encode(img, "compact", model=tiny_models, quality=6, redundancy=0.0)
    clean = api.decode([s for _, s in enc.fasta_records()])
    names_seqs = list(enc.fasta_records())
    rng = random.Random(5)
    out = {}
    for loss in (0.1, 0.3):
        keep = [s for n, s in names_seqs if "_s1_" not in n or rng.random() > loss]
        dec = api.decode(keep)
        lat = dec.report["latent"]
        assert not dec.exact and lat["packets_lost"] > 0 and dec.image is not None
        frac = lat["latent_values_lost"] / lat["latent_values"]
        lost_packets = lat["packets_lost"] / lat["packets"]
        hit = (lat["packets_lost"] + lat["packets_cut"]) / lat["packets"]
        assert lat["packets_cut"] > 0           # (its first oligo read, a later one lost)
        # a lost packet costs its share, a cut one what follows its first lost oligo, no more
        assert lost_packets - 0.05 < frac < hit - 0.25 * lat["packets_cut"] / lat["packets"]
        assert hit < 1 - (1 - loss) ** compact_rows(enc) + 0.15
        out[loss] = psnr(clean.image, dec.image)
    assert out[0.3] < out[0.1] < 99        # more loss, less quality (against the clean decode)


def test_a_lost_hyper_latent_is_refused_not_drawn(tiny_models):
    # every value's tables come from the hyper-latent: past its outer code there is no image to draw
    from dnaimg import api
    from dnaimg.codecs.base import DecodeError
    enc = api.encode(_image(192, 256), "compact", model=tiny_models, quality=6, redundancy=0.0)
    names_seqs = list(enc.fasta_records())
    z = [s for n, s in names_seqs if "_s0_" in n]
    assert len(z) >= 3
    keep = [s for n, s in names_seqs if "_s0_" not in n] + z[: len(z) // 3]
    with pytest.raises(DecodeError, match="hyper-latent stream, which every part of the image needs, could not be rebuilt"):
        api.decode(keep)
    assert api.decode([s for _, s in names_seqs]).exact


def compact_rows(enc) -> int:
    from dnaimg.codecs.compact import CompactParams
    return CompactParams.unpack(enc.written.header.meta).packet_rows


def test_model_id_is_the_weights_hash(tiny_models, tmp_path, monkeypatch):
    """DNA written with one set of weights is never decoded with another of the same name."""
    import shutil
    from dnaimg import api
    from dnaimg.codecs import compact
    from dnaimg.codecs.base import DecodeError
    enc = api.encode(_image(), "compact", model=tiny_models, quality=2)
    d = tmp_path / "models"
    d.mkdir()
    shutil.copy(TINY / "compact-tiny.safetensors", d / "compact-tiny.safetensors")
    card = json.loads((TINY / "compact-tiny.json").read_text())
    with open(d / "compact-tiny.safetensors", "r+b") as f:        # other weights, same name, honest card
        f.seek(-8, 2)
        f.write(b"\x00" * 8)
    card["weights_sha256"] = hashlib.sha256((d / "compact-tiny.safetensors").read_bytes()).hexdigest()
    (d / "compact-tiny.json").write_text(json.dumps(card))
    monkeypatch.setenv("DNAIMG_MODELS", str(d))
    compact._CACHE.clear()
    with pytest.raises(DecodeError, match="weights [0-9a-f]{8}, which are not installed"):
        api.decode([s for _, s in enc.fasta_records()])


_DETERMINISM = r"""
import hashlib, json, sys, torch
from dnaimg import api
threads, onednn, precision = int(sys.argv[2]), sys.argv[3] == "on", sys.argv[4]
torch.set_num_threads(threads)
torch.backends.mkldnn.enabled = onednn
from dnaimg.dna.seqio import ReadBatches
res = api.decode(ReadBatches(sys.argv[1]), precision=precision)
from dnaimg.codecs import compact
print(json.dumps({"exact": res.exact, "image": hashlib.sha256(res.image.tobytes()).hexdigest()}))
"""


def test_same_symbols_and_image_whatever_threads_precision_onednn(tiny_models, tmp_path):
    from dnaimg import api
    from dnaimg.dna.seqio import write_fasta
    img = _image(128, 192)
    enc = api.encode(img, "compact", model=tiny_models, quality=5)
    fa = tmp_path / "c.fasta"
    write_fasta(fa, enc.fasta_records())
    env = {**os.environ, "DNAIMG_MODELS": str(TINY)}
    outs = []
    for threads, onednn, prec in ((1, "on", "fp32"), (2, "on", "auto"), (2, "off", "fp32"), (1, "off", "auto")):
        r = subprocess.run([sys.executable, "-c", _DETERMINISM, str(fa), str(threads), onednn, prec], env=env,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        outs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    assert all(o["exact"] for o in outs)
    assert len({o["image"] for o in outs}) == 1, outs
    # bf16 (asked for explicitly): the same symbols, pixels within rounding of the fp32 ones
    from dnaimg.dna.seqio import ReadBatches
    a = api.decode(ReadBatches(fa), precision="fp32")
    b = api.decode(ReadBatches(fa), precision="bf16")
    assert a.exact and b.exact and psnr(a.image, b.image) > 35.0


def test_integer_h_s_is_exact_under_other_settings(tiny_models):
    import torch
    from dnaimg.codecs import compact
    model, t, _ = compact.load(tiny_models)
    rng = np.random.default_rng(0)
    z = rng.integers(-6, 7, size=(1, model.cfg.N, 5, 7))
    mu1, s1 = t.h_s(z)
    old = (torch.get_num_threads(), torch.backends.mkldnn.enabled)
    try:
        torch.set_num_threads(1)
        torch.backends.mkldnn.enabled = False
        mu2, s2 = t.h_s(z)
    finally:
        torch.set_num_threads(old[0])
        torch.backends.mkldnn.enabled = old[1]
    assert np.array_equal(mu1, mu2) and np.array_equal(s1, s2)
    # the float64 evaluation is exact: every value is an integer well inside 2**53
    assert np.abs(mu1).max() < 2 ** 40


def test_cli_encode_decode(tiny_models, tmp_path):
    from click.testing import CliRunner
    from PIL import Image
    from dnaimg.cli import main
    src = tmp_path / "in.png"
    Image.fromarray(_image()).save(src)
    r = CliRunner().invoke(main, ["encode", str(src), "-o", str(tmp_path / "o.fasta"), "--codec", "compact",
                                  "--model", tiny_models, "--quality", "2", "-q"])
    assert r.exit_code == 0, r.output
    assert "compact-tiny rate index 2" in r.output
    r = CliRunner().invoke(main, ["decode", str(tmp_path / "o.fasta"), "-o", str(tmp_path / "o.png"), "-q",
                                  "--strict", "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.output[r.output.index("{"):])
    assert rep["exact"] is True and rep["image"]["codec"] == "compact"


def _shipped():
    from dnaimg.zoo.registry import list_models
    return [c["name"] for c in list_models("compact")]


@pytest.mark.parametrize("name", _shipped())
def test_every_shipped_compact_model_round_trips(name):
    from dnaimg import api
    from dnaimg.codecs import compact
    model, tables, card = compact.load(name)
    img = np.ascontiguousarray(load_image(EXAMPLE / "coffee.png")[:256, :384])
    if card["architecture"].get("gray"):               # a one-channel model: the luma of the same crop
        from dnaimg.image import gray_of_rgb
        img = gray_of_rgb(img)
    enc = api.encode(img, "compact", model=name, quality=4)
    dec = api.decode([s for _, s in enc.fasta_records()])
    assert dec.exact and dec.report["latent"]["model"] == name
    assert psnr(img, dec.image) > card.get("test_psnr_floor_db", 24.0)


def test_info_names_the_weights(tiny_models):
    from click.testing import CliRunner
    from dnaimg.cli import main
    r = CliRunner().invoke(main, ["info", str(ROOT / "golden" / "compact" / "compact-source.fasta")])
    assert r.exit_code == 0, r.output
    assert "codec            compact, model compact-tiny" in r.output
    assert "96x64 px, rate index 5, weights b03decd7, packets of 1 oligos" in r.output


def test_integer_h_s_products_equal_the_convolutions():
    """The integer hyper-synthesis runs one matrix product per kernel tap (no unfolded copy of its
    input): the same integers as F.conv2d / F.conv_transpose2d, at the extremes of its ranges."""
    import torch
    import torch.nn.functional as F

    from dnaimg.zoo.exact import ACT_MAX, W_BITS, _conv_exact, _deconv_exact
    g = torch.Generator().manual_seed(0)
    for ci, co, k, s, p, h, w in [(16, 24, 5, 2, 2, 7, 9), (24, 20, 3, 1, 1, 11, 6), (8, 8, 5, 2, 2, 1, 1)]:
        a = torch.randint(-ACT_MAX, ACT_MAX + 1, (1, ci, h, w), generator=g).double()
        wd = torch.randint(-2 ** W_BITS + 1, 2 ** W_BITS, (ci, co, k, k), generator=g).double()
        assert torch.equal(_deconv_exact(a, wd, s, p, s - 1),
                           F.conv_transpose2d(a, wd, None, stride=s, padding=p, output_padding=s - 1))
        wc = torch.randint(-2 ** W_BITS + 1, 2 ** W_BITS, (co, ci, k, k), generator=g).double()
        assert torch.equal(_conv_exact(a, wc, s, p), F.conv2d(a, wc, None, stride=s, padding=p))
