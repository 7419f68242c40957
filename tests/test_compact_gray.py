"""One-channel compact models: started from an RGB model (folded exactly), chosen for gray images,
and the "square" GDN that later models train with (compact-ms-v1's "relu" one is kept as it was).

The gray model here is the small test model (tests/golden/compact-model) folded to one channel,
without training: it codes a gray image as the RGB model would code R = G = B, in one channel."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from dnaimg.codecs import compact
from dnaimg.image import psnr
from dnaimg.zoo.compact import CompactConfig, CompactHyperprior

ROOT = Path(__file__).resolve().parent
TINY = ROOT / "golden" / "compact-model"


def _gray_image(h=96, w=128, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = 90 + 60 * np.sin(xx / 9.0) * np.cos(yy / 13.0) + rng.normal(0, 4, (h, w))
    img[30:60, 40:80] += 60                           # a bright "cell"
    return np.clip(img, 0, 255).astype(np.uint8)


def _tiny_cfg(**kw) -> CompactConfig:
    return CompactConfig(N=16, M=24, **kw)


@pytest.fixture
def models(tmp_path, monkeypatch):
    """A models folder with compact-tiny and a gray model folded from it, named as the gray default."""
    from dnaimg.codecs import compact
    from dnaimg.zoo.exact import export_compact
    from dnaimg.zoo.train_compact import init_state
    d = tmp_path / "models"
    d.mkdir()
    for ext in ("json", "safetensors"):
        shutil.copyfile(TINY / f"compact-tiny.{ext}", d / f"compact-tiny.{ext}")
    monkeypatch.setenv("DNAIMG_MODELS", str(d))
    compact._CACHE.clear()
    cfg = _tiny_cfg(gray=True, gdn="square")
    model = CompactHyperprior(cfg)
    what = init_state(model, "compact-tiny")
    assert "folded from RGB to one channel" in what and "GDN weights as squares" in what
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"model": model.state_dict(), "step": 0, "steps": 0, "batch": 8, "crop": 64, "seed": 0, "lr": 1e-4,
                "wall": 0.0, "config": cfg.to_dict(), "data": [str(tmp_path / "medical" / "xray" / "train")], "init": what,
                "downscale": False}, run / "checkpoint.pt")
    export_compact(run, compact.DEFAULT_GRAY_MODEL, d)
    monkeypatch.setattr(compact, "DEFAULT_MODEL", "compact-tiny")
    yield d
    compact._CACHE.clear()


def test_fold_and_square_gdn_keep_the_function(monkeypatch):
    from dnaimg.codecs import compact
    from dnaimg.zoo.train_compact import init_state
    monkeypatch.setenv("DNAIMG_MODELS", str(TINY))
    compact._CACHE.clear()
    rgb, _, _ = compact.load("compact-tiny")
    gray = CompactHyperprior(_tiny_cfg(gray=True, gdn="square"))
    init_state(gray, "compact-tiny")
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        y_rgb, y_gray = rgb.g_a(x.repeat(1, 3, 1, 1)), gray.g_a(x)
        assert torch.allclose(y_rgb, y_gray, atol=2e-3)
        out = rgb.g_s(y_rgb)
        luma = 0.299 * out[:, 0] + 0.587 * out[:, 1] + 0.114 * out[:, 2]
        assert torch.allclose(luma, gray.g_s(y_rgb)[:, 0], atol=2e-3)
        # the gains follow other rate points along log(lambda): the same points keep their gains
        same = CompactHyperprior(_tiny_cfg(gray=True))
        init_state(same, "compact-tiny")
        assert torch.equal(same.log_gain, rgb.log_gain)
    compact._CACHE.clear()


def test_gain_rows_move_along_log_lambda():
    from dnaimg.zoo.train_compact import _regain
    rows = torch.arange(3, dtype=torch.float32).view(3, 1)
    out = _regain(rows, [0.01, 0.02, 0.04], (0.01, 0.0141421356, 0.04, 0.08))
    assert torch.allclose(out[:, 0], torch.tensor([0.0, 0.5, 2.0, 3.0]), atol=1e-5)


def test_relu_gdn_is_what_the_shipped_models_read():
    """Cards without "gdn" (compact-ms-v1) build the relu GDN they were trained with."""
    from dnaimg.zoo.registry import card
    c = card("compact-ms-v1")
    assert "gdn" not in c["architecture"] and CompactConfig.from_dict(c["architecture"]).gdn == "relu"
    g = CompactHyperprior(_tiny_cfg(gdn="square")).g_a[1]
    assert g.param == "square" and float(g.gamma[0, 1].detach()) > 0       # cross-channel terms have a gradient
    with pytest.raises(ValueError, match="unknown GDN"):
        CompactHyperprior(_tiny_cfg(gdn="abs"))


def test_gray_image_gets_the_gray_model_and_decodes_gray(models):
    from dnaimg import api
    img = _gray_image()
    enc = api.encode(img, "compact", quality=4)
    assert enc.info["model"] == compact.DEFAULT_GRAY_MODEL
    assert not any("coded as RGB" in n for n in enc.info["notes"])
    dec = api.decode([s for _, s in enc.fasta_records()])
    assert dec.exact and dec.image.shape == img.shape and dec.image.dtype == np.uint8
    # the same image through the RGB model (R = G = B, flagged gray): about the same picture
    enc3 = api.encode(img, "compact", quality=4, model="compact-tiny")
    assert any("coded as RGB" in n for n in enc3.info["notes"])
    dec3 = api.decode([s for _, s in enc3.fasta_records()])
    assert dec3.image.shape == img.shape
    assert abs(psnr(img, dec.image) - psnr(img, dec3.image)) < 1.0
    # a colour image still gets the RGB model
    rgb = np.repeat(img[:, :, None], 3, axis=2)
    assert api.encode(rgb, "compact", quality=4).info["model"] == "compact-tiny"


def test_gray_model_refuses_colour(models):
    from dnaimg import api
    from dnaimg.codecs.base import CodecError
    rgb = np.repeat(_gray_image()[:, :, None], 3, axis=2)
    with pytest.raises(CodecError, match=f"model {compact.DEFAULT_GRAY_MODEL} takes 1-channel images"):
        api.encode(rgb, "compact", quality=4, model=compact.DEFAULT_GRAY_MODEL)


def test_export_card_names_the_data_and_the_start(models):
    import json
    c = json.loads((models / f"{compact.DEFAULT_GRAY_MODEL}.json").read_text())
    assert c["architecture"]["gray"] is True and c["architecture"]["gdn"] == "square"
    assert c["training"]["data"] == ["medical/xray/train"]
    assert c["training"]["preprocessing"] == "full-size random crops and flips; colour images converted to luma"
    assert c["training"]["initialised_from"].startswith("shipped model compact-tiny")


def test_gray_image_falls_back_to_the_rgb_model_when_the_gray_one_cannot_fit(models):
    from dnaimg.codecs import compact
    from dnaimg.codecs.base import RateError
    img = _gray_image()
    # a cap only the RGB model's encodings meet (as when the one-channel model's lowest rate costs more)
    enc = compact.encode(img, packet_bytes=52, fits=lambda e: e.info["model"] == "compact-tiny")
    assert enc.info["model"] == "compact-tiny"
    assert compact.CompactParams.unpack(enc.meta).gray            # R = G = B, flagged: decodes gray
    with pytest.raises(RateError, match="even the lowest rate does not fit"):
        compact.encode(img, packet_bytes=52, model=compact.DEFAULT_GRAY_MODEL,
                       fits=lambda e: e.info["model"] == "compact-tiny")


def test_a_shipped_model_carries_its_float_h_s(monkeypatch):
    """The weights file holds h_s as integers only: a model loaded from it (and training started
    from a shipped model's name) gets the float h_s those integers stand for, not a random one."""
    from dnaimg.codecs import compact
    from dnaimg.zoo.exact import FA
    from dnaimg.zoo.train_compact import init_state
    monkeypatch.setenv("DNAIMG_MODELS", str(TINY))
    compact._CACHE.clear()
    model, tables, _ = compact.load("compact-tiny")
    z = np.random.default_rng(3).integers(-6, 7, size=(1, model.cfg.N, 3, 4))
    mu_i, sigma_i = tables.h_s(z)
    with torch.no_grad():
        mu_f, s_f = model.entropy_parameters(torch.from_numpy(z).float())
    scale = float(1 << FA)
    assert np.abs(mu_f.numpy() - mu_i / scale).max() < 0.01
    assert np.abs(np.abs(s_f.numpy()) - sigma_i / scale).max() < 0.01
    started = CompactHyperprior(_tiny_cfg())
    init_state(started, "compact-tiny")
    for a, b in zip(started.h_s.parameters(), model.h_s.parameters()):
        assert torch.equal(a, b)
    compact._CACHE.clear()
