"""Never a blend: find the image tags whose reads come from more than one source.

Reads are filed by (tag, oligo number, seed) from their index alone.  If two images share a tag
(two pools made apart, two single images whose ids collide, or anything else that puts the same
index on different oligos), their reads of the same oligo number land together, and a consensus
would blend them.  Nothing in the index can tell them apart, so this looks at the payloads.

For every oligo number of a tag, up to :data:`READS_PER_SLOT` reads of each seed (of at least
:data:`MIN_READ_NT` nt) are clustered greedily by shared k-mers (k = :data:`K`): a read joins the
first cluster whose first read shares at least :data:`MIN_SHARED` of its k-mers; where that leaves
two clusters of 2 or more reads, clusters are then joined by single linkage (any read of one
sharing as much with any read of the other: a noisy first read no longer splits its own oligo).  Reads of one oligo, even at nanopore
error rates (~6 %), share about a third of their 8-mers; reads of two different oligos share
almost none.  An oligo number is

- **split in two** if its two largest clusters hold at least 2 reads each: two sequences, each
  read several times (a misread index sends a read to a random place, never two reads of the
  same other oligo to the same place);
- **in doubt** if it has 2 or more reads, all mutually unlike (e.g. one read of each image, as
  in a clean FASTA of two colliding images): no two of them share :data:`DOUBT_SHARED` of their
  k-mers.  (Two noisy nanopore reads of one oligo can fall under :data:`MIN_SHARED` yet still
  share a few per cent, against ~0.2 % for two unrelated payloads: at nanopore 1-2x, a single
  image was once taken for two by 3 such oligos.)

A tag is *mixed* when at least 2 of its oligo numbers are split, or when split and doubtful
numbers together are at least 3 and at least :data:`DOUBT_FRACTION` of its numbers with 2 or
more reads (a single image shows doubt only where an index misread lands on an oligo read once:
far fewer), or when 2 of its header oligos are split or in doubt.  A mixed tag is never
decoded: the decoder says which tag and why.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np

from dnaimg.dna.index import HEADER_BASE

K = 8
READS_PER_SLOT = 12
MAX_READS = 24
MIN_SHARED = 0.12
DOUBT_FRACTION = 0.005
DOUBT_SHARED = 0.025     # reads "unlike" for doubt: no pair shares this much (random payloads: ~0.2 %)
MIN_READ_NT = 2 * K      # reads with a shorter payload are not looked at (too few k-mers to compare: reads
                         # cut short, such as one mate of a paired-end run, are not two images)


@nb.njit(cache=True, nogil=True)
def _kmers(flat, a0, a1, k, stamp, tick, mark, need):
    """Walk the k-mers of read ``flat[a0:a1]`` (rolling code; k-mers with an N skipped): with
    ``mark``, stamp each with ``tick``; else count those already stamped, stopping at ``need``."""
    mask = (1 << (2 * k)) - 1
    shared = 0
    c = 0
    run = 0
    for p in range(a0, a1):
        x = flat[p]
        if x > 3:
            run = 0
            c = 0
            continue
        c = ((c << 2) | x) & mask
        run += 1
        if run < k:
            continue
        if mark:
            stamp[c] = tick
        elif stamp[c] == tick:
            shared += 1
            if shared >= need:
                break
    return shared


@nb.njit(cache=True, nogil=True)
def _stamp_read(flat, a0, a1, k, stamp, tick):
    """Mark every k-mer of read ``flat[a0:a1]`` with ``tick`` (k-mers with an N are skipped)."""
    _kmers(flat, a0, a1, k, stamp, tick, True, 0)


@nb.njit(cache=True, nogil=True)
def _shared_upto(flat, b0, b1, k, stamp, tick, need):
    """How many k-mers of read ``flat[b0:b1]`` are among the stamped ones, counting stops at ``need``."""
    return _kmers(flat, b0, b1, k, stamp, tick, False, need)


@nb.njit(cache=True, nogil=True)
def _shared(flat, b0, b1, k, stamp, tick):
    """How many k-mers of read ``flat[b0:b1]`` are among the stamped ones."""
    return _shared_upto(flat, b0, b1, k, stamp, tick, b1 - b0 + 1)


@nb.njit(cache=True, nogil=True)
def _shares_enough(flat, b0, b1, li, k, min_shared, stamp, tick):
    """Whether read ``flat[b0:b1]`` has at least ``min_shared`` of the k-mers of the shorter of it
    and the stamped read (``li`` k-mers) among the stamped ones."""
    m = min(li, b1 - b0 - k + 1)
    if m < 1:
        return False
    need = int(np.ceil(min_shared * m))
    return _shared_upto(flat, b0, b1, k, stamp, tick, need) >= need


@nb.njit(cache=True, nogil=True)
def _most_shared(flat, offs, rows, n, k, stamp, tick):
    """The largest fraction of shared k-mers over the pairs of reads ``rows[:n]`` (of the shorter
    read's k-mers), in thousandths; returns (it, tick)."""
    best = 0
    for i in range(n):
        tick += 1
        a0, a1 = offs[rows[i]], offs[rows[i] + 1]
        _stamp_read(flat, a0, a1, k, stamp, tick)
        li = a1 - a0 - k + 1
        for j in range(i + 1, n):
            b0, b1 = offs[rows[j]], offs[rows[j] + 1]
            m = min(li, b1 - b0 - k + 1)
            if m < 1:
                continue
            f = (1000 * _shared(flat, b0, b1, k, stamp, tick)) // m
            if f > best:
                best = f
    return best, tick


@nb.njit(cache=True, nogil=True)
def _cluster(flat, offs, rows, n, k, min_shared, stamp, tick, assign, sizes):
    """Greedy clustering of reads ``rows[:n]``; fills ``sizes``; returns (clusters, tick)."""
    for i in range(n):
        assign[i] = -1
    nc = 0
    for i in range(n):
        if assign[i] >= 0:
            continue
        tick += 1
        a0, a1 = offs[rows[i]], offs[rows[i] + 1]
        _stamp_read(flat, a0, a1, k, stamp, tick)
        assign[i] = nc
        sizes[nc] = 1
        li = a1 - a0 - k + 1
        for j in range(i + 1, n):
            if assign[j] >= 0:
                continue
            if _shares_enough(flat, offs[rows[j]], offs[rows[j] + 1], li, k, min_shared, stamp, tick):
                assign[j] = nc
                sizes[nc] += 1
        nc += 1
    return nc, tick


@nb.njit(cache=True, nogil=True)
def _merge_linked(flat, offs, rows, n, k, min_shared, stamp, tick, assign, sizes, nc):
    """Single linkage over the clusters of :func:`_cluster`: two clusters become one when any read
    of one shares at least ``min_shared`` of its k-mers with any read of the other (a noisy first
    read can leave reads of its own oligo out of its cluster; reads of two different oligos share
    almost no k-mers, whichever read is compared).  Only run where a split was found.  Returns
    (clusters, tick); ``sizes`` holds the merged sizes."""
    parent = np.arange(nc)
    for i in range(n):
        tick += 1
        a0, a1 = offs[rows[i]], offs[rows[i] + 1]
        _stamp_read(flat, a0, a1, k, stamp, tick)
        li = a1 - a0 - k + 1
        for j in range(i + 1, n):
            ri = assign[i]
            while parent[ri] != ri:
                ri = parent[ri]
            rj = assign[j]
            while parent[rj] != rj:
                rj = parent[rj]
            if ri == rj:
                continue
            if _shares_enough(flat, offs[rows[j]], offs[rows[j] + 1], li, k, min_shared, stamp, tick):
                parent[max(ri, rj)] = min(ri, rj)
    merged = np.zeros(nc, dtype=np.int64)
    for c in range(nc):
        r = c
        while parent[r] != r:
            r = parent[r]
        merged[r] += sizes[c]
    for c in range(nc):
        sizes[c] = merged[c]
    return nc, tick


@nb.njit(cache=True, nogil=True, parallel=True)
def scan_groups(flat, offs, order, first, counts, grp_start, grp_slots, k, per_slot, max_reads, min_shared, min_nt):
    """Per group of slots (one oligo number, its seeds): (reads looked at, largest cluster, second
    largest cluster, and where every cluster is a single read: the largest fraction of k-mers any
    two of them share, in thousandths).  ``grp_slots[grp_start[g]:grp_start[g+1]]`` are the slots
    of group g.  Reads of fewer than ``min_nt`` nt are left out."""
    G = grp_start.shape[0] - 1
    out = np.zeros((G, 4), dtype=np.int64)
    nblocks = 16
    bs = (G + nblocks - 1) // nblocks
    for blk in nb.prange(nblocks):
        stamp = np.zeros(1 << (2 * k), dtype=np.int64)
        tick = 0
        rows = np.empty(max_reads, dtype=np.int64)
        assign = np.empty(max_reads, dtype=np.int64)
        sizes = np.zeros(max_reads, dtype=np.int64)
        for g in range(blk * bs, min(G, (blk + 1) * bs)):
            n = 0
            for q in range(grp_start[g], grp_start[g + 1]):
                s = grp_slots[q]
                take = min(counts[s], per_slot, first[s + 1] - first[s])
                for t in range(take):
                    r = order[first[s] + t]
                    if n < max_reads and offs[r + 1] - offs[r] >= min_nt:
                        rows[n] = r
                        n += 1
            if n < 2:
                out[g, 0] = n
                out[g, 1] = n
                continue
            nc, tick = _cluster(flat, offs, rows, n, k, min_shared, stamp, tick, assign, sizes)
            big = 0
            for c in range(nc):
                big += sizes[c] >= 2
            if big >= 2:
                nc, tick = _merge_linked(flat, offs, rows, n, k, min_shared, stamp, tick, assign, sizes, nc)
            b1 = 0
            b2 = 0
            for c in range(nc):
                if sizes[c] > b1:
                    b2 = b1
                    b1 = sizes[c]
                elif sizes[c] > b2:
                    b2 = sizes[c]
            out[g, 0] = n
            out[g, 1] = b1
            out[g, 2] = b2
            if b1 == 1:
                out[g, 3], tick = _most_shared(flat, offs, rows, n, k, stamp, tick)
    return out


@dataclass
class Mixture:
    """What the scan found for one tag."""
    tag: int
    numbers: int = 0            # oligo numbers with reads
    multi: int = 0              # ... with 2 or more reads looked at
    split: int = 0              # ... with two clusters of >= 2 reads
    doubt: int = 0              # ... with >= 2 reads, all unlike
    header_suspect: int = 0     # header oligos split or in doubt
    example: int = -1           # an oligo number split (or in doubt)

    @property
    def mixed(self) -> bool:
        bad = self.split + self.doubt
        return (self.split >= 2 or (bad >= 3 and bad >= DOUBT_FRACTION * max(1, self.multi))
                or self.header_suspect >= 2)

    def message(self) -> str:
        where = "header oligos" if self.header_suspect >= 2 and self.split + self.doubt < 3 else "oligos"
        ex = ""
        if self.example >= 0:
            ex = (f", e.g. header oligo {self.example - HEADER_BASE}" if self.example >= HEADER_BASE
                  else f", e.g. oligo {self.example}")
        return (f"the reads of image tag {self.tag:02x} come from at least two different images: "
                f"{self.split + self.doubt} of its {self.numbers} {where} hold two or more unlike "
                f"sequences{ex}; images that share an id cannot be told apart, so none of them is decoded "
                "(decode each pool or image from its own reads, or give the images distinct ids)")

    def to_dict(self) -> dict:
        return {"tag": f"{self.tag:02x}", "numbers": self.numbers, "multi_read": self.multi, "split": self.split,
                "doubt": self.doubt, "header_suspect": self.header_suspect, "mixed": self.mixed}


def scan(sorter, tags) -> dict[int, Mixture]:
    """:class:`Mixture` of each tag in ``tags`` (the reads a :class:`ReadSorter` filed)."""
    tags = [int(t) for t in tags]
    out = {t: Mixture(t) for t in tags}
    if not tags or not sorter.n_slots:
        return out
    stags, numbers, _, counts = sorter.slot_fields()
    sel = np.flatnonzero(np.isin(stags, np.asarray(tags, dtype=np.int64)))
    if sel.size == 0:
        return out
    o = sel[np.lexsort((numbers[sel], stags[sel]))]
    key = stags[o] * (1 << 24) + numbers[o]
    starts = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]]))
    grp_start = np.concatenate([starts, [len(o)]]).astype(np.int64)
    flat, offs, order, first = sorter.store()
    res = scan_groups(flat, offs, order, first, counts, grp_start, o.astype(np.int64), K, READS_PER_SLOT,
                      MAX_READS, MIN_SHARED, MIN_READ_NT)
    gtag = stags[o[starts]]
    gnum = numbers[o[starts]]
    n, b1, b2 = res[:, 0], res[:, 1], res[:, 2]
    split = b2 >= 2
    doubt = (n >= 2) & (b1 == 1) & (res[:, 3] < 1000 * DOUBT_SHARED)
    for t in tags:
        m = gtag == t
        if not m.any():
            continue
        mx = out[t]
        mx.numbers = int(m.sum())
        mx.multi = int((m & (n >= 2)).sum())
        mx.split = int((m & split).sum())
        mx.doubt = int((m & doubt).sum())
        mx.header_suspect = int((m & (split | doubt) & (gnum >= HEADER_BASE)).sum())
        bad = np.flatnonzero(m & (split | doubt))
        if bad.size:
            pick = bad[np.argmax(split[bad])]
            mx.example = int(gnum[pick])
    return out
