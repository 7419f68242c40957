"""Multi-rate models: training, export with operating points, point selection and --rate."""
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from dnaimg.cli import main
from dnaimg.zoo.model import ModelConfig
from dnaimg.zoo.registry import ModelError, list_models, operating_points, select_point

from conftest import ROOT


def _images(folder, n, shape, seed):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


@pytest.fixture
def fake_models(tmp_path, monkeypatch):
    """A models folder with a tiny multi-rate model (4 channels, points at 2 and 4 channels)."""
    from dnaimg.zoo import registry
    from dnaimg.zoo.train import MultiRate, NoiseSchedule, export_checkpoint, train
    d = tmp_path / "models"
    monkeypatch.setenv("DNAIMG_MODELS", str(d))
    monkeypatch.setattr(registry, "_CACHE", {})
    data = _images(tmp_path / "data", 2, (48, 64, 3), 3)
    cfg = ModelConfig(channels=4, levels=9, width=16, res_blocks=1)
    train(data, tmp_path / "run", cfg, steps=2, batch=4, crop=32, multirate=MultiRate((2, 4), (11, 31)))
    export_checkpoint(tmp_path / "run", "tiny-mr", out_dir=d)
    train(data, tmp_path / "runn", cfg, steps=2, batch=4, crop=32, multirate=MultiRate((2, 4), (11, 31)),
          noise=NoiseSchedule("exact", 0.05, 0.5, erasures=True))
    export_checkpoint(tmp_path / "runn", "tiny-mr-noise", out_dir=d)
    return d


def test_export_declares_points(fake_models):
    card = json.loads((fake_models / "tiny-mr.json").read_text())
    pts = operating_points(card)
    assert [(p.channels, p.levels, p.codeword_nt) for p in pts] == [(2, 11, 2), (2, 31, 3), (4, 11, 2), (4, 31, 3)]
    assert [p.payload_nt_per_pixel for p in pts] == [4 / 64, 6 / 64, 8 / 64, 12 / 64]
    assert card["training"]["multirate"] == {"channels": [2, 4], "levels": [11, 31]}
    noisy = json.loads((fake_models / "tiny-mr-noise.json").read_text())
    assert noisy["noise_trained"] is True and noisy["training"]["noise"]["erasures"] is True
    assert not card.get("noise_trained")


def test_rate_picks_the_best_point_under_the_budget(fake_models):
    p = fake_models / "tiny-mr.json"
    card = json.loads(p.read_text())
    # made-up selection scores: the 3-nt point at 2 channels beats the 2-nt point at 4 channels
    scores = {"k2l11": 20.0, "k2l31": 23.0, "k4l11": 22.0, "k4l31": 25.0}
    for q in card["operating_points"]:
        q["select_psnr_db"] = scores[q["name"]]
    p.write_text(json.dumps(card))
    assert select_point("tiny-mr", rate=0.2).name == "k4l31"
    assert select_point("tiny-mr", rate=0.15).name == "k2l31"     # 23 dB at 0.094 beats 22 dB at 0.125
    assert select_point("tiny-mr", rate=0.07).name == "k2l11"
    with pytest.raises(ModelError, match="no operating point at or under 0.01"):
        select_point("tiny-mr", rate=0.01)
    assert select_point("tiny-mr:k4l11").channels == 4
    with pytest.raises(ModelError, match="no operating point 'nope'"):
        select_point("tiny-mr:nope")
    with pytest.raises(ModelError, match="over --rate"):
        select_point("tiny-mr:k4l31", rate=0.1)
    # without --model: plain models only, unless noise-trained ones are asked for
    assert select_point(rate=0.2).model == "tiny-mr"
    assert select_point(rate=0.2, noise_trained=True).model == "tiny-mr-noise"


def test_points_roundtrip_through_dna(fake_models, tmp_path):
    from dnaimg.codecs.robust import decode_reads, encode_image, reconstruct
    img = np.random.default_rng(5).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    for name, k, L in (("k2l11", 2, 11), ("k4l31", 4, 31)):
        enc = encode_image(img, model=f"tiny-mr:{name}")
        assert enc.symbols.shape == (k, 5, 7) and enc.symbols.max() < L
        assert (enc.params.channels, enc.params.levels) == (k, L)
        dec = decode_reads(enc.oligos, precision="fp32")
        assert dec.report["latent_exact"]
        assert np.array_equal(dec.image, reconstruct(enc.symbols, "tiny-mr", img.shape[:2], L))
        assert dec.report["image"]["channels"] == k


