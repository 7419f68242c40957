"""The compact encoder's refinement of the wavelet models' symbols for the decoder's synthesis
(dnaimg.codecs.refine): encoder only, at most the RDO's bits, a better decoded image."""
import numpy as np
import pytest
from test_narrow_tables import _gray_xray_like

from dnaimg import api
from dnaimg.codecs import compact
from dnaimg.codecs import refine as rf
from dnaimg.codecs.compact import symbol_bits
from dnaimg.codecs import arith
from dnaimg.image import psnr

V8 = "compact-gray-v8"


def _coded(img, row=24):
    an = compact.Analysis(img, V8)
    sym, idx, ctx, _ = an.coded(row)
    return an, sym, idx, ctx


def _bits(an, sym, idx, ctx) -> float:
    used = arith.context_tables_cm(sym.reshape(256, -1), idx.reshape(256, -1), ctx).reshape(sym.shape)
    return float(symbol_bits(sym, used, an.tables).sum())


def test_tiles_give_the_whole_images_error_and_gradient():
    """The synthesis on tiles of 4 latent positions (64 px) with the model's halo: the same squared
    error and the same gradient as on the whole image (so the refinement's memory stays bounded)."""
    img = _gray_xray_like(200, 296, seed=3)
    an, sym, idx, ctx = _coded(img)
    u, _, _, g = an._rounded(24)
    y_hat = an.y - (u - sym) / g
    halo = an.model.halo_px // 16
    whole = rf.synthesis_error(an.model.g_s, y_hat, img, 1000, halo)
    tiles = rf.synthesis_error(an.model.g_s, y_hat, img, 4, halo)
    assert abs(whole[0] - tiles[0]) <= 4            # (a pixel rounded the other way at most)
    assert np.abs(whole[1]).max() > 1.0
    np.testing.assert_allclose(tiles[1], whole[1], rtol=1e-3, atol=1e-3 * np.abs(whole[1]).max())


def test_the_error_is_the_decoders(monkeypatch):
    """synthesis_error's squared error is that of the image the decoder draws from the DNA."""
    img = _gray_xray_like(160, 200, seed=4)
    orig = compact.encode
    monkeypatch.setattr(compact, "encode", lambda *a, **k: orig(*a, **{**k, "search": False, "refine": False}))
    dec = api.decode([s for _, s in api.encode(img, "compact", model=V8, quality=3.0).fasta_records()])
    assert dec.exact
    an, sym, idx, ctx = _coded(img, 24)
    u, _, _, g = an._rounded(24)
    sse, grad = rf.synthesis_error(an.model.g_s, an.y - (u - sym) / g, img, compact.TILE_PX // 16,
                                   an.model.halo_px // 16, grad=False)
    assert grad is None
    assert sse == pytest.approx(float(np.sum((dec.image.astype(np.float64) - img) ** 2)), abs=4)


def _coffee_gray(y0=0, x0=0, h=256, w=320) -> np.ndarray:
    from pathlib import Path
    from PIL import Image
    src = Path(__file__).resolve().parents[1] / "examples" / "coffee.png"
    return np.asarray(Image.open(src).convert("L"))[y0:y0 + h, x0:x0 + w]


@pytest.mark.parametrize("at", [(0, 0), (144, 0)])
def test_refined_symbols_draw_a_better_image_in_no_more_bits(at):
    img = _coffee_gray(*at)
    an, sym, idx, ctx = _coded(img)
    s, rep = rf.refine(an, 24, 1.0, sym, idx, ctx)
    assert rep["changed"] > 0 and np.count_nonzero(s != sym) == rep["changed"]
    assert np.abs(s - sym).max() <= rf.ITERS + rf.EXTRA_ITERS + rf.TOP_UP_STEPS   # steps of one, once per step
    assert _bits(an, s, idx, ctx) <= _bits(an, sym, idx, ctx) * (1 + 1e-9)
    assert rep["sse_after"] < 0.995 * rep["sse_before"]
    tight, rep2 = rf.refine(an, 24, 1.0, sym, idx, ctx, budget=0.995)
    assert rep2["changed"] > 0 and _bits(an, tight, idx, ctx) <= 0.995 * _bits(an, sym, idx, ctx)
    half, rep3 = rf.refine(an, 24, 1.0, sym, idx, ctx, budget=0.5)      # (fewer bits at a higher price)
    assert _bits(an, half, idx, ctx) <= 0.5 * _bits(an, sym, idx, ctx) and rep3["sse_after"] > rep["sse_before"]
    none, rep4 = rf.refine(an, 24, 1.0, sym, idx, ctx, budget=0.0)      # (out of reach: the RDO's symbols)
    assert rep4["changed"] == 0 and np.array_equal(none, sym)


def test_encoder_refines_under_a_cap_and_the_dna_decodes_to_the_better_image(monkeypatch):
    img = _coffee_gray(100, 50, 320, 320)
    ref = api.encode(img, "compact", model=V8, rate=0.5)
    orig = compact.encode
    monkeypatch.setattr(compact, "encode", lambda *a, **k: orig(*a, **{**k, "refine": False}))
    plain = api.encode(img, "compact", model=V8, rate=0.5)
    assert ref.info["refined_values"] > 0 and "refined_values" not in plain.info
    assert ref.rates()["total_nt_per_pixel"] <= 0.5
    d_ref, d_plain = (api.decode([s for _, s in e.fasta_records()]) for e in (ref, plain))
    assert d_ref.exact and d_plain.exact
    assert psnr(img, d_ref.image) > psnr(img, d_plain.image) + 0.02


def test_only_one_channel_wavelet_models_are_refined():
    rng = np.random.default_rng(0)
    img = np.clip(rng.normal(128, 20, (64, 96, 3)), 0, 255).astype(np.uint8)
    enc = api.encode(img, "compact", quality=1.0)
    assert "refined_values" not in enc.info
    gray = _coffee_gray(0, 0, 64, 64)
    assert compact.Analysis(gray, V8).refinable and not compact.Analysis(gray[..., None], V8).refinable
    assert not compact.Analysis(img, "compact-ms-v3").refinable


def test_a_refinement_that_does_not_fit_or_is_worse_keeps_the_rdos_symbols():
    """_refined: without a cap the refined streams take at most the RDO's packets; a cap that the
    refined streams overflow, try after try, keeps the RDO's encoding; a budget that makes the
    image worse is refused."""
    img = _coffee_gray(0, 0)
    an = compact.Analysis(img, V8)
    e = an.encode(3.0, 26 * 4, 4, None)
    free = compact._refined(an, e, 26 * 4, 4, None, None)
    assert free.info["refined_values"] > 0 and len(free.streams[1].data) <= len(e.streams[1].data)
    tries = []

    def never(f):
        tries.append(f.info.get("refined_values"))
        return False
    assert compact._refined(an, e, 26 * 4, 4, None, never) is e
    refined = [n for n in tries if n is not None]           # (the others: _most_packets' probes)
    assert 1 <= len(refined) <= compact.REFINE_TRIES and all(refined)
    worse = an.encode(3.0, 26 * 4, 4, None, refine=0.5)            # (half the bits: a worse image)
    assert "refined_values" in worse.info and worse.info["refined_values"] == 0
    assert worse.streams[1].data == e.streams[1].data


def test_iterations_fall_with_the_image_size():
    assert rf.iterations(512 * 512) == rf.ITERS
    assert rf.iterations(rf.FULL_PIXELS * 2) == rf.ITERS // 2
    assert rf.iterations(10 ** 9) == rf.MIN_ITERS
