"""The compact encoder's search for a cheaper hyper-latent (dnaimg.codecs.zsearch): encoder only,
so whatever it finds decodes with the decoder as it is."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from dnaimg import api
from dnaimg.codecs import compact, zsearch
from dnaimg.dna.streams import Received
from dnaimg.image import psnr

from test_compact_context import _no_search, _photo_gray

MODEL = "compact-gray-v6"
ROW_BYTES, ROWS = 23, 4


@pytest.fixture(autouse=True)
def _fresh_cache():
    compact._CACHE.clear()
    yield
    compact._CACHE.clear()


def _decode(e) -> np.ndarray:
    rec = [Received("bytes", s.data, True, None, {"row_bytes": ROW_BYTES}) for s in e.streams]
    return compact.decode(rec, e.meta)[0]


def _plain_and_searched(img, rate_index=3.0, keep_means=False, model=MODEL):
    an = compact.Analysis(img, model)
    redundancy = 0.0 if keep_means else None          # (keep_means: as the encoder, no outer code)
    zr = compact.z_redundancy(redundancy)
    zw = (1 + zr) / (1 + compact._latent_redundancy(redundancy))
    plain = an.encode(rate_index, ROW_BYTES * ROWS, ROWS, zr)
    before = compact._objective(an, plain, zw)
    z0 = an.z.copy()
    found = compact._search_z(an, plain, ROW_BYTES * ROWS, ROWS, zr, zw, keep_means)
    return an, plain, before, z0, found, zw


@pytest.mark.parametrize("bf16", [False, True])
def test_float_h_s_follows_the_exact_one(bf16):
    """The search's h_s (floating point or bf16, the last layer cut to what it uses) gives the
    scales and LL4's mean of the decoder's integer h_s, and the means it leaves out are 0 there."""
    an = compact.Analysis(_photo_gray(), MODEL)
    mu, sigma = an.tables.h_s(an.z)
    assert not mu[:, 1:].any()
    with torch.no_grad():
        mu0, s = zsearch._hs_float(zsearch._layers(an.tables), torch.from_numpy(an.z.astype(np.float32)), bf16)
    s, mu0 = s.numpy().astype(np.float64), mu0.numpy().astype(np.float64)
    assert s.shape == sigma.shape and mu0.shape == mu[:, :1].shape
    big = sigma > 256                     # scales above 1/4 (FA = 10 fractional bits)
    assert np.median(np.abs(s[big] - sigma[big]) / sigma[big]) < 0.02
    assert np.abs(mu0 - mu[:, :1]).max() < 0.02 * np.abs(mu[:, :1]).max()


def test_detail_gradient_is_the_interpolated_bits_gradient():
    """The numba pass gives, value by value, the derivative (with respect to the scale) of the
    detail values' bits interpolated between their two nearest tables, as autograd does on the
    same function written with torch."""
    from dnaimg.codecs import arith
    from dnaimg.zoo.context import V_MAX, bucket_probe
    from dnaimg.zoo.exact import GAIN_BITS
    an = compact.Analysis(_photo_gray(), MODEL)
    t = an.tables
    row = t.rate_row(3.0)
    sym, idx, ctx, _ = an.coded(row)
    cls, remap = ctx[2], ctx[4]
    M, h, w = sym.shape
    _, nT, nB = remap.shape
    b = arith.context_tables_cm(sym.reshape(M, -1), idx.reshape(M, -1), bucket_probe(ctx[:4], t.y_cdf.shape[0]))
    W = 2 * V_MAX + 1
    vb = compact._value_bits(t).astype(np.float32)
    by_t = np.ascontiguousarray(vb[remap].transpose(0, 2, 3, 1)).reshape(-1)
    key = (((np.asarray(cls)[1:, None] * nB + b[1:]) * W + np.clip(sym.reshape(M, -1)[1:], -V_MAX, V_MAX)
            + V_MAX) * nT).astype(np.int32)
    gain = (t.gain[row] / (1 << GAIN_BITS)).astype(np.float32)
    log_thr = np.log(np.maximum(t.thresholds, 1)).astype(np.float32)
    with torch.no_grad():
        _, s = zsearch._hs_float(zsearch._layers(t), torch.from_numpy(an.z.astype(np.float32)), False)
    s = s[0].reshape(M, h * w).contiguous()
    grad = np.empty((M, h * w), dtype=np.float32)
    zsearch._detail_grad(s.numpy(), gain, log_thr, key, by_t, grad)
    sv = s[1:].clone().requires_grad_(True)
    lt = torch.from_numpy(log_thr)
    ls = torch.log((sv * torch.from_numpy(gain[1:]).view(-1, 1)).clamp(min=1.0))
    i = torch.searchsorted(lt, ls.detach().contiguous()).clamp(1, nT - 1)
    lo, hi = lt[i - 1], lt[i]
    tc = (i - 1).float() + ((ls - lo) / (hi - lo)).clamp(0, 1) + 0.5
    t0 = torch.floor(tc).detach().long().clamp(0, nT - 2)
    fr = (tc - t0).clamp(0, 1)
    k = torch.from_numpy(key.astype(np.int64)) + t0
    B = torch.from_numpy(by_t)
    (B[k] + fr * (B[k + 1] - B[k])).sum().backward()
    ref = sv.grad.numpy()
    assert np.count_nonzero(ref) > 1000
    assert np.abs(grad[1:] - ref).max() <= 1e-4 * np.abs(ref).max()


def test_search_lowers_the_objective_and_decodes():
    """On a photograph the search finds a hyper-latent with a lower objective than h_a's, and the
    decoder, unchanged, reads the stream coded with it to the same quality."""
    img = _photo_gray()
    an, plain, before, z0, found, zw = _plain_and_searched(img)
    assert found is not None
    assert not np.array_equal(an.z, z0)
    after = compact._objective(an, found, zw)
    assert after < before * 0.99
    assert len(found.streams[0].data) != len(plain.streams[0].data)
    out_p, out_f = _decode(plain), _decode(found)
    assert psnr(img, out_f) > psnr(img, out_p) - 0.1
    assert psnr(img, out_f) > 30


def test_a_search_that_does_not_pay_is_dropped(monkeypatch):
    """A hyper-latent with a higher objective is not used, and the encoder's own is restored."""
    img = _photo_gray()
    monkeypatch.setattr(zsearch, "search", lambda an, *a, **k: an.z[0] + 3)
    an, plain, before, z0, found, zw = _plain_and_searched(img)
    assert found is None
    assert np.array_equal(an.z, z0)
    again = an.encode(3.0, ROW_BYTES * ROWS, ROWS, compact.z_redundancy(None))
    assert [s.data for s in again.streams] == [s.data for s in plain.streams]


