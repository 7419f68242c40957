"""The DNA container: a codec's streams -> oligos, and sequencing reads -> the streams.

One container serves every codec; it knows nothing of images.  Every oligo is::

    primer_f | index (36 nt) | payload | reverse complement of primer_r

- **header oligos** (:mod:`dnaimg.dna.header`): the common header (codec id, image id, stream
  table, codec metadata), several copies;
- **data oligos**, stream after stream, numbered from 0: a ``bytes`` stream's bytes in bytes
  payloads (:mod:`dnaimg.dna.bytecode`: inner Reed-Solomon code per oligo), a ``words`` stream's
  values in codeword payloads (:mod:`dnaimg.dna.words`);
- **parity oligos** right after each stream's data oligos: the outer code across oligos
  (:mod:`dnaimg.dna.outer`), always in bytes payloads.  For a words stream the parity rows
  (one symbol per value slot of a data oligo) are cut into as many bytes payloads as they need.

``redundancy`` is the outer code's parity rows per data row (0: none).  Reading
(:func:`read_streams`) rebuilds each stream from the reads and says per stream whether it is
exact (CRC32 from the header).
"""
from __future__ import annotations

import os
import zlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from itertools import islice
from typing import Callable, Iterable

import numba as nb
import numpy as np

from dnaimg.dna.streams import Encoded, Received, Stream
from dnaimg.dna import alphabet as dna
from dnaimg.dna import bytecode, outer, runs
from dnaimg.dna.codebook import get_codebook
from dnaimg.dna.consensus import consensus_packed, fast_majority_rows
from dnaimg.dna.constraints import report
from dnaimg.dna.header import (DEFAULT_HEADER_COPIES, KIND_BYTES, KIND_WORDS, KIND_WORDS_MARKED, MARKER_VERSION,
                               POOL_VERSION, Header, HeaderError, PoolRecord, StreamInfo, header_oligos, n_parts)
from dnaimg.dna.index import HEADER_BASE, INDEX_NT
from dnaimg.dna.prng import SIGMAS_INV, interleaver
from dnaimg.dna.reads import CHUNK, ReadSorter, gather_reads
from dnaimg.dna.seqio import ReadBatches, prefetched
from dnaimg.dna.words import (RESYNC_DRIFT, RESYNC_INDEL_COST, data_oligos, n_data_oligos, payload_values_batch,
                              segments, segments_end, values_per_oligo)

DEFAULT_PRIMER_F = "AGTGCACGCGCAGTTATATG"
DEFAULT_PRIMER_R = "CTAACGGCAATGAGTTGCAC"
DEFAULT_OLIGO_LENGTH = 200
MIN_PAYLOAD_NT = 24
DEFAULT_INNER = bytecode.DEFAULT_INNER
#: default outer-code redundancy per stream kind: bytes streams are all-or-nothing without it;
#: a words stream degrades gracefully and pays for parity only when asked
DEFAULT_REDUNDANCY = {"bytes": 0.15, "words": 0.0}


class LayoutError(ValueError):
    pass


class ContainerError(ValueError):
    """Reads from which the container cannot give streams back."""


class NoPrimedReads(ContainerError):
    """No read carries the primers the decode was given (another primer pair's reads, perhaps)."""


def check_primer(seq: str, name: str) -> np.ndarray:
    s = seq.strip().upper()
    if not 10 <= len(s) <= 40 or any(c not in "ACGT" for c in s):
        raise LayoutError(f"{name} must be 10-40 nt of A/C/G/T, got {seq!r}")
    arr = dna.encode(s)
    rep = report(arr)
    if rep.violations():
        raise LayoutError(f"{name} {s} violates the constraints: {'; '.join(rep.violations())}")
    return arr


@dataclass(frozen=True)
class Layout:
    oligo_length: int = DEFAULT_OLIGO_LENGTH
    primer_f: str = DEFAULT_PRIMER_F
    primer_r: str = DEFAULT_PRIMER_R

    def __post_init__(self):
        check_primer(self.primer_f, "forward primer")
        check_primer(self.primer_r, "reverse primer")
        if self.payload_nt < MIN_PAYLOAD_NT:
            fixed = self.oligo_length - self.payload_nt
            raise LayoutError(f"oligo length {self.oligo_length} is too short: the primers and the index take "
                              f"{fixed} nt, and at least {MIN_PAYLOAD_NT} nt of payload are needed (so at least "
                              f"{fixed + MIN_PAYLOAD_NT} nt)")
        if self.oligo_length > 1000:
            raise LayoutError("oligo length above 1000 nt is not supported")

    @property
    def pf(self) -> np.ndarray:
        return dna.encode(self.primer_f.upper())

    @property
    def pr_rc(self) -> np.ndarray:
        return dna.revcomp(dna.encode(self.primer_r.upper()))

    @property
    def insert_nt(self) -> int:
        return self.oligo_length - len(self.primer_f) - len(self.primer_r)

    @property
    def payload_nt(self) -> int:
        return self.insert_nt - INDEX_NT