def test_cli_rate_and_models_listing(fake_models, tmp_path):
    img = tmp_path / "x.png"
    Image.fromarray(np.random.default_rng(6).integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(img)
    from dnaimg.codecs.robust import total_nt_per_pixel
    from dnaimg.dna.container import Layout
    from dnaimg.zoo.registry import card
    totals = {p.label: total_nt_per_pixel(p, 40, 56, Layout()) for p in operating_points(card("tiny-mr"))}
    budget = totals["tiny-mr:k2l31"] + 1e-6          # --rate caps the total nt/px: only k2l31 and cheaper fit
    assert all(v > budget for k, v in totals.items() if k in ("tiny-mr:k4l31",))
    r = CliRunner().invoke(main, ["encode", str(img), "-o", str(tmp_path / "x.fa"), "--model", "tiny-mr",
                                  "--rate", str(budget), "--json", "-q"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["point"] == "tiny-mr:k2l31" and out["payload_nt_per_pixel"] == pytest.approx(6 / 64)
    assert out["total_nt_per_pixel"] <= budget
    r = CliRunner().invoke(main, ["encode", str(img), "-o", str(tmp_path / "y.fa"), "--codec", "robust", "--rate", "0.01"])
    assert r.exit_code == 1 and "no operating point at or under 0.01" in r.output
    r = CliRunner().invoke(main, ["models"])
    assert r.exit_code == 0 and "tiny-mr:k4l31" in r.output and "noise-trained" in r.output


def test_select_points_keeps_the_pareto_front(fake_models, tmp_path):
    from dnaimg.bench.evaluate import select_points
    imgs = _images(tmp_path / "sel", 2, (40, 48, 3), 7)
    front = select_points("tiny-mr", sorted(imgs.iterdir()))
    rates = [r["channels"] * r["codeword_nt"] / 64 for r in front]
    psnrs = [r["select_psnr_db"] for r in front]
    assert rates == sorted(rates) and psnrs == sorted(psnrs)        # more nt, better
    assert all(r["name"] == f"r{round(100 * rt):03d}" for r, rt in zip(front, rates))


def test_multirate_training_resumes_with_its_weights(tmp_path):
    from dnaimg.zoo.train import MultiRate, train
    data = _images(tmp_path / "data", 2, (48, 48, 3), 4)
    cfg = ModelConfig(channels=4, levels=9, width=16, res_blocks=1)
    mr = MultiRate((2, 4), (11,))
    train(data, tmp_path / "run", cfg, steps=2, batch=4, crop=32, multirate=mr)
    s1 = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert set(s1["mse_ema"]) <= {"2,11", "4,11"} and s1["mse_ema"]
    train(data, tmp_path / "run", cfg, steps=4, batch=4, crop=32, multirate=mr)
    s2 = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert s2["step"] == 4 and list(s2["multirate"]["channels"]) == [2, 4]
    assert not torch.equal(s1["model"]["encoder.tail.weight"], s2["model"]["encoder.tail.weight"])


def test_multirate_latent_masks_channels_and_quantises_per_sample():
    from dnaimg.zoo.train import NoiseSchedule, _multirate_latent
    z = torch.rand(2, 4, 3, 3) * 2 - 1
    out = _multirate_latent(z, torch.tensor([1, 4]), torch.tensor([11, 31]), NoiseSchedule(), 0.0,
                            torch.Generator().manual_seed(0))
    assert torch.all(out[0, 1:] == 0)
    q0, q1 = 2 / 10, 2 / 30
    assert torch.allclose(out[0, :1], torch.round((z[0, :1] + 1) / q0) * q0 - 1, atol=1e-5)
    assert torch.allclose(out[1], torch.round((z[1] + 1) / q1) * q1 - 1, atol=1e-5)


def test_every_shipped_model_and_point_loads_and_decodes():
    from dnaimg.codecs.robust import decode_reads, encode_image
    img = np.asarray(Image.open(ROOT / "examples" / "coffee.png").convert("RGB"))[:64, :96]
    for c in list_models():
        for p in operating_points(c):
            enc = encode_image(img, model=p.label if p.name else p.model)
            dec = decode_reads(enc.oligos, precision="fp32")
            assert dec.report["latent_exact"] and dec.image.shape == img.shape, p.label


def test_noise_mix_draws_rates_below_the_schedule():
    import random
    from dnaimg.zoo.train import NoiseSchedule
    ns = NoiseSchedule("exact", p_max=0.05, ramp=0.5, mix=True)
    rng = random.Random(0)
    ps = [ns.sample(900, 1000, rng) for _ in range(2000)]
    assert 0 <= min(ps) < 0.005 and 0.045 < max(ps) <= 0.05 and 0.02 < sum(ps) / len(ps) < 0.03
    assert NoiseSchedule("exact", p_max=0.05, ramp=0.5).sample(900, 1000, rng) == 0.05
    assert NoiseSchedule("exact", p_max=0.05, ramp=0.5).sample(250, 1000, rng) == pytest.approx(0.025)
