"""The microscopy autoencoder bench on a few synthetic cell images: data handling, metrics, and the
DNA round trip (perfect reads give the latent back exactly)."""
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from dnaimg.bench import microscopy_ae as M


def _cells(rng, h, w, n=12, bg=20, peak=200):
    yy, xx = np.mgrid[:h, :w]
    img = np.full((h, w), float(bg))
    for _ in range(n):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(6, 14)
        img += (peak - bg) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    return np.clip(img + rng.normal(0, 3, (h, w)), 0, 255)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("micro")
    tr, ev = root / "train", root / "eval"
    tr.mkdir()
    ev.mkdir()
    Image.fromarray(_cells(rng, 256, 256).astype(np.uint8), "L").save(tr / "a.png")
    Image.fromarray(np.repeat(_cells(rng, 256, 384)[:, :, None], 3, axis=2).astype(np.uint8), "RGB").save(tr / "b.png")
    Image.fromarray(_cells(rng, 256, 256).astype(np.uint8), "L").save(ev / "c.png")
    a16 = (33000 + _cells(rng, 200, 300, bg=10, peak=250) * 15).astype(np.uint16)   # 16-bit with an offset
    Image.fromarray(a16).save(ev / "d16.png")
    return tr, ev


def test_loading_converts_and_crops(folders):
    tr, ev = folders
    g, note = M.load_gray8(ev / "d16.png")
    assert g.dtype == np.uint8 and g.shape == (200, 300) and g.min() == 0 and g.max() == 255 and "16-bit" in note
    d = M.load_crops(ev, max_per_image=None, min_std=2.0)
    assert d["crops"].shape == (4 + 2, 128, 128) and d["crops"].dtype == np.uint8      # 2x2 grid + 1x2 grid
    assert d["source"].count("d16.png") == 2 and d["corner"][:4] == [(0, 0), (0, 128), (128, 0), (128, 128)]
    t = M.load_crops(tr, max_per_image=3, min_std=2.0)
    assert t["crops"].shape == (3 + 3, 128, 128) and t["notes"]["b.png"] == "RGB -> luma"
    flat = np.zeros((256, 256), np.uint8)
    assert M.grid_crops(flat, None, 2.0) == []        # empty background skipped


def test_invention_counts_invented_and_lost_objects():
    orig = np.full((1, 128, 128), 10, np.uint8)
    orig[0, 20:30, 20:30] = 200
    assert M.invention(orig, orig.copy(), np.array([100]))["invented_objects_per_crop"] == 0
    rec = orig.copy()
    rec[0, 80:90, 80:90] = 200          # a cell where there is none
    rec[0, 20:30, 20:30] = 10           # and the real one gone
    inv = M.invention(orig, rec, np.array([100]))
    assert inv["invented_objects_per_crop"] == 1 and inv["lost_objects_per_crop"] == 1
    assert inv["false_foreground_fraction"] == pytest.approx(100 / (128 * 128 - 100))


def test_metrics_are_consistent():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (3, 128, 128)).astype(np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-5, 6, a.shape) * np.arange(1, 4)[:, None, None], 0, 255).astype(np.uint8)
    m = M.metrics(a, b)
    mse = ((a.astype(float) - b) ** 2).mean()
    assert m["mse"] == pytest.approx(mse)
    assert m["psnr_of_mean_mse_db"] == pytest.approx(10 * math.log10(255 ** 2 / mse))
    assert m["psnr_db"] > m["psnr_of_mean_mse_db"]     # Jensen: the crops' errors differ
    assert M.metrics(a, a)["ms_ssim"] == pytest.approx(1.0, abs=1e-5) and 0 < m["ms_ssim"] < 1


def test_models_shapes_and_quantiser():
    x = torch.rand(2, 1, 128, 128)
    for model, shape in ((M.FCAE(hidden=32), (256,)), (M.CAE(), (4, 8, 8))):
        z = model.encode(x)
        assert tuple(z.shape[1:]) == shape and z.abs().max() <= 1
        s = M.symbols_of(z, 17)
        assert s.min() >= 0 and s.max() <= 16
        assert torch.equal(M.symbols_of(M.values_of(s, 17), 17), s)
        assert model.decode(M.values_of(s, 17)).shape == x.shape
    assert M.PatchD()(x).shape[:2] == (2, 1)


def test_dna_round_trip_is_exact_with_perfect_reads():
    rng = np.random.default_rng(2)
    sym = rng.integers(0, 17, (7, 256))
    wr = M.dna_store(sym, 17, 3)
    ch = dict(M.channels(["perfect"]))["perfect"]
    from dnaimg.dna.channel import simulate
    reads, _, _ = simulate(list(wr.oligos), ch, seed=0)
    got, erased, rep = M.dna_read(reads, sym.shape)
    assert not erased.any() and rep["exact"] and np.array_equal(got, sym)
    r = wr.rates(7 * 128 * 128)
    assert r["total_nt_per_pixel"] == pytest.approx(wr.oligos.shape[0] * 200 / (7 * 128 * 128))
    # erasures filled with the centre level, or (CAE) the mean of the latent neighbours
    er = np.zeros_like(erased)
    er[0, 5] = True
    assert M.fill(sym, er, 17, spatial=False)[0, 5] == 8
    assert M.fill(np.full_like(sym, 3), er, 17, spatial=True)[0, 5] == 3


def test_bench_tiny_run(folders, tmp_path):
    tr, ev = folders
    res = M.run(tr, ev, tmp_path / "mae", steps=3, gan_steps=2, max_per_image=2,
                channel_names=("perfect", "paper3"), weights=tmp_path / "w.pt", strong_adv_weight=1e-2,
                log=lambda *_: None)
    saved = json.loads((tmp_path / "mae.json").read_text())
    assert saved["models"].keys() == {"fc", "cae", "cae-gan", "cae-gan-strong"}
    assert (tmp_path / "mae_grid.png").exists()
    assert res["data"]["eval_crops"] == 4 and res["data"]["train_crops"] == 4
    rates = {m["dna"]["total_nt_per_pixel"] for m in res["models"].values()}
    assert len(rates) == 1                    # the same latent size: the same rate for all three
    for name, m in res["models"].items():
        e, d = m["eval"], m["dna"]["channels"]
        assert e["psnr_of_mean_mse_db"] == pytest.approx(10 * math.log10(255 ** 2 / e["mse"]))
        assert e["psnr_db"] >= e["psnr_of_mean_mse_db"] - 1e-9
        # perfect reads: the latent comes back exactly, so the image does too
        assert d["perfect"]["latent_exact"] and d["perfect"]["values_wrong"] == 0
        assert d["perfect"]["psnr_db"] == e["psnr_db"] and d["perfect"]["mse"] == e["mse"]
        assert d["paper3"]["values_wrong"] > 0
    assert "| cae-gan | 4x8x8 |" in M.table(res)
    grid = np.asarray(Image.open(tmp_path / "mae_grid.png"))
    assert grid.shape[1] == 5 * 128 + 4 * 2
    # from the saved weights nothing is trained again, and every number is the same
    again = M.run(tr, ev, tmp_path / "mae2", steps=3, gan_steps=2, max_per_image=2, channel_names=("perfect",),
                  init_weights=tmp_path / "w.pt", strong_adv_weight=1e-2, log=lambda *_: None)
    for name, m in res["models"].items():
        assert again["models"][name]["eval"] == m["eval"]
    assert again["training"] == res["training"]
