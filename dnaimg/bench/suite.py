"""``dnaimg bench``: rate-distortion, noise robustness and sequencing cost, measured on a folder
of images for our operating points and for classic codecs (JPEG, WebP, JPEG 2000, AVIF, JPEG XL)
whose bytes go through the same DNA container (:func:`dnaimg.api.encode` / :func:`dnaimg.api.decode`,
outer code at ``--parity`` redundancy, default 0.15; "matched rate" = ``api.encode(img, codec,
rate=<the learned point's total nt/px>)``).

    dnaimg bench rd      --images KODAK_DIR --out docs/results/rd
    dnaimg bench noise   --images KODAK_DIR --out docs/results/noise
    dnaimg bench channel --images KODAK_DIR --out docs/results/channel

Each writes ``OUT.json`` (every row, then the means), ``OUT.csv`` and ``OUT.png``.  Rows are
saved as they finish: an interrupted bench keeps them, and running the same command again
resumes where it stopped (``--fresh`` starts over).  ``--quick`` runs a few images and a coarse
grid in minutes.
"""
from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from dnaimg import api
from dnaimg.codecs.robust import DecodeError, decode_reads, encode_image
from dnaimg.image import DATA_SUFFIXES, load_image, psnr
from dnaimg.dna.channel import preset, simulate
from dnaimg.dna.header import FORMAT_VERSION

#: classic codecs a bench may compare (the CLI's default lists are jpeg, webp, jpeg2000, avif)
CLASSIC_CODECS = ("jpeg", "webp", "jpeg2000", "avif", "jxl", "compact")
#: quality sweeps of the classic codecs for the RD bench (see :func:`dnaimg.codecs.classic.compress`)
CLASSIC_QUALITIES = {
    "jpeg": (5, 10, 20, 35, 50, 70, 85, 95),
    "webp": (2, 10, 25, 45, 65, 80, 90, 97),
    "jpeg2000": (0.08, 0.15, 0.25, 0.4, 0.6, 1.0, 1.6, 2.5),     # bits per pixel
    "avif": (10, 25, 40, 55, 65, 75, 85, 92),
    "jxl": (5, 20, 40, 55, 70, 80, 90, 97),                      # libjxl level (butteraugli distance)
    "compact": (0, 1, 2, 3, 4, 5, 6),                            # the learned model's rate index
}
QUICK_QUALITIES = {k: v[1::3] for k, v in CLASSIC_QUALITIES.items()}
NOISE_RATES = (0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.10)
QUICK_NOISE_RATES = (0.0, 0.03, 0.05, 0.10)
COVERAGES = (1, 2, 3, 4, 6, 10, 16, 30)
QUICK_COVERAGES = (1, 3, 10)
CHANNEL_DROPOUT = 0.02
RELIABLE = 0.95


def image_paths(folder: str | Path, limit: int | None = None, spread: bool = False) -> list[Path]:
    """The images of ``folder`` in name order; ``limit``: the first N, or with ``spread`` N evenly
    spread over the folder (where its families of images come in runs)."""
    d = Path(folder)
    if not d.is_dir():
        raise ValueError(f"{folder}: not a folder of images")
    paths = sorted(p for p in d.iterdir() if p.suffix.lower() in DATA_SUFFIXES)
    if not paths:
        raise ValueError(f"{folder}: no images (.png, .jpg, ...) in it")
    if not limit or limit >= len(paths):
        return paths
    if spread:
        return [paths[round(i * (len(paths) - 1) / max(1, limit - 1))] for i in range(limit)]
    return paths[:limit]


def msssim(a: np.ndarray, b: np.ndarray) -> float | None:
    """MS-SSIM (pytorch-msssim); None for images of 160 px or less a side, too small for its
    4 downsamplings."""
    if min(a.shape[:2]) <= 160:
        return None
    import torch
    from pytorch_msssim import ms_ssim

    from dnaimg.codecs.robust import to_tensor

    def t(x):                   # gray HxW as one channel
        return to_tensor(x) if x.ndim == 3 else to_tensor(x[:, :, None])
    with torch.no_grad():
        return float(ms_ssim(t(a), t(b), data_range=1.0))


# ---------------------------------------------------------------------------------------------
# result store: rows keyed by what they measured, saved after every row


