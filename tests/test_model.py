
import numpy as np
import pytest
import torch

from dnaimg.codecs.robust import reconstruct, to_tensor
from dnaimg.image import load_image, psnr
from dnaimg.zoo.model import CompressiveAutoencoder, ModelConfig, latent_shape
from dnaimg.zoo.registry import operating_points, ModelError, list_models, load_model, load_weights


def test_shapes_and_quantiser():
    cfg = ModelConfig(channels=8, levels=9)
    m = CompressiveAutoencoder(cfg).eval()
    x = torch.rand(1, 3, 37, 50)
    s = m.compress(x)
    assert s.shape == (1,) + latent_shape(cfg, 37, 50) == (1, 8, 5, 7)
    assert s.min() >= 0 and s.max() <= 8
    y = m.decompress(s, (37, 50))
    assert y.shape == (1, 3, 37, 50)
    z = torch.tensor([-1.0, -0.13, -0.12, 0.0, 0.124, 0.126, 1.0])
    assert m.to_symbols(z).tolist() == [0, 3, 4, 4, 4, 5, 8]
    assert torch.allclose(m.from_symbols(m.to_symbols(z)), torch.tensor([-1, -0.25, 0, 0, 0, 0.25, 1.0]))
    # straight-through: the gradient passes the rounding unchanged
    z = torch.zeros(3, requires_grad=True)
    m.quantize_ste(z * 2).sum().backward()
    assert torch.allclose(z.grad, torch.full((3,), 2.0))


def test_shipped_models_load_and_have_cards():
    cards = list_models()
    assert cards, "no shipped model"
    for c in cards:
        model, card = load_model(c["name"])
        assert "training" in card and card["training"]["steps"] > 0 and card["training"]["wall_time_min"] > 0
        pts = operating_points(card)
        assert pts and all(p.codeword_nt >= 2 and p.channels <= model.cfg.channels for p in pts)
        if len(pts) > 1:          # a multi-rate card: every point has its selection score and a q
            assert all("select_psnr_db" in p.card and "q" in p.card for p in pts)


def test_shipped_model_is_really_trained(kodak_image):
    img = load_image(kodak_image)
    from dnaimg.zoo.registry import select_point
    for label, floor in (("cae32-l9", 26.0), ("cae32-mr:r050", 25.0), ("cae32-mr:r098", 27.0)):
        pt = select_point(label)
        model, _ = load_model(pt.model)
        with torch.no_grad():
            sym = model.compress(to_tensor(img), pt.levels, pt.channels)[0].numpy()
        rec = reconstruct(sym, pt.model, img.shape[:2], pt.levels)
        assert psnr(img, rec) > floor, label


def test_corrupt_or_mismatched_weights_are_refused(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 100)
    m = CompressiveAutoencoder(ModelConfig(channels=8))
    with pytest.raises(ModelError, match="cannot read"):
        load_weights(m, bad)
    from safetensors.torch import save_file
    other = CompressiveAutoencoder(ModelConfig(channels=16))
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(tmp_path / "o.safetensors"))
    with pytest.raises(ModelError, match="shape"):
        load_weights(m, tmp_path / "o.safetensors")


def _random_images(folder, n, shape, seed):
    from PIL import Image
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def test_training_resumes(tmp_path):
    from dnaimg.zoo.train import train
    data = _random_images(tmp_path / "data", 3, (64, 80, 3), seed=0)
    cfg = ModelConfig(channels=4, levels=9, width=16, res_blocks=1)
    ck = train(data, tmp_path / "run", cfg, steps=3, batch=2, crop=32, log_every=1)
    s1 = torch.load(ck, weights_only=True)
    assert s1["step"] == 3
    train(data, tmp_path / "run", cfg, steps=5, batch=2, crop=32, log_every=1)
    s2 = torch.load(ck, weights_only=True)
    assert s2["step"] == 5
    assert not torch.equal(s1["model"]["encoder.tail.weight"], s2["model"]["encoder.tail.weight"])


