"""Compact training's edges: resuming (learning rate of the first step, the settings each call
trained with, as the card reports them), starting from odd sources, bad checkpoints and data as
one-line errors, and training images read as the codecs read them."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from dnaimg.cli import main
from dnaimg.zoo.compact import CompactConfig, CompactHyperprior

TINY = ["--width", "8", "--channels", "8", "--crop", "64", "--batch", "1", "--threads", "1", "--no-bf16"]


def _images(folder, n=2, shape=(64, 80, 3), seed=0):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def _train(*args):
    threads = torch.get_num_threads()
    try:
        return CliRunner().invoke(main, ["train", "--arch", "compact", *TINY, *args])
    finally:
        torch.set_num_threads(threads)


def test_resume_keeps_the_plan_and_records_each_call(tmp_path):
    from dnaimg.zoo.exact import export_compact
    from dnaimg.zoo.train_compact import train_compact
    data = _images(tmp_path / "data")
    run = tmp_path / "run"
    assert _train("--data", str(data), "--out", str(run), "--steps", "4", "--lr", "1e-3").exit_code == 0
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    state.pop("opt")                                    # as committed: no optimiser moments
    state["model"] = {k: v.half() for k, v in state["model"].items()}      # and fp16, as from a GPU
    torch.save(state, run / "checkpoint.pt")
    seen = []
    orig = torch.optim.Adam.step

    def spy(self, *a, **k):
        seen.append(self.param_groups[0]["lr"])
        return orig(self, *a, **k)
    torch.optim.Adam.step = spy
    try:
        r = _train("--data", str(data), "--out", str(run), "--steps", "6", "--lr", "1e-3", "--batch", "2")
    finally:
        torch.optim.Adam.step = orig
    assert r.exit_code == 0, r.output
    assert len(seen) == 2 and seen[0] < 1e-3 * 0.5 and seen[1] < seen[0]      # step 5 of 6 on the cosine, not 1e-3
    s = torch.load(run / "checkpoint.pt", weights_only=True)
    assert s["step"] == 6 and s["batch"] == 2
    assert [x["steps"] for x in s["sessions"]] == [[0, 4], [4, 6]] and [x["batch"] for x in s["sessions"]] == [1, 2]
    # a call that trains nothing leaves the run's settings as they were
    r = _train("--data", str(data), "--out", str(run), "--steps", "6", "--batch", "3", "--lr", "5e-4")
    assert r.exit_code == 0, r.output
    s = torch.load(run / "checkpoint.pt", weights_only=True)
    assert s["batch"] == 2 and s["lr"] == 1e-3 and len(s["sessions"]) == 2
    card = json.loads(export_compact(run, "t", tmp_path / "models").with_suffix(".json").read_text())
    assert card["training"]["batch"] == 2 and [x["batch"] for x in card["training"]["sessions"]] == [1, 2]
    assert card["training"]["data"] == ["/".join(data.parts[-3:])]
    with pytest.raises(ValueError, match="multiple of 64"):
        train_compact(data, tmp_path / "r9", CompactConfig(N=8, M=8), steps=1, crop=80)


def test_bad_sources_and_checkpoints_are_one_line_errors(tmp_path):
    data = _images(tmp_path / "data")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    r = _train("--data", str(data), "--out", str(tmp_path / "junk"), "--steps", "1")
    assert r.exit_code == 1 and "checkpoint.pt: not a training checkpoint" in r.output and "Traceback" not in r.output
    torch.save({"model": {"encoder.w": torch.zeros(1)}, "config": {}, "arch": "CompressiveAutoencoder"},
               tmp_path / "cae.pt")
    r = _train("--data", str(data), "--out", str(tmp_path / "r1"), "--steps", "1", "--init", str(tmp_path / "cae.pt"))
    assert r.exit_code == 1 and "not a compact-codec training checkpoint (it is a CompressiveAutoencoder one)" in r.output
    assert _train("--data", str(data), "--out", str(tmp_path / "small"), "--steps", "1").exit_code == 0
    r = CliRunner().invoke(main, ["train", "--arch", "compact", "--data", str(data), "--out", str(tmp_path / "r2"),
                                  "--steps", "1", "--crop", "64", "--init", str(tmp_path / "small" / "checkpoint.pt")])
    assert r.exit_code == 1 and "its network is not this one's shape" in r.output
    r = _train("--data", str(data), "--out", str(tmp_path / "r3"), "--steps", "1", "--crop", "80")
    assert r.exit_code == 1 and "--crop must be a multiple of 64" in r.output
    r = _train("--data", str(data), "--out", str(tmp_path / "r4"), "--steps", "1", "--lambdas", "nan,0.1")
    assert r.exit_code == 1 and "positive, finite and increasing" in r.output


def test_one_rate_point_starts_every_new_one():
    from dnaimg.zoo.train_compact import _regain
    rows = torch.tensor([[0.5, -0.25]])
    out = _regain(rows, [0.01], (0.005, 0.01, 0.04))
    assert torch.equal(out, rows.repeat(3, 1))


def test_training_images_read_as_the_codecs_read_them(tmp_path, capsys):
    from dnaimg.zoo.train import load_training_images
    d = tmp_path / "d"
    d.mkdir()
    ramp = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)       # 16-bit gray
    Image.fromarray(ramp).save(d / "deep.png")
    (d / "broken.png").write_bytes(b"\x89PNG not really")
    imgs = load_training_images(d, 32, downscale=False)
    assert len(imgs) == 1 and imgs[0].shape == (64, 64, 3)
    expect = np.clip(ramp / 65535.0 * 255.0 + 0.5, 0, 255).astype(np.uint8)
    assert np.array_equal(imgs[0][..., 0], expect) and (imgs[0] == 255).mean() < 0.01
    assert "skipped 1 unreadable file(s)" in capsys.readouterr().err


def test_a_wider_latent_starts_as_the_narrow_network(tmp_path):
    """Widening the latent: the wider network draws the same image from the same symbols, its new
    channels all 0 at the smallest scale (no rate), and their analysis rows get gradients (they can
    grow); training from a narrower run says so."""
    from dnaimg.zoo.train_compact import widen_latent
    torch.manual_seed(0)
    narrow = CompactHyperprior(CompactConfig(N=16, M=24, gdn="square")).eval()
    wide = CompactHyperprior(CompactConfig(N=16, M=40, gdn="square")).eval()
    wide.load_state_dict(widen_latent(narrow.state_dict(), wide))
    x = torch.rand(1, 3, 64, 128)

    def code(m):
        with torch.no_grad():
            y = m.g_a(x)
            z = torch.round(m.h_a(y))
            mu, s = m.entropy_parameters(z)
            g, ig = m.gains(2.5)
            q = torch.round(y * g - mu * g)
            return m.g_s((q + mu * g) * ig), z, q, s.abs() * g
    xn, zn, qn, sn = code(narrow)
    xw, zw, qw, sw = code(wide)
    assert torch.equal(zn, zw) and torch.allclose(xn, xw, atol=1e-6)
    assert torch.equal(qw[:, :24], qn) and not qw[:, 24:].any()
    assert torch.allclose(sw[:, :24], sn, atol=1e-6) and float(sw[:, 24:].max()) < 0.11
    wide.train()
    out = wide(x, torch.tensor([3.0]))
    torch.mean((out["x_hat"] - x) ** 2).backward()
    assert float(wide.g_a[6].weight.grad[24:].abs().sum()) > 0
    data = _images(tmp_path / "data")
    assert _train("--data", str(data), "--out", str(tmp_path / "n"), "--steps", "1").exit_code == 0
    r = _train("--data", str(data), "--out", str(tmp_path / "w"), "--steps", "1", "--channels", "12",
               "--init", str(tmp_path / "n" / "checkpoint.pt"))
    assert r.exit_code == 0 and "latent widened from 8 to 12 channels (the new ones silent at first)" in r.output
    r = _train("--data", str(data), "--out", str(tmp_path / "x"), "--steps", "1", "--channels", "6",
               "--init", str(tmp_path / "n" / "checkpoint.pt"))
    assert r.exit_code == 1 and "only wider" in r.output


def test_kill_saves_a_background_run(tmp_path):
    """A background run stopped with "kill PID" (SIGTERM; a shell's background job ignores Ctrl-C's
    SIGINT) saves its checkpoint as Ctrl-C does, and says it was interrupted."""
    import signal
    import subprocess
    import sys
    data = _images(tmp_path / "data")
    out = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-m", "dnaimg.cli", "train", "--arch", "compact", "--data", str(data),
                          "--out", str(out), "--steps", "1000000", "--width", "8", "--channels", "8", "--crop", "64",
                          "--batch", "1", "--threads", "1"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in p.stdout:                       # the first progress line: some steps have run
        lines.append(line)
        if line.startswith("step "):
            break
    p.send_signal(signal.SIGTERM)
    rest, _ = p.communicate(timeout=120)
    assert p.returncode == 1 and "interrupted" in rest, "".join(lines) + rest
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["step"] >= 50
