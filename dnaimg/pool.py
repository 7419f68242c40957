"""Pools: many images in one oligo pool (the Python API under ``dnaimg encode A B DIR/ -o pool``
and ``dnaimg decode READS -o OUTDIR/``).

    from dnaimg import pool
    enc = pool.encode_pool(["a.png", "photos/"], codec="robust")      # ids 0, 1, ...
    pool.write_pool(enc, "pool.fasta")                                # + pool.manifest.json
    more = pool.encode_pool(["new.png"], append="pool.fasta")         # old ids kept
    dec = pool.decode_pool(["reads.fastq"])                           # every image, by name
    dec = pool.decode_pool(["reads.fastq"], only="a.png", workers=2)  # one, on a local Dask cluster

Every image of a pool is written in format version 3: its header carries the pool id, an image
id unique in the pool (chosen here: 0, 1, 2, ... in the order images are added), the index of
its primer pair in the primer set (:mod:`dnaimg.dna.primers`) and its file name.  Images share
a primer pair in groups of ``group_size`` (default 256, the most one pair can tell apart: the
tag in every index is the low byte of the id); ``group_size=1`` gives every file its own pair,
so that a lab can PCR one file out of the pool.  Pair 0 is the default primer pair.
"""
from __future__ import annotations

import json
import os
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from dnaimg.codecs.base import CodecError, DecodeError
from dnaimg.dna import alphabet as dna
from dnaimg.dna.header import (DEFAULT_HEADER_COPIES, MAX_NAME, NO_PAIR, POOL_VERSION, Header, HeaderError, HeaderV1,
                               PoolRecord, check_name)
from dnaimg.dna.primers import MIN_DISTANCE, N_PAIRS, PrimerPair, edit_distance, primer_pairs, set_digest
from dnaimg.image import IMAGE_SUFFIXES

MANIFEST_FORMAT = "dnaimg-pool-manifest"
MAX_GROUP = 256


class PoolError(ValueError):
    """A pool that cannot be made or extended as asked."""


# ---------------------------------------------------------------------------------------------
# inputs and plan

def list_images(inputs: Iterable[str | Path]) -> list[tuple[Path, str]]:
    """(path, name in the DNA) of each image: files as given, folders' images (not their
    subfolders) sorted by name.  Names are file names without folders; they must be unique."""
    out = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files = _folder(p)[0]
            if not files:
                raise PoolError(f"{p}: no images (.png, .jpg, ...) in this folder")
            out += [(q, q.name) for q in files]
        elif p.exists():
            out.append((p, p.name))
        else:
            raise PoolError(f"{p}: no such file or folder")
    seen: dict[str, Path] = {}
    for path, name in out:
        try:
            check_name(name)
        except HeaderError as e:
            raise PoolError(str(e)) from None
        if name in seen:
            raise PoolError(f"two images named {name} ({seen[name]} and {path}): names must be unique in a pool")
        seen[name] = path
    return out


def _folder(p: Path) -> tuple[list[Path], list[Path], list[Path]]:
    """(its image files by suffix, its subfolders, its other files) of folder ``p``, each sorted."""
    images, dirs, other = [], [], []
    for q in sorted(p.iterdir()):
        if q.is_dir():
            dirs.append(q)
        elif q.is_file():
            (images if q.suffix.lower() in IMAGE_SUFFIXES else other).append(q)
    return images, dirs, other


def left_out(inputs: Iterable[str | Path]) -> list[str]:
    """What :func:`list_images` leaves out of the folders among ``inputs``, a line per folder that
    has any: its subfolders and its files that are not images (by suffix)."""
    out = []
    for item in inputs:
        p = Path(item)
        if not p.is_dir():
            continue
        _, dirs, other = _folder(p)
        parts = [f"{len(v)} {one if len(v) == 1 else many} ({', '.join(q.name for q in v[:3])}{', ...' if len(v) > 3 else ''})"
                 for v, one, many in ((dirs, "subfolder", "subfolders"),
                                      (other, "file that is not an image", "files that are not images")) if v]
        if parts:
            out.append(f"{p}: left out " + " and ".join(parts))
    return out


