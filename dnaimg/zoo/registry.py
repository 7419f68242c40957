"""Shipped models: ``models/NAME.safetensors`` (fp16 weights) beside ``models/NAME.json`` (card).

Weights are read only through safetensors (no pickle: a model file cannot run code), must match
the card's ``weights_sha256``, and every tensor's name and shape is checked against the
architecture the card names (``architecture.class``, a key of :data:`ARCHITECTURES`).  The folder
is ``models/`` inside the package, or ``$DNAIMG_MODELS``.
"""
from __future__ import annotations

import hashlib
import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from dnaimg.dna.codebook import candidate_words
from dnaimg.zoo.compact import CompactConfig, CompactHyperprior
from dnaimg.zoo.model import DOWNSCALE, CompressiveAutoencoder, ModelConfig

DEFAULT_MODEL = "cae32-l9"
#: what `dnaimg bench channel` compares by default: a plain point and its noise-trained twin
DEFAULT_CHANNEL_POINTS = ("cae32-mr:r050", "cae32-mr-noise:r050")


class ModelError(ValueError):
    pass


#: architecture name (a card's ``architecture.class``) -> the class, built as ``cls(ModelConfig)``;
#: a card without a class (written before 0.2.0 had this registry) means CompressiveAutoencoder
ARCHITECTURES: dict[str, type[torch.nn.Module]] = {"CompressiveAutoencoder": CompressiveAutoencoder,
                                                   "CompactHyperprior": CompactHyperprior}


def models_dir() -> Path:
    env = os.environ.get("DNAIMG_MODELS")
    return Path(env) if env else Path(__file__).resolve().parent / "models"


def model_id(name: str) -> int:
    return zlib.crc32(name.encode())


def default_codeword_nt(levels: int) -> int:
    for n in range(2, 11):
        if len(candidate_words(n)) >= levels:
            return n
    raise ModelError(f"no codeword length fits {levels} levels")


def natural_key(name: str) -> list:
    """Sorts names with their numbers as numbers: compact-gray-v2 before compact-gray-v10."""
    import re
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def list_models(codec: str | None = "robust") -> list[dict]:
    """Cards of the installed models of ``codec`` (a card's ``codec``, "robust" when absent; None: all)."""
    d = models_dir()
    if not d.is_dir():
        return []
    cards = []
    for p in sorted(d.glob("*.json"), key=lambda p: natural_key(p.stem)):
        try:
            card = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if (d / f"{p.stem}.safetensors").exists() and codec in (None, card.get("codec", "robust")):
            card.setdefault("name", p.stem)
            cards.append(card)
    return cards


def card(name: str) -> dict:
    p = models_dir() / f"{name}.json"
    if not p.exists():
        known = ", ".join(c["name"] for c in list_models(None)) or "none"
        raise ModelError(f"unknown model {name!r} (shipped: {known})")
    return json.loads(p.read_text())


def name_for_id(mid: int) -> str:
    for c in list_models(None):
        if model_id(c["name"]) == mid:
            return c["name"]
    raise ModelError(f"the DNA names model id {mid:#010x}, which is not among the installed models "
                     f"({', '.join(c['name'] for c in list_models(None)) or 'none'})")


def config_from_card(c: dict) -> ModelConfig:
    a = c["architecture"]
    return ModelConfig(channels=int(a["channels"]), levels=int(a["levels"]), width=int(a.get("width", 128)),
                       res_blocks=int(a.get("res_blocks", 3)))


def build_model(c: dict) -> torch.nn.Module:
    """An untrained instance of the architecture card ``c`` names."""
    arch = c["architecture"].get("class", "CompressiveAutoencoder")
    if arch not in ARCHITECTURES:
        raise ModelError(f"model {c.get('name')}: unknown architecture {arch!r} "
                         f"(known: {', '.join(sorted(ARCHITECTURES))})")
    if arch == "CompactHyperprior":
        try:
            return CompactHyperprior(CompactConfig.from_dict(c["architecture"]))
        except (ValueError, TypeError) as e:
            raise ModelError(f"model {c.get('name')}: {e}") from None
    return ARCHITECTURES[arch](config_from_card(c))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_SHA_CACHE: dict[tuple[str, int, int], str] = {}     # (path, mtime_ns, size) -> sha256


