"""The GPU-machine recipe (scripts/device_*): the slim tree leaves out exactly the weights and
checkpoints and is put back as it was; the data subset keeps its budget; `dnaimg train` runs
without the DNA layer's libraries (as on that machine)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


def test_slim_tree_leaves_out_weights_and_restores(tmp_path):
    repo = tmp_path / "repo"
    for rel, size in [("scripts/device_tree.sh", 0), ("dnaimg/zoo/models/m.json", 10), ("dnaimg/zoo/models/m.safetensors", 2_000_000),
                      ("checkpoints/run/checkpoint.pt", 3_000_000), ("dnaimg/code.py", 100)]:
        p = repo / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if rel.startswith("scripts/"):
            p.write_bytes((ROOT / rel).read_bytes())
            p.chmod(0o755)
        else:
            p.write_bytes(b"x" * size)
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init")
    exclude = repo / ".git" / "info" / "exclude"
    before = exclude.read_text() if exclude.exists() else ""

    out = subprocess.run(["scripts/device_tree.sh", "slim"], cwd=repo, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "tree 0 MiB" in out.stdout
    travels = set(_git(repo, "ls-files", "-co", "--exclude-standard").split())
    assert travels == {"scripts/device_tree.sh", "dnaimg/zoo/models/m.json", "dnaimg/code.py"}
    again = subprocess.run(["scripts/device_tree.sh", "slim"], cwd=repo, capture_output=True, text=True)
    assert again.returncode == 1 and "already slim" in again.stderr
    size = subprocess.run(["scripts/device_tree.sh", "size", "checkpoints/run/checkpoint.pt"], cwd=repo,
                          capture_output=True, text=True)
    assert size.returncode == 0 and "carried 2 MiB" in size.stdout

    (repo / "dnaimg/code.py").unlink()             # a tracked file missing from the disk is not counted
    size = subprocess.run(["scripts/device_tree.sh", "size"], cwd=repo, capture_output=True, text=True)
    assert size.returncode == 0 and "tree 0 MiB" in size.stdout
    _git(repo, "checkout", "--", "dnaimg/code.py")

    out = subprocess.run(["scripts/device_tree.sh", "restore"], cwd=repo, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert _git(repo, "status", "--porcelain") == ""
    assert (exclude.read_text() if exclude.exists() else "") == before
    assert (repo / "checkpoints/run/checkpoint.pt").stat().st_size == 3_000_000

    # an exclude file without a final newline keeps its last pattern; staged weights are refused
    exclude.write_text(before + "*.tmp")
    assert subprocess.run(["scripts/device_tree.sh", "slim"], cwd=repo, capture_output=True).returncode == 0
    assert "*.tmp\n" in exclude.read_text()
    subprocess.run(["scripts/device_tree.sh", "restore"], cwd=repo, check=True, capture_output=True)
    assert exclude.read_text() == before + "*.tmp\n" and _git(repo, "status", "--porcelain") == ""
    (repo / "dnaimg/zoo/models/m.json").write_text("changed")
    _git(repo, "add", "dnaimg/zoo/models/m.json")
    refused = subprocess.run(["scripts/device_tree.sh", "slim"], cwd=repo, capture_output=True, text=True)
    assert refused.returncode == 1 and "staged" in refused.stderr
    assert "M  dnaimg/zoo/models/m.json" in _git(repo, "status", "--porcelain")


def test_data_subset_keeps_its_budget(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        for i in range(6):
            (tmp_path / folder / f"img{i}.png").write_bytes(b"p" * 300_000)
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    out = tmp_path / "subset"
    r = subprocess.run([sys.executable, str(ROOT / "scripts/device_data.py"), "--mb", "1", "--out", str(out),
                        str(tmp_path / "a"), str(tmp_path / "b")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    files = sorted(p.name for p in out.iterdir() if p.suffix == ".png")
    assert len(files) == 3 and [f[:7] for f in files] == ["000000_", "000001_", "000002_"]   # 3 x 300 kB <= 1 MiB
    assert "3 of 12 images" in r.stdout
    assert (out / "SOURCES").read_text().split() == ["/".join((tmp_path / f).parts[-3:]) for f in ("a", "b")]
    # the same names in two folders do not collide; a folder not made by the script is not replaced
    (tmp_path / "c" / "x").mkdir(parents=True)
    (tmp_path / "c" / "y").mkdir()
    for sub in ("x", "y"):
        (tmp_path / "c" / sub / "same.png").write_bytes(b"q" * 1000)
    r = subprocess.run([sys.executable, str(ROOT / "scripts/device_data.py"), "--out", str(out), str(tmp_path / "c")],
                       capture_output=True, text=True)
    assert r.returncode == 0 and len(list(out.glob("*.png"))) == 2
    r = subprocess.run([sys.executable, str(ROOT / "scripts/device_data.py"), "--out", str(tmp_path / "a"),
                        str(tmp_path / "b")], capture_output=True, text=True)
    assert r.returncode == 1 and "was not made by this script" in r.stderr and len(list((tmp_path / "a").iterdir())) == 7
    r = subprocess.run([sys.executable, str(ROOT / "scripts/device_data.py"), "--out", str(tmp_path / "a" / "sub"),
                        str(tmp_path / "a")], capture_output=True, text=True)
    assert r.returncode == 1 and "overlap" in r.stderr
    bad = subprocess.run([sys.executable, str(ROOT / "scripts/device_data.py"), str(tmp_path / "nope")],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "is not a folder" in bad.stderr


def _gpu_machine_like(tmp_path: Path) -> tuple[Path, Path]:
    """(a folder for PYTHONPATH whose sitecustomize hides the packages the GPU machine lacks,
    a folder of two small training images)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import sys\nfor n in ('dnaio', 'xopen', 'reedsolo', 'pytorch_msssim', 'imagecodecs', 'dask'):\n"
        "    sys.modules[n] = None\n")
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (80, 96, 3), dtype=np.uint8)).save(data / f"{i}.png")
    return site, data