@dataclass(frozen=True)
class Member:
    """One image of a pool: where it sits, not what it holds."""
    image_id: int
    name: str
    primer_pair: int                   # index in the primer set, NO_PAIR for other primers
    primer_f: str
    primer_r: str

    @property
    def tag(self) -> int:
        return self.image_id & 0xFF


def assign(names: list[str], existing: list[Member], group_size: int = MAX_GROUP,
           primers: tuple[str, str] | None = None) -> list[Member]:
    """Ids and primer pairs for new images ``names`` after the ``existing`` members: ids go on
    from the largest; a new image joins the primer pair of the last image while that pair has
    fewer than ``group_size`` images and its tag is free there, else the next unused pair of
    the set.  ``primers``: one pair for every image (not from the set; at most 256 images)."""
    if not 1 <= group_size <= MAX_GROUP:
        raise PoolError(f"a primer pair holds 1 to {MAX_GROUP} images (one per tag), not {group_size}")
    taken = {m.name for m in existing}
    for n in names:
        if n in taken:
            raise PoolError(f"the pool already holds an image named {n}")
    next_id = max((m.image_id for m in existing), default=-1) + 1
    members = Counter(m.primer_pair for m in existing)
    tags: dict[int, set[int]] = {}
    for m in existing:
        tags.setdefault(m.primer_pair, set()).add(m.tag)
    out = []
    if primers is not None:
        if any(m.primer_pair != NO_PAIR for m in existing):
            raise PoolError("the pool uses primer pairs of the set; leave out --primer-f/--primer-r")
        for i, n in enumerate(names):
            iid = next_id + i
            if iid & 0xFF in tags.get(NO_PAIR, set()) or members[NO_PAIR] >= MAX_GROUP:
                raise PoolError(f"one primer pair holds at most {MAX_GROUP} images; use the primer set "
                                "(no --primer-f/--primer-r) for larger pools")
            tags.setdefault(NO_PAIR, set()).add(iid & 0xFF)
            members[NO_PAIR] += 1
            out.append(Member(iid, n, NO_PAIR, primers[0], primers[1]))
        return out
    if any(m.primer_pair == NO_PAIR for m in existing):
        raise PoolError("the pool uses its own primers: give them again with --primer-f/--primer-r")
    sets = primer_pairs()
    last = max(existing, key=lambda m: m.image_id).primer_pair if existing else 0
    cur = last
    for i, n in enumerate(names):
        iid = next_id + i
        if members[cur] >= group_size or iid & 0xFF in tags.get(cur, set()):
            free = [p for p in range(cur + 1, len(sets)) if members[p] == 0]
            if not free:
                raise PoolError(f"the primer set has {len(sets)} pairs: a pool holds at most "
                                f"{len(sets) * group_size} images in groups of {group_size}")
            cur = free[0]
        members[cur] += 1
        tags.setdefault(cur, set()).add(iid & 0xFF)
        out.append(Member(iid, n, cur, sets[cur].forward, sets[cur].reverse))
    return out


# ---------------------------------------------------------------------------------------------
# encoding

@dataclass
class EncodedImage:
    member: Member
    source: str
    codec: str
    oligos: np.ndarray              # (n, oligo_length) uint8
    names: list[str]                # FASTA record names
    rates: dict
    header: dict
    seconds: float


@dataclass
class PoolEncoding:
    pool_id: int
    oligo_length: int
    images: list[EncodedImage]                                  # the new ones
    existing: list[dict] = field(default_factory=list)          # manifest entries of the pool before
    existing_records: list[tuple[str, str]] = field(default_factory=list)   # its FASTA records, as they were
    group_size: int = MAX_GROUP

    def records(self):
        """FASTA records: the pool as it was, then the new images, by id."""
        yield from self.existing_records
        for im in self.images:
            yield from zip(im.names, dna.decode_many(list(im.oligos)))

    def manifest(self) -> dict:
        entries = list(self.existing) + [_entry(im) for im in self.images]
        entries.sort(key=lambda e: e["id"])
        used = sorted({e["primer_pair"] for e in entries if e["primer_pair"] != NO_PAIR})
        seqs = sorted({s for e in entries for s in (e["primer_f"], e["primer_r"])})
        return {"format": MANIFEST_FORMAT, "version": 1, "pool_id": f"{self.pool_id:08x}",
                "oligo_length": self.oligo_length, "group_size": self.group_size, "images": entries,
                "oligos": sum(e["oligos"] for e in entries),
                "primers": {"set": {"pairs": N_PAIRS, "digest": set_digest(), "min_edit_distance": MIN_DISTANCE},
                            "pairs_used": used, "min_edit_distance_between_used": _min_distance(seqs),
                            **_primer_to_insert(self)}}