def verify_weights(c: dict, path: Path) -> None:
    """Check ``path`` against the card's ``weights_sha256`` (hashed once per path, mtime and size);
    a card without one (exported before 0.2.0 had hashes) is not checked."""
    want = c.get("weights_sha256")
    if want is None:
        return
    try:
        st = path.stat()
    except OSError as e:
        raise ModelError(f"cannot read model weights {path}: {e.strerror}") from None
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = sha256_file(path)
    if _SHA_CACHE[key] != str(want).lower():
        raise ModelError(f"model {c.get('name', path.stem)}: weight file does not match its card's sha256 "
                         f"({path}: {_SHA_CACHE[key][:12]}..., card: {str(want)[:12]}...)")


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


@dataclass(frozen=True)
class OperatingPoint:
    """One rate of a model: the first ``channels`` latent maps, ``levels`` levels, codewords of
    ``codeword_nt`` nucleotides.  Payload rate = channels * codeword_nt / 64 nt per pixel."""
    model: str
    name: str
    channels: int
    levels: int
    codeword_nt: int
    card: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def payload_nt_per_pixel(self) -> float:
        return self.channels * self.codeword_nt / DOWNSCALE ** 2

    @property
    def label(self) -> str:
        return f"{self.model}:{self.name}" if self.name else self.model

    @property
    def noise_trained(self) -> bool:
        return bool(self.card.get("noise_trained"))

    @property
    def kodak(self) -> dict:
        return self.card.get("kodak", {})


def operating_points(c: dict) -> list[OperatingPoint]:
    """The operating points a card declares (``operating_points``), or the single one of a
    one-rate model (all channels, the architecture's levels)."""
    a = c["architecture"]
    pts = c.get("operating_points")
    if not pts:
        return [OperatingPoint(c["name"], "", int(a["channels"]), int(a["levels"]), int(c["codeword_nt"]),
                               {k: c[k] for k in ("kodak", "kodak_substitutions", "select_psnr_db") if k in c}
                               | {"noise_trained": c.get("noise_trained", False)})]
    out = []
    for p in pts:
        k, L = int(p["channels"]), int(p["levels"])
        n = int(p.get("codeword_nt") or default_codeword_nt(L))
        if not 1 <= k <= int(a["channels"]) or L < 3 or L % 2 == 0 or len(candidate_words(n)) < L:
            raise ModelError(f"model card {c['name']}: invalid operating point {p}")
        out.append(OperatingPoint(c["name"], str(p["name"]), k, L, n,
                                  {**p, "noise_trained": c.get("noise_trained", False)}))
    return sorted(out, key=lambda o: (o.payload_nt_per_pixel, o.name))


def default_point(name: str) -> OperatingPoint:
    """The card's ``default_point``, else the point nearest 1 nt/pixel."""
    c = card(name)
    pts = operating_points(c)
    for p in pts:
        if p.name == c.get("default_point"):
            return p
    return min(pts, key=lambda p: abs(p.payload_nt_per_pixel - 1.0))


