"""Narrow tables for the coder's context (compact-gray-v7): latent tables narrower than the scale
table's first, after the hyperprior's 64, reached only through the context's remap and the
per-image table shifts (FORMAT.md 12.3, "Narrow tables")."""
import json
import shutil

import numpy as np
import pytest
import torch

from dnaimg import api
from dnaimg.codecs import arith, compact
from dnaimg.image import psnr
from dnaimg.zoo.exact import narrow_tables
from dnaimg.zoo.registry import ModelError, models_dir, sha256_file

V7, V6, V5 = "compact-gray-v7", "compact-gray-v6", "compact-gray-v5"


def _p_zero(cdf, off):
    return (cdf[off + 1] - cdf[off]) / 65536


def test_table_order_and_shifts():
    """Without extra tables a shift is ``clip(j + d, 0, 63)`` (as every earlier file); with 8
    narrow ones the order is 71, 70, ..., 64, 0, 1, ..., 63."""
    j = np.arange(64)
    for d in range(-4, 5):
        assert np.array_equal(compact.shift_tables(j, d, 64, 64), np.clip(j + d, 0, 63))
    assert compact.table_order(64, 72)[:9].tolist() == [71, 70, 69, 68, 67, 66, 65, 64, 0]
    moved = lambda j, d: int(compact.shift_tables(np.array([j]), d, 64, 72)[0])  # noqa: E731
    assert [moved(0, -1), moved(64, -1), moved(71, -1), moved(64, 1), moved(63, 1), moved(65, 3), moved(0, -4)] == \
        [64, 65, 71, 0, 63, 1, 67]
    remap = np.repeat(np.arange(64)[None, :, None], 3, axis=2)     # (1 class, 64 tables, 3 buckets)
    remap[0, 0] = [0, 64, 63]
    got = compact.adapt_context((None,) * 4 + (remap,), np.array([[-1, 1, 2]]), 72)[4]
    assert got[0, 0].tolist() == [64, 0, 63] and got[0, 10].tolist() == [9, 11, 12]
    got = compact.adapt_context((None,) * 4 + (np.arange(64)[None, :, None],), np.array([[-2]]))[4]
    assert got[0, :, 0].tolist() == [0, 0] + list(range(62))
    with pytest.raises(ValueError, match="give n_tables"):
        compact.adapt_context((None,) * 4 + (remap,), np.array([[-1, 1, 2]]))


def test_narrow_tables_continue_the_scale_table_down():
    _, t, _ = compact.load(V5)
    cdf, n, off = narrow_tables(8, t.y_cdf.shape[1])
    p0 = [_p_zero(cdf[k], off[k]) for k in range(8)]
    assert _p_zero(t.y_cdf[0], t.y_off[0]) < p0[0] and all(a < b for a, b in zip(p0, p0[1:]))
    assert p0[-1] > 0.99995 and n.tolist() == [6, 6, 4, 4, 4, 4, 4, 4] and off.tolist() == [2, 2, 1, 1, 1, 1, 1, 1]
    for k in range(8):
        assert cdf[k, 0] == 0 and (np.diff(cdf[k, :n[k] + 1]) >= 1).all() and (cdf[k, n[k]:] == 65536).all()