class Store:
    def __init__(self, out: str | Path, meta: dict, fresh: bool = False):
        self.base = Path(out)
        self.base.parent.mkdir(parents=True, exist_ok=True)
        self.path = self.base.with_suffix(".json")
        self.meta = meta
        self.rows: list[dict] = []
        if self.path.exists() and not fresh:
            try:
                old = json.loads(self.path.read_text())
                # a setting missing from an older file predates it: it ran with the default
                was = {**self.DEFAULTS, **old.get("meta", {}).get("config", {})}
                now = {**self.DEFAULTS, **meta.get("config", {})}
                same = all(was.get(k) == now.get(k) for k in self.SETTINGS)
                if old.get("meta", {}).get("bench") == meta.get("bench") and same:
                    self.rows = old.get("rows", [])
            except (OSError, json.JSONDecodeError):
                pass
        self.done = {self.key(r) for r in self.rows}
        if fresh:
            self.save()

    #: settings that change what a row means; rows measured under other settings are dropped
    #: ("format_version": the DNA format the rows were written in; files without it predate
    #: format 2, the one container of every codec, and their rows are measured again)
    SETTINGS = ("parity", "seed", "dropout", "match", "format_version")
    DEFAULTS = {"parity": 0.15, "seed": 0, "match": None, "format_version": 1}

    def restrict(self, wanted: set, systems: set | None = None) -> None:
        """Keep only the earlier rows this run asks for (a run can extend another's grid); with
        ``systems`` (this run's), also other systems' rows on the images and conditions it asks
        for, so that a run of one system adds to the file instead of dropping the others."""
        if systems is not None:
            cells = {k[1:] for k in wanted}
            wanted = wanted | {self.key(r) for r in self.rows if r["system"] not in systems and self.key(r)[1:] in cells}
        self.rows = [r for r in self.rows if self.key(r) in wanted]
        self.done = {self.key(r) for r in self.rows}

    @staticmethod
    def key(r: dict) -> tuple:
        return (r["system"], r["image"], r.get("condition", ""))

    def has(self, system: str, image: str, condition: str = "") -> bool:
        return (system, image, condition) in self.done

    def add(self, row: dict, summary: Callable[[list[dict]], dict] | None = None) -> None:
        self.rows.append(row)
        self.done.add(self.key(row))
        self.save(summary)

    def save(self, summary: Callable[[list[dict]], dict] | None = None) -> None:
        doc = {"meta": self.meta, "summary": summary(self.rows) if summary else {}, "rows": self.rows}
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(doc, indent=1, default=_json_default) + "\n")
        os.replace(tmp, self.path)
        if self.rows:
            keys: list[str] = []
            for r in self.rows:
                keys += [k for k in r if k not in keys and not isinstance(r[k], (dict, list))]
            with open(self.base.with_suffix(".csv"), "w", newline="") as f:
                w = csv.DictWriter(f, keys, extrasaction="ignore")
                w.writeheader()
                w.writerows(self.rows)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.bool_):
        return bool(o)
    raise TypeError(type(o))


def _mean(xs: Iterable) -> float | None:
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return float(np.mean(xs)) if xs else None


# ---------------------------------------------------------------------------------------------
# one measurement


@dataclass
class Encoded:
    system: str                 # label: model:point or codec@quality
    kind: str                   # "learned" | "classic"
    oligos: list
    rates: dict
    encode_s: float
    params: dict


def encode_learned(img: np.ndarray, point: str) -> Encoded:
    t = time.perf_counter()
    enc = encode_image(img, model=point)
    dt = time.perf_counter() - t
    r = enc.rates()
    return Encoded(enc.point.label, "learned", enc.oligos, r, dt,
                   {"model": enc.point.model, "point": enc.point.name, "noise_trained": enc.point.noise_trained,
                    "channels": enc.params.channels, "levels": enc.params.levels,
                    "codeword_nt": enc.params.codeword_nt})


def _classic_encoded(enc: "api.EncodeResult", codec: str, parity: float, dt: float) -> Encoded:
    r = enc.rates()
    return Encoded(f"{codec}@{r['quality']}", "classic", list(enc.oligos), r, dt,
                   {"codec": codec, "quality": r["quality"], "parity": parity, "redundancy": parity,
                    **({"model": r["model"]} if "model" in r else {})})


def encode_classic_system(img: np.ndarray, codec: str, quality, parity: float) -> Encoded:
    """``codec`` at ``quality`` through the DNA container, outer code at ``parity`` redundancy."""
    t = time.perf_counter()
    enc = api.encode(img, codec, quality=quality, redundancy=parity)
    e = _classic_encoded(enc, codec, parity, time.perf_counter() - t)
    e.system = f"{codec}@{quality}"          # the label asked for (rows are keyed by it)
    return e


def matched_classic(img: np.ndarray, codec: str, total_nt: int, parity: float) -> Encoded | None:
    """The classic encoding of ``img`` with the most nucleotides not above ``total_nt`` (the
    codec's highest quality that fits, :func:`dnaimg.api.encode` with ``rate``); None if even
    the lowest quality costs more."""
    t = time.perf_counter()
    try:
        enc = api.encode(img, codec, rate=total_nt / (img.shape[0] * img.shape[1]), redundancy=parity)
    except api.RateError:
        return None
    return _classic_encoded(enc, codec, parity, time.perf_counter() - t)


def decode_row(e: Encoded, orig: np.ndarray, reads, with_msssim: bool = True) -> dict:
    """Decode ``reads`` as system ``e`` would and measure the result."""
    t = time.perf_counter()
    image, ok, info = None, False, {}
    try:
        if e.kind == "learned":
            dec = decode_reads(reads, precision="fp32")
            image, ok = dec.image, True
            info = {"latent_exact": dec.report["latent_exact"], "missing_oligos": dec.report["oligos"]["missing"]}
        else:           # success = every stream's CRC32 matches (the outer code rebuilt what was lost)
            res = api.decode(reads, precision="fp32")
            image, ok = res.image, bool(res.exact)
            info = {"exact": bool(res.exact), "missing_oligos": res.report["oligos"]["missing"]}
    except (DecodeError, ValueError) as ex:
        info = {"error": str(ex)[:200]}
    dt = time.perf_counter() - t
    row = {"success": ok, "decode_s": dt, **info}
    if e.params.get("codec") == "compact" and image is not None:
        ok = True               # an entropy-coded latent with lost packets still draws the image (graceful)
        info["latent_values_lost"] = res.report["latent"]["latent_values_lost"]
    if image is not None and image.shape == orig.shape and not ok:
        # a classic stream that Pillow still draws although its checks failed: a failure, but
        # what it looks like is kept apart
        row["psnr_corrupt_db"] = psnr(orig, image)
        image = None
    if image is not None and image.shape == orig.shape:
        row["psnr_db"] = psnr(orig, image)
        row["ms_ssim"] = msssim(orig, image) if with_msssim else None
    else:
        row["psnr_db"] = None
        row["ms_ssim"] = None
    return row


