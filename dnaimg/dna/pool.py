"""Pools: the reads of many images, under one or several primer pairs, back to their streams.

It knows nothing of images.  The steps:

1. **Demultiplexing** (only when more than one primer pair is looked for): each read is given
   the pair whose primer it starts with (forward primer: a read of the forward strand; reverse
   primer: of the other strand), else whose primer's reverse complement it ends with.  An exact
   match of the first (last) 20 nt is looked up; otherwise the pairs whose primers share at
   least 2 of their 6-mers with the read's first (last) 26 nt are aligned (edit distance, up to
   4 leading nt free) and the nearest wins, if it is unique and within a third of the primer.
   The pairs of the primer set are at edit distance >= 9 from each other, so a read needs 5 or
   more errors in its primer to be sent to a wrong pair.
2. **Sorting**: one :class:`~dnaimg.dna.reads.ReadSorter` per pair files its reads by
   (tag, oligo number, seed), in read order.
3. **Per image** (pair, tag), independently of every other image: the mixture scan
   (:mod:`dnaimg.dna.mixture`: reads of two images under one tag are refused, never blended),
   the header, and the streams (:func:`dnaimg.dna.container.read_streams`).  The second-chance
   rescue of reads whose index did not decode starts afresh for each image, and looks only at
   the set-aside reads whose index words can name its tag
   (:meth:`~dnaimg.dna.reads.ReadSorter.rescue_scope`), so an image's result depends only on
   its own reads and on the reads set aside: the Dask scale-out
   (:mod:`dnaimg.dna.distributed`), which gives each worker whole images, gets the same result.

Tags worth decoding: those with at least 3 reads and 1 % of the most read (pair, tag)'s reads
(counted before the cap of reads kept per oligo), as for a single image.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from itertools import islice
from typing import Callable, Iterable

import numba as nb
import numpy as np

from dnaimg.dna import alphabet as dna
from dnaimg.dna.container import (ContainerError, Layout, LayoutError, classify_in_parallel, n_oligos,
                                  read_streams)
from dnaimg.dna.header import (POOL_VERSION, Header, HeaderError, HeaderV1, HeaderVersionError, candidate_tags,
                               decode_header, rescue_header_oligos)
from dnaimg.dna.index import HEADER_BASE
from dnaimg.dna.mixture import scan
from dnaimg.dna.primers import PrimerPair, primer_pairs
from dnaimg.dna.reads import CHUNK, MAX_LEAD, ReadSorter, _find, gather_reads
from dnaimg.dna.seqio import ReadBatches
from dnaimg.dna.streams import Received

KMER = 6
MIN_KMER_HITS = 2
WINDOW_EXTRA = MAX_LEAD + 2      # nt beyond the primer looked at for its k-mers


# ---------------------------------------------------------------------------------------------
# demultiplexing by primer pair

@nb.njit(cache=True, nogil=True)
def _pack(seq, a, m):
    """``seq[a:a+m]`` as a base-4 number (-1 if it holds a non-ACGT code)."""
    v = 0
    for t in range(m):
        x = seq[a + t]
        if x > 3:
            return -1
        v = v * 4 + x
    return v


@nb.njit(cache=True, nogil=True)
def _lookup(keys, vals, v):
    i = np.searchsorted(keys, v)
    if i < keys.shape[0] and keys[i] == v:
        return vals[i]
    return -1


@nb.njit(cache=True, nogil=True)
def _nearest(read, prims, from_end, kstart, kitems, counts, touched, max_err, prev, cur):
    """(best entry, its distance, second best distance) among the primers ``prims`` (entries)
    that share >= MIN_KMER_HITS 6-mers with the read's start (or end)."""
    L = read.shape[0]
    m = prims.shape[1]
    w = min(L, m + WINDOW_EXTRA)
    a = L - w if from_end else 0
    nt = 0
    for p in range(a, a + w - KMER + 1):
        c = _pack(read, p, KMER)
        if c < 0:
            continue
        for q in range(kstart[c], kstart[c + 1]):
            e = kitems[q]
            if counts[e] == 0:
                touched[nt] = e
                nt += 1
            counts[e] += 1
    best, bd, d2 = -1, 1 << 30, 1 << 30
    for i in range(nt):
        e = touched[i]
        if counts[e] >= MIN_KMER_HITS:
            d, _ = _find(prims[e], read, MAX_LEAD, from_end, prev, cur)
            if d < bd:
                d2 = bd
                bd = d
                best = e
            elif d < d2:
                d2 = d
        counts[e] = 0
    return best, bd, d2