def test_train_runs_without_the_dna_libraries(tmp_path):
    site, data = _gpu_machine_like(tmp_path)
    env = dict(os.environ, PYTHONPATH=f"{site}{os.pathsep}{ROOT}")
    env.pop("DNAIMG_DEBUG", None)
    cmd = [sys.executable, "-m", "dnaimg.cli", "train", "--arch", "compact", "--width", "8", "--channels", "8",
           "--crop", "64", "--batch", "2", "--steps", "2", "--threads", "1", "--data", str(data), "--out", str(tmp_path / "run")]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "run" / "checkpoint.pt").exists()
    probe = subprocess.run([sys.executable, "-c", "import reedsolo"], capture_output=True, text=True, env=env)
    assert probe.returncode != 0          # the libraries really were missing
    # bad input still gets its one-line message there (the library's errors are imported late)
    (tmp_path / "small").mkdir()
    Image.fromarray(np.zeros((20, 20, 3), dtype=np.uint8)).save(tmp_path / "small" / "tiny.png")
    r = subprocess.run(cmd[:-4] + ["--data", str(tmp_path / "small"), "--out", str(tmp_path / "run2")],
                       capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.strip() == f"dnaimg: error: no usable training image (>= 64 px) under {tmp_path / 'small'}"


@pytest.mark.slow          # (heavy: the default suite keeps to about ten minutes on a fresh clone)
def test_device_train_brings_back_model_card_and_checkpoint(tmp_path):
    """scripts/device_train.sh as the GPU machine runs it (here DEVICE=cpu, without the DNA
    layer's libraries): the exported model and card, an fp16 resume checkpoint and the log."""
    site, data = _gpu_machine_like(tmp_path)
    (data / "SOURCES").write_text("train/bsds500\n")
    out = tmp_path / "OUT"
    out.mkdir()
    bindir = tmp_path / "bin"          # python3 there is the one that runs these tests
    bindir.mkdir()
    (bindir / "python3").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bindir / "python3").chmod(0o755)
    env = dict(os.environ, OUT=str(out), DEVICE="cpu", RUN=str(tmp_path / "run"), PYTHONPATH=str(site),
               PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}")
    r = subprocess.run([str(ROOT / "scripts/device_train.sh"), "0.05", "tiny-x", "--data", str(data), "--width", "8",
                        "--channels", "8", "--crop", "64", "--batch", "1", "--threads", "1", "--no-bf16"],
                       cwd=ROOT, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr + r.stdout
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-fp16.pt", "tiny-x.json", "tiny-x.safetensors", "train.log"]
    card = json.loads((out / "tiny-x.json").read_text())
    assert card["training"]["data"] == ["train/bsds500"] and "CPU threads" in card["training"]["hardware"]
    state = torch.load(out / "checkpoint-fp16.pt", weights_only=True)
    assert "opt" not in state and state["model"]["g_a.0.weight"].dtype == torch.float16
    assert state["step"] == card["training"]["steps"] > 0