def test_v7_is_v6_with_narrow_tables():
    """compact-gray-v7: v5's network and gains, v6's hyper-latent context, the 64 tables
    unchanged and 8 narrow ones after them, which its remap uses."""
    _, t7, c7 = compact.load(V7)
    _, t6, _ = compact.load(V6)
    assert c7["extends"] == V5 and t7.y_cdf.shape[0] == 72 and t7.thresholds.shape[0] == 64
    assert np.array_equal(t7.y_cdf[:64], t6.y_cdf) and np.array_equal(t7.gain, t6.gain)
    assert all(np.array_equal(a, b) for a, b in zip(t7.zctx, t6.zctx))
    c, n, off = narrow_tables(8, t6.y_cdf.shape[1])
    assert np.array_equal(t7.y_cdf[64:], c) and np.array_equal(t7.y_n[64:], n) and np.array_equal(t7.y_off[64:], off)
    remap = t7.ctx[4]
    assert remap.shape == (13, 64, 15) and (remap >= 64).sum() > 20 and (remap[0] == np.arange(64)[:, None]).all()
    # its neighbourhood: v6's and the values two places left and above (FORMAT.md 12.3)
    from dnaimg.zoo.wavelet import CONTEXT_EDGES, channel_of, context_layout
    nbr, wts, cls = context_layout(1, far=True)
    assert np.array_equal(t7.ctx[0], nbr) and np.array_equal(t7.ctx[1], wts) and np.array_equal(t7.ctx[2], cls)
    assert t7.ctx[3].tolist() == list(CONTEXT_EDGES) and nbr.shape == (256, 11)
    c = channel_of(8, 1, 5, 3)                  # level 1, HL, (5, 3) of its 8 x 8 patch
    row = {int(j): int(w) for j, w in zip(nbr[c], wts[c]) if j >= 0}
    assert row == {channel_of(8, 1, 5, 2): 2, channel_of(8, 1, 4, 3): 2, channel_of(8, 1, 4, 2): 1,
                   channel_of(8, 1, 4, 4): 1, channel_of(8, 0, 5, 3): 2, channel_of(4, 1, 2, 1): 2,
                   channel_of(8, 1, 5, 1): 2, channel_of(8, 1, 3, 3): 2, channel_of(8, 1, 3, 1): 1,
                   channel_of(8, 1, 3, 5): 1}
    v6 = context_layout(1)
    assert all(set(zip(v6[0][k], v6[1][k])) - {(-1, 0)} <= set(zip(nbr[k], wts[k])) for k in range(256))
    # and its own post-filter (dnaimg.zoo.postfit): every other weight is v5's
    m7, m6 = compact.load(V7)[0], compact.load(V6)[0]
    sd7, sd6 = m7.state_dict(), m6.state_dict()
    assert not torch.equal(sd7["g_s.post.net.0.weight"], sd6["g_s.post.net.0.weight"])
    assert all(torch.equal(sd7[k], sd6[k]) for k in sd6 if not k.startswith("g_s.post."))
    assert c7["post_filter"]["held_out_psnr_db_after"] > c7["post_filter"]["held_out_psnr_db_before"]