@nb.njit(cache=True, nogil=True, parallel=True)
def demux(flat, offs, start_keys, start_vals, end_keys, end_vals, prims, rc_prims, ks_start, ks_items,
          ke_start, ke_items, max_err, min_len):
    """Pair entry per read (entry ``2 g`` or ``2 g + 1`` of pair ``g``; -1: none).  ``prims``
    (2G, m): forward and reverse primers of every pair, ``rc_prims`` their reverse complements;
    ``*_keys``/``*_vals``: sorted packed primers (start) and reverse complements (end) and their
    entries; ``k*_start``/``k*_items``: 6-mer -> entries (CSR)."""
    n = offs.shape[0] - 1
    out = np.full(n, -1, dtype=np.int64)
    E, m = prims.shape
    nblocks = 64
    bs = (n + nblocks - 1) // nblocks
    for blk in nb.prange(nblocks):
        counts = np.zeros(E, dtype=np.int64)
        touched = np.empty(E, dtype=np.int64)
        prev = np.empty(2 * m + MAX_LEAD + 8, dtype=np.int64)
        cur = np.empty(2 * m + MAX_LEAD + 8, dtype=np.int64)
        for r in range(blk * bs, min(n, (blk + 1) * bs)):
            read = flat[offs[r]:offs[r + 1]]
            L = read.shape[0]
            if L < min_len:
                continue
            e = _lookup(start_keys, start_vals, _pack(read, 0, m))
            if e < 0:
                e = _lookup(end_keys, end_vals, _pack(read, L - m, m))
            if e >= 0:
                out[r] = e
                continue
            b1, d1, s1 = _nearest(read, prims, False, ks_start, ks_items, counts, touched, max_err, prev, cur)
            b2, d2, s2 = _nearest(read, rc_prims, True, ke_start, ke_items, counts, touched, max_err, prev, cur)
            if b1 >= 0 and (b2 < 0 or d1 <= d2):
                best, bd, second = b1, d1, s1
                if b2 >= 0 and b2 // 2 != b1 // 2:
                    second = min(second, d2)
            elif b2 >= 0:
                best, bd, second = b2, d2, s2
                if b1 >= 0 and b1 // 2 != b2 // 2:
                    second = min(second, d1)
            else:
                continue
            if bd <= max_err and second > bd:
                out[r] = best
    return out


