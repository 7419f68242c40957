"""The wavelet models' context model (dnaimg.zoo.context): a fitted table that picks the coder's
table from what a latent position has already coded; shipped as compact-gray-v4, which extends
compact-gray-v3."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from dnaimg import api
from dnaimg.codecs import arith, compact
from dnaimg.image import psnr
from dnaimg.zoo import wavelet
from dnaimg.zoo.registry import ModelError, models_dir, sha256_file

from test_compact_wavelet import _gray_image

CTX_MODEL, BASE = "compact-gray-v4", "compact-gray-v3"


@pytest.fixture(autouse=True)
def _fresh_cache():
    compact._CACHE.clear()
    yield
    compact._CACHE.clear()


V6_MODEL = "compact-gray-v6"


def _no_search(monkeypatch, refine: bool = True) -> None:
    """The compact encoder with h_a's hyper-latent (no dnaimg.codecs.zsearch), and with
    ``refine=False`` the RDO's symbols (no dnaimg.codecs.refine)."""
    orig = compact.encode
    monkeypatch.setattr(compact, "encode", lambda *a, **k: orig(*a, **{**k, "search": False,
                                                                         **({} if refine else {"refine": False})}))


def _photo_gray() -> np.ndarray:
    from pathlib import Path
    src = Path(__file__).resolve().parent / "golden" / "v2" / "source.png"
    img = Image.open(src).convert("L")
    return np.asarray(img.resize((img.width * 4, img.height * 4), Image.LANCZOS))      # 256 x 384


def test_context_layout_is_the_latent_layout():
    """channel_of names the channel the analysis puts a subband value in (pixel_unshuffle order),
    and every neighbour is coded before the value it serves."""
    for f in (1, 2, 4, 8):
        for band in range(3):
            sub = torch.arange(f * f * 6, dtype=torch.float32).view(1, 1, 2 * f, 3 * f)
            ch = F.pixel_unshuffle(sub, f) if f > 1 else sub
            for dy in range(f):
                for dx in range(f):
                    c = wavelet.channel_of(f, band, dy, dx) - f * f - band * f * f      # within the subband
                    assert float(ch[0, c, 1, 2]) == float(sub[0, 0, f + dy, 2 * f + dx])
    nbr, wts, cls = wavelet.context_layout(1)
    assert (nbr < np.arange(256)[:, None]).all() and cls[0] == 0 and (cls[1:] >= 1).all() and cls.max() == 12
    # the finest HH value at (3, 5): left, above, two diagonals, LH and HL there, its parent
    c = wavelet.channel_of(8, 2, 3, 5)
    got = {(int(j), int(w)) for j, w in zip(nbr[c], wts[c]) if j >= 0}
    want = {(wavelet.channel_of(8, 2, 3, 4), 2), (wavelet.channel_of(8, 2, 2, 5), 2),
            (wavelet.channel_of(8, 2, 2, 4), 1), (wavelet.channel_of(8, 2, 2, 6), 1),
            (wavelet.channel_of(8, 0, 3, 5), 2), (wavelet.channel_of(8, 1, 3, 5), 2),
            (wavelet.channel_of(4, 2, 1, 2), 2)}
    assert got == want


def test_shipped_context_model_is_its_base_with_a_context():
    model, t, card = compact.load(CTX_MODEL)
    _, t0, card0 = compact.load(BASE)
    assert card["extends"] == BASE and card["context"]["base_weights_sha256"] == card0["weights_sha256"]
    assert t0.ctx is None and t.ctx is not None
    assert np.array_equal(t.gain[:57], t0.gain) and np.array_equal(t.y_cdf, t0.y_cdf)
    nbr, wts, cls, edges, remap = t.ctx
    arith.check_context(t.ctx, t.y_cdf.shape[0])
    assert np.array_equal(remap[0], np.broadcast_to(np.arange(64)[:, None], remap[0].shape))     # LL4: own table
    assert (remap[1:] != np.arange(64)[None, :, None]).mean() > 0.3
    # more neighbours busy -> a wider table (the scale table grows with the index)
    assert (np.diff(remap[12, 20:40], axis=-1) >= 0).mean() > 0.8
    assert compact.weights_id(card) != compact.weights_id(card0)