def test_no_search_without_a_context():
    """compact-gray-v3 has no coder context: the search leaves it alone."""
    an = compact.Analysis(_photo_gray(), "compact-gray-v3")
    assert zsearch.search(an, an.tables.rate_row(3.0), 1.0, 1.3) is None


def _cells(n: int = 384, seed: int = 0, blobs: int = 40) -> np.ndarray:
    """A fluorescence-like image: bright blobs on a dark, noisy background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:n, 0:n]
    img = np.full((n, n), 12.0)
    for _ in range(blobs):
        cy, cx, r = rng.uniform(0, n), rng.uniform(0, n), rng.uniform(6, 18)
        img += rng.uniform(60, 180) * np.exp(-(((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r)) ** 2)
    img += rng.normal(0, 2.0, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.mark.slow          # (heavy: the default suite keeps to about ten minutes on a fresh clone)
def test_a_capped_encode_spends_what_the_search_saves(monkeypatch):
    """Under a cap the bits saved buy quality: the searched encode fits the same cap at a higher
    rate and PSNR than the encoder without the search (here +1.4 dB: the hyper-latent is much of
    this image's bits at 0.2 nt/px)."""
    img = _cells()
    cap = 0.2
    searched = api.encode(img, "compact", rate=cap)
    _no_search(monkeypatch)
    plain = api.encode(img, "compact", rate=cap)
    monkeypatch.undo()
    n = img.size * cap / searched.written.oligos.shape[1]
    assert searched.written.oligos.shape[0] <= n and plain.written.oligos.shape[0] <= n
    out_s, out_p = api.decode(searched.written.oligos), api.decode(plain.written.oligos)
    assert out_s.exact and out_p.exact
    assert searched.info["rate_index"] > plain.info["rate_index"]
    assert psnr(img, out_s.image) > psnr(img, out_p.image) + 0.5


@pytest.mark.slow          # (heavy: the default suite keeps to about ten minutes on a fresh clone)
def test_a_long_encode_shows_signs_of_life():
    """The search and the trial encodes call the progress callback (with 0: their length is not
    known), so that a progress bar moves during a long encode."""
    calls = []
    api.encode(_photo_gray(), "compact", rate=0.3, progress=calls.append)
    assert calls.count(0) >= zsearch.ITERS + 5


def test_the_search_keeps_what_lost_packets_decode_to(monkeypatch):
    """A latent value lost with its packet decodes as its mean; LL4's means come from z.  Left
    free (behind an outer code), the search buys bits with the means' accuracy; with keep_means
    (no outer code) its means err no more than h_a's (within MEAN_ERROR_SLACK)."""
    img = _photo_gray()
    row = compact.load(MODEL)[1].rate_row(3.0)
    an, plain, before, z0, found, zw = _plain_and_searched(img, keep_means=False)
    assert found is not None
    free = zsearch.mean_error(an, row)
    an.use_z(z0[0])
    err0 = zsearch.mean_error(an, row)
    assert free > 1.2 * err0
    an, plain, before, z0, found, zw = _plain_and_searched(img, keep_means=True)
    assert found is not None
    assert zsearch.mean_error(an, row) <= err0 * compact.MEAN_ERROR_SLACK


@pytest.mark.parametrize("redundancy,keep", [(None, False), (0.15, False), (0.05, True), (0.0, True)])
def test_means_are_kept_where_no_outer_code_rebuilds_lost_packets(monkeypatch, redundancy, keep):
    seen = []
    monkeypatch.setattr(zsearch, "search", lambda an, row, w, zw, keep_means, **k: seen.append(keep_means))
    compact.encode(_photo_gray(), row_bytes=ROW_BYTES, rate_index=3.0, model=MODEL, redundancy=redundancy)
    assert seen == [keep]


def test_models_without_a_hyper_latent_context_are_searched_too():
    """compact-gray-v5 has a coder context but codes z with one table per channel: the search
    prices z with those, and what it finds decodes."""
    img = _photo_gray()
    an, plain, before, z0, found, zw = _plain_and_searched(img, model="compact-gray-v5")
    assert found is not None and compact._objective(an, found, zw) < before
    assert psnr(img, _decode(found)) > psnr(img, _decode(plain)) - 0.1


@pytest.mark.slow          # (heavy: the default suite keeps to about ten minutes on a fresh clone)
def test_the_lowest_row_may_fit_only_once_searched(monkeypatch):
    """Where even the lowest rate row does not fit with h_a's z, the encoder searches there
    before giving up: a cap between the two costs is met by the gray model."""
    img = _cells()
    an = compact.Analysis(img, MODEL)
    zr = compact.z_redundancy(None)
    zw = (1 + zr) / (1 + compact._latent_redundancy(None))
    plain = an.encode(0.0, ROW_BYTES * ROWS, ROWS, zr)
    found = compact._search_z(an, plain, ROW_BYTES * ROWS, ROWS, zr, zw, False)
    size = lambda e: sum(len(x.data) for x in e.streams)          # noqa: E731
    assert found is not None and size(found) < 0.9 * size(plain)
    cap = (size(plain) + size(found)) // 2

    def fits(e):
        return size(e) <= cap
    with pytest.raises(compact.RateError):
        compact.encode(img, row_bytes=ROW_BYTES, model=MODEL, fits=fits, search=False)
    e = compact.encode(img, row_bytes=ROW_BYTES, model=MODEL, fits=fits)
    assert fits(e) and e.info["model"] == MODEL