def _kmer_csr(seqs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """6-mer -> the rows of ``seqs`` holding it (CSR over the 4096 6-mers)."""
    lists: list[list[int]] = [[] for _ in range(4 ** KMER)]
    for e, s in enumerate(seqs):
        seen = set()
        for p in range(len(s) - KMER + 1):
            c = int(_pack(s, p, KMER))
            if c >= 0 and c not in seen:
                seen.add(c)
                lists[c].append(e)
    start = np.zeros(4 ** KMER + 1, dtype=np.int64)
    start[1:] = np.cumsum([len(x) for x in lists])
    items = np.array([e for x in lists for e in x], dtype=np.int64)
    return start, items


class Demux:
    """Read -> primer pair, for a list of pairs (all of one primer length)."""

    def __init__(self, pairs: list[PrimerPair]):
        lens = {len(p.forward) for p in pairs} | {len(p.reverse) for p in pairs}
        if len(lens) != 1:
            raise LayoutError("primer pairs looked for together must all have one length")
        self.pairs = list(pairs)
        self.m = lens.pop()
        self.prims = np.stack([dna.encode(x) for p in pairs for x in (p.forward, p.reverse)]).astype(np.uint8)
        self.rc_prims = np.stack([dna.revcomp(x) for x in self.prims]).astype(np.uint8)
        sk = np.array([_pack(x, 0, self.m) for x in self.prims], dtype=np.int64)
        ek = np.array([_pack(x, 0, self.m) for x in self.rc_prims], dtype=np.int64)
        o, q = np.argsort(sk), np.argsort(ek)
        self.start_keys, self.start_vals = sk[o], o.astype(np.int64)
        self.end_keys, self.end_vals = ek[q], q.astype(np.int64)
        self.ks = _kmer_csr(self.prims)
        self.ke = _kmer_csr(self.rc_prims)
        self.max_err = max(2, self.m // 3)

    def __call__(self, flat: np.ndarray, offs: np.ndarray) -> np.ndarray:
        """Index into ``pairs`` per read (-1: no pair)."""
        e = demux(flat, offs, self.start_keys, self.start_vals, self.end_keys, self.end_vals, self.prims,
                  self.rc_prims, *self.ks, *self.ke, self.max_err, self.m + 10)
        return np.where(e >= 0, e // 2, -1)


# ---------------------------------------------------------------------------------------------
# sorting the reads of every pair

@dataclass
class PoolStats:
    seen: int = 0
    no_pair: int = 0          # reads with none of the primer pairs (demultiplexing)
    status: np.ndarray = field(default_factory=lambda: np.zeros(4, dtype=np.int64))   # per ReadSorter status
    repaired: int = 0         # indexes corrected


def read_stats(seen: int, no_pair: int, status: np.ndarray, repaired: int, tag_counts: Counter) -> dict:
    """What happened to the reads, before any image is decoded (the same in both modes)."""
    from dnaimg.dna.reads import ST_BAD_INDEX, ST_NO_PRIMER, ST_OK, ST_SHORT
    return {"seen": int(seen), "indexed": int(status[ST_OK]), "no_primer_pair": int(no_pair),
            "no_primer": int(status[ST_NO_PRIMER]), "too_short": int(status[ST_SHORT]),
            "bad_index": int(status[ST_BAD_INDEX]), "index_repaired": int(repaired),
            "pairs": sorted({p for p, _ in tag_counts}),
            "reads_per_image": {f"{p}:{t:02x}": int(c) for (p, t), c in sorted(tag_counts.items())}}


class _Sorters(dict):
    """Pair index -> its ReadSorter, made when the pair first gets reads."""

    def __init__(self, pairs: list[PrimerPair], trimmed: bool | None = None):
        super().__init__()
        self._pairs = {p.index: p for p in pairs}
        self._trimmed = trimmed

    def __missing__(self, index: int) -> ReadSorter:
        p = self._pairs[index]
        return self.setdefault(index, ReadSorter(p.forward, p.reverse, trimmed=self._trimmed))


class PoolSorter:
    """One :class:`ReadSorter` per primer pair; reads are sent to their pair's (demultiplexed
    when there are several pairs) and filed in read order."""

    def __init__(self, pairs: list[PrimerPair], trimmed: bool | None = None):
        if not pairs:
            raise LayoutError("no primer pair to look for")
        self.pairs = list(pairs)
        self.sorters = _Sorters(self.pairs, trimmed)
        self.demux = Demux(self.pairs) if len(self.pairs) > 1 else None
        self.stats = PoolStats()
        self.tag_counts: Counter = Counter()      # (pair, tag) -> reads with a decoded index, before the cap
        self.reserve_nt = 0                       # room a pair's sorter reserves when it first gets reads
        self._reserved: set[int] = set()

    def classify(self, flat: np.ndarray, offs: np.ndarray) -> tuple:
        """Demultiplex, orient, trim and index a block (no state touched; file the result with
        :meth:`file_classified`, in read order).  ``flat`` is modified (reads turned to the
        forward strand)."""
        n = len(offs) - 1
        if self.demux is None:
            return n, 0, [(self.pairs[0].index, self.sorters[self.pairs[0].index].classify(flat, offs))]
        which = self.demux(flat, offs)
        out = []
        for i in np.unique(which[which >= 0]).tolist():
            rows = np.flatnonzero(which == i)
            sub, soffs = gather_reads(flat, offs, rows)
            p = self.pairs[i].index
            out.append((p, self.sorters[p].classify(sub, soffs)))
        return n, int(np.count_nonzero(which < 0)), out

    def file_classified(self, classified: tuple) -> None:
        n, no_pair, parts = classified
        self.stats.seen += n
        self.stats.no_pair += no_pair
        for p, compact in parts:
            if p not in self._reserved:
                self._reserved.add(p)
                self.sorters[p].reserve(self.reserve_nt)
            self.sorters[p].file_classified(compact)
            self.stats.status += compact[0]
            self.stats.repaired += int(compact[1])
            keys = compact[2]
            if len(keys):
                tc = np.bincount(keys >> 28, minlength=256)
                for t in np.flatnonzero(tc).tolist():
                    self.tag_counts[(p, t)] += int(tc[t])

    def read_stats(self) -> dict:
        st = self.stats
        return read_stats(st.seen, st.no_pair, st.status, st.repaired, self.tag_counts)

    def finish(self) -> "PoolSorter":
        for s in self.sorters.values():
            s.finish()
        return self


def sort_pool(reads: Iterable, pairs: list[PrimerPair], progress: Callable[[int], None] | None = None,
              trimmed: bool | None = None) -> PoolSorter:
    """Reads (a :class:`ReadBatches`, or str / uint8 arrays) -> a :class:`PoolSorter`.  A reader
    thread parses blocks; worker threads classify them; they are filed in read order.
    ``trimmed``: the reads' primers were trimmed off (None: detected; with several primer pairs
    only reads that kept their primers can be told apart)."""
    ps = PoolSorter(pairs, trimmed)
    if isinstance(reads, ReadBatches):
        ps.reserve_nt = min(reads.size_hint(), 1 << 34)     # address space only: pages are used as filled
        classify_in_parallel(reads, ps, progress)
    else:
        it = iter(reads)
        while True:
            batch = list(islice(it, CHUNK))
            if not batch:
                break
            arrs = [dna.encode(x) if isinstance(x, (str, bytes)) else np.asarray(x, dtype=np.uint8) for x in batch]
            lens = np.fromiter(map(len, arrs), dtype=np.int64, count=len(arrs))
            offs = np.zeros(len(lens) + 1, dtype=np.int64)
            np.cumsum(lens, out=offs[1:])
            flat = np.ascontiguousarray(np.concatenate(arrs) if arrs else np.zeros(0, np.uint8), dtype=np.uint8)
            ps.file_classified(ps.classify(flat, offs))
            if progress is not None:
                progress(len(batch))
    ps.finish()
    if ps.stats.seen == 0:
        raise ContainerError("no reads in the input")
    return ps


# ---------------------------------------------------------------------------------------------
# one image

@dataclass
class ImageStreams:
    """One image of a pool as the container got it back (no pixels: see :mod:`dnaimg.pool`)."""
    pair: int                               # primer pair index
    tag: int
    header: Header | HeaderV1 | None = None
    received: list[Received] | None = None
    report: dict = field(default_factory=dict)
    error: str | None = None                # why it was not decoded
    mixed: bool = False                     # refused: the reads of two images share its tag
    skipped: bool = False                   # not asked for (--only)

    @property
    def key(self) -> tuple[int, int]:
        return self.pair, self.tag

    @property
    def name(self) -> str | None:
        h = self.header
        return h.name if isinstance(h, Header) and h.version == POOL_VERSION else None

    @property
    def image_id(self) -> int | None:
        if self.header is None:
            return None
        return self.header.tag if isinstance(self.header, HeaderV1) else self.header.image_id


def matches(h: Header | HeaderV1, spec: str) -> bool:
    """Does ``spec`` (a file name, the name without its extension, a decimal image id, or a hex
    image id such as 0x1f or 0000001f) name the image of header ``h``?"""
    spec = spec.strip()
    name = h.name if isinstance(h, Header) and h.version == POOL_VERSION else None
    if name is not None and (spec == name or spec == name.rsplit(".", 1)[0]):
        return True
    image_id = h.tag if isinstance(h, HeaderV1) else h.image_id
    if spec.isdigit() and int(spec) == image_id:
        return True
    low = spec.lower()
    if low.startswith("0x"):
        low = low[2:]
    try:
        return (len(spec) == 8 or spec.lower().startswith("0x")) and int(low, 16) == image_id
    except ValueError:
        return False


def decode_image(sorter: ReadSorter, pair: PrimerPair, tag: int, only: str | None = None,
                 adapt: Callable | None = None, progress: Callable[[int], None] | None = None) -> ImageStreams:
    """Image ``tag`` of one pair's reads: the mixture scan, the header, the streams.  ``adapt``
    turns a version-1 header into the version-2 header it amounts to (a codec's business);
    ``only``: decode the streams only if the header :func:`matches` it."""
    res = ImageStreams(pair.index, tag)
    sorter.reset_rescue_marks()
    sorter.rescue_scope(tag)
    try:
        return _decode_image(sorter, pair, tag, only, adapt, progress, res)
    finally:
        sorter.rescue_scope(None)


def _decode_image(sorter, pair, tag, only, adapt, progress, res) -> ImageStreams:
    mx = scan(sorter, [tag])[tag]
    res.report["mixture"] = mx.to_dict()
    if mx.mixed:
        res.mixed, res.error = True, mx.message()
        return res
    try:
        h, why, others = decode_header(sorter, tag)
        if h is None and rescue_header_oligos(sorter, tag):
            h, why, others = decode_header(sorter, tag)
    except HeaderError as e:
        res.error = str(e)
        return res
    if h is None:
        res.error = (f"format version {max(others)}, unknown to this dnaimg" if others
                     else f"no header could be decoded ({why})")
        return res
    res.header = h
    if only is not None and not matches(h, only):
        res.skipped = True
        return res
    if (h.primer_f_nt, h.primer_r_nt) != (len(pair.forward), len(pair.reverse)):
        res.error = "the header's primer lengths differ from the primers its reads carry"
        return res
    try:
        layout = Layout(oligo_length=h.oligo_length, primer_f=pair.forward, primer_r=pair.reverse)
        h2 = adapt(h) if isinstance(h, HeaderV1) and adapt is not None else h
        res.received = read_streams(sorter, h2, layout, progress)
        tags, numbers, _, counts = sorter.slot_fields()
        mine = tags == tag
        n_ol = n_oligos(h2, layout)
        res.report["reads_used"] = int(counts[mine].sum())
        res.report["reads_unknown_oligo"] = int(counts[mine & (numbers >= n_ol) & (numbers < HEADER_BASE)].sum())
    except (ContainerError, HeaderError, LayoutError) as e:
        res.error = str(e)
        res.received = None
    return res


def decode_images(ps: PoolSorter, only: str | None = None, adapt: Callable | None = None,
                  top: int | None = None, keys: Iterable[tuple[int, int]] | None = None,
                  progress: Callable[[int], None] | None = None) -> list[ImageStreams]:
    """Every image worth decoding (see the module text), in (pair, tag) order.  ``top``: the
    largest read count of any (pair, tag) of the whole read set (default: of ``ps``);
    ``keys``: only these (pair, tag)."""
    counts = dict(ps.tag_counts)
    top = max(counts.values(), default=0) if top is None else top
    worth = set(candidate_tags(counts, top))
    if keys is not None:
        worth &= set(keys)
    pairs = {p.index: p for p in ps.pairs}
    return [decode_image(ps.sorters[p], pairs[p], t, only, adapt, progress) for p, t in sorted(worth)]


def pairs_for(primer_f: str | None = None, primer_r: str | None = None) -> list[PrimerPair]:
    """The pairs to look for: the one given, or every pair of the primer set."""
    from dnaimg.dna.primers import NO_PAIR_INDEX, pair_of
    if primer_f or primer_r:
        lay = Layout(primer_f=(primer_f or Layout.primer_f).upper(), primer_r=(primer_r or Layout.primer_r).upper())
        idx = pair_of(lay.primer_f, lay.primer_r)
        return [PrimerPair(NO_PAIR_INDEX if idx is None else idx, lay.primer_f, lay.primer_r)]
    return list(primer_pairs())


__all__ = ["Demux", "PoolSorter", "read_stats", "ImageStreams", "sort_pool", "decode_image", "decode_images", "matches",
           "pairs_for", "HeaderVersionError"]