def test_train_command_with_exact_noise_and_entropy(tmp_path):
    from click.testing import CliRunner
    from dnaimg.cli import main
    from dnaimg.zoo.model import ModelConfig
    from dnaimg.zoo.train import soft_entropy
    data = _random_images(tmp_path / "data", 2, (48, 48, 3), seed=1)
    r = CliRunner().invoke(main, ["train", "--data", str(data), "--out", str(tmp_path / "run"), "--channels", "4",
                                  "--steps", "2", "--batch", "2", "--crop", "32", "--noise", "exact",
                                  "--lambda", "0.01"])
    assert r.exit_code == 0, r.output
    s = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert s["step"] == 2 and s["noise"]["kind"] == "exact" and s["lam"] == 0.01
    # entropy estimate: a latent on one level has ~0 entropy, a uniform one ~log4(levels)
    cfg = ModelConfig(channels=2, levels=9)
    assert float(soft_entropy(torch.zeros(1, 2, 8, 8), cfg)) < 0.2
    u = torch.linspace(-1, 1, 9).repeat(64)[: 2 * 16 * 16].reshape(1, 2, 16, 16)
    assert float(soft_entropy(u, cfg)) > 1.3


def test_compact_training_stops_with_its_time_budget(tmp_path):
    """``--minutes``: the run stops by the clock (not at --steps), saves its checkpoint, and its
    learning-rate plan was shortened to the steps that fit."""
    from click.testing import CliRunner
    from dnaimg.cli import main
    data = _random_images(tmp_path / "data", 2, (64, 64, 3), seed=2)
    threads = torch.get_num_threads()
    try:    # one thread: the run's pace stays sane beside other jobs on a small machine
        r = CliRunner().invoke(main, ["train", "--arch", "compact", "--data", str(data), "--out",
                                      str(tmp_path / "run"), "--width", "8", "--channels", "8", "--steps", "100000000",
                                      "--batch", "1", "--crop", "64", "--minutes", "0.1", "--no-bf16", "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    assert r.exit_code == 0, r.output
    s = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert 0 < s["step"] < 100000000
    assert s["steps"] < 100000000          # the plan, lowered once the pace was measured
    assert "ms a step" in r.output and "CPU threads" in s["hardware"]


def test_compact_training_device_errors_and_batches(tmp_path):
    """An unknown or absent device is a one-line error; the batch cut on a device is the one cut
    from the same arrays on the CPU (same crops and flips for the same seed)."""
    import random
    from click.testing import CliRunner
    from dnaimg.cli import main
    from dnaimg.zoo.train import sample_batch
    from dnaimg.zoo.train_compact import _device_batch
    data = _random_images(tmp_path / "data", 1, (64, 64, 3), seed=3)
    base = ["train", "--arch", "compact", "--data", str(data), "--out", str(tmp_path / "run"), "--steps", "1"]
    r = CliRunner().invoke(main, base + ["--device", "tpu9"])
    assert r.exit_code != 0 and "unknown device 'tpu9'" in r.output
    if not torch.cuda.is_available():
        r = CliRunner().invoke(main, base + ["--device", "cuda"])
        assert r.exit_code != 0 and "sees no CUDA device" in r.output
    r = CliRunner().invoke(main, ["train", "--data", str(data), "--out", str(tmp_path / "r2"), "--minutes", "1"])
    assert r.exit_code != 0 and "for --arch compact" in r.output
    imgs = [np.random.default_rng(k).integers(0, 255, (40 + k, 50, 3), dtype=np.uint8) for k in range(3)]
    a = sample_batch(imgs, 6, 16, random.Random(5))
    b = _device_batch([torch.from_numpy(i) for i in imgs], 6, 16, random.Random(5))
    assert torch.equal(a, b)
    # ... and the batches the runs so far were trained on (the draws in the order they were made)
    rng, old = random.Random(5), []
    for _ in range(6):
        img = imgs[rng.randrange(len(imgs))]
        y, x = rng.randrange(img.shape[0] - 16 + 1), rng.randrange(img.shape[1] - 16 + 1)
        c = img[y:y + 16, x:x + 16]
        c = c[:, ::-1] if rng.random() < 0.5 else c
        c = c[::-1] if rng.random() < 0.5 else c
        old.append(c)
    assert torch.equal(a, torch.from_numpy(np.stack(old)).permute(0, 3, 1, 2).float() / 255.0)