@pytest.mark.parametrize("make", [_photo_gray, _gray_image])
def test_context_model_codes_the_same_image_in_fewer_bits(make, monkeypatch):
    """The coder's context: the same rate in at least 5 % fewer bytes, about as good an image (both
    drawn with their post-filters as they are: the post-filter gain, which helps v3's more, is
    not what is compared here)."""
    monkeypatch.setattr(compact, "fit_gain", lambda *a: compact.GAIN_ONE)
    img = make()
    out = {}
    for name in (BASE, CTX_MODEL):
        enc = api.encode(img, "compact", model=name, quality=3.0)
        dec = api.decode([s for _, s in enc.fasta_records()])
        assert dec.exact and dec.image.shape == img.shape
        out[name] = (enc.info["stream_bytes"], psnr(img, dec.image))
    (b0, p0), (b1, p1) = out[BASE], out[CTX_MODEL]
    assert b1 < 0.95 * b0
    assert p1 > p0 - 0.3


def test_context_model_loses_only_what_lost_oligos_held(monkeypatch):
    """Oligos lost beyond the outer code: the packets that remain decode exactly (every value the
    decoder calls known is the encoder's), the lost ones as the mean."""
    img = _photo_gray()
    _no_search(monkeypatch, refine=False)     # (h_a's hyper-latent and the RDO's symbols, as a fresh Analysis codes)
    enc = api.encode(img, "compact", model=CTX_MODEL, quality=4.0, redundancy=0.0)
    monkeypatch.undo()
    sym = compact.Analysis(img, CTX_MODEL).coded(32)[0]       # what the encoder coded (its context adapted)
    seen = []
    real = arith.decode_packets
    monkeypatch.setattr(arith, "decode_packets", lambda *a, **k: seen.append(real(*a, **k)) or seen[-1])
    rng = np.random.default_rng(4)
    keep = [s for name, s in enc.fasta_records() if "_s1_data" not in name or rng.random() > 0.1]
    dec = api.decode(keep)
    assert dec.image is not None and dec.image.shape == img.shape
    rep = dec.report["latent"]
    assert rep["model"] == CTX_MODEL and rep["packets_lost"] + rep["packets_cut"] > 0 and rep["latent_values_lost"] > 0
    vals, known = seen[-1]
    M, h, w = sym.shape
    flat, _ = compact._y_layout(np.zeros((M, h, w), np.int64), h, w)
    want = sym.reshape(-1)[flat]
    assert known.sum() > 0.7 * known.size
    assert np.array_equal(vals[known], want[known])
    assert psnr(img, dec.image) > 25.0


def _copy_models(tmp_path, monkeypatch):
    d = tmp_path / "models"
    d.mkdir()
    for n in (BASE, CTX_MODEL, "compact-gray-v2"):
        for ext in ("json", "safetensors"):
            shutil.copy(models_dir() / f"{n}.{ext}", d / f"{n}.{ext}")
    monkeypatch.setenv("DNAIMG_MODELS", str(d))
    return d


