"""The compact codec's wavelet transforms (transform "cdf97"): JPEG 2000's 9/7 wavelet in the
latent grid of the convolutional transforms, a learned post-filter, the same codec around them."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dnaimg.codecs import compact
from dnaimg.zoo import wavelet
from dnaimg.zoo.compact import CompactConfig, CompactHyperprior

LAMBDAS = (0.004, 0.025, 0.156, 0.977)


def _gray_image(h=96, w=128, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = 90 + 60 * np.sin(xx / 9.0) * np.cos(yy / 13.0) + rng.normal(0, 2, (h, w))
    img[30:60, 40:80] += 60
    return np.clip(img, 0, 255).astype(np.uint8)


def test_norms_are_the_synthesis_functions_norms():
    ll, det = wavelet.synthesis_norms()
    assert ll == pytest.approx(wavelet.NORM_LL, abs=1e-5)
    for got, want in zip(det, wavelet.NORM_DETAIL):
        assert got == pytest.approx(want, abs=1e-5)


def test_the_wavelet_is_inverted_exactly_and_lays_out_its_subbands():
    g_a, g_s = wavelet.WaveletAnalysis(), wavelet.WaveletSynthesis(1)      # untrained post-filter: identity
    x = torch.rand(2, 1, 64, 96, dtype=torch.float32)
    y = g_a(x)
    assert y.shape == (2, 256, 4, 6)
    assert torch.allclose(g_s(y), x, atol=2e-6)
    # a flat image is all LL4 (channel 0: its value times the norms), every detail 0
    flat = torch.full((1, 1, 64, 64), 0.75)
    yf = g_a(flat)
    assert torch.allclose(yf[:, 0], torch.full_like(yf[:, 0], 0.25 * wavelet.NORM_LL), atol=1e-4)
    assert float(yf[:, 1:].abs().max()) < 1e-5
    # near orthonormal: the latent carries about the image's energy
    e_x, e_y = float((x - 0.5).pow(2).sum()), float(y.pow(2).sum())
    assert 0.9 < e_y / e_x < 1.1
    # a one-pixel-period pattern along the rows is all finest-level detail (channels 64..255)
    stripes = torch.zeros(1, 1, 64, 64)
    stripes[..., ::2] = 1.0
    ys = g_a(stripes)
    assert float(ys[:, 64:].pow(2).sum()) > 0.99 * float(ys[:, 1:].pow(2).sum())


def _reach(layers: int) -> int:
    """How many pixels beyond its 16 x 16 block one latent position changes the synthesis's image
    (random post-filter weights, no biases: everything further is exactly 0)."""
    torch.manual_seed(0)
    g = wavelet.WaveletSynthesis(1, 32, layers)
    for m in g.post.net:
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.normal_(m.weight, std=0.2)
            torch.nn.init.zeros_(m.bias)
    y = torch.zeros(1, 256, 13, 13)
    y[0, :, 6, 6] = torch.randn(256)
    with torch.no_grad():
        nz = ((g(y)[0, 0] - 0.5) != 0).nonzero()
    return max(96 - int(nz.min()), int(nz.max()) - 111)


def test_the_post_filter_may_grow_to_the_halo_and_no_further(monkeypatch):
    """The synthesis reaches SYNTHESIS_REACH_PX, each post-filter layer 2 px more: the deepest
    filter a card may ask for reaches exactly the tiles' halo, one more layer would pass it."""
    assert _reach(2) == wavelet.SYNTHESIS_REACH_PX + 4 and _reach(6) == wavelet.SYNTHESIS_REACH_PX + 12
    assert _reach(wavelet.MAX_POST_LAYERS) == wavelet.HALO_PX == 64
    monkeypatch.setattr(wavelet, "MAX_POST_LAYERS", 20)
    assert _reach(10) > wavelet.HALO_PX


