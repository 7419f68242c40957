"""A wavelet model's post-filter fitted to what its encoder writes (dnaimg.zoo.postfit), shipped in
an extension's own file (FORMAT.md 12.3)."""
import json
import shutil

import numpy as np
import pytest
import torch
from test_compact_context import _gray_image, _image_folder
from test_narrow_tables import _gray_xray_like

from dnaimg import api
from dnaimg.codecs import compact
from dnaimg.image import psnr
from dnaimg.zoo import postfit
from dnaimg.zoo.registry import ModelError, models_dir, sha256_file

V5, V6 = "compact-gray-v5", "compact-gray-v6"


def codes_exactly(model: str) -> None:
    """A fitted model codes a gray image and the DNA decodes exactly, with that model, close to it."""
    img = _gray_image(seed=7)
    enc = api.encode(img, "compact", model=model, quality=2.0)
    dec = api.decode([s for _, s in enc.fasta_records()])
    assert dec.exact and dec.report["image"]["model"] == model and psnr(img, dec.image) > 30.0


@pytest.fixture
def models(tmp_path, monkeypatch):
    d = tmp_path / "models"
    d.mkdir()
    for n in (V5, V6):
        for ext in ("json", "safetensors"):
            shutil.copy(models_dir() / f"{n}.{ext}", d / f"{n}.{ext}")
    monkeypatch.setenv("DNAIMG_MODELS", str(d))
    compact._CACHE.clear()
    yield d
    compact._CACHE.clear()


def test_decoded_pair_is_what_the_decoder_draws_before_its_post_filter(models, monkeypatch):
    """The pair's first image, through the model's post-filter, is the image decoded from the DNA
    that the encoder writes at that rate row with the analysis network's hyper-latent."""
    from test_compact_context import _no_search
    _no_search(monkeypatch)
    img = _gray_xray_like(128, 192, seed=3)
    a, x = postfit.decoded_pair(V6, img, 32)
    assert a.shape == x.shape == (128, 192) and np.allclose(x, img / 255.0 - 0.5, atol=1e-6)
    post = compact.load(V6)[0].g_s.post.float()
    dec = api.decode([s for _, s in api.encode(img, "compact", model=V6, quality=4.0).fasta_records()])
    gain = dec.report["latent"]["post_gain"]          # (the encoder's post-filter gain for this image)
    with torch.no_grad():
        o = post(torch.from_numpy(a)[None, None], gain)[0, 0].numpy()
    drawn = np.clip(np.floor((o + 0.5) * 255 + 0.5), 0, 255)
    diff = np.abs(drawn - dec.image.astype(np.float64))
    assert dec.exact and diff.max() <= 1 and diff.mean() < 0.01


def test_fitting_the_post_filter_writes_a_model_that_codes(models, tmp_path):
    data = _image_folder(tmp_path, [_gray_xray_like(128, 160, seed=i) for i in range(4)])
    card = postfit.build(V6, "post-test", [str(data)], out_dir=models, steps=30, rows=(24, 32))
    rec = card["post_filter"]
    assert card["extends"] == V5 and card["z_context"] and rec["images"] == 4 and rec["held_out_images"] == 1
    assert rec["held_out_psnr_db_after"] > rec["held_out_psnr_db_before"] - 0.5
    m, t, _ = compact.load("post-test")
    m6, t6, _ = compact.load(V6)
    assert not torch.equal(m.g_s.post.net[0].weight, m6.g_s.post.net[0].weight)
    assert np.array_equal(t.ctx[4], t6.ctx[4]) and all(np.array_equal(a, b) for a, b in zip(t.zctx, t6.zctx))
    codes_exactly("post-test")
    with pytest.raises(ValueError, match="exists"):
        postfit.build(V6, "post-test", [str(data)], out_dir=models, steps=1)
    with pytest.raises(ValueError, match="compact-gray-v5 extends no model"):
        postfit.build(V5, "post-test2", [str(data)], out_dir=models, steps=1)
    assert "post-filter fitted" not in compact.load(V6)[2]["architecture"]["type"]      # (the base's card untouched)
    from dnaimg.zoo.context import build_narrow
    with pytest.raises(ValueError, match="post-test has a fitted post-filter, which this refit would drop"):
        build_narrow("post-test", "narrow-test", [str(data)], 4, rows=[16], out_dir=models)