# ---------------------------------------------------------------------------------------------
# planning: how many oligos a set of streams takes

@dataclass(frozen=True)
class StreamPlan:
    kind: str
    n_data: int            # data oligos
    row_width: int         # symbols per data row (bytes per bytes payload, values per words payload)
    outer: outer.Plan
    parity_oligos: int
    inner: int

    @property
    def n_oligos(self) -> int:
        return self.n_data + self.parity_oligos


def parity_chunks(layout: Layout, codeword_nt: int, inner: int, marked: bool = False) -> int:
    """Bytes payloads per outer parity row of a words stream (a row holds one byte per value slot
    of a data oligo; one chunk holds a bytes payload's data bytes)."""
    return -(-values_per_oligo(layout, codeword_nt, marked) // bytecode.data_bytes_per_payload(layout.payload_nt, inner))


def plan_stream(layout: Layout, stream: Stream, redundancy: float, inner: int = DEFAULT_INNER) -> StreamPlan:
    P = layout.payload_nt
    bd = bytecode.data_bytes_per_payload(P, inner)
    if stream.kind == "bytes":
        n = max(1, -(-len(stream.data) // bd))
        op = outer.plan(n, redundancy)
        return StreamPlan("bytes", n, bd, op, op.parity_rows, inner)
    get_codebook(stream.codeword_nt, stream.levels)        # raises for an impossible (n, L)
    V = values_per_oligo(layout, stream.codeword_nt, stream.markers)
    if V < 1:
        raise LayoutError(f"a {P}-nt payload holds no {stream.codeword_nt}-nt codeword")
    n = n_data_oligos(layout, stream.codeword_nt, len(stream.data), stream.markers)
    op = outer.plan(n, redundancy)
    if op.blocks and stream.levels > 256:
        raise LayoutError("the outer code takes values of at most 256 levels")
    return StreamPlan("words", n, V, op,
                      op.parity_rows * parity_chunks(layout, stream.codeword_nt, inner, stream.markers), inner)


def plan(layout: Layout, encoded: Encoded, redundancy: float | None = None, inner: int = DEFAULT_INNER,
         copies: int = DEFAULT_HEADER_COPIES) -> tuple[int, list[StreamPlan]]:
    """(header oligos, per stream plan).  ``redundancy`` None: the default of each stream kind."""
    if layout.oligo_length > bytecode.MAX_OLIGO_NT and any(s.kind == "bytes" for s in encoded.streams):
        raise LayoutError(f"oligos of {layout.oligo_length} nt: byte streams (every codec but robust) are written "
                          f"in oligos of at most {bytecode.MAX_OLIGO_NT} nt (--oligo-length); longer ones cannot "
                          "all be kept within the synthesis constraints")
    plans = [plan_stream(layout, s, s.redundancy if s.redundancy is not None else
                         DEFAULT_REDUNDANCY[s.kind] if redundancy is None else redundancy, inner)
             for s in encoded.streams]
    data = _make_header(layout, encoded, plans, 0, 0).pack()
    return n_parts(len(data), layout.payload_nt // 3) * copies, plans


def total_oligos(layout: Layout, encoded: Encoded, redundancy: float | None = None, inner: int = DEFAULT_INNER,
                 copies: int = DEFAULT_HEADER_COPIES) -> int:
    h, plans = plan(layout, encoded, redundancy, inner, copies)
    return h + sum(p.n_oligos for p in plans)


# ---------------------------------------------------------------------------------------------
# writing

_POOL_RECORD: ContextVar[PoolRecord | None] = ContextVar("dnaimg_pool_record", default=None)


@contextmanager
def pool_member(record: PoolRecord | None):
    """Within this block, every image written (and every oligo count planned, the header being
    larger) is a member of a pool: format version 3, the record's image id, pool id, primer
    pair and file name in its header.  Codecs need not know: they all write through here."""
    token = _POOL_RECORD.set(record)
    try:
        yield
    finally:
        _POOL_RECORD.reset(token)


def _crc(stream: Stream) -> int:
    if stream.kind == "bytes":
        return zlib.crc32(bytes(stream.data))
    return zlib.crc32(np.ascontiguousarray(stream.data, dtype=np.uint16).tobytes())


def _interleaver_key(stream: Stream) -> int:
    return _crc(stream) ^ 0xA5A5A5A5


def _make_header(layout: Layout, encoded: Encoded, plans: list[StreamPlan], image_id: int, codec_id: int) -> Header:
    infos, first = [], 0
    for s, p in zip(encoded.streams, plans):
        kind = KIND_BYTES if s.kind == "bytes" else KIND_WORDS_MARKED if s.markers else KIND_WORDS
        infos.append(StreamInfo(kind=kind, first=first, n_data=p.n_data,
                                length=len(s.data), codeword_nt=s.codeword_nt, levels=s.levels,
                                key=_interleaver_key(s) if s.kind == "words" else 0, inner=p.inner,
                                blocks=p.outer.blocks, parity=p.outer.parity, crc=_crc(s)))
        first += p.n_oligos
    if first > HEADER_BASE:
        raise LayoutError(f"the image needs {first} oligos; at most {HEADER_BASE} are addressable")
    rec = _POOL_RECORD.get()
    marked = any(s.markers for s in encoded.streams)
    if rec is not None and marked:
        raise LayoutError("markers are not available for an image in a pool (format version 3)")
    extra = {} if rec is None else {"version": POOL_VERSION, "pool_id": rec.pool_id, "primer_pair": rec.primer_pair,
                                    "name": rec.name}
    if marked:
        extra = {"version": MARKER_VERSION}
    return Header(codec_id=codec_id, image_id=image_id, oligo_length=layout.oligo_length,
                  primer_f_nt=len(layout.primer_f), primer_r_nt=len(layout.primer_r), streams=infos,
                  meta=bytes(encoded.meta), **extra)


def stream_bits(header: Header) -> int:
    """Bits of the streams themselves: 8 per byte, log2(levels) per value."""
    return sum(8 * s.length if s.kind == KIND_BYTES else int(round(s.length * np.log2(s.levels)))
               for s in header.streams)


def mapping_bits_per_nt(header: Header, layout: Layout) -> float:
    """Density of the mapping into DNA: log2(L)/n of the first words stream (with markers: over the
    payload's codewords and markers), else of bytes payloads."""
    words = [s for s in header.streams if s.kind in (KIND_WORDS, KIND_WORDS_MARKED)]
    if words:
        w = words[0]
        starts, kinds, V = segments(layout.payload_nt, w.codeword_nt, w.kind == KIND_WORDS_MARKED)
        return float(np.log2(w.levels) * V / segments_end(starts, kinds, w.codeword_nt))
    return bytecode.bits_per_payload_nt(layout.payload_nt)


@dataclass
class Written:
    oligos: np.ndarray              # (n, oligo_length) uint8: header oligos, then each stream's data and parity
    names: list[str]
    header: Header
    n_header: int
    layout: Layout
    plans: list[StreamPlan]

    def rates(self, pixels: int) -> dict:
        """Nucleotides per pixel and bits per nucleotide.  payload_nt: the payload nt of the data
        oligos; total_nt: everything synthesised (primers, indexes, headers, inner and outer codes)."""
        P = self.layout.payload_nt
        n_data = sum(p.n_data for p in self.plans)
        n_par = sum(p.parity_oligos for p in self.plans)
        total = int(self.oligos.shape[0] * self.oligos.shape[1])
        payload = n_data * P
        words = any(p.kind == "words" for p in self.plans)
        return {"pixels": pixels, "oligos": int(self.oligos.shape[0]), "header_oligos": self.n_header,
                "data_oligos": n_data, "parity_oligos": n_par,
                "outer_redundancy": round(n_par / n_data, 4) if n_data else 0.0,
                "inner_parity_bytes": self.plans[0].inner if not words else None,
                "payload_nt": payload, "total_nt": total,
                "payload_nt_per_pixel": payload / pixels, "total_nt_per_pixel": total / pixels,
                "payload_bits_per_nt": mapping_bits_per_nt(self.header, self.layout),
                "net_bits_per_nt": stream_bits(self.header) / total}

    def fasta_records(self):
        for name, o in zip(self.names, dna.decode_many(list(self.oligos))):
            yield name, o


def write(encoded: Encoded, codec_id: int, layout: Layout | None = None, redundancy: float | None = None,
          inner: int = DEFAULT_INNER, copies: int = DEFAULT_HEADER_COPIES, image_id: int | None = None,
          progress: Callable[[int], None] | None = None) -> Written:
    """A codec's streams -> oligos (header, then per stream data and parity oligos)."""
    layout = layout or Layout()
    if not 0 <= inner <= 32 or inner % 2:
        raise LayoutError("inner parity bytes must be even, 0..32")
    _, plans = plan(layout, encoded, redundancy, inner, copies)
    rec = _POOL_RECORD.get()
    if rec is not None:
        if image_id is not None and image_id != rec.image_id:
            raise LayoutError("a pool member's image id is the pool record's")
        image_id = rec.image_id
    if image_id is None:
        image_id = zlib.crc32(b"".join(_crc(s).to_bytes(4, "little") for s in encoded.streams)
                              + encoded.codec.encode() + bytes(encoded.meta))
    header = _make_header(layout, encoded, plans, image_id, codec_id)
    tag = header.tag
    try:
        heads = header_oligos(layout, header.pack(), tag, copies)
    except HeaderError as e:
        raise LayoutError(str(e)) from None
    parts = len(heads) // copies
    names = [f"dnaimg_{image_id:08x}_header_c{i // parts}_p{i % parts}" for i in range(len(heads))]
    blocks = [np.stack(heads)]
    for si, (s, p, info) in enumerate(zip(encoded.streams, plans, header.streams)):
        pre = f"dnaimg_{image_id:08x}_s{si}"
        if s.kind == "bytes":
            raw = np.frombuffer(bytes(s.data), dtype=np.uint8)
            rows = np.zeros(p.n_data * p.row_width, dtype=np.int64)
            rows[:len(raw)] = raw
            rows = rows.reshape(p.n_data, p.row_width)
            allrows = np.concatenate([rows, outer.encode(rows, p.outer)]) if p.outer.blocks else rows
            olis, _ = bytecode.encode_oligos(layout, tag, info.first + np.arange(len(allrows)),
                                             bytecode.inner_encode(allrows, inner))
            blocks.append(olis)
        else:
            cb = get_codebook(s.codeword_nt, s.levels)
            vals = np.asarray(s.data, dtype=np.int64)
            if vals.size and (vals.min() < 0 or vals.max() >= s.levels):
                raise LayoutError(f"words stream {si}: values outside 0..{s.levels - 1}")
            olis = data_oligos(layout, tag, info.key, vals, cb.words, first=info.first, progress=progress,
                               marked=s.markers)
            blocks.append(np.stack(olis))
            if p.outer.blocks:
                par = outer.encode(_words_rows(vals, info.key, s.levels, p), p.outer)
                chunks = _words_parity_chunks(par, layout, s.codeword_nt, inner, s.markers)
                pol, _ = bytecode.encode_oligos(layout, tag, info.first + p.n_data + np.arange(len(chunks)),
                                                bytecode.inner_encode(chunks, inner))
                blocks.append(pol)
        names += [f"{pre}_data{k:06d}" for k in range(p.n_data)]
        names += [f"{pre}_parity{k:05d}" for k in range(p.parity_oligos)]
    return Written(np.concatenate(blocks), names, header, len(heads), layout, plans)


def _words_rows(vals: np.ndarray, key: int, levels: int, p: StreamPlan) -> np.ndarray:
    """Values -> (n_data, V) rows in oligo order, exactly as :func:`dnaimg.dna.words.data_oligos`
    lays them (the tail of the last oligo holds the filler values ``i % levels``)."""
    total = vals.size
    perm = interleaver(total, key)
    slots = np.empty(p.n_data * p.row_width, dtype=np.int64)
    slots[:total] = vals[perm]
    slots[total:] = np.arange(p.n_data * p.row_width - total) % levels
    return slots.reshape(p.n_data, p.row_width)


def _words_parity_chunks(par: np.ndarray, layout: Layout, codeword_nt: int, inner: int,
                         marked: bool = False) -> np.ndarray:
    """Parity rows (R, V) -> (R * per, bd) bytes payload rows (zero padded), ``per`` the
    :func:`parity_chunks` of a row."""
    bd = bytecode.data_bytes_per_payload(layout.payload_nt, inner)
    R, V = par.shape
    per = parity_chunks(layout, codeword_nt, inner, marked)
    pad = np.zeros((R, per * bd), dtype=np.int64)
    pad[:, :V] = par
    return pad.reshape(R * per, bd)


# ---------------------------------------------------------------------------------------------
# reading

def classify_in_parallel(reads: ReadBatches, sorter, progress: Callable[[int], None] | None = None) -> None:
    """A reader thread parses blocks of ``reads``; worker threads run ``sorter.classify`` on them
    side by side (numba, without the GIL); this thread passes each result to
    ``sorter.file_classified`` in file order, so the result is that of a serial run."""
    workers = max(1, min(os.cpu_count() or 1, 8))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque = deque()

        def file_next():
            n, fut = pending.popleft()
            sorter.file_classified(fut.result())
            if progress is not None:
                progress(n)

        for flat, offs in prefetched(reads):
            pending.append((len(offs) - 1, pool.submit(sorter.classify, flat, offs)))
            while len(pending) > workers or (pending and pending[0][1].done()):
                file_next()
        while pending:
            file_next()


def sort_reads(reads: Iterable, layout: Layout, progress: Callable[[int], None] | None = None,
               trimmed: bool | None = None) -> ReadSorter:
    """Orient, trim and index every read; the groups it returns are the consensus' input.
    ``trimmed``: the reads' primers were trimmed off (None: detected)."""
    sorter = ReadSorter(layout.primer_f, layout.primer_r, trimmed=trimmed)
    if isinstance(reads, ReadBatches):
        # a reader thread parses blocks; two workers classify them side by side (numba, without
        # the GIL); this thread files them in file order, so the result is that of a serial run
        sorter.reserve(min(reads.size_hint(), 1 << 34))
        classify_in_parallel(reads, sorter, progress)
    else:
        it = iter(reads)
        while True:
            batch = list(islice(it, CHUNK))
            if not batch:
                break
            sorter.add_many(batch)
            if progress is not None:
                progress(len(batch))
    sorter.finish()
    if sorter.stats.seen == 0:
        raise ContainerError("no reads in the input")
    if not sorter.n_slots and trimmed:
        raise ContainerError(f"none of the {sorter.stats.seen} reads starts with a readable index, as reads whose "
                             f"primers were trimmed off do (--trimmed) ({describe_reads(sorter.stats, layout)})")
    if why := unmerged_pairs(reads):
        raise ContainerError(why)
    if not sorter.n_slots:
        raise NoPrimedReads(f"none of the {sorter.stats.seen} reads carries the primers and a readable index "
                             f"({describe_reads(sorter.stats, layout)}; wrong primers? use --primer-f/--primer-r)")
    return sorter


#: why paired-end mates do not merge (they are then empty reads)
MATES = (f"their mates do not overlap (R1 and R2 must together be at least {runs.MIN_OVERLAP} nt longer than "
         "the oligo; shorter mates cannot be merged into one read)")


def unmerged_pairs(reads) -> str | None:
    """The error for reads from paired-end files (:class:`dnaimg.dna.seqio.ReadBatches`) of which
    no pair merged, else None."""
    if getattr(reads, "paired", False) and reads.pairs_seen and not reads.pairs_merged:
        return f"none of the {reads.pairs_seen} read pairs merged: {MATES}"
    return None


def describe_reads(stats, layout: Layout | None = None, oligo_length: int | None = None) -> str:
    """What the reads look like, for an error message: their lengths against the oligos' (the
    header's ``oligo_length``, else the layout's, which is only the default), and how many
    carried the primers, e.g. "reads are 230-260 nt, oligos are 200 nt: adapters?"."""
    parts = []
    rng = stats.length_range() if hasattr(stats, "length_range") else None
    h = getattr(stats, "lengths", None)
    empty = int(h[0]) if h is not None and h.size else 0
    if empty and empty * 2 > int(h.sum()):      # (read pairs whose mates did not overlap are left empty)
        parts.append(f"{empty} of {int(h.sum())} reads are empty (read pairs that did not merge: {MATES})")
        rng = None if empty == int(h.sum()) else stats.length_range(nonempty=True)
    known = oligo_length is not None
    olen = oligo_length if known else (layout.oligo_length if layout is not None else None)
    primers = len(layout.primer_f) + len(layout.primer_r) if layout is not None else 0
    if rng is not None:
        lo, hi, mode = rng
        what = f"reads are {lo}-{hi} nt" if lo != hi else f"reads are {lo} nt"
        if olen:
            what += f", oligos are {olen} nt" + ("" if known else " (the default length)")
            if lo > olen + 5:
                what += ": adapters or flanks?"
            elif primers and abs(mode - (olen - primers)) <= 5:
                what += ": primers trimmed off? (--trimmed)"
            elif hi < olen - 10:
                what += ": partial reads? (paired-end mates: give R1 and R2 together, --paired)"
        parts.append(what)
    if stats.seen and not getattr(stats, "bare", False):
        with_primers = stats.seen - stats.no_primer - stats.too_short
        parts.append(f"{with_primers / stats.seen:.0%} of them with the primers")
    return ", ".join(parts)


def rescue_missing_oligos(sorter: ReadSorter, tag: int, n_oligos: int, insert_len: int) -> None:
    """Second and third chance for the oligos 0..n_oligos-1 of image ``tag`` that no read was
    filed under: relaxed index decoding, then the nearest index (reads of exactly the oligo's
    length, against every index of the image)."""
    wanted = sorter.best_slots(tag, n_oligos)[0] < 0
    if wanted.any():
        sorter.rescue_missing(tag, wanted)
        wanted = sorter.best_slots(tag, n_oligos)[0] < 0
        if wanted.any():
            sorter.rescue_nearest(tag, np.arange(n_oligos), wanted, insert_len)


PAYLOAD_RESCUE_SHARE = 0.02   # set-aside reads, as a share of the filed ones, worth a payload rescue
PAYLOAD_RESCUE_BELOW = 8      # ... for the oligos with fewer reads than this (the others have enough)


def rescue_by_payload(sorter: ReadSorter, tag: int, n_oligos: int, payload_nt: int) -> int:
    """Reads whose index is beyond repair, filed by their payload against a first consensus of
    each oligo 0..n_oligos-1 of image ``tag`` that has reads, but fewer than ``PAYLOAD_RESCUE_BELOW``
    (:meth:`ReadSorter.rescue_by_payload`; at high coverage the consensus has enough reads, and
    two consensus passes over every oligo would double the decode's time); skipped when few
    reads were set aside.  Returns how many were filed."""
    free = sorter.free_rescue_reads()
    if free == 0 or free < PAYLOAD_RESCUE_SHARE * max(sorter.stats.used, 1):
        return 0
    slot, seed = sorter.best_slots(tag, n_oligos)
    counts = sorter.slot_fields()[3]
    have = np.flatnonzero((slot >= 0) & (counts[np.maximum(slot, 0)] < PAYLOAD_RESCUE_BELOW))
    if have.size == 0:
        return 0
    flat, offs, order, first = sorter.store()
    est = _estimates(flat, offs, order, first, slot[have], payload_nt)
    return sorter.rescue_by_payload(tag, est, have, seed[have])


@nb.njit(cache=True, nogil=True, parallel=True)
def _estimates(flat, offs, order, first, slot, length):
    """Per oligo (slot >= 0) the consensus of its reads, ``length`` nt (255 where none)."""
    K = slot.shape[0]
    out = np.full((K, length), 255, dtype=np.uint8)
    for k in nb.prange(K):
        s = slot[k]
        if s < 0:
            continue
        rows = order[first[s]:first[s + 1]]
        est = np.empty(length, dtype=np.uint8)
        if not fast_majority_rows(flat, offs, rows, length, est):
            rf, ro = gather_reads(flat, offs, rows)
            est = consensus_packed(rf, ro, length)
        out[k] = est
    return out


FEW_READS = 2            # with this many reads or fewer, each words payload read is decoded on its own
OLIGO_BLOCK = 8192       # data oligos per call of the words batch decoder (progress granularity)


def _bytes_rows(sorter: ReadSorter, tag: int, first: int, count: int, payload_nt: int,
                inner: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Data bytes of bytes payloads ``first..first+count-1``, whether each decoded, and whether
    each was read with a valid selector (then its bytes, even when the inner code failed, are
    mostly right: the outer code may use them as suspect cells)."""
    slot, seed = sorter.best_slots(tag, first + count)
    slot, seed = slot[first:], seed[first:]
    flat, offs, order, firsts = sorter.store()
    est = _estimates(flat, offs, order, firsts, slot, payload_nt)
    rows, ok, fixed = bytecode.decode_payloads(est, first + np.arange(count), seed, tag, inner)
    ok &= slot >= 0
    readable = (slot >= 0) & bytecode.selector_valid(est)
    second = 0
    for k in np.flatnonzero((slot >= 0) & ~ok).tolist():
        rf, ro = gather_reads(flat, offs, order[firsts[slot[k]]:firsts[slot[k] + 1]])
        row = bytecode.decode_from_reads([rf[ro[i]:ro[i + 1]] for i in range(len(ro) - 1)], first + k,
                                         int(seed[k]), tag, inner, payload_nt)
        if row is not None:
            rows[k], ok[k] = row, True
            second += 1
    readable |= ok
    return rows, ok, readable, {"oligos": count, "missing": int((slot < 0).sum()),
                      "inner_failed": int(((slot >= 0) & ~ok).sum()), "inner_corrected": fixed,
                      "from_single_reads": second}


def words_values(sorter: ReadSorter, tag: int, first: int, n_data: int, payload_nt: int, cb, count: int,
                 progress: Callable[[int], None] | None = None,
                 marked: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Values (n_data, count) of the words payloads ``first..first+n_data-1`` of image ``tag``
    (-1 where none could be read), per value whether its codeword needed repair, and the slots.

    From 3 reads up: nucleotide consensus, then the resynchronising codeword decoder.  With 1 or 2
    reads a consensus cannot outvote an indel, so each read is decoded on its own (the
    codeword-aware alignment follows its frame shifts) and, with two, each value is taken from
    the read whose codeword was valid.  One numba call per block of oligos, in parallel.
    ``marked``: the payloads carry markers (:mod:`dnaimg.dna.words`)."""
    flat, offs, order, firsts = sorter.store()
    starts, kinds, _ = segments(payload_nt, cb.n, marked)      # count: their codewords (values_per_oligo)
    slot, seed = sorter.best_slots(tag, first + n_data)
    slot, seed = slot[first:], seed[first:]
    rep = cb.repairer
    vals = np.empty((n_data, count), dtype=np.int64)
    bad = np.empty((n_data, count), dtype=np.bool_)
    trust = np.empty((n_data, count), dtype=np.bool_)
    for k0 in range(0, n_data, OLIGO_BLOCK):
        k1 = min(n_data, k0 + OLIGO_BLOCK)
        vals[k0:k1], bad[k0:k1], trust[k0:k1] = payload_values_batch(
            flat, offs, order, firsts, slot[k0:k1], seed[k0:k1], first + k0, tag, payload_nt, rep.n, starts, kinds,
            rep.table, rep.dist, SIGMAS_INV, FEW_READS, RESYNC_INDEL_COST, RESYNC_DRIFT)
        if progress is not None:
            progress(k1 - k0)
    unsure = unsure_values(offs, order, firsts, slot, payload_nt, bad, trust)
    vals[unsure] = -1
    bad[unsure] = False
    return vals, bad, slot


UNSURE_REPAIRS = 2     # a consensus of indel-carrying reads with this many repaired codewords: the rest is erased


def unsure_values(offs, order, firsts, slot, payload_nt, bad, trust) -> np.ndarray:
    """Values to erase rather than guess (n_data, count), only on oligos with a read that is not
    ``payload_nt`` long (an indel; substitution-only reads keep every value): on an oligo read by
    at most ``FEW_READS`` reads (a consensus cannot outvote an indel), and on a consensus whose
    codewords needed ``UNSURE_REPAIRS`` repairs or more (a frame slip the consensus kept), the
    values that are not *trusted* (``trust``, :func:`dnaimg.dna.words._trusted_blocks`): without
    markers, those before the first repair or frame shift and after the last one, 3 codewords
    clear of it; with markers, those of blocks whose two markers matched at one drift.

    Measured on training photographs (bsds500 100075, 2092, 8049; r050, 2 % of oligos lost;
    ``python -m dnaimg.bench.markers ... --layouts 0:0 --policy erase|ends|keep [--preset
    nextseq]``; clean 29.41 dB): at nanopore 1x / 2x / 3x / 5x / 10x, erasing every value of a
    few-read oligo (the rule before) gives 17.73 / 20.90 / 22.93 / 26.38 / 28.65 dB, guessing
    16.79 / 18.34 / 20.03 / 23.96 / 27.98, the trusted ends 19.64 / 22.12 / 23.72 / 26.70 / 28.65;
    at NextSeq 2x / 3x / 5x / 10x (reads with one indel, which the resync follows) 23.46 / 24.79 /
    27.40 / 28.79, 24.90 / 25.93 / 27.92 / 28.87 and 25.77 / 26.90 / 28.33 / 28.92.  The outer
    code, when there is one, also rebuilds erasures more cheaply than errors."""
    wrong_len = (offs[1:] - offs[:-1]) != payload_nt
    cs = np.zeros(len(order) + 1, dtype=np.int64)
    np.cumsum(wrong_len[order], out=cs[1:])
    has = slot >= 0
    s = np.where(has, slot, 0)
    count = firsts[s + 1] - firsts[s]
    indel = has & (cs[firsts[s + 1]] - cs[firsts[s]] > 0)
    few = indel & (count <= FEW_READS)
    slipped = indel & (count > FEW_READS) & (bad.sum(axis=1) >= UNSURE_REPAIRS)
    return (few | slipped)[:, None] & ~trust


@nb.njit(cache=True, nogil=True)
def deinterleave(vals, perm):
    """Oligo-order values (-1 = unread) -> stream order (-1 kept)."""
    total = perm.shape[0]
    out = np.empty(total, dtype=np.int64)
    for i in range(total):
        out[perm[i]] = vals[i]
    return out


def read_stream(sorter: ReadSorter, header: Header, si: int, layout: Layout,
                progress: Callable[[int], None] | None = None) -> Received:
    """Stream ``si`` of the image whose header is ``header``, from the sorted reads."""
    info = header.streams[si]
    tag = header.tag
    P = layout.payload_nt
    if info.kind == KIND_BYTES:
        bd = bytecode.data_bytes_per_payload(P, info.inner)
        pl = outer.Plan(info.n_data, info.blocks, info.parity)
        if info.length > info.n_data * bd or (info.n_data > 1 and info.length <= (info.n_data - 1) * bd):
            raise ContainerError(f"header is inconsistent: stream {si} length does not match its oligos")
        rows, ok, readable, rep = _bytes_rows(sorter, tag, info.first, info.n_data + pl.parity_rows, P, info.inner)
        er = np.repeat(~readable[:, None], bd, axis=1)
        sus = np.repeat((readable & ~ok)[:, None], bd, axis=1)
        n = info.n_data
        data, still, orep = outer.decode(rows[:n], er[:n], rows[n:], er[n:], pl, sus[:n], sus[n:])
        out = data.reshape(-1)[:info.length].astype(np.uint8).tobytes()
        erased = still.reshape(-1)[:info.length].copy()
        exact = zlib.crc32(out) == info.crc
        rep.update({"outer": orep, "bytes_lost": int(erased.sum()), "exact": exact, "row_bytes": bd})
        if progress is not None:
            progress(info.n_data)
        return Received("bytes", out, exact, erased, rep)
    try:
        cb = get_codebook(info.codeword_nt, info.levels)
    except ValueError:
        raise ContainerError(f"the header's {info.levels} levels do not fit {info.codeword_nt}-nt codewords") from None
    marked = info.kind == KIND_WORDS_MARKED
    V = values_per_oligo(layout, info.codeword_nt, marked)
    if V < 1 or n_data_oligos(layout, info.codeword_nt, info.length, marked) != info.n_data:
        raise ContainerError(f"header is inconsistent: stream {si} oligo count does not match its length")
    vals, bad, slot = words_values(sorter, tag, info.first, info.n_data, P, cb, V, progress, marked)
    rep = {"oligos": info.n_data, "missing": int((slot < 0).sum()), "codewords_repaired": int(bad.sum())}
    if info.blocks:
        pl = outer.Plan(info.n_data, info.blocks, info.parity)
        bd = bytecode.data_bytes_per_payload(P, info.inner)
        per = parity_chunks(layout, info.codeword_nt, info.inner, marked)
        rows, ok, readable, prep = _bytes_rows(sorter, tag, info.first + info.n_data, pl.parity_rows * per, P,
                                               info.inner)
        par = rows.reshape(pl.parity_rows, per * bd)[:, :V]
        par_er = np.repeat(~readable.reshape(pl.parity_rows, per), bd, axis=1)[:, :V]
        par_sus = np.repeat((readable & ~ok).reshape(pl.parity_rows, per), bd, axis=1)[:, :V]
        missing = vals < 0
        vals, still, orep = outer.decode(np.maximum(vals, 0), missing, par, par_er, pl, bad, par_sus)
        vals = np.where(still & missing, -1, vals)
        vals = np.where(vals >= info.levels, -1, vals)
        rep.update({"parity_oligos": prep, "outer": orep})
    flat = deinterleave(vals.reshape(-1)[:info.length].copy(), interleaver(info.length, info.key))
    erased = flat < 0
    exact = (not erased.any()) and zlib.crc32(flat.astype(np.uint16).tobytes()) == info.crc
    rep.update({"values": int(info.length), "values_erased": int(erased.sum()), "exact": bool(exact)})
    return Received("words", flat, bool(exact), erased, rep)


def read_streams(sorter: ReadSorter, header: Header, layout: Layout,
                 progress: Callable[[int], None] | None = None) -> list[Received]:
    rescue_missing_oligos(sorter, header.tag, n_oligos(header, layout), layout.insert_nt)
    rescue_by_payload(sorter, header.tag, n_oligos(header, layout), layout.payload_nt)
    return [read_stream(sorter, header, i, layout, progress) for i in range(len(header.streams))]


def parity_oligos(s: StreamInfo, layout: Layout) -> int:
    """The parity oligos of a stream, from its header entry."""
    rows = s.blocks * s.parity
    if s.kind == KIND_BYTES or rows == 0:
        return rows
    return rows * parity_chunks(layout, s.codeword_nt, s.inner, s.kind == KIND_WORDS_MARKED)


def n_oligos(header: Header, layout: Layout) -> int:
    """Data and parity oligos of the image (numbers 0 .. n-1; the header oligos apart)."""
    return max(s.first + s.n_data + parity_oligos(s, layout) for s in header.streams)