def _gray_xray_like(h=256, w=320, seed=0):
    """Smooth anatomy-like shading with fine noise: most of the finest subbands round to zero."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 120 + 60 * np.sin(xx / 37.0) * np.cos(yy / 53.0) + 30 * np.exp(-((xx - w / 2) ** 2 + (yy - h / 2) ** 2) / 4000)
    return np.clip(base + rng.normal(0, 1.5, (h, w)), 0, 255).astype(np.uint8)


def test_v7_codes_fewer_bits_than_v6_and_decodes_exactly(monkeypatch):
    """At the same rate row the latent is v6's symbol for symbol but costs fewer bytes, values
    coded with narrow tables among them; the DNA decodes exactly."""
    from test_compact_context import _no_search
    _no_search(monkeypatch)
    img = _gray_xray_like()
    enc6 = api.encode(img, "compact", quality=3.0, model=V6)
    enc7 = api.encode(img, "compact", quality=3.0, model=V7)
    assert enc7.info["stream_bytes"] < 0.99 * enc6.info["stream_bytes"]
    an = compact.Analysis(img, V7)
    sym, idx, ctx, _ = an.coded(24)
    used = arith.context_tables_cm(sym.reshape(256, -1), idx.reshape(256, -1), ctx)
    assert (used >= 64).sum() > 1000
    dec = api.decode([s for _, s in enc7.fasta_records()])
    assert dec.exact and dec.report["image"]["model"] == V7
    dec6 = api.decode([s for _, s in enc6.fasta_records()])
    assert psnr(img, dec.image) > 38.0 and abs(psnr(img, dec.image) - psnr(img, dec6.image)) < 0.3


def _shipped():
    from pathlib import Path
    return Path(compact.__file__).resolve().parents[1] / "zoo" / "models"


def _copy(tmp_path, monkeypatch):
    d = tmp_path / "models"
    d.mkdir()
    for n in (V5, V6, V7):
        for ext in ("json", "safetensors"):
            shutil.copy(models_dir() / f"{n}.{ext}", d / f"{n}.{ext}")
    monkeypatch.setenv("DNAIMG_MODELS", str(d))
    compact._CACHE.clear()
    return d


def _rewrite(d, name, change):
    from safetensors.numpy import load_file, save_file
    t = load_file(str(d / f"{name}.safetensors"))
    change(t)
    save_file(t, str(d / f"{name}.safetensors"))
    card = json.loads((d / f"{name}.json").read_text())
    card["weights_sha256"] = sha256_file(d / f"{name}.safetensors")
    (d / f"{name}.json").write_text(json.dumps(card))
    compact._CACHE.clear()


@pytest.mark.parametrize("what", ["first rows differ", "no new rows", "y_n missing", "remap past the tables",
                                  "y_n alone", "rows disagree", "extra row invalid"])
def test_an_extensions_tables_must_extend_its_bases(what, tmp_path, monkeypatch):
    d = _copy(tmp_path, monkeypatch)

    def change(t):
        if what == "first rows differ":
            t["tables.y_cdf"] = t["tables.y_cdf"].copy()
            t["tables.y_cdf"][5, 1] += 1
        elif what == "no new rows":
            for k in ("tables.y_cdf", "tables.y_n", "tables.y_off"):
                t[k] = t[k][:64].copy()
        elif what == "y_n missing":
            del t["tables.y_n"]
        elif what == "y_n alone":
            t["tables.y_n"] = t["tables.y_n"][:64].copy()
            del t["tables.y_cdf"], t["tables.y_off"]
        elif what == "rows disagree":
            t["tables.y_n"] = t["tables.y_n"][:64].copy()
            t["tables.y_off"] = t["tables.y_off"][:64].copy()
        elif what == "extra row invalid":
            t["tables.y_n"] = t["tables.y_n"].copy()
            t["tables.y_n"][71] = 5000
        else:
            t["ctx.remap"] = t["ctx.remap"].copy()
            t["ctx.remap"][4, 3, 0] = 72
    _rewrite(d, V7, change)
    match = ("inconsistent context tables" if what == "remap past the tables" else
             "not a valid table" if what == "extra row invalid" else f"model {V7}: an extension's")
    try:
        with pytest.raises(ModelError, match=match):
            compact.load(V7)
    finally:
        compact._CACHE.clear()


def test_fitting_narrow_tables_writes_a_model_that_codes(tmp_path, monkeypatch):
    from test_compact_context import _gray_image, _image_folder

    from dnaimg.zoo.context import build_narrow
    d = _copy(tmp_path, monkeypatch)
    data = _image_folder(tmp_path, [_gray_xray_like(128, 160, seed=i) for i in range(3)])
    try:
        card = build_narrow(V6, "narrow-test", [str(data)], 4, rows=[16, 24], out_dir=d)
        assert card["extends"] == V5 and card["narrow_tables"]["tables"] == 4 and card["z_context"]
        _, t, _ = compact.load("narrow-test")
        assert t.y_cdf.shape[0] == 68 and t.ctx[4].max() >= 64 and t.zctx is not None
        img = _gray_image(seed=7)
        enc = api.encode(img, "compact", model="narrow-test", quality=2.0)
        dec = api.decode([s for _, s in enc.fasta_records()])
        assert dec.exact and dec.report["image"]["model"] == "narrow-test" and psnr(img, dec.image) > 30.0
        with pytest.raises(ValueError, match="already has narrow tables"):
            build_narrow("narrow-test", "narrow-test2", [str(data)], 4, rows=[16], out_dir=d)
        assert "; 4 narrow tables" in card["architecture"]["type"]
        assert "narrow tables" not in compact.load(V6)[2]["architecture"]["type"]      # (the base's card untouched)
        for ext in ("json", "safetensors"):
            shutil.copy(_shipped() / f"compact-gray-v3.{ext}", d / f"compact-gray-v3.{ext}")
        with pytest.raises(ValueError, match="has no coder context"):
            build_narrow("compact-gray-v3", "narrow-test3", [str(data)], 4, rows=[16], out_dir=d)
    finally:
        compact._CACHE.clear()


def test_models_lists_v8_as_the_gray_default_with_what_it_adds():
    from click.testing import CliRunner

    from dnaimg.cli import main
    r = CliRunner().invoke(main, ["models"])
    assert r.exit_code == 0
    lines = r.output.splitlines()
    line = next(ln for ln in lines if ln.startswith("compact-gray-v8"))
    assert "(one channel: gray images' default for --codec compact)" in line
    assert line.endswith("compact-gray-v5 with a context for its hyper-latent, and 8 narrow tables and a wider "
                         "neighbourhood for its coder's context, and its post-filter (grown to 6 layers of 48 "
                         "channels) fitted to what its encoder writes")
    v7 = next(ln for ln in lines if ln.startswith(V7 + ":"))
    assert "default" not in v7 and v7.endswith("and its post-filter fitted to what its encoder writes")
    v6 = next(ln for ln in lines if ln.startswith(V6 + ":"))
    assert v6.endswith("compact-gray-v5 with a context for its hyper-latent")
    assert "  microscopy/eval: 47.94 dB at 0.299 total nt/px (cap 0.3; AVIF 47.83 dB on them)" in r.output
    assert "  xray/eval: 42.89 dB at 0.299 total nt/px (cap 0.3; AVIF 43.22 dB on them)" in r.output
    assert "  xray/eval: 42.76 dB at 0.299 total nt/px (cap 0.3; AVIF 43.22 dB on them)" in r.output