def _base_row(e: Encoded, path: Path, orig: np.ndarray) -> dict:
    r = e.rates
    row = {"system": e.system, "kind": e.kind, "image": path.name, "pixels": int(orig.shape[0] * orig.shape[1]),
           "payload_nt_per_pixel": r["payload_nt_per_pixel"], "total_nt_per_pixel": r["total_nt_per_pixel"],
           "oligos": r["oligos"], "encode_s": e.encode_s, **e.params,
           "header_oligos": r.get("header_oligos"), "parity_oligos": r.get("parity_oligos"),
           "outer_redundancy": r.get("outer_redundancy")}
    if e.kind == "classic":      # the image's bits over the nucleotides of the data oligos' payload
        row["bits_per_nt"] = 8.0 * r["stream_bytes"] / r["payload_nt"]
    else:
        row["bits_per_nt"] = r["payload_bits_per_nt"]
    return row


# ---------------------------------------------------------------------------------------------
# the three benches


def shipped_points(noise_trained: bool | None = None) -> list[str]:
    """Every operating point of every shipped model that is not superseded."""
    from dnaimg.zoo.registry import list_models, operating_points
    out = []
    for c in list_models():
        if c.get("superseded"):
            continue
        if noise_trained is not None and bool(c.get("noise_trained")) != noise_trained:
            continue
        out += [p.label for p in operating_points(c)]
    return out


def summarise(rows: list[dict], by: tuple[str, ...]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r.get(k) for k in by), []).append(r)
    out = []
    for key, rs in groups.items():
        s = dict(zip(by, key))
        s["kind"] = rs[0]["kind"]
        s["images"] = len(rs)
        s["success_fraction"] = float(np.mean([bool(r["success"]) for r in rs]))
        for k in ("payload_nt_per_pixel", "total_nt_per_pixel", "bits_per_nt", "encode_s", "decode_s"):
            s[k] = _mean(r.get(k) for r in rs)
        # quality over the images that decoded (a classic stream drawn despite failed checks is
        # a failure); the success fraction stands beside it
        for k in ("psnr_db", "ms_ssim"):
            s[k] = _mean(r.get(k) for r in rs if r["success"])
        out.append(s)
    return out


def _labels(points: Iterable[str]) -> list[str]:
    """NAME or NAME:POINT -> the point's full label (what the rows are keyed by)."""
    from dnaimg.zoo.registry import select_point
    return [select_point(p).label for p in points]


def _run(images: list[Path], work: Callable, args: tuple, store: "Store", summ, jobs: int, progress) -> None:
    """Run ``work(path, index, done, *args) -> rows`` per image, serially or in ``jobs`` processes;
    rows are stored as each image finishes."""
    def done_for(path):
        return {k for k in store.done if k[1] == path.name}
    if jobs <= 1:
        def emit(row):
            store.add(row, summ)
            if progress:
                progress(1)
        for i, path in enumerate(images):
            work(path, i, done_for(path), *args, emit=emit)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed
    with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"), initializer=_worker_init) as pool:
        futs = {pool.submit(_collect, work, path, i, done_for(path), *args): path for i, path in enumerate(images)}
        try:
            for f in as_completed(futs):
                rows = f.result()
                for row in rows:
                    store.add(row, summ)
                if progress:
                    progress(len(rows))
        except KeyboardInterrupt:
            for f in futs:
                f.cancel()
            raise


def _collect(work, *args) -> list[dict]:
    rows: list[dict] = []
    work(*args, emit=rows.append)
    return rows


def _worker_init():
    import torch
    torch.set_num_threads(1)


def _rd_image(path: Path, i: int, done: set, points, codecs, qualities, parity, emit) -> None:
    orig = None
    todo = [("learned", p) for p in points] + [("classic", (c, q)) for c in codecs for q in qualities[c]]
    for kind, spec in todo:
        label = spec if kind == "learned" else f"{spec[0]}@{spec[1]}"
        if (label, path.name, "") in done:
            continue
        orig = load_image(path) if orig is None else orig
        e = encode_learned(orig, spec) if kind == "learned" else encode_classic_system(orig, *spec, parity)
        row = _base_row(e, path, orig)
        row.update(decode_row(e, orig, e.oligos))
        emit(row)



