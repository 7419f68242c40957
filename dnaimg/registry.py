"""Shipped models: ``models/NAME.safetensors`` (fp16 weights) beside ``models/NAME.json`` (card).

Weights are read only through safetensors (no pickle: a model file cannot run code) and every
tensor's name and shape is checked against the architecture the card names.  The folder is
``models/`` at the project root, or ``$DNAIMG_MODELS``.
"""
from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .codebook import candidate_words
from .model import CompressiveAutoencoder, ModelConfig

DEFAULT_MODEL = "cae32-l9"


class ModelError(ValueError):
    pass


def models_dir() -> Path:
    env = os.environ.get("DNAIMG_MODELS")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "models"


def model_id(name: str) -> int:
    return zlib.crc32(name.encode())


def default_codeword_nt(levels: int) -> int:
    for n in range(2, 11):
        if len(candidate_words(n)) >= levels:
            return n
    raise ModelError(f"no codeword length fits {levels} levels")


def list_models() -> list[dict]:
    d = models_dir()
    if not d.is_dir():
        return []
    cards = []
    for p in sorted(d.glob("*.json")):
        try:
            card = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if (d / f"{p.stem}.safetensors").exists():
            card.setdefault("name", p.stem)
            cards.append(card)
    return cards


def card(name: str) -> dict:
    p = models_dir() / f"{name}.json"
    if not p.exists():
        known = ", ".join(c["name"] for c in list_models()) or "none"
        raise ModelError(f"unknown model {name!r} (shipped: {known})")
    return json.loads(p.read_text())


def name_for_id(mid: int) -> str:
    for c in list_models():
        if model_id(c["name"]) == mid:
            return c["name"]
    raise ModelError(f"the DNA names model id {mid:#010x}, which is not among the installed models "
                     f"({', '.join(c['name'] for c in list_models()) or 'none'})")


def config_from_card(c: dict) -> ModelConfig:
    a = c["architecture"]
    return ModelConfig(channels=int(a["channels"]), levels=int(a["levels"]), width=int(a.get("width", 128)),
                       res_blocks=int(a.get("res_blocks", 3)))


def load_weights(model: torch.nn.Module, path: Path) -> None:
    try:
        state = load_file(str(path))
    except Exception as e:  # safetensors raises several types on corrupt files
        raise ModelError(f"cannot read model weights {path}: {e}") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise ModelError(f"model weights {path.name} do not fit the architecture "
                         f"(missing {missing[:3]}, unexpected {extra[:3]})")
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise ModelError(f"model weights {path.name}: {k} has shape {tuple(state[k].shape)}, "
                             f"expected {tuple(v.shape)}")
        if not torch.isfinite(state[k].float()).all():
            raise ModelError(f"model weights {path.name}: {k} holds non-finite values")
    model.load_state_dict({k: v.float() for k, v in state.items()})


_CACHE: dict[str, tuple[CompressiveAutoencoder, dict]] = {}


def load_model(name: str = DEFAULT_MODEL) -> tuple[CompressiveAutoencoder, dict]:
    """Model (eval mode) and its card."""
    if name in _CACHE:
        return _CACHE[name]
    c = card(name)
    model = CompressiveAutoencoder(config_from_card(c))
    load_weights(model, models_dir() / f"{name}.safetensors")
    model.eval()
    _CACHE[name] = (model, c)
    return model, c


def export(model: CompressiveAutoencoder, name: str, card_fields: dict, out_dir: Path | None = None) -> Path:
    """Write fp16 safetensors weights and a JSON card."""
    out_dir = Path(out_dir) if out_dir else models_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out_dir / f"{name}.safetensors"))
    cfg = model.cfg
    c = {"name": name, "architecture": {"type": "theis-cae", **cfg.to_dict()}, "q": cfg.q,
         "codeword_nt": default_codeword_nt(cfg.levels), **card_fields}
    (out_dir / f"{name}.json").write_text(json.dumps(c, indent=2) + "\n")
    return out_dir / f"{name}.safetensors"