def test_downscale_fits_on_the_images_halved(models, tmp_path, monkeypatch):
    """``--downscale``: the encoder codes each training image halved (Lanczos), and the card says so."""
    from PIL import Image
    imgs = [_gray_xray_like(128, 160, seed=i) for i in range(4)]
    data = _image_folder(tmp_path, imgs)
    seen = []
    real = postfit.decoded_pair
    monkeypatch.setattr(postfit, "decoded_pair", lambda name, img, row: seen.append(img.copy()) or real(name, img, row))
    card = postfit.build(V6, "half-test", [str(data)], out_dir=models, steps=1, rows=(24,), downscale=True)
    halved = [np.asarray(Image.fromarray(a).resize((80, 64), Image.LANCZOS)) for a in imgs]
    assert len(seen) == 4 and all(np.array_equal(a, b) for a, b in zip(seen, halved))
    assert card["post_filter"]["preprocessing"] == "images halved (Lanczos) before coding"
    assert postfit.main(["--base", V6, "--name", "half-test2", "--data", str(data), "--out", str(models),
                         "--steps", "1", "--rows", "24", "--downscale"]) == 0
    assert len(seen) == 8 and all(a.shape == (64, 80) for a in seen[4:])


def test_an_extensions_post_filter_must_fit_the_network(models, tmp_path):
    data = _image_folder(tmp_path, [_gray_xray_like(96, 96, seed=i) for i in range(2)])
    postfit.build(V6, "post-test", [str(data)], out_dir=models, steps=2, rows=(24,))
    from safetensors.numpy import load_file, save_file
    t = load_file(str(models / "post-test.safetensors"))
    t["g_s.post.net.2.weight"] = t["g_s.post.net.2.weight"][:16].copy()
    save_file(t, str(models / "post-test.safetensors"))
    card = json.loads((models / "post-test.json").read_text())
    card["weights_sha256"] = sha256_file(models / "post-test.safetensors")
    (models / "post-test.json").write_text(json.dumps(card))
    compact._CACHE.clear()
    with pytest.raises(ModelError, match="g_s.post.net.2.weight has shape"):
        compact.load("post-test")
    for k in ("g_s.post.net.4.weight", "g_s.post.net.4.bias"):     # only some of its layers: not the base's for the rest
        del t[k]
    save_file(t, str(models / "post-test.safetensors"))
    card["weights_sha256"] = sha256_file(models / "post-test.safetensors")
    (models / "post-test.json").write_text(json.dumps(card))
    compact._CACHE.clear()
    with pytest.raises(ModelError, match="model post-test: the weights hold a post-filter of 2 layers, the card says 3"):
        compact.load("post-test")


def test_a_grown_post_filter_computes_what_the_base_did():
    """Growing (more layers, more channels) changes nothing the filter computes: the base's layers
    embedded, identity layers before its last, the new channels read by nothing yet."""
    from dnaimg.zoo import wavelet
    base = compact.load(V6)[0].g_s.post.float()
    g = postfit.grow(base, 5, 40)
    assert [c.out_channels for c in postfit.convs(g)] == [40, 40, 40, 40, 4]
    x = torch.rand(2, 1, 48, 80) - 0.5
    with torch.no_grad():
        assert torch.allclose(base(x), g(x), atol=1e-6)
        assert (base(x) - x).abs().max() > 1e-3            # (the base's filter does something)
        assert any(c.weight[32:].abs().max() > 0 for c in postfit.convs(g)[:-1])    # new channels: random
    with pytest.raises(ValueError, match="cannot shrink to 2 layers of width 32"):
        postfit.grow(base, 2, 32)
    with pytest.raises(ValueError, match="2-9 layers"):
        wavelet.PostFilter(1, 32, 10)
    assert sorted("g_s.post." + k for k in wavelet.PostFilter(1).state_dict()) == sorted(postfit.post_keys(3))