def bench_rd(images: list[Path], points: list[str], codecs: Iterable[str], qualities: dict, out: str | Path,
             parity: float = 0.15, fresh: bool = False, progress=None, jobs: int = 1) -> dict:
    codecs, points = list(codecs), _labels(points)
    cfg = {"images": [p.name for p in images], "points": points, "codecs": codecs,
           "qualities": {c: list(qualities[c]) for c in codecs}, "parity": parity, "format_version": FORMAT_VERSION}
    store = Store(out, {"bench": "rd", "config": cfg, "channel": "none (the oligos as written)"}, fresh)
    summ = lambda rows: {"systems": summarise(rows, ("system",))}  # noqa: E731
    labels = points + [f"{c}@{q}" for c in codecs for q in qualities[c]]
    store.restrict({(lab, p.name, "") for p in images for lab in labels}, set(labels))
    _run(images, _rd_image, (points, codecs, qualities, parity), store, summ, jobs, progress)
    store.save(summ)
    return {"meta": store.meta, "summary": summ(store.rows), "rows": store.rows}


def _noise_image(path: Path, i: int, done: set, points, rates, seed, codecs=(), match=None, parity=0.15,
                 emit=None) -> None:
    orig, target = None, None
    for point in points + [f"{c}~{match}" for c in codecs]:
        e = None
        for p in rates:
            cond = f"sub={p:g}"
            if (point, path.name, cond) in done:
                continue
            orig = load_image(path) if orig is None else orig
            if e is None:
                if "~" in point:        # a classic codec at the total nt of point `match`
                    codec = point.split("~")[0]
                    if target is None:
                        target = encode_learned(orig, match).rates["total_nt"]
                    e = matched_classic(orig, codec, target, parity)
                    if e is None:
                        e = Encoded(point, "classic", [], {}, 0.0, {"codec": codec})
                    e.system = point
                else:
                    e = encode_learned(orig, point)
            if not e.oligos:
                row = {"system": e.system, "kind": e.kind, "image": path.name, "success": False, "psnr_db": None,
                       "error": "no quality fits the rate", **e.params}
            else:
                reads = e.oligos
                if p > 0:
                    reads, _, _ = simulate(e.oligos, preset("paper", sub=p),
                                           seed=seed + 1000 * i + int(round(p * 1e4)))
                row = _base_row(e, path, orig)
                row.update(decode_row(e, orig, reads, with_msssim=p in (0.0, 0.01, 0.03, 0.05)))
            row.update({"condition": cond, "sub_rate": p})
            emit(row)


def bench_noise(images: list[Path], points: list[str], rates: Iterable[float], out: str | Path, seed: int = 0,
                fresh: bool = False, progress=None, jobs: int = 1, codecs: Iterable[str] = (),
                match: str | None = None, parity: float = 0.15) -> dict:
    """PSNR against the substitution rate, one read per oligo, substitutions only (the seed's
    Figure 4), for each operating point (and classic codecs at the total nt of point ``match``)."""
    rates, points, codecs = list(rates), _labels(points), list(codecs)
    if codecs:
        match = _labels([match])[0] if match else points[0]
    cfg = {"images": [p.name for p in images], "points": points, "rates": rates, "seed": seed,
           "codecs": codecs, "match": match, "parity": parity, "format_version": FORMAT_VERSION}
    store = Store(out, {"bench": "noise", "config": cfg,
                        "channel": "substitutions only, exactly one read per oligo (preset 'paper')"}, fresh)
    summ = lambda rows: {"systems": summarise(rows, ("system", "sub_rate"))}  # noqa: E731
    labels = points + [f"{c}~{match}" for c in codecs]
    store.restrict({(lab, p.name, f"sub={r:g}") for p in images for r in rates for lab in labels}, set(labels))
    _run(images, _noise_image, (points, rates, seed, codecs, match, parity), store, summ, jobs, progress)
    store.save(summ)
    return {"meta": store.meta, "summary": summ(store.rows), "rows": store.rows}


def _channel_image(path: Path, i: int, done: set, points, codecs, presets, coverages, match, parity, dropout, seed,
                   emit) -> None:
    orig, systems = None, None
    labels = points + [f"{c}~{match}" for c in codecs]
    for pr in presets:
        for cov in coverages:
            cond = f"{pr}@{cov:g}x"
            if all((lab, path.name, cond) in done for lab in labels):
                continue
            if systems is None:
                orig = load_image(path)
                systems = [encode_learned(orig, p) for p in points]
                target = next(e for e in systems if e.system == match).rates["total_nt"] if match in points \
                    else encode_learned(orig, match).rates["total_nt"]
                for c in codecs:
                    e = matched_classic(orig, c, target, parity)
                    if e is not None:
                        e.system = f"{c}~{match}"
                    systems.append(e or Encoded(f"{c}~{match}", "classic", [], {}, 0.0, {"codec": c}))
            ch = preset(pr, coverage=float(cov), dropout=dropout)
            for e in systems:
                if (e.system, path.name, cond) in done:
                    continue
                if not e.oligos:        # the codec cannot go that low
                    row = {"system": e.system, "kind": e.kind, "image": path.name, "success": False,
                           "psnr_db": None, "error": "no quality fits the rate", **e.params}
                else:
                    reads, _, _ = simulate(e.oligos, ch, seed=seed + 7919 * i + int(cov * 100))
                    row = _base_row(e, path, orig)
                    row.update(decode_row(e, orig, reads, with_msssim=False))
                row.update({"condition": cond, "preset": pr, "coverage": cov})
                emit(row)



