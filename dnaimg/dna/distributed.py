"""Decoding a read set on a Dask cluster, with the same result as one process.

Two stages, a shuffle between them:

1. **Classify** (one task per ~64 MB byte range of each uncompressed read file; a gzipped
   file is parsed by the client and sent block by block): parse, demultiplex by primer pair,
   orient, trim and read the index (:meth:`dnaimg.dna.pool.PoolSorter.classify`).  The reads
   whose index decoded are cut by **shard**, ``(pair * 256 + tag) % shards``: the image part
   of their oligo id, so that every read of one image goes to one worker.  The reads whose
   index did not decode (kept for the second chance, up to the usual cap) go to every shard.
   Each task also counts reads per (pair, tag).
2. **Per shard** (one task per worker): file that shard's reads, range after range in read
   order, into one :class:`~dnaimg.dna.reads.ReadSorter` per pair (so the cap of reads kept
   per oligo keeps the same reads as one process would), then decode each image of the shard
   (:func:`dnaimg.dna.pool.decode_image`: mixture scan, header, consensus, outer code) and send
   back its streams.  The client draws the images (the codec), as one process does.

Each image depends only on its own reads and on the reads set aside, which every shard gets
whole and in order, so the images are the same, bit for bit, as :func:`dnaimg.dna.pool.sort_pool`
followed by :func:`~dnaimg.dna.pool.decode_images` in one process.

Shuffled: every payload with a decoded index, once (about a byte per nt of payload), plus the
set-aside reads once per shard (at most ``RESCUE_CAP_NT`` nt per pair).  A worker holds its
shard's payloads until it files them, then at most 40 reads per oligo of its images.
"""
from __future__ import annotations

import os
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import numpy as np

from dnaimg.dna.header import candidate_tags
from dnaimg.dna.pool import PoolSorter, decode_image, read_stats
from dnaimg.dna.primers import PrimerPair
from dnaimg.dna.reads import ReadSorter, gather_reads
from dnaimg.dna.seqio import ReadBatches, byte_ranges, is_compressed

RANGE_BYTES = 64 << 20


class ClusterError(RuntimeError):
    pass


@contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None):
    """A Dask client: on a new local cluster of ``workers`` processes (everything on 127.0.0.1,
    any free port; numba threads shared out among them), or joined to the scheduler at
    ``scheduler`` (its workers must import dnaimg and read the same paths)."""
    try:
        import dask
        from distributed import Client, LocalCluster
    except ImportError:
        raise ClusterError("Dask is not installed (pip install 'dask[distributed]')") from None
    if scheduler:
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError, ValueError) as e:
            raise ClusterError(f"cannot reach the Dask scheduler at {scheduler} ({e})") from None
        try:
            yield client
        finally:
            client.close()
        return
    n = max(1, int(workers or 1))
    per = max(1, (os.cpu_count() or 1) // n)
    env = {"NUMBA_NUM_THREADS": str(per), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with dask.config.set({"distributed.nanny.pre-spawn-environ": env,
                          "distributed.worker.daemon": False,
                          "distributed.admin.tick.limit": "1h",
                          "distributed.logging.distributed": "error"}):
        # the nannies live in this process and set pre-spawn-environ in *its* environment while they
        # spawn: put it back, or a later numba kernel here sees another NUMBA_NUM_THREADS and fails
        saved = dict(os.environ)
        try:
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                                   dashboard_address="127.0.0.1:0", silence_logs=40)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        client = Client(cluster)
        try:
            yield client
        finally:
            client.close()
            cluster.close()


# ---------------------------------------------------------------------------------------------
# stage 1: classify a byte range (or a block) of reads

def _classify(batches, pairs: list[PrimerPair], shards: int) -> dict:
    ps = PoolSorter(pairs)
    tag_counts: Counter = Counter()
    status = np.zeros(4, dtype=np.int64)
    repaired = 0
    seen = no_pair = 0
    pieces: list[dict] = [dict() for _ in range(shards)]
    rescue: dict = {}
    for flat, offs in batches:
        n, npair, parts = ps.classify(flat, offs)
        seen += n
        no_pair += npair
        for p, (counts, n_rep, keys, okbuf, oklens, badbuf, badlens, *_) in parts:
            status += counts
            repaired += int(n_rep)
            if len(badlens):
                rescue.setdefault(p, []).append((badbuf, badlens))
            if not len(keys):
                continue
            tags = keys >> 28
            tc = np.bincount(tags, minlength=256)
            for t in np.flatnonzero(tc).tolist():
                tag_counts[(p, t)] += int(tc[t])
            shard = (p * 256 + tags) % shards
            offs_ok = np.zeros(len(oklens) + 1, dtype=np.int64)
            np.cumsum(oklens, out=offs_ok[1:])
            for s in np.unique(shard).tolist():
                rows = np.flatnonzero(shard == s)
                buf, o = gather_reads(okbuf, offs_ok, rows)
                pieces[s].setdefault(p, []).append((keys[rows], buf, np.diff(o)))
    for d in pieces:
        for p, lst in d.items():
            d[p] = tuple(np.concatenate(x) for x in zip(*lst))
    for p, lst in rescue.items():
        rescue[p] = (np.concatenate([a for a, _ in lst]), np.concatenate([b for _, b in lst]))
    return {"meta": {"seen": seen, "no_pair": no_pair, "status": status, "repaired": repaired,
                     "tag_counts": tag_counts},
            "pieces": pieces, "rescue": rescue}


def classify_range(path: str, byte_range: tuple[int, int] | None, pairs: list[PrimerPair], shards: int) -> dict:
    return _classify(ReadBatches(path, byte_range=byte_range), pairs, shards)


def classify_block(block: tuple[np.ndarray, np.ndarray], pairs: list[PrimerPair], shards: int) -> dict:
    flat, offs = block
    return _classify([(np.array(flat, dtype=np.uint8), offs)], pairs, shards)


def _meta(res: dict) -> dict:
    return res["meta"]


def _piece(res: dict, shard: int) -> dict:
    return res["pieces"][shard]


def _rescue(res: dict) -> dict:
    return res["rescue"]


# ---------------------------------------------------------------------------------------------
# stage 2: one shard's images

def decode_shard(pieces: list[dict], rescues: list[dict], pairs: list[PrimerPair], keys: list[tuple[int, int]],
                 only: str | None, adapt: Callable | None) -> list:
    by_index = {p.index: p for p in pairs}
    used = sorted({p for p, _ in keys})
    sorters = {p: ReadSorter(by_index[p].forward, by_index[p].reverse) for p in used}
    for p in used:
        sorters[p].reserve(sum(len(d[p][1]) for d in pieces if p in d))
    zero = np.zeros(4, dtype=np.int64)
    empty_b, empty_l = np.zeros(0, dtype=np.uint8), np.zeros(0, dtype=np.int64)
    for d in pieces:                      # in read order
        for p in used:
            if p in d:
                k, buf, lens = d[p]
                sorters[p].file_classified((zero, 0, k, buf, lens, empty_b, empty_l))
    for d in rescues:
        for p in used:
            if p in d:
                sorters[p].add_rescue(*d[p])
    for s in sorters.values():
        s.finish()
    return [decode_image(sorters[p], by_index[p], t, only, adapt) for p, t in sorted(keys)]


# ---------------------------------------------------------------------------------------------
# the client

def decode_images_dask(client, paths: list[str | Path], pairs: list[PrimerPair], only: str | None = None,
                       adapt: Callable | None = None, shards: int | None = None, range_bytes: int = RANGE_BYTES,
                       progress: Callable[[int], None] | None = None) -> tuple[list, dict]:
    """The images of the reads in ``paths`` (see the module text): (list of
    :class:`~dnaimg.dna.pool.ImageStreams` in (pair, tag) order, read statistics).
    ``progress`` gets the number of reads of each finished classification task."""
    from distributed import as_completed
    if shards is None:
        shards = max(1, len(client.scheduler_info(n_workers=-1).get("workers", {})))
    stage1 = []
    for path in paths:
        path = str(Path(path).resolve())
        if is_compressed(path):
            for flat, offs in ReadBatches(path):
                blk = client.scatter((flat, offs))
                stage1.append(client.submit(classify_block, blk, pairs, shards, pure=False))
        else:
            for r in byte_ranges(path, range_bytes):
                stage1.append(client.submit(classify_range, path, r, pairs, shards, pure=False))
    metas = [client.submit(_meta, f, pure=False) for f in stage1]
    done = {}
    for fut in as_completed(metas):
        m = fut.result()
        done[fut.key] = m
        if progress is not None:
            progress(m["seen"])
    meta = [done[f.key] for f in metas]
    tag_counts: Counter = Counter()
    for m in meta:
        tag_counts.update(m["tag_counts"])
    top = max(tag_counts.values(), default=0)
    keys = candidate_tags(dict(tag_counts), top)
    plan: list[list] = [[] for _ in range(shards)]
    for p, t in keys:
        plan[(p * 256 + t) % shards].append((p, t))
    rescue = [client.submit(_rescue, f, pure=False) for f in stage1]
    out_futs = []
    for s in range(shards):
        if not plan[s]:
            continue
        pieces = [client.submit(_piece, f, s, pure=False) for f in stage1]
        out_futs.append(client.submit(decode_shard, pieces, rescue, pairs, plan[s], only, adapt, pure=False))
    results = [r for lst in client.gather(out_futs) for r in lst]
    results.sort(key=lambda r: r.key)
    status = sum((m["status"] for m in meta), np.zeros(4, dtype=np.int64))
    stats = read_stats(sum(m["seen"] for m in meta), sum(m["no_pair"] for m in meta), status,
                       sum(m["repaired"] for m in meta), tag_counts)
    for f in stage1 + metas + rescue:
        f.release()
    return results, stats
