"""The model zoo's registry: architectures named by the cards, weight files checked by hash."""
import hashlib
import json
import shutil
import subprocess

import pytest

from conftest import ROOT
from dnaimg.zoo import registry
from dnaimg.zoo.model import CompressiveAutoencoder, ModelConfig
from dnaimg.zoo.registry import ARCHITECTURES, ModelError, export, list_models, load_model

SHIPPED = ROOT / "dnaimg" / "zoo" / "models"


@pytest.fixture
def fresh(monkeypatch):
    """No loaded model or verified hash carried in from elsewhere."""
    monkeypatch.setattr(registry, "_CACHE", {})
    monkeypatch.setattr(registry, "_SHA_CACHE", {})


@pytest.fixture
def copied(tmp_path, monkeypatch, fresh):
    """A models folder holding a copy of the default model; DNAIMG_MODELS points at it."""
    d = tmp_path / "models"
    d.mkdir()
    for ext in ("json", "safetensors"):
        shutil.copyfile(SHIPPED / f"{registry.DEFAULT_MODEL}.{ext}", d / f"{registry.DEFAULT_MODEL}.{ext}")
    monkeypatch.setenv("DNAIMG_MODELS", str(d))
    return d


def test_shipped_models_verify(monkeypatch, fresh):
    monkeypatch.delenv("DNAIMG_MODELS", raising=False)
    cards = list_models(None)
    assert sorted(c["name"] for c in cards) == sorted(p.stem for p in SHIPPED.glob("*.safetensors"))
    assert len(cards) == 23
    for c in cards:
        if c.get("codec") == "compact":     # its own loader (dnaimg.codecs.compact): tests/test_compact.py
            w = SHIPPED / f"{c['name']}.safetensors"
            assert c["weights_sha256"] == hashlib.sha256(w.read_bytes()).hexdigest(), c["name"]
            continue
        assert c["architecture"]["class"] in ARCHITECTURES
        w = SHIPPED / f"{c['name']}.safetensors"
        assert c["weights_sha256"] == hashlib.sha256(w.read_bytes()).hexdigest(), c["name"]
        model, card = load_model(c["name"])
        assert isinstance(model, CompressiveAutoencoder) and card["name"] == c["name"]


def test_flipped_byte_in_weights_is_refused(copied):
    w = copied / f"{registry.DEFAULT_MODEL}.safetensors"
    data = bytearray(w.read_bytes())
    data[len(data) // 2] ^= 0x01           # inside a tensor: safetensors itself would not notice
    w.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=f"model {registry.DEFAULT_MODEL}: weight file does not match "
                                         "its card's sha256") as e:
        load_model(registry.DEFAULT_MODEL)
    assert "\n" not in str(e.value)


def test_unknown_architecture(copied):
    p = copied / f"{registry.DEFAULT_MODEL}.json"
    c = json.loads(p.read_text())
    c["architecture"]["class"] = "NoSuchNet"
    p.write_text(json.dumps(c, indent=2))
    with pytest.raises(ModelError, match="unknown architecture 'NoSuchNet'") as e:
        load_model(registry.DEFAULT_MODEL)
    assert "\n" not in str(e.value)


def test_hash_checked_once_per_file_version(copied, monkeypatch):
    calls = []
    real = registry.sha256_file
    monkeypatch.setattr(registry, "sha256_file", lambda p: calls.append(p) or real(p))
    name = registry.DEFAULT_MODEL
    load_model(name)
    registry._CACHE.clear()
    load_model(name)
    assert len(calls) == 1
    # a new version of the file (new mtime) is hashed again, and refused if it differs
    w = copied / f"{name}.safetensors"
    data = bytearray(w.read_bytes())
    data[-1] ^= 0x80
    w.write_bytes(bytes(data))
    registry._CACHE.clear()
    with pytest.raises(ModelError, match="does not match"):
        load_model(name)
    assert len(calls) == 2


def test_export_writes_class_and_hash(tmp_path, monkeypatch, fresh):
    d = tmp_path / "models"
    monkeypatch.setenv("DNAIMG_MODELS", str(d))
    w = export(CompressiveAutoencoder(ModelConfig(channels=4, width=16, res_blocks=1)), "tiny", {"note": "t"})
    c = json.loads((d / "tiny.json").read_text())
    assert c["architecture"]["class"] == "CompressiveAutoencoder"
    assert c["weights_sha256"] == hashlib.sha256(w.read_bytes()).hexdigest()
    model, _ = load_model("tiny")
    assert model.cfg.channels == 4


@pytest.mark.slow
def test_wheel_installs_and_runs():
    """scripts/check_wheel.sh: build the wheel, install it in a fresh venv, encode and decode."""
    r = subprocess.run(["bash", str(ROOT / "scripts" / "check_wheel.sh")], cwd=ROOT, capture_output=True,
                       text=True, timeout=1800)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