def bench_channel(images: list[Path], points: list[str], codecs: Iterable[str], presets: Iterable[str],
                  coverages: Iterable[float], out: str | Path, match: str | None = None, parity: float = 0.15,
                  dropout: float = CHANNEL_DROPOUT, seed: int = 0, fresh: bool = False, progress=None,
                  jobs: int = 1) -> dict:
    """PSNR and decode success against mean coverage under the channel presets (with oligo
    dropout), for our points and for the classic codecs at the total nt of point ``match``
    (per image: the highest quality whose oligos do not cost more)."""
    codecs, presets, coverages, points = list(codecs), list(presets), list(coverages), _labels(points)
    match = _labels([match])[0] if match else (points[0] if points else None)
    cfg = {"images": [p.name for p in images], "points": points, "codecs": codecs, "presets": presets,
           "coverages": coverages, "match": match, "parity": parity, "dropout": dropout, "seed": seed,
           "format_version": FORMAT_VERSION}
    store = Store(out, {"bench": "channel", "config": cfg,
                        "channel": f"the simulator's presets, lognormal copies, {dropout:.0%} of oligos dropped"}, fresh)
    summ = lambda rows: {"systems": summarise(rows, ("system", "preset", "coverage")),  # noqa: E731
                         "min_coverage": min_coverage(rows)}
    labels = points + [f"{c}~{match}" for c in codecs]
    store.restrict({(lab, p.name, f"{pr}@{cov:g}x") for p in images for pr in presets for cov in coverages
                    for lab in labels}, set(labels))
    _run(images, _channel_image, (points, codecs, presets, coverages, match, parity, dropout, seed), store, summ,
         jobs, progress)
    store.save(summ)
    return {"meta": store.meta, "summary": summ(store.rows), "rows": store.rows}


def min_coverage(rows: list[dict], reliable: float = RELIABLE) -> list[dict]:
    """Per system and preset: the lowest coverage from which every tested coverage decodes at
    least ``reliable`` of the images (None if never)."""
    table: dict[tuple, dict[float, list[bool]]] = {}
    for r in rows:
        if "preset" not in r:
            continue
        table.setdefault((r["system"], r["preset"]), {}).setdefault(r["coverage"], []).append(bool(r["success"]))
    out = []
    for (system, pr), covs in sorted(table.items()):
        ok = {c: float(np.mean(v)) for c, v in covs.items()}
        first = None
        for c in sorted(ok, reverse=True):
            if ok[c] >= reliable:
                first = c
            else:
                break
        out.append({"system": system, "preset": pr, "min_coverage": first,
                    "success_by_coverage": {f"{c:g}": ok[c] for c in sorted(ok)}})
    return out


def update_cards(result: dict, command: str) -> list[str]:
    """Store a bench's means in the model cards of the measured points: ``kodak`` (rd: rates,
    PSNR, MS-SSIM) or ``kodak_substitutions`` (noise: PSNR per rate, one read per oligo)."""
    from dnaimg.zoo.registry import models_dir
    bench = result["meta"]["bench"]
    n_images = len(result["meta"]["config"]["images"])
    touched = []
    by_model: dict[str, list[dict]] = {}
    for s in result["summary"]["systems"]:
        if s["kind"] == "learned":
            by_model.setdefault(s["system"].split(":")[0], []).append(s)
    for model, systems in by_model.items():
        path = models_dir() / f"{model}.json"
        card = json.loads(path.read_text())
        for s in systems:
            name = s["system"].split(":")[1] if ":" in s["system"] else ""
            target = next((p for p in card.get("operating_points", []) if p["name"] == name), card) if name else card
            if bench == "rd":
                target["kodak"] = {"images": n_images,
                                   "payload_nt_per_pixel": round(s["payload_nt_per_pixel"], 4),
                                   "total_nt_per_pixel": round(s["total_nt_per_pixel"], 4),
                                   "psnr_db": round(s["psnr_db"], 3), "ms_ssim": round(s["ms_ssim"], 4),
                                   "command": command}
            elif bench == "noise":
                sub = target.setdefault("kodak_substitutions", {"images": n_images, "command": command,
                                                                "channel": result["meta"]["channel"]})
                sub[f"{100 * s['sub_rate']:g}%"] = None if s["psnr_db"] is None else round(s["psnr_db"], 3)
                sub["command"] = command
        path.write_text(json.dumps(card, indent=2) + "\n")
        touched.append(model)
    if bench == "rd":           # the compact codec's rate indexes go into its model's card
        compact = [s for s in result["summary"]["systems"] if s["system"].startswith("compact@")]
        if compact:
            from dnaimg.codecs.compact import DEFAULT_MODEL
            models = {r.get("model") for r in result["rows"] if r["system"].startswith("compact@")} - {None}
            name = models.pop() if len(models) == 1 else DEFAULT_MODEL
            path = models_dir() / f"{name}.json"
            card = json.loads(path.read_text())
            card["kodak"] = [{"rate_index": float(s["system"].split("@")[1]), "images": n_images,
                              "payload_nt_per_pixel": round(s["payload_nt_per_pixel"], 4),
                              "total_nt_per_pixel": round(s["total_nt_per_pixel"], 4),
                              "psnr_db": round(s["psnr_db"], 3), "ms_ssim": round(s["ms_ssim"], 4)}
                             for s in sorted(compact, key=lambda s: s["total_nt_per_pixel"])]
            card["kodak_command"] = command
            path.write_text(json.dumps(card, indent=2) + "\n")
            touched.append(name)
    return touched