def select_point(model: str | None = None, rate: float | None = None, noise_trained: bool = False,
                 cost=None) -> OperatingPoint:
    """The operating point to encode with.

    ``model`` alone: its default point (``NAME:POINT`` names one).  ``rate`` (payload nt/pixel):
    the point with the best PSNR among those at or under the rate, over ``model``'s points or,
    without a model, over every shipped model of the requested kind (plain, or noise-trained).
    The PSNR used is the card's ``select_psnr_db``, measured on training images (Kodak is for
    evaluation only); without it, the costliest point that fits.  ``cost(point)``: what ``rate``
    caps (default: the payload nt/pixel; the codec passes the total nt/pixel of the image)."""
    cost = cost or (lambda p: p.payload_nt_per_pixel)
    if model:
        name = model.split(":", 1)[0]
        c = card(name)
        if c.get("codec", "robust") != "robust":
            raise ModelError(f"model {name} is a {c.get('codec')}-codec model, not a robust-codec one "
                             f"(--codec {c.get('codec')} takes it)")
        if noise_trained and not c.get("noise_trained"):
            noisy = ", ".join(m["name"] for m in list_models() if m.get("noise_trained") and not m.get("superseded"))
            raise ModelError(f"model {name} is not noise-trained: drop --noise-trained, or name one that is ({noisy})")
    elif noise_trained and rate is None:
        model = f"{DEFAULT_MODEL}-noise"        # the default model's noise-trained twin
    if model and ":" in model:
        name, pname = model.split(":", 1)
        for p in operating_points(card(name)):
            if p.name == pname:
                if rate is not None and cost(p) > rate + 1e-9:
                    raise ModelError(f"{model} costs {cost(p):.3f} nt/px, over --rate {rate}")
                return p
        raise ModelError(f"model {name} has no operating point {pname!r} "
                         f"(it has: {', '.join(p.name for p in operating_points(card(name))) or 'one, unnamed'})")
    if rate is None:
        return default_point(model or DEFAULT_MODEL)
    if model:
        pool = operating_points(card(model))
    else:
        pool = [p for c in list_models() if bool(c.get("noise_trained")) == noise_trained
                and not c.get("superseded") for p in operating_points(c)]
    costs = {p.label: cost(p) for p in pool}
    fit = [p for p in pool if costs[p.label] <= rate + 1e-9]
    if not fit:
        cheapest = min(pool, key=lambda p: costs[p.label], default=None)
        raise ModelError(f"no operating point at or under {rate} nt/px"
                         + (f" (the cheapest is {cheapest.label} at {costs[cheapest.label]:.3f})" if cheapest else ""))
    measured = [p for p in fit if "select_psnr_db" in p.card]
    if len(measured) == len(fit):
        return max(measured, key=lambda p: (p.card["select_psnr_db"], -costs[p.label]))
    return max(fit, key=lambda p: (costs[p.label], p.payload_nt_per_pixel))


_CACHE: dict[str, tuple[CompressiveAutoencoder, dict]] = {}


def load_model(name: str = DEFAULT_MODEL) -> tuple[CompressiveAutoencoder, dict]:
    """Model (eval mode) and its card."""
    if name in _CACHE:
        return _CACHE[name]
    c = card(name)
    path = models_dir() / f"{name}.safetensors"
    verify_weights(c, path)
    model = build_model(c)
    load_weights(model, path)
    model.eval()
    _CACHE[name] = (model, c)
    return model, c


def export(model: CompressiveAutoencoder, name: str, card_fields: dict, out_dir: Path | None = None) -> Path:
    """Write fp16 safetensors weights and a JSON card."""
    out_dir = Path(out_dir) if out_dir else models_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    arch = next((k for k, cls in ARCHITECTURES.items() if type(model) is cls), None)
    if arch is None:
        raise ModelError(f"cannot export a {type(model).__name__}: not in the architecture registry")
    weights = out_dir / f"{name}.safetensors"
    save_file(state, str(weights))
    cfg = model.cfg
    c = {"name": name, "architecture": {"class": arch, "type": "theis-cae", **cfg.to_dict()}, "q": cfg.q,
         "codeword_nt": default_codeword_nt(cfg.levels)}
    c.update(card_fields)
    c["weights_sha256"] = sha256_file(weights)
    (out_dir / f"{name}.json").write_text(json.dumps(c, indent=2) + "\n")
    return out_dir / f"{name}.safetensors"