def test_a_context_model_checks_its_base(tmp_path, monkeypatch):
    d = _copy_models(tmp_path, monkeypatch)
    for ext in ("json", "safetensors"):
        (d / f"{BASE}.{ext}").rename(tmp_path / f"{BASE}.{ext}")
    with pytest.raises(ModelError, match=f"extends {BASE}, which is not installed"):
        compact.load(CTX_MODEL)
    for ext in ("json", "safetensors"):
        (tmp_path / f"{BASE}.{ext}").rename(d / f"{BASE}.{ext}")
    compact._CACHE.clear()
    card = json.loads((d / f"{CTX_MODEL}.json").read_text())
    card["extends"] = "compact-gray-v2"
    (d / f"{CTX_MODEL}.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="made for other weights of compact-gray-v2"):
        compact.load(CTX_MODEL)
    compact._CACHE.clear()
    # a context that would read out of its tables: refused, even with a matching hash
    from safetensors.numpy import load_file, save_file
    card["extends"] = BASE
    t = load_file(str(d / f"{CTX_MODEL}.safetensors"))
    t["ctx.remap"] = t["ctx.remap"].copy()
    t["ctx.remap"][3, 10, 2] = 200
    save_file(t, str(d / f"{CTX_MODEL}.safetensors"))
    card["weights_sha256"] = sha256_file(d / f"{CTX_MODEL}.safetensors")
    (d / f"{CTX_MODEL}.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="inconsistent context tables"):
        compact.load(CTX_MODEL)


def _image_folder(tmp_path, images) -> "Path":
    """tmp_path/imgs with the images as 0.png, 1.png, ... (training data for a fitter)."""
    data = tmp_path / "imgs"
    data.mkdir()
    for i, a in enumerate(images):
        Image.fromarray(a).save(data / f"{i}.png")
    return data


def test_fitting_a_context_writes_a_model_that_codes(tmp_path, monkeypatch):
    from dnaimg.zoo.context import build
    d = _copy_models(tmp_path, monkeypatch)
    data = _image_folder(tmp_path, [_gray_image(128, 160, seed=i) for i in range(3)] + [_photo_gray()])
    card = build(BASE, "ctx-test", [str(data)], rows=[16, 32], out_dir=d)
    assert card["extends"] == BASE and card["context"]["images"] == 4 and card["context"]["held_out_images"] == 2
    assert (d / "ctx-test.safetensors").exists()
    img = _gray_image(seed=7)
    enc = api.encode(img, "compact", model="ctx-test", quality=2.0)
    dec = api.decode([s for _, s in enc.fasta_records()])
    assert dec.report["image"]["model"] == "ctx-test" and psnr(img, dec.image) > 30.0
    with pytest.raises(ValueError, match="itself a context model"):
        build("ctx-test", "ctx-test2", [str(data)], rows=[16], out_dir=d)


def test_extended_rates_buy_quality_past_the_trained_range():
    """Two rate points above compact-gray-v3's: the gains continue geometrically, inverse gains
    tied; a budget past the trained range buys quality (the base cannot spend it)."""
    _, t, card = compact.load(CTX_MODEL)
    _, t0, _ = compact.load(BASE)
    assert t0.gain.shape[0] == 57 and t.gain.shape[0] == 73
    assert np.array_equal(t.gain[:57], t0.gain) and (np.diff(t.gain[56:].astype(np.float64), axis=0) > 0).all()
    assert np.allclose(t.inv_gain * t.gain, 4096.0, rtol=1e-6)
    assert [p.get("extrapolated", False) for p in card["rate_points"]] == [False] * 8 + [True] * 2
    assert compact.rate_indexes(t)[-1] == 9.0
    img = _photo_gray()
    got = {}
    for q in (7.0, 9.0):
        enc = api.encode(img, "compact", model=CTX_MODEL, quality=q)
        got[q] = psnr(img, api.decode([s for _, s in enc.fasta_records()]).image)
    assert got[9.0] > got[7.0] + 2.0
    from dnaimg.codecs.base import CodecError
    with pytest.raises(CodecError, match=r"compact-gray-v4 codes rate indexes \(--quality\) 0 to 9 in steps of 1/8, not 9.5"):
        api.encode(img, "compact", model=CTX_MODEL, quality=9.5)


def test_fitting_never_rewrites_a_model(capsys):
    from dnaimg.zoo.context import main
    assert main(["--base", BASE, "--name", CTX_MODEL, "--data", "nowhere"]) == 2
    assert "exists" in capsys.readouterr().err and (models_dir() / f"{CTX_MODEL}.json").exists()
    assert main(["--base", BASE, "--name", "x-new", "--data", "nowhere", "--rows", "a,b"]) == 2
    assert "invalid literal" in capsys.readouterr().err


def test_training_with_the_context_in_the_rate():
    """CompactConfig.context: at zero the surrogate changes nothing (a model without it starts the
    same); it learns (gradients reach it); LL4's scale is never changed; gdn models refuse it."""
    from dnaimg.zoo.compact import CompactConfig, CompactHyperprior
    from dnaimg.zoo.train_compact import init_state
    cfg = dict(N=16, M=256, lambdas=(0.004, 0.025, 0.156), gray=True, gdn="square", transform="cdf97",
               conditional="laplace")
    torch.manual_seed(0)
    plain = CompactHyperprior(CompactConfig(**cfg))
    ctx = CompactHyperprior(CompactConfig(**cfg, context=True))
    ckpt = {"model": plain.state_dict(), "config": CompactConfig(**cfg).to_dict(), "step": 3}
    import tempfile
    from pathlib import Path
    with tempfile.TemporaryDirectory() as d:
        torch.save(ckpt, Path(d) / "c.pt")
        assert "context in the rate from zero" in init_state(ctx, Path(d) / "c.pt")
    x = torch.rand(2, 1, 64, 64)
    r = torch.tensor([0.0, 2.0])
    torch.manual_seed(1)
    a = plain(x, r)
    torch.manual_seed(1)
    b = ctx(x, r)
    assert torch.allclose(a["y_lik"], b["y_lik"], rtol=1e-4, atol=1e-9)      # exp(log s): float rounding only
    with torch.no_grad():
        ctx.ctx_a.fill_(0.5)
    torch.manual_seed(1)
    c = ctx(x, r)
    assert torch.equal(c["y_lik"][:, 0], b["y_lik"][:, 0])
    assert not torch.allclose(c["y_lik"][:, 1:], a["y_lik"][:, 1:], rtol=1e-2)
    torch.log2(c["y_lik"]).sum().neg().backward()
    assert float(ctx.ctx_a.grad.abs().sum()) > 0 and float(ctx.ctx_a.grad[0].abs().sum()) == 0
    with pytest.raises(ValueError, match="for the cdf97 transform"):
        CompactHyperprior(CompactConfig(N=16, M=192, gray=True, context=True))


def test_a_cap_is_filled_between_rate_rows(monkeypatch):
    """Under a cap, the encoder spends what the next rate row would overshoot by weakening its
    rate-distortion rounding at the row that fits: more of the budget, a better image, the same
    decoder (the weight is never written).  (Without the refinement, whose top-up would spend
    the plain encoding's spare bits too.)"""
    img = _photo_gray()
    cap = 0.3
    _no_search(monkeypatch, refine=False)
    filled = api.encode(img, "compact", rate=cap)
    monkeypatch.setattr(compact, "FILL_WEIGHTS", ())
    plain = api.encode(img, "compact", rate=cap)
    monkeypatch.undo()
    assert filled.info["rate_index"] == plain.info["rate_index"]
    assert plain.info["rdo_weight"] == 1.0 and filled.info["rdo_weight"] > 1.0
    n_f, n_p = filled.written.oligos.shape[0], plain.written.oligos.shape[0]
    assert n_p < n_f <= cap * img.size / filled.written.oligos.shape[1]
    out_f, out_p = api.decode(filled.written.oligos), api.decode(plain.written.oligos)
    assert out_f.exact and out_p.exact
    assert psnr(img, out_f.image) > psnr(img, out_p.image) + 0.02


def test_no_fill_past_a_rate_index_the_user_named():
    """--quality with --rate is a ceiling: at that very row the encoder does not spend more."""
    img = _photo_gray()
    e = api.encode(img, "compact", rate=5.0, quality=2.0)
    assert e.info["rate_index"] == 2.0 and e.info["rdo_weight"] == 1.0


def test_table_shifts_code_as_documented():
    """FORMAT.md 12.3's code for the table shifts: 0 is "0"; +-k is "1", the sign, k - 1 ones and a
    closing 0 below 4; zero bits to the byte's end."""
    sh = np.array([[0, 1, -1], [4, -4, 3]])
    # 0 | 10 0 | 11 0 | 10 111 | 11 111 | 10 11 0  -> 0100 1101 0111 1111 1101 10(00)
    assert compact.pack_shifts(sh) == bytes([0b01001101, 0b01111111, 0b11011000])
    got, used = compact.unpack_shifts(np.frombuffer(compact.pack_shifts(sh) + b"\xff", np.uint8), 2, 3)
    assert np.array_equal(got, sh) and used == 3
    with pytest.raises(compact.DecodeError, match="ends inside its table shifts"):
        compact.unpack_shifts(np.frombuffer(bytes([0b01001101]), np.uint8), 2, 3)
    with pytest.raises(ValueError, match="beyond"):
        compact.pack_shifts(np.array([[5]]))


@pytest.mark.parametrize("seed", range(5))
def test_table_shifts_round_trip(seed):
    rng = np.random.default_rng(seed)
    sh = rng.integers(-4, 5, size=(13, 15)) * (rng.random((13, 15)) < 0.4)
    b = compact.pack_shifts(sh)
    got, used = compact.unpack_shifts(np.frombuffer(b, np.uint8), 13, 15)
    assert np.array_equal(got, sh) and used == len(b)
    assert 8 * len(b) - 8 < compact.shift_code_bits(sh.ravel()).sum() <= 8 * len(b)


def test_context_adapted_to_an_unfamiliar_image(monkeypatch):
    """A photograph is far from the microscopy and X-rays the gray model's context was fitted on:
    the encoder shifts its tables for the image (metadata version 2), the DNA decodes exactly, and
    the same rate costs fewer bytes than with the model's own tables, for at least as good an image
    (h_a's hyper-latent both times).  compact-gray-v6, whose 3-8 % the README quotes (compact-gray-v7's
    narrow tables already take part of it: 2.9 % on this image)."""
    from pathlib import Path
    _no_search(monkeypatch)
    img = np.asarray(Image.open(Path(__file__).resolve().parents[1] / "examples" / "coffee.png").convert("L"))
    enc = api.encode(img, "compact", quality=3.0, model=V6_MODEL)
    assert compact.CompactParams.unpack(enc.written.header.meta).version == compact.META_VERSION_ADAPTED_GAIN
    assert enc.info["table_shift_bytes"] > 0
    dec = api.decode([s for _, s in enc.fasta_records()])
    assert dec.exact and dec.report["latent"]["table_shifts"] is True
    shifts = compact.Analysis(img, V6_MODEL).coded(24)[3]
    assert shifts is not None and np.count_nonzero(shifts) > 10
    plain = compact.fit_shifts
    try:
        compact.fit_shifts = lambda *a: None
        enc0 = api.encode(img, "compact", quality=3.0, model=V6_MODEL)
    finally:
        compact.fit_shifts = plain
    assert compact.CompactParams.unpack(enc0.written.header.meta).version == compact.META_VERSION_GAIN
    dec0 = api.decode([s for _, s in enc0.fasta_records()])
    assert enc.info["stream_bytes"] < 0.97 * enc0.info["stream_bytes"]
    assert psnr(img, dec.image) > psnr(img, dec0.image) - 0.05


def test_shifts_need_a_context():
    """Metadata version 2 names table shifts; a model without a context has none to shift: a
    one-line error, not a decode with the wrong tables."""
    from dnaimg.dna.streams import Received
    e = compact.encode(_photo_gray(), packet_bytes=56, rate_index=3.0, model=BASE)
    rec = [Received("bytes", s.data, True, None, {"row_bytes": 28}) for s in e.streams]
    p = compact.CompactParams.unpack(e.meta)
    assert p.version == compact.META_VERSION_GAIN       # (a post-filter gain, no shifts)
    assert compact.decode(rec, p.pack())[1]["table_shifts"] is False
    for v in compact.ADAPTED_VERSIONS:
        p.version = v
        with pytest.raises(compact.DecodeError, match=f"metadata version {v} \\(table shifts\\) for model .* has no context"):
            compact.decode(rec, p.pack())


def test_packets_are_sixteen_rows_behind_an_outer_code():
    """With an outer code (the default 15 %) lost oligos are rebuilt and the latent's packets are
    16 rows (fewer heads and split contexts); without one each lost oligo costs its packet, and
    packets stay 2 rows.  Both decode exactly."""
    img = _photo_gray()
    rows = {}
    for red in (None, 0.1, 0.05, 0.0):
        enc = api.encode(img, "compact", quality=4.0, redundancy=red)
        rows[red] = compact.CompactParams.unpack(enc.written.header.meta).packet_rows
        dec = api.decode([s for _, s in enc.fasta_records()])
        assert dec.exact and dec.report["latent"]["packets_lost"] == 0
    assert rows == {None: 16, 0.1: 16, 0.05: 2, 0.0: 2}
    assert compact.packet_rows(None) == compact.PACKET_ROWS_PROTECTED == 16
    with pytest.raises(ValueError, match="row_bytes or packet_bytes"):
        compact.encode(img, row_bytes=28, packet_bytes=56)


def test_context_tables_in_the_latents_layout():
    """The channel-major kernel (blocks of positions transposed on the fly) gives, value by value,
    the documented rule (the scalar function, run as plain Python), across block boundaries."""
    _, t, _ = compact.load(CTX_MODEL)
    rng = np.random.default_rng(3)
    v = np.round(rng.laplace(0, 2, size=(256, 70))).astype(np.int64)
    tb = rng.integers(0, 64, size=(256, 70))
    got = arith.context_tables_cm(v, tb, t.ctx)
    rule = arith._context_table.py_func
    none = arith.no_positions(70)
    want = np.array([[rule(c, 0, tb[c, g], v[:, g], *arith.full_context(t.ctx), none, g, v.T.reshape(-1), 0)
                      for g in range(70)] for c in range(256)])
    assert np.array_equal(got, want)
    assert np.array_equal(arith.context_tables(v.T, tb.T, t.ctx), want.T)
    assert (want != tb).mean() > 0.3           # the context does change tables