# ---------------------------------------------------------------------------------------------
# plots and tables


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)


def plot_rd(result: dict, path: str | Path) -> None:
    plt = _pyplot()
    systems = result["summary"]["systems"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    for ax, rate in zip(axes, ("total_nt_per_pixel", "payload_nt_per_pixel")):
        groups: dict[str, list[dict]] = {}
        for s in systems:
            name = s["system"].split("@")[0] if s["kind"] == "classic" else s["system"].split(":")[0]
            groups.setdefault(name, []).append(s)
        for name, ss in sorted(groups.items()):
            ss = sorted((s for s in ss if s["psnr_db"] is not None), key=lambda s: s[rate])
            style = "o-" if ss and ss[0]["kind"] == "learned" else "s--"
            ax.plot([s[rate] for s in ss], [s["psnr_db"] for s in ss], style, label=name, ms=4)
        ax.set_xlabel(rate.replace("_", " ").replace("nt per pixel", "nt/pixel"))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("RGB PSNR (dB), mean")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Rate-distortion in DNA, {len(result['meta']['config']['images'])} images, noiseless")
    _save(fig, path)


def plot_noise(result: dict, path: str | Path) -> None:
    plt = _pyplot()
    systems = result["summary"]["systems"]
    by: dict[str, list[dict]] = {}
    for s in systems:
        by.setdefault(s["system"], []).append(s)
    fig, ax = plt.subplots(figsize=(7.5, 5))
    points = sorted({lab.split(":")[-1] for lab in by})
    colors = {p: f"C{i}" for i, p in enumerate(points)}
    for lab, ss in sorted(by.items()):
        # a mean over the few images that still decode would mislead: points where fewer than
        # 95 % of the images decode (header or index lost) are left out of the curve
        ss = sorted((s for s in ss if s["success_fraction"] >= RELIABLE and s["psnr_db"] is not None),
                    key=lambda s: s["sub_rate"])
        noisy = "noise" in lab.split(":")[0]
        ax.plot([100 * s["sub_rate"] for s in ss], [s["psnr_db"] for s in ss], "--" if noisy else "-",
                color=colors[lab.split(":")[-1]], marker="o", ms=3, label=lab)
    ax.set_xlabel("substitution rate per nt (%), one read per oligo")
    ax.set_ylabel("RGB PSNR (dB), mean")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("Noise robustness: plain (solid) and noise-trained (dashed)\n"
                 "(points where < 95 % of images decode are left out)", fontsize=10)
    _save(fig, path)


def plot_channel(result: dict, path: str | Path) -> None:
    plt = _pyplot()
    systems = result["summary"]["systems"]
    presets = sorted({s["preset"] for s in systems})
    fig, axes = plt.subplots(2, len(presets), figsize=(6 * len(presets), 8), squeeze=False)
    for j, pr in enumerate(presets):
        by: dict[str, list[dict]] = {}
        for s in systems:
            if s["preset"] == pr:
                by.setdefault(s["system"], []).append(s)
        for lab, ss in sorted(by.items()):
            ss = sorted(ss, key=lambda s: s["coverage"])
            style = "o-" if ss[0]["kind"] == "learned" else "s--"
            axes[0, j].plot([s["coverage"] for s in ss], [s["success_fraction"] for s in ss], style, ms=3, label=lab)
            axes[1, j].plot([s["coverage"] for s in ss], [s["psnr_db"] for s in ss], style, ms=3, label=lab)
        for ax in axes[:, j]:
            ax.set_xscale("log")
            ax.grid(alpha=0.3)
            ax.set_xlabel("mean reads per oligo")
        axes[0, j].set_title(pr)
        axes[0, j].set_ylabel("images decoded")
        axes[1, j].set_ylabel("PSNR of decoded images (dB)")
    axes[0, 0].legend(fontsize=7)
    _save(fig, path)


def noise_table(result: dict, rates=(0.0, 0.01, 0.03, 0.05)) -> str:
    """Markdown: per operating point, PSNR at each rate (plain / noise-trained pairs)."""
    systems = result["summary"]["systems"]
    cell = {(s["system"], round(s["sub_rate"], 4)): s for s in systems}
    labels = sorted({s["system"] for s in systems},
                    key=lambda lab: (next(s["payload_nt_per_pixel"] or 0 for s in systems if s["system"] == lab), lab))
    head = "| operating point | payload nt/px | " + " | ".join(f"{100 * r:g} % sub" for r in rates) + " |"
    lines = [head, "|" + "---|" * (2 + len(rates))]
    for lab in labels:
        vals = []
        for r in rates:
            s = cell.get((lab, round(r, 4)))
            vals.append("" if s is None or s["psnr_db"] is None else f"{s['psnr_db']:.2f}")
        pay = next(s["payload_nt_per_pixel"] or 0 for s in systems if s["system"] == lab)
        lines.append(f"| {lab} | {pay:.3f} | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# the README's tables, from the committed results


def _load(path: Path) -> dict | None:
    if not path.exists():
        return None
    doc = json.loads(path.read_text())
    b = doc["meta"]["bench"]
    by = {"rd": ("system",), "noise": ("system", "sub_rate"), "channel": ("system", "preset", "coverage")}[b]
    doc["summary"] = {"systems": summarise(doc["rows"], by)}
    if b == "channel":
        doc["summary"]["min_coverage"] = min_coverage(doc["rows"])
    return doc


def _interp(xs: list[float], ys: list[float], x: float) -> float | None:
    pts = sorted(zip(xs, ys))
    if not pts or x < pts[0][0] or x > pts[-1][0]:
        return None
    return float(np.interp(x, [p[0] for p in pts], [p[1] for p in pts]))


def _f(x, fmt="{:.2f}"):
    return "–" if x is None else fmt.format(x)


def report(results: str | Path) -> str:
    """Markdown tables from ``results``/{rd,noise,noise-classic,channel,ablation-noise}.json;
    re-draws the figures from the rows."""
    d = Path(results)
    rd, noise, ncl, ch, abl = (_load(d / f"{n}.json") for n in ("rd", "noise", "noise-classic", "channel",
                                                                "ablation-noise"))
    rdc = _load(d / "rd-compact.json")        # the compact codec's sweep, run on its own (same images)
    if rd and rdc:
        rd["rows"] = rd["rows"] + [r for r in rdc["rows"] if r["system"].startswith("compact@")]
        rd["meta"]["config"]["codecs"] = [c for c in rd["meta"]["config"]["codecs"] if c != "compact"] + ["compact"]
        rd["summary"] = {"systems": summarise(rd["rows"], ("system",))}
    out = []
    if rd:
        plot_rd(rd, d / "rd.png")
    if noise:
        plot_noise(noise, d / "noise.png")
    if ch:
        plot_channel(ch, d / "channel.png")
    ns = {(s["system"], round(s["sub_rate"], 4)): s for s in (noise or {"summary": {"systems": []}})["summary"]["systems"]}
    rs = {s["system"]: s for s in (rd or {"summary": {"systems": []}})["summary"]["systems"]}
    if noise:
        n_img = len(noise["meta"]["config"]["images"])
        out.append(f"**Operating points** (Kodak, {n_img} images, mean; noiseless = the oligos as written; "
                   "1/3/5 % = substitutions only, one read per oligo; plain / noise-trained)\n")
        out.append("| point | channels x levels, codeword | payload nt/px | total nt/px | PSNR noiseless | "
                   "MS-SSIM | PSNR 1 % | PSNR 3 % | PSNR 5 % | decoded at 5 % |")
        out.append("|---|---|---|---|---|---|---|---|---|---|")
        from dnaimg.zoo.registry import card, list_models, operating_points
        pairs = []        # (plain point, its noise-trained twin) for every shipped pair measured
        for c in list_models():
            twin = f"{c['name']}-noise"
            if c.get("noise_trained") or not any(x["name"] == twin for x in list_models()):
                continue
            for p_ in operating_points(c):
                q = next((x for x in operating_points(card(twin)) if x.name == p_.name), None)
                if q is not None and (p_.label, 0.0) in ns:
                    pairs.append((p_.label, q.label))
        pairs.sort(key=lambda ab: (ns[(ab[0], 0.0)]["payload_nt_per_pixel"], ab[0]))
        for a, b in pairs:
            r0 = rs.get(a) or ns[(a, 0.0)]
            row = ns[(a, 0.0)]
            from dnaimg.zoo.registry import select_point
            pt = select_point(a)

            def pair(key, rate, fmt="{:.2f}"):
                x, y = ns.get((a, rate)), ns.get((b, rate))
                return f"{_f(x and x[key], fmt)} / {_f(y and y[key], fmt)}"
            out.append(f"| {a} | {pt.channels} x {pt.levels}, {pt.codeword_nt} nt | {row['payload_nt_per_pixel']:.3f} | "
                       f"{r0['total_nt_per_pixel']:.3f} | {pair('psnr_db', 0.0)} | {pair('ms_ssim', 0.0, '{:.4f}')} | "
                       f"{pair('psnr_db', 0.01)} | {pair('psnr_db', 0.03)} | {pair('psnr_db', 0.05)} | "
                       f"{pair('success_fraction', 0.05, '{:.0%}')} |")
        out.append("")
    if rd:
        n_img = len(rd["meta"]["config"]["images"])
        ours = sorted((s for s in rd["summary"]["systems"] if s["kind"] == "learned"),
                      key=lambda s: s["total_nt_per_pixel"])
        codecs = rd["meta"]["config"]["codecs"]
        curves = {c: [s for s in rd["summary"]["systems"] if s["system"].startswith(c + "@")] for c in codecs}
        out.append(f"**Rate-distortion in DNA** (Kodak, {n_img} images, noiseless; classic codecs at the same "
                   "*total* nt/pixel, interpolated along their quality sweep; their outer-code (RS) parity "
                   f"{rd['meta']['config']['parity']:.0%})\n")
        out.append("| our point | payload nt/px | total nt/px | ours PSNR | MS-SSIM | " +
                   " | ".join(f"{c} PSNR" for c in codecs) + " |")
        out.append("|---|---|---|---|---|" + "---|" * len(codecs))
        for s in ours:
            cells = [_f(_interp([x["total_nt_per_pixel"] for x in curves[c]], [x["psnr_db"] for x in curves[c]],
                                s["total_nt_per_pixel"])) for c in codecs]
            out.append(f"| {s['system']} | {s['payload_nt_per_pixel']:.3f} | {s['total_nt_per_pixel']:.3f} | "
                       f"{s['psnr_db']:.2f} | {s['ms_ssim']:.4f} | " + " | ".join(cells) + " |")
        out.append("")
    if rd and rdc:
        comp = sorted((s for s in rd["summary"]["systems"] if s["system"].startswith("compact@")),
                      key=lambda s: s["total_nt_per_pixel"])
        n_img = len(rdc["meta"]["config"]["images"])
        avif = [s for s in rd["summary"]["systems"] if s["system"].startswith("avif@")]
        out.append(f"**Compact codec against AVIF** (Kodak, {n_img} images, noiseless, both through the same "
                   "container with the same outer code; AVIF interpolated along its quality sweep at compact's "
                   "total nt/pixel)\n")
        out.append("| compact rate index | payload nt/px | total nt/px | PSNR | MS-SSIM | AVIF PSNR | compact - AVIF |")
        out.append("|---|---|---|---|---|---|---|")
        for s in comp:
            a = _interp([x["total_nt_per_pixel"] for x in avif], [x["psnr_db"] for x in avif], s["total_nt_per_pixel"])
            out.append(f"| {s['system'].split('@')[1]} | {s['payload_nt_per_pixel']:.3f} | {s['total_nt_per_pixel']:.3f} | "
                       f"{s['psnr_db']:.2f} | {s['ms_ssim']:.4f} | {_f(a)} | "
                       f"{_f(None if a is None else s['psnr_db'] - a, '{:+.2f}')} |")
        out.append("")
    loss = json.loads((d / "loss.json").read_text()) if (d / "loss.json").exists() else None
    if loss:
        fr = loss["meta"]["losses"]
        out.append(f"**Oligos lost beyond the outer code** (Kodak, {len(loss['meta']['images'])} images; every "
                   f"codec at the total nt/pixel of {loss['meta']['point']}, outer code {loss['meta']['parity']:.0%} "
                   "for the byte streams; a fraction of all oligos dropped at random, one clean read of the rest; "
                   "PSNR over the images that drew one, that fraction in brackets)\n")
        out.append("| system | total nt/px | " + " | ".join(f"{100 * f:g} % lost" for f in fr) + " |")
        out.append("|---|---|" + "---|" * len(fr))
        sm = {(x["system"], x["loss"]): x for x in loss["summary"]}
        for name in dict.fromkeys(x["system"] for x in loss["summary"]):
            tot = sm[(name, fr[0])]["total_nt_per_pixel"]
            out.append(f"| {name} | {tot:.3f} | " + " | ".join(
                f"{_f(sm[(name, f)]['psnr_db'])} ({sm[(name, f)]['decoded']:.0%})" for f in fr) + " |")
        out.append("")
    if ch or ncl:
        out.append("**Headline** (Kodak, mean; classic codecs at the total nt of our r050 point, per image; "
                   "PSNR over decoded images, decoded fraction in brackets; min coverage = lowest tested mean "
                   "coverage from which >= 95 % of images decode, with 2 % of oligos dropped)\n")
        mc = {(m["system"], m["preset"]): m["min_coverage"] for m in (ch or {"summary": {"min_coverage": []}})
              ["summary"]["min_coverage"]}
        presets = sorted({p for _, p in mc})
        cl = {(s["system"], round(s["sub_rate"], 4)): s for s in (ncl or {"summary": {"systems": []}})["summary"]["systems"]}
        systems = sorted({s for s, _ in mc} | {s for s, _ in cl}, key=lambda x: ("~" in x, x))
        out.append("| system | total nt/px | PSNR noiseless | PSNR 3 % sub | PSNR 5 % sub | " +
                   " | ".join(f"min coverage {p}" for p in presets) + " |")
        out.append("|---|---|---|---|---|" + "---|" * len(presets))
        for sys_ in systems:
            src = cl if (sys_, 0.0) in cl else ns

            def cell(rate):
                x = src.get((sys_, rate))
                if x is None:
                    return "–"
                return f"{_f(x['psnr_db'])} ({x['success_fraction']:.0%})"
            tot = (src.get((sys_, 0.0)) or {}).get("total_nt_per_pixel")
            out.append(f"| {sys_} | {_f(tot, '{:.3f}')} | {cell(0.0)} | {cell(0.03)} | {cell(0.05)} | " +
                       " | ".join(_f(mc.get((sys_, p)), "{:g}x") if mc.get((sys_, p)) is not None
                                  else ("never" if (sys_, p) in mc else "–") for p in presets) + " |")
        out.append("")
    if abl:
        out.append("**Noise-model ablation** (point r050 of cae32-mr, decoder fine-tuned 1,200 steps with each noise "
                   "model, p rising to 5 %; Kodak, one read per oligo)\n")
        out.append("| decoder | noiseless | 3 % sub | 5 % sub |")
        out.append("|---|---|---|---|")
        a = {(s["system"], round(s["sub_rate"], 4)): s for s in abl["summary"]["systems"]}
        for sys_ in sorted({s for s, _ in a}):
            out.append(f"| {sys_} | " + " | ".join(_f((a.get((sys_, r)) or {}).get("psnr_db")) for r in (0.0, 0.03, 0.05))
                       + " |")
        out.append("")
    return "\n".join(out)