@pytest.mark.parametrize("layers", [3, 6, wavelet.MAX_POST_LAYERS])
def test_tiles_compute_what_the_whole_image_would(layers):
    """Also with the deepest post-filter a card may ask for (its reach grows 2 px a layer)."""
    torch.manual_seed(0)
    g_a, g_s = wavelet.WaveletAnalysis(), wavelet.WaveletSynthesis(1, 32, layers)
    for m in g_s.post.net[:-1]:          # a post-filter that does something, all the way through
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    torch.nn.init.normal_(g_s.post.net[-1].weight, std=0.05)
    x = torch.rand(1, 1, 320, 384)
    halo = g_a.halo_px
    assert halo == 64
    with torch.no_grad():
        y = g_a(x)
        assert torch.allclose(compact.tiled(g_a, x, 16, 128, halo), y, atol=1e-5)
        assert torch.allclose(compact.tiled(g_s, y, 1 / 16, 8, halo // 16), g_s(y), atol=1e-5)
        # half the halo is not enough: the tiles show
        assert not torch.allclose(compact.tiled(g_s, y, 1 / 16, 8, 2), g_s(y), atol=1e-3)


def _predictors(levels: int, layers: int = wavelet.PREDICT_LAYERS, std: float = 0.05) -> torch.nn.ModuleList:
    """Lifting predictors that predict something (random weights)."""
    torch.manual_seed(1)
    pred = torch.nn.ModuleList(wavelet.LiftPredictor(16, layers) for _ in range(levels))
    for p in pred:
        for m in p.net:
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.normal_(m.weight, std=std if m is p.net[-1] else 0.3)
    return pred


def test_lifting_predictors_are_inverted_exactly_and_change_only_their_levels():
    pred = _predictors(2)
    g_a, g_s = wavelet.WaveletAnalysis(pred), wavelet.WaveletSynthesis(1, predict=pred)
    plain = wavelet.WaveletAnalysis()
    x = torch.rand(1, 1, 128, 192)
    with torch.no_grad():
        y, y0 = g_a(x), plain(x)
        assert torch.allclose(g_s(y), x, atol=2e-6)
        # levels 1 and 2 (channels 16-255) differ, LL4 and levels 3-4 (0-15) are the wavelet's
        assert torch.equal(y[:, :16], y0[:, :16])
        assert float((y[:, 16:64] - y0[:, 16:64]).abs().max()) > 1e-3
        assert float((y[:, 64:] - y0[:, 64:]).abs().max()) > 1e-3
        # the prediction is taken back from the decoded low band: an error in level 3 moves level 2
        y2 = y.clone()
        y2[:, 4] += 1.0
        d = g_s(y2) - g_s(y) - (wavelet.WaveletSynthesis(1)(y2) - wavelet.WaveletSynthesis(1)(y))
        assert float(d.abs().max()) > 1e-4


def _reach_with_predictors(levels: int, layers: int, post_layers: int) -> tuple[int, int]:
    """(synthesis, analysis) reach in pixels beyond a 16 x 16 block, predictors and post-filter random."""
    pred = _predictors(levels, layers, std=0.3)
    g_s = wavelet.WaveletSynthesis(1, 32, post_layers, predict=pred)
    for m in g_s.post.net:
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.normal_(m.weight, std=0.2)
            torch.nn.init.zeros_(m.bias)
    for p in pred:
        for m in p.net:
            if isinstance(m, torch.nn.Conv2d):
                torch.nn.init.zeros_(m.bias)
    y = torch.zeros(1, 256, 17, 17)
    y[0, :, 8, 8] = torch.randn(256)
    x = torch.zeros(1, 1, 272, 272)
    x[..., 128:144, 128:144] = torch.rand(16, 16)
    with torch.no_grad():
        nz = ((g_s(y)[0, 0] - 0.5) != 0).nonzero()
        a = wavelet.WaveletAnalysis(pred)(x + 0.5)[0].abs().sum(0).nonzero()
    synth = max(128 - int(nz.min()), int(nz.max()) - 143)
    ana = 16 * max(8 - int(a.min()), int(a.max()) - 8)
    return synth, ana


@pytest.mark.parametrize("levels,layers", [(1, 3), (2, 2), (2, 3), (2, 4), (3, 3)])
def test_the_halo_covers_the_lifting_predictors_reach(levels, layers):
    halo = wavelet.predictors_halo(levels, layers)
    synth, ana = _reach_with_predictors(levels, layers, wavelet.MAX_POST_LAYERS)
    assert synth <= halo and ana <= halo
    assert synth > wavelet.HALO_PX          # (the plain wavelet's halo would not do)


def test_tiles_with_lifting_predictors_compute_what_the_whole_image_would():
    torch.manual_seed(0)
    pred = _predictors(2)
    g_a, g_s = wavelet.WaveletAnalysis(pred), wavelet.WaveletSynthesis(1, 32, 6, pred)
    for m in g_s.post.net[:-1]:
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    torch.nn.init.normal_(g_s.post.net[-1].weight, std=0.05)
    x = torch.rand(1, 1, 384, 448)
    halo = g_a.halo_px
    assert halo == g_s.halo_px == 96
    with torch.no_grad():
        y = g_a(x)
        assert torch.allclose(compact.tiled(g_a, x, 16, 128, halo), y, atol=1e-5)
        assert torch.allclose(compact.tiled(g_s, y, 1 / 16, 8, halo // 16), g_s(y), atol=1e-5)
        assert not torch.allclose(compact.tiled(g_s, y, 1 / 16, 8, 2), g_s(y), atol=1e-3)


def test_a_model_with_lifting_predictors_owns_them_once():
    m = CompactHyperprior(CompactConfig(M=256, gray=True, transform="cdf97", conditional="laplace", predict=2))
    keys = [k for k in m.state_dict() if "predict" in k]
    assert keys and all(k.startswith("predict.") for k in keys)
    assert m.halo_px == 96 and len(m.g_a._predict) == len(m.g_s._predict) == 2
    assert all(a is p is s for a, p, s in zip(m.g_a._predict, m.predict, m.g_s._predict))
    with pytest.raises(ValueError, match="lifting predictors at 4 levels"):
        CompactHyperprior(CompactConfig(M=256, gray=True, transform="cdf97", predict=4))


def test_the_latent_must_be_256_per_plane():
    with pytest.raises(ValueError, match="cdf97 transform makes 256 latent channels, not 192"):
        CompactHyperprior(CompactConfig(M=192, gray=True, transform="cdf97"))
    with pytest.raises(ValueError, match="unknown transform 'dct'"):
        CompactHyperprior(CompactConfig(transform="dct"))


@pytest.fixture
def wave_model(tmp_path, monkeypatch):
    """An untrained one-channel cdf97 model (small hyperprior) exported as the gray default."""
    from dnaimg.zoo.exact import export_compact
    d = tmp_path / "models"
    d.mkdir()
    monkeypatch.setenv("DNAIMG_MODELS", str(d))
    compact._CACHE.clear()
    torch.manual_seed(3)
    cfg = CompactConfig(N=16, M=256, lambdas=LAMBDAS, gray=True, gdn="square", transform="cdf97",
                        conditional="laplace")
    model = CompactHyperprior(cfg)
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"model": model.state_dict(), "step": 0, "steps": 0, "batch": 8, "crop": 64, "seed": 0, "lr": 1e-4,
                "wall": 0.0, "config": cfg.to_dict(), "data": [str(tmp_path / "medical")], "init": None,
                "downscale": False}, run / "checkpoint.pt")
    export_compact(run, compact.DEFAULT_GRAY_MODEL, d)
    import json
    card = json.loads((d / f"{compact.DEFAULT_GRAY_MODEL}.json").read_text())
    assert card["architecture"]["transform"] == "cdf97" and "CDF 9/7 wavelet" in card["architecture"]["type"]
    yield d
    compact._CACHE.clear()


def test_a_wavelet_model_codes_through_the_container(wave_model):
    """Even untrained (its gains at their initial steps), the wavelet model codes a gray image: the
    finest rate near lossless, each lower rate fewer nucleotides and a lower PSNR, and the DNA
    decodes to what the encoder's own reconstruction is."""
    from dnaimg import api
    from dnaimg.image import psnr
    img = _gray_image()
    got = []
    for q in (0, 1, 2, 3):
        enc = api.encode(img, "compact", quality=q)
        assert enc.info["model"] == compact.DEFAULT_GRAY_MODEL
        dec = api.decode([s for _, s in enc.fasta_records()])
        assert dec.exact and dec.image.shape == img.shape and dec.image.dtype == np.uint8
        got.append((enc.rates()["total_nt"], psnr(img, dec.image)))
    nts, psnrs = zip(*got)
    assert list(nts) == sorted(nts) and list(psnrs) == sorted(psnrs)
    assert psnrs[-1] > 45.0 and psnrs[0] > 25.0


def test_training_a_wavelet_model_and_what_it_refuses(tmp_path):
    from click.testing import CliRunner
    from PIL import Image

    from dnaimg.cli import main
    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        Image.fromarray(_gray_image(128, 128, seed=i)).save(data / f"{i}.png")

    def train(*args):
        return CliRunner().invoke(main, ["train", "--arch", "compact", "--gray", "--data", str(data), "--crop", "64",
                                         "--batch", "2", "--width", "16", "--threads", "1", *args])
    r = train("--transform", "cdf97", "--out", str(tmp_path / "w"), "--steps", "2")
    assert r.exit_code == 0, r.output
    state = torch.load(tmp_path / "w" / "checkpoint.pt", weights_only=True)
    assert state["config"]["transform"] == "cdf97" and state["config"]["M"] == 256
    assert state["config"]["conditional"] == "laplace"
    # only LL4 gets a predicted mean: the other mean rows of h_s stayed exactly zero in training
    w, b = state["model"]["h_s.4.weight"][:256], state["model"]["h_s.4.bias"][:256]
    assert not w[1:].any() and not b[1:].any() and w[0].any()
    r = train("--transform", "cdf97", "--channels", "192", "--out", str(tmp_path / "x"), "--steps", "1")
    assert r.exit_code == 1 and "--transform cdf97 makes 256 latent channels (256 per plane), not 192" in r.output
    r = train("--out", str(tmp_path / "g"), "--steps", "1", "--init", str(tmp_path / "w" / "checkpoint.pt"))
    assert r.exit_code == 1 and "cannot start a gdn model from a cdf97 one" in r.output


def test_wavelet_inverse_gains_are_the_gains_inverse():
    """The wavelet's synthesis is linear: the decoder divides by the very gain the encoder used
    (a learned inverse gain drifted in training and cost 4-7 dB), at trained and interpolated rates."""
    model = CompactHyperprior(CompactConfig(N=16, M=256, lambdas=LAMBDAS, gray=True, transform="cdf97"))
    with torch.no_grad():
        model.log_inv_gain.add_(0.3)            # whatever this parameter holds, it is not used
        g, ig = model.gains(torch.tensor([0.0, 1.5, 3.0]))
    assert torch.allclose(g * ig, torch.ones_like(g), rtol=1e-6)
    from dnaimg.zoo.exact import GAIN_BITS, gain_tables
    gi, inv = gain_tables(model)
    assert torch.allclose(gi.double() / 2 ** GAIN_BITS * inv.double(), torch.ones_like(inv.double()), rtol=1e-3)


def test_laplace_conditional_and_its_tables():
    """The wavelet models' Laplacian: probabilities of the integer bins sum to 1, a rare value
    costs under 8 bits, not the 18 or more a Gaussian of the same small scale charges, and the coder's stored
    tables are that distribution."""
    from dnaimg.zoo.compact import gaussian_likelihood, laplace_likelihood
    from dnaimg.zoo.exact import gaussian_tables, scale_table
    v = torch.arange(-600, 601, dtype=torch.float64)
    for b in (0.11, 0.7, 4.0, 40.0):
        p = laplace_likelihood(v, torch.full_like(v, b))
        assert float(p.sum()) == pytest.approx(1.0, abs=1e-5)      # (each bin at least 1e-9)
    one, small = torch.tensor([1.0]), torch.tensor([0.11])
    assert -math.log2(float(laplace_likelihood(one, small))) < 8.0
    assert -math.log2(float(gaussian_likelihood(one, small))) > 18.0
    cdf, n, off = gaussian_tables("laplace")
    S = scale_table()
    for j in (0, 20, 40):
        R = int(off[j])
        w = torch.arange(-R, R + 1, dtype=torch.float64)
        want = laplace_likelihood(w, torch.full_like(w, float(S[j]))).numpy()
        got = np.diff(cdf[j, :n[j]].astype(np.float64)) / float(cdf[j, n[j]])
        assert np.allclose(got, want, atol=2e-4)
    with pytest.raises(ValueError, match="unknown conditional 'cauchy'"):
        gaussian_tables("cauchy")


def test_masked_means_stay_zero_whatever_is_loaded():
    """Weights with non-zero rows where a wavelet model has no mean (say, edited or from an older
    run) load with those rows zero: the integer h_s the codec runs must give 0 there."""
    cfg = CompactConfig(N=16, M=256, lambdas=LAMBDAS, gray=True, transform="cdf97", conditional="laplace")
    src = CompactHyperprior(cfg)
    sd = {k: v.clone() for k, v in src.state_dict().items()}
    sd["h_s.4.weight"][5] += 1.0
    sd["h_s.4.bias"][7] += 1.0
    model = CompactHyperprior(cfg)
    model.load_state_dict(sd)
    assert not model.h_s[4].weight[1:256].any() and not model.h_s[4].bias[1:256].any()
    from dnaimg.zoo.exact import integer_h_s
    t = integer_h_s(model)
    assert not t["hs_int.2.weight"][1:256].any() and not t["hs_int.2.bias"][1:256].any()


def test_a_card_with_an_unknown_transform_is_a_model_error():
    from dnaimg.zoo.registry import ModelError, build_model
    with pytest.raises(ModelError, match="model odd: unknown transform 'dct'"):
        build_model({"name": "odd", "architecture": {"class": "CompactHyperprior", "transform": "dct"}})


def test_rate_distortion_optimised_symbols(wave_model):
    """The wavelet encoder moves a value one step towards its mean only where that lowers
    lambda * 255^2 * error^2 + bits; the DNA decodes all the same, and is no larger."""
    from dnaimg import api
    from dnaimg.image import psnr
    _, t, _ = compact.load(compact.DEFAULT_GRAY_MODEL)
    rng = np.random.default_rng(0)
    u = rng.laplace(0, 1.5, size=(256, 3, 4))
    sym = np.floor(u + 0.5).astype(np.int64)
    idx = rng.integers(0, 40, size=u.shape)
    g = np.full((256, 1, 1), 8.0)
    lam = 0.01
    out = compact.rdo_symbols(u, sym, idx, g, t, lam)
    moved = out != sym
    assert moved.any() and (~moved).any()
    assert np.all(np.abs(out - sym) <= 1) and np.all(np.abs(out[moved]) < np.abs(sym[moved]))

    def cost(v):
        return lam * 255.0 ** 2 * ((v - u) / g) ** 2 + compact.symbol_bits(v, idx, t)
    assert np.all(cost(out) <= cost(sym) + 1e-9) and np.all(cost(out)[moved] < cost(sym)[moved])
    img = _gray_image()
    enc = api.encode(img, "compact", quality=2)
    dec = api.decode([s for _, s in enc.fasta_records()])
    assert dec.exact and psnr(img, dec.image) > 30.0