def _entry(im: EncodedImage) -> dict:
    m = im.member
    r = {k: v for k, v in im.rates.items() if isinstance(v, (int, float, str)) or v is None}
    return {"file": m.name, "id": m.image_id, "image_id": f"{m.image_id:08x}", "tag": f"{m.tag:02x}",
            "codec": im.codec, "source": im.source, "primer_pair": m.primer_pair, "primer_f": m.primer_f,
            "primer_r": m.primer_r, "oligos": int(im.oligos.shape[0]), "rates": r}


def _min_distance(seqs: list[str]) -> int | None:
    from dnaimg.dna.primers import min_pairwise_distance
    return min_pairwise_distance(seqs) if seqs else None


def _primer_to_insert(enc: PoolEncoding, max_cells: float = 4e8) -> dict:
    """The smallest edit distance between a primer in use (or its reverse complement) and any
    stretch of any insert (index and payload) of the new oligos: how far the primers are from
    the payloads (a sample of the oligos when there are many)."""
    from dnaimg.dna.primers import min_distance_in
    pats = sorted({s for im in enc.images for s in (im.member.primer_f, im.member.primer_r)})
    if not pats or not enc.images:
        return {}
    pat = [dna.encode(s) for s in pats]
    pat += [dna.revcomp(p) for p in pat]
    inserts = []
    for im in enc.images:
        a, b = len(im.member.primer_f), im.oligos.shape[1] - len(im.member.primer_r)
        inserts.append(im.oligos[:, a:b])
    ins = np.concatenate(inserts)
    per = len(pat) * 20 * ins.shape[1]
    k = int(min(len(ins), max(200, max_cells // per)))
    pick = np.linspace(0, len(ins) - 1, k).astype(np.int64) if k < len(ins) else np.arange(len(ins))
    d = min_distance_in(np.stack(pat), np.ascontiguousarray(ins[pick]))
    return {"min_edit_distance_to_inserts": int(d), "inserts_checked": int(len(pick)), "inserts": int(len(ins))}


def _encode_one(job: dict) -> EncodedImage:
    from dnaimg import api
    from dnaimg.dna import container
    from dnaimg.dna.container import Layout
    t0 = time.time()
    m: Member = job["member"]
    layout = Layout(oligo_length=job["oligo_length"], primer_f=m.primer_f, primer_r=m.primer_r)
    with container.pool_member(PoolRecord(job["pool_id"], m.image_id, m.primer_pair, m.name)):
        enc = api.encode(job["path"], job["codec"], rate=job["rate"], quality=job["quality"], model=job["model"],
                         noise_trained=job["noise_trained"], redundancy=job["redundancy"], layout=layout,
                         copies=job["copies"], flatten=job.get("flatten", False), to_8bit=job.get("to_8bit", False),
                         fast=job.get("fast", False))
    h = enc.written.header
    assert h.version == POOL_VERSION and h.image_id == m.image_id      # every codec writes through the container
    return EncodedImage(m, str(job["path"]), enc.codec, np.ascontiguousarray(enc.oligos, dtype=np.uint8),
                        list(enc.names), enc.rates(), h.to_dict(), round(time.time() - t0, 2))


def _worker_init(threads: int) -> None:
    import torch
    torch.set_num_threads(threads)


def encode_pool(inputs: Iterable[str | Path], codec: str = "robust", *, rate: float | None = None,
                quality: float | None = None, model: str | None = None, noise_trained: bool = False,
                redundancy: float | None = None, oligo_length: int | None = None, copies: int = DEFAULT_HEADER_COPIES,
                group_size: int | None = None, primers: tuple[str, str] | None = None, append: str | Path | None = None,
                pool_id: int | None = None, jobs: int = 1,
                progress: Callable[[int], None] | None = None, flatten: bool = False,
                to_8bit: bool = False, fast: bool = False) -> PoolEncoding:
    """Images (files, folders) -> a pool (see the module text).  ``append``: a pool FASTA whose
    images keep their ids, primers and oligos (the new ones come after).  ``jobs``: images
    encoded in parallel processes.  ``codec`` None: per image, as :func:`dnaimg.api.encode` chooses;
    ``flatten``, ``to_8bit``: see :func:`dnaimg.api.prepare`; ``fast``: :func:`dnaimg.api.encode`'s."""
    from dnaimg.codecs import canonical
    from dnaimg.dna.container import DEFAULT_OLIGO_LENGTH, Layout
    codec = canonical(codec) if codec is not None else None
    from dnaimg.api import check_fast
    check_fast(fast, codec)
    files = list_images(inputs)
    if not files:
        raise PoolError("no images to encode")
    existing: list[Member] = []
    old_entries: list[dict] = []
    old_records: list[tuple[str, str]] = []
    gs = group_size
    if append is not None:
        old = read_pool(append, primers)
        existing, old_entries, old_records = old.members, old.entries, old.records
        pool_id = old.pool_id if pool_id is None else pool_id
        if pool_id != old.pool_id:
            raise PoolError("the pool id of an existing pool cannot change")
        if oligo_length is not None and oligo_length != old.oligo_length:
            raise PoolError(f"the pool's oligos are {old.oligo_length} nt long, not {oligo_length}")
        oligo_length = old.oligo_length
        gs = gs or old.group_size
    gs = gs or MAX_GROUP
    oligo_length = oligo_length or DEFAULT_OLIGO_LENGTH
    if primers is not None:
        primers = (primers[0].upper(), primers[1].upper())
        Layout(oligo_length=oligo_length, primer_f=primers[0], primer_r=primers[1])     # checks them
        if group_size is not None:
            raise PoolError("--group-size takes pairs from the primer set: leave out --primer-f/--primer-r")
    else:
        Layout(oligo_length=oligo_length)
    members = assign([n for _, n in files], existing, gs, primers)
    pool_id = secrets.randbits(32) if pool_id is None else int(pool_id)
    jobs_ = [{"member": m, "path": str(p), "pool_id": pool_id, "oligo_length": oligo_length, "codec": codec,
              "rate": rate, "quality": quality, "model": model, "noise_trained": noise_trained,
              "redundancy": redundancy, "copies": copies, "flatten": flatten, "to_8bit": to_8bit, "fast": fast}
             for (p, _), m in zip(files, members)]
    images = _run(jobs_, jobs, progress)
    return PoolEncoding(pool_id, oligo_length, images, old_entries, old_records, gs)


def _run(jobs_: list[dict], jobs: int, progress) -> list[EncodedImage]:
    jobs = max(1, min(int(jobs or 1), len(jobs_)))
    if jobs == 1:
        out = []
        for j in jobs_:
            out.append(_encode_one(j))
            if progress is not None:
                progress(1)
        return out
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed
    threads = max(1, (os.cpu_count() or 1) // jobs)
    res: dict[int, EncodedImage] = {}
    with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn"), initializer=_worker_init,
                             initargs=(threads,)) as ex:
        futs = {ex.submit(_encode_one, j): i for i, j in enumerate(jobs_)}
        for f in as_completed(futs):
            res[futs[f]] = f.result()
            if progress is not None:
                progress(1)
    return [res[i] for i in range(len(jobs_))]


def manifest_path(fasta: str | Path) -> Path:
    """``pool.fasta`` (or .fa, .fasta.gz, ...) -> ``pool.manifest.json`` beside it."""
    p = Path(fasta)
    name = p.name
    for ext in (".gz", ".bz2", ".xz", ".zst"):
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return p.with_name(stem + ".manifest.json")


def write_pool(enc: PoolEncoding, fasta: str | Path) -> tuple[int, Path]:
    """Write the pool's FASTA and its manifest beside it; (records written, manifest path)."""
    from dnaimg.dna.seqio import write_fasta
    n = write_fasta(fasta, enc.records())
    mp = manifest_path(fasta)
    man = enc.manifest()
    man["fasta"] = Path(fasta).name
    mp.write_text(json.dumps(man, indent=2) + "\n")
    return n, mp


# ---------------------------------------------------------------------------------------------
# an existing pool (for --append)

@dataclass
class ExistingPool:
    pool_id: int
    oligo_length: int
    members: list[Member]
    entries: list[dict]
    records: list[tuple[str, str]]
    group_size: int


def read_pool(fasta: str | Path, primers: tuple[str, str] | None = None) -> ExistingPool:
    """A pool FASTA (the oligos as written) -> its members, from the header oligos themselves
    (the manifest beside it, if any, only adds the rates)."""
    from dnaimg.dna.pool import decode_images, pairs_for, sort_pool
    from dnaimg.dna.seqio import ReadBatches, holds_fastq, iter_records
    pairs = pairs_for(*(primers or (None, None)))
    ps = sort_pool(ReadBatches(fasta), pairs)
    found = [r for r in decode_images(ps, only="\0", adapt=None) if r.header is not None]
    if not found:
        raise PoolError(f"{fasta}: no image header could be read (not dnaimg oligos, or other primers?)")
    bad = [r for r in found if not (isinstance(r.header, Header) and r.header.version == POOL_VERSION)]
    if bad:
        raise PoolError(f"{fasta} holds images that are not pool members (format version "
                        f"{bad[0].header.version}): only a pool can be extended")
    ids = {r.header.pool_id for r in found}
    if len(ids) > 1:
        raise PoolError(f"{fasta} holds images of {len(ids)} different pools")
    by_pair = {p.index: p for p in pairs}
    members = [Member(r.header.image_id, r.header.name, r.header.primer_pair, by_pair[r.pair].forward,
                      by_pair[r.pair].reverse) for r in found]
    if len({m.image_id for m in members}) != len(members) or len({m.name for m in members}) != len(members):
        raise PoolError(f"{fasta}: ids or names repeat in the pool")
    lengths = {r.header.oligo_length for r in found}
    if len(lengths) != 1:
        raise PoolError(f"{fasta}: oligos of several lengths")
    mp = manifest_path(fasta)
    old = {}
    group_size = None
    if mp.exists():
        try:
            man = json.loads(mp.read_text())
            old = {e["id"]: e for e in man.get("images", [])}
            group_size = man.get("group_size")
        except (ValueError, KeyError, TypeError):
            old = {}
    codecs = _codec_names()
    entries = []
    for r, m in sorted(zip(found, members), key=lambda x: x[1].image_id):
        e = old.get(m.image_id)
        if e is None or e.get("file") != m.name:
            e = {"file": m.name, "id": m.image_id, "image_id": f"{m.image_id:08x}", "tag": f"{m.tag:02x}",
                 "codec": codecs.get(r.header.codec_id, str(r.header.codec_id)), "source": None,
                 "primer_pair": m.primer_pair, "primer_f": m.primer_f, "primer_r": m.primer_r,
                 "oligos": None, "rates": {}}
        entries.append(e)
    records = list(iter_records(fasta))
    olen = next(iter(lengths))
    why = None
    if holds_fastq(fasta):
        why = "it is a FASTQ file"
    elif any(not n.startswith("dnaimg_") for n, _ in records):
        why = "some records are not named as dnaimg names its oligos"
    elif len({n for n, _ in records}) != len(records):
        why = "some oligo names repeat"
    elif any(len(q) != olen or q.strip("ACGT") for _, q in records):
        why = f"some records are not oligos of {olen} nt of A, C, G and T"
    elif len({q for _, q in records}) != len(records):
        why = "some oligos repeat"
    if why is not None:
        raise PoolError(f"{fasta} is not a pool's oligos as encode wrote them ({why}): --append takes that FASTA, "
                        "not sequencing reads")
    counts = Counter(n.split("_")[1] for n, _ in records if n.startswith("dnaimg_") and n.count("_") >= 2)
    for e in entries:
        if e.get("oligos") is None:
            e["oligos"] = counts.get(e["image_id"], 0)
    return ExistingPool(found[0].header.pool_id, lengths.pop(), members, entries, records, group_size or MAX_GROUP)


def _codec_names() -> dict:
    from dnaimg.codecs import CODEC_NAMES
    return CODEC_NAMES


# ---------------------------------------------------------------------------------------------
# random access: which oligos a PCR with one file's primers amplifies

def _find_entry(entries: list[dict], spec: str) -> dict | None:
    spec = spec.strip()
    for e in entries:
        if spec in (e["file"], e["file"].rsplit(".", 1)[0], str(e["id"]), e["image_id"], "0x" + e["image_id"]):
            return e
    return None


def amplified_oligos(fasta: str | Path, oligos: list[np.ndarray], spec: str) -> tuple[np.ndarray, str]:
    """(bool per oligo: carries the primer pair of ``spec``, a description).  ``spec``: a file of
    the pool (name, name without extension, or id: the manifest beside ``fasta`` or, without
    one, its headers say which pair it has), or ``pair:N`` for pair N of the primer set."""
    if spec.lower().startswith("pair:"):
        try:
            idx = int(spec[5:])
            pair = primer_pairs()[idx]
        except (ValueError, IndexError):
            raise PoolError(f"--amplify pair:N takes N in 0..{len(primer_pairs()) - 1}, got {spec!r}") from None
        f, r, what = pair.forward, pair.reverse, f"primer pair {idx}"
    else:
        mp = manifest_path(fasta)
        entries = None
        if mp.exists():
            try:
                entries = json.loads(mp.read_text())["images"]
            except (ValueError, KeyError, TypeError):
                entries = None
        if entries is None:
            entries = read_pool(fasta).entries
        e = _find_entry(entries, spec)
        if e is None:
            raise PoolError(f"no file {spec!r} in the pool (it holds {', '.join(x['file'] for x in entries[:8])}"
                            f"{', ...' if len(entries) > 8 else ''})")
        f, r = e["primer_f"], e["primer_r"]
        mates = [x["file"] for x in entries if x["primer_f"] == f and x["primer_r"] == r and x is not e]
        what = f"{e['file']} (primer pair {e['primer_pair']}" + (f", with {len(mates)} other file{'s' if len(mates) > 1 else ''}" if mates else "") + ")"
    fwd, rrc = dna.encode(f), dna.revcomp(dna.encode(r))
    mask = np.array([len(o) >= len(fwd) + len(rrc) and np.array_equal(o[:len(fwd)], fwd)
                     and np.array_equal(o[len(o) - len(rrc):], rrc) for o in oligos], dtype=bool)
    if not mask.any():
        raise PoolError(f"no oligo of {fasta} carries the primers of {what}")
    return mask, what


# ---------------------------------------------------------------------------------------------
# decoding

def v1_header(h):
    """A version-1 header as the version-2 header it amounts to (the robust codec's business;
    imported only when met, so that Dask workers need not load the network)."""
    from dnaimg.codecs.robust import header_from_v1
    return header_from_v1(h)


@dataclass
class DecodedImage:
    name: str | None                      # as stored in the DNA (None before format version 3)
    image_id: int
    pair: int
    tag: int
    codec: str
    image: np.ndarray | None
    exact: bool
    report: dict
    output: str                           # file name to write it under
    error: str | None = None


@dataclass
class PoolDecoding:
    images: list[DecodedImage]            # every image whose header was read and that was asked for
    refused: list[dict]                   # tags whose reads come from two images (never decoded)
    failed: list[dict]                    # tags with reads but no readable header
    stats: dict
    seconds: dict

    def report(self) -> dict:
        return {"reads": self.stats, "images": [_image_report(d) for d in self.images], "refused": self.refused,
                "undecoded": self.failed, "timing_s": self.seconds}


def _image_report(d: DecodedImage) -> dict:
    r = {"file": d.name, "output": d.output, "id": d.image_id, "image_id": f"{d.image_id:08x}",
         "primer_pair": d.pair, "tag": f"{d.tag:02x}", "codec": d.codec, "exact": d.exact, **d.report}
    if d.image is not None:
        r.update({"width": int(d.image.shape[1]), "height": int(d.image.shape[0])})
    if d.error:
        r["error"] = d.error
    return r


def output_name(name: str | None, image_id: int) -> str:
    """The file a decoded image is written to: its stored name (folders and odd characters
    removed), with .png added unless it ends so; ``image_XXXXXXXX.png`` without a name."""
    if name:
        base = "".join(c if c.isprintable() and c not in "/\\:" else "_" for c in name).strip().lstrip(".")
        if base:
            return base if base.lower().endswith(".png") else base + ".png"
    return f"image_{image_id:08x}.png"


def decode_pool(reads, *, only: str | None = None, primer_f: str | None = None, primer_r: str | None = None,
                workers: int | None = None, scheduler: str | None = None, precision: str = "auto",
                progress: Callable[[int], None] | None = None, trimmed: bool | None = None,
                paired: bool | None = False) -> PoolDecoding:
    """Reads (file paths, - for standard input, or an iterable of reads) -> every image of the
    pool (or ``only``: a file name, the name without extension, or an id).  ``workers``/``scheduler``:
    on a Dask cluster (file paths only); the images are the same.  ``trimmed``: the reads'
    primers were trimmed off (None: detected); ``paired``: paired-end R1/R2 files (see
    :class:`dnaimg.dna.seqio.ReadBatches`)."""
    from dnaimg.dna.container import ContainerError, unmerged_pairs
    from dnaimg.dna.pool import decode_images, pairs_for, sort_pool
    from dnaimg.dna.seqio import ReadBatches
    from dnaimg.zoo.model import resolve_precision
    requested, precision = precision, resolve_precision(precision)
    t0 = time.perf_counter()
    pairs = pairs_for(primer_f, primer_r)
    paths = None
    if isinstance(reads, (str, Path)):
        paths = [reads]
    elif isinstance(reads, (list, tuple)) and reads and all(isinstance(x, (str, Path)) for x in reads):
        paths = list(reads)
    try:
        if workers or scheduler:
            if paths is None:
                raise DecodeError("a Dask decode reads files: give their paths")
            if paired or trimmed:
                raise DecodeError("a Dask decode reads plain files: merge paired-end mates and give reads with "
                                  "their primers, or decode without --workers/--scheduler")
            from dnaimg.dna.distributed import ClusterError, dask_client, decode_images_dask
            try:
                with dask_client(workers, scheduler) as client:
                    found, stats = decode_images_dask(client, paths, pairs, only, v1_header, progress=progress)
            except ClusterError as e:
                raise DecodeError(str(e)) from None
        else:
            src = ReadBatches(paths, paired=paired) if paths is not None else reads
            ps = sort_pool(src, pairs, progress, trimmed=trimmed)
            if why := unmerged_pairs(src):         # (before any header is looked for)
                raise DecodeError(why)
            found = decode_images(ps, only, v1_header)
            stats = ps.read_stats()
            del ps
    except (HeaderError, ContainerError) as e:
        raise DecodeError(str(e)) from None
    t1 = time.perf_counter()
    refused = [{"primer_pair": r.pair, "tag": f"{r.tag:02x}", "error": r.error} for r in found if r.mixed]
    failed = [{"primer_pair": r.pair, "tag": f"{r.tag:02x}", "error": r.error} for r in found
              if r.header is None and not r.mixed]
    if only is not None:
        hit = [r for r in found if r.header is not None and not r.skipped]
        if not hit:
            names = sorted(str(r.name or f"{r.image_id:08x}") for r in found if r.header is not None)
            raise DecodeError(f"no image {only!r} in the reads (found: {', '.join(names) or 'none'})"
                              + ("; " + refused[0]["error"] if refused else ""))
        if len(hit) > 1:
            raise DecodeError(f"{only!r} names {len(hit)} images ({', '.join(str(r.name or r.image_id) for r in hit)}); "
                              "give the id")
    images = []
    names_used: Counter = Counter()
    for r in found:
        if r.header is None or r.skipped:
            continue
        d = _draw(r, precision, requested)
        base = output_name(d.name, d.image_id)
        names_used[base] += 1
        if names_used[base] > 1:
            stem, dot, ext = base.rpartition(".")
            base = f"{stem}_{d.image_id:08x}.{ext}"
        d.output = base
        images.append(d)
    t2 = time.perf_counter()
    return PoolDecoding(images, refused, failed, stats,
                        {"reads_and_streams": round(t1 - t0, 3), "images": round(t2 - t1, 3)})


def _draw(r, precision: str, requested: str = "auto") -> DecodedImage:
    """One image's streams -> pixels, by its codec."""
    from dnaimg.codecs import CODEC_NAMES
    h = r.header
    h2 = v1_header(h) if isinstance(h, HeaderV1) else h
    codec = CODEC_NAMES.get(h2.codec_id, f"codec {h2.codec_id}")
    rep = dict(r.report)
    d = DecodedImage(r.name, r.image_id, r.pair, r.tag, codec, None, False, rep, "")
    if r.received is None:
        d.error = r.error or "the streams could not be read"
        return d
    d.exact = all(x.exact for x in r.received)
    rep["streams"] = [x.report for x in r.received]
    r0 = r.received[0].report
    rep["oligos"] = {"expected": r0.get("oligos"), "missing": r0.get("missing")}
    try:
        if codec == "robust":
            from dnaimg.codecs import robust
            d.image, _, model, params = robust.decode_streams(r.received, h2.meta, precision)
            rep["model"] = model
        elif codec == "compact":             # as api.decode draws it ("auto": fp32, the same pixels everywhere)
            from dnaimg.codecs import compact
            d.image, crep = compact.decode(r.received, h2.meta, "fp32" if requested == "auto" else precision)
            rep["model"] = crep.get("model")
        elif codec in ("jpeg", "webp", "jpeg2000", "avif", "jxl", "png", "jxl-lossless"):
            from dnaimg.codecs import classic
            try:
                d.image = classic.get_codec(codec).decode(r.received[0].data, h2.meta)
            except CodecError as e:
                d.error = (f"the {codec} stream is exact but does not decode: {e}" if d.exact else
                           f"the {codec} stream could not be rebuilt ({r0.get('missing')} of {r0.get('oligos')} "
                           "oligos missing); more reads or more redundancy are needed")
        else:
            d.error = f"{codec} images cannot be drawn by a pool decode of this dnaimg"
    except (DecodeError, CodecError, ValueError) as e:
        d.error = str(e)
        d.image = None
    return d


def save_images(dec: PoolDecoding, out_dir: str | Path, inputs: Iterable[str | Path] = ()) -> list[Path]:
    """Write every drawn image into ``out_dir`` under its own name, only as new files: never over an
    input file, nor over any file already there (the names come from the DNA: decoding into the
    originals' folder must not replace them); checked before anything is written."""
    from dnaimg.image import save_pixels
    out = Path(out_dir)
    out.mkdir(exist_ok=True)
    protect = {Path(p).resolve() for p in inputs}
    todo = [(d, out / d.output) for d in dec.images if d.image is not None]
    for _, p in todo:
        if p.resolve() in protect:
            raise PoolError(f"{p} is an input file: choose another output folder")
    there = [p for _, p in todo if p.exists() or p.is_symlink()]
    if there:
        more = f" (and {len(there) - 1} more)" if len(there) > 1 else ""
        raise PoolError(f"{there[0]} already exists{more}: a pool decode writes new files only; choose an empty "
                        "or new folder")
    written = []
    for d, p in todo:
        save_pixels(d.image, p)
        written.append(p)
    return written