def test_a_deeper_post_filter_is_fitted_shipped_and_checked(models, tmp_path):
    data = _image_folder(tmp_path, [_gray_xray_like(128, 160, seed=i) for i in range(3)])
    card = postfit.build(V6, "deep-test", [str(data)], out_dir=models, steps=20, rows=(24, 32), layers=4, width=40)
    assert (card["architecture"]["post_layers"], card["architecture"]["post_width"]) == (4, 40)
    assert card["post_filter"]["grown_from"] == [3, 32] and card["post_filter"]["lr_schedule"] == "cosine"
    assert "4 layers of 40 channels" in card["architecture"]["type"]
    m, _, _ = compact.load("deep-test")
    assert [c.out_channels for c in postfit.convs(m.g_s.post)] == [40, 40, 40, 4]
    img = _gray_image(seed=7)
    dec = api.decode([s for _, s in api.encode(img, "compact", model="deep-test", quality=2.0).fasta_records()])
    assert dec.exact and dec.report["image"]["model"] == "deep-test" and psnr(img, dec.image) > 30.0
    path = models / "deep-test.json"
    for layers, why in ((5, "the weights hold a post-filter of 4 layers, the card says 5"),
                        (3, "the weights hold a post-filter of 4 layers, the card says 3"),
                        (12, "a post-filter of 12 layers of width 40 \\(2-9 layers"),
                        (True, "a post-filter of True layers")):
        c = json.loads(path.read_text())
        c["architecture"]["post_layers"] = layers
        path.write_text(json.dumps(c))
        compact._CACHE.clear()
        with pytest.raises(ModelError, match=why):
            compact.load("deep-test")


def test_compact_gray_v8_is_v7_with_a_deeper_post_filter(monkeypatch):
    """compact-gray-v8: v7's context, tables, gains and hyper-latent context, and a post-filter of 6
    layers of 48 channels: its RDO writes v7's streams and the decoder draws other pixels from them
    (the refinement for the decoder's synthesis, dnaimg.codecs.refine, off: it follows each
    model's own post-filter)."""
    orig = compact.encode
    monkeypatch.setattr(compact, "encode", lambda *a, **k: orig(*a, **{**k, "refine": False}))
    V7, V8 = "compact-gray-v7", "compact-gray-v8"
    compact._CACHE.clear()
    m8, t8, c8 = compact.load(V8)
    m7, t7, _ = compact.load(V7)
    assert c8["extends"] == V5 and (c8["architecture"]["post_layers"], c8["architecture"]["post_width"]) == (6, 48)
    assert [c.out_channels for c in postfit.convs(m8.g_s.post)] == [48] * 5 + [4]
    assert c8["post_filter"]["grown_from"] == [3, 32] and c8["post_filter_base"]["base"] == "compact-gray-v7-tables"
    assert all(np.array_equal(a, b) for a, b in zip(t8.ctx, t7.ctx)) and all(np.array_equal(a, b) for a, b in zip(t8.zctx, t7.zctx))
    assert np.array_equal(t8.gain, t7.gain) and np.array_equal(t8.y_cdf, t7.y_cdf)
    img = _gray_xray_like(128, 192, seed=5)
    d7, d8 = (api.decode([s for _, s in api.encode(img, "compact", model=m, quality=4.0).fasta_records()]) for m in (V7, V8))
    assert d8.exact and d8.report["image"]["model"] == V8
    assert [s["crc"] for s in d8.report["header"]["streams"]] == [s["crc"] for s in d7.report["header"]["streams"]]
    assert not np.array_equal(d7.image, d8.image) and abs(psnr(img, d8.image) - psnr(img, d7.image)) < 1.0
