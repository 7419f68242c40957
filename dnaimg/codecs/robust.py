"""The whole path as a Python API: image -> oligos, and reads -> image.

    from dnaimg.codecs.robust import encode_image, decode_reads
    enc = encode_image("photo.png")                 # EncodeResult: oligos, header, rates
    dec = decode_reads(reads)                       # reads: iterable of str or uint8 arrays
    dec.image                                       # HxWx3 uint8; dec.report: what happened
"""
from __future__ import annotations

import os
import time
import zlib
from collections import Counter, defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice, product
from pathlib import Path
from typing import Callable, Iterable

import numba as nb
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from dnaimg.dna import alphabet as dna
from dnaimg.dna.codebook import SIGMAS_INV, get_codebook
from dnaimg.dna.consensus import consensus_packed
from dnaimg.dna.index import HEADER_BASE, INDEX_NT
from dnaimg.dna.layout import (DEFAULT_HEADER_COPIES, FORMAT_VERSION, HEADER_PARITY, RESYNC_DRIFT, RESYNC_INDEL_COST, Header,
                     HeaderVersionError, Layout, LayoutError, data_oligos, header_codeword_nibbles,
                     header_from_nibbles, header_nibbles, header_oligos, header_words, interleaver, n_data_oligos,
                     payload_values_batch, soft_nibble_vote, values_per_oligo)
from dnaimg.dna.reads import CHUNK, ReadSorter
from dnaimg.zoo.model import resolve_precision
from dnaimg.zoo.registry import OperatingPoint, load_model, model_id, name_for_id, select_point
from dnaimg.dna.seqio import ReadBatches, prefetched


class DecodeError(ValueError):
    pass


class ImageError(ValueError):
    pass


def load_image(path: str | Path) -> np.ndarray:
    """Image file -> HxWx3 uint8 (grayscale, palette and alpha images are converted to RGB)."""
    p = Path(path)
    if not p.exists():
        raise ImageError(f"{path}: no such file")
    try:
        with Image.open(p) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float64)
                arr = np.clip(arr / (65535.0 if arr.max() > 255 else 255.0) * 255.0 + 0.5, 0, 255).astype(np.uint8)
                im = Image.fromarray(arr, mode="L")
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA")
                bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
                im = Image.alpha_composite(bg, im)
            rgb = np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ImageError(f"{path}: not a readable image ({e.__class__.__name__})") from None
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ImageError(f"{path}: empty image")
    if rgb.shape[0] > 65535 or rgb.shape[1] > 65535:
        raise ImageError(f"{path}: images up to 65535 px a side are supported")
    return rgb


def to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(img, dtype=np.uint8, order="C", copy=True)).permute(2, 0, 1)[None].float().div(255.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """Image batch in [0, 1] -> the first image as HxWx3 uint8 (rounded), in torch (threads)."""
    y = x[0].float().clamp(0, 1).mul(255.0).add_(0.5).to(torch.uint8)
    return y.permute(1, 2, 0).contiguous().numpy()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def fill_erasures(symbols: np.ndarray, erased: np.ndarray, centre: int, rounds: int = 4) -> np.ndarray:
    """Erased latent values (lost oligos) take the rounded mean of their known 4-neighbours in the
    same channel (the interleaver leaves almost every erased value with known neighbours); what
    stays unknown after a few rounds becomes the latent value 0 (level ``centre``)."""
    x = symbols.astype(np.float64)
    known = ~erased
    for _ in range(rounds):
        if known.all():
            break
        acc = np.zeros_like(x)
        cnt = np.zeros_like(x)
        xk = np.where(known, x, 0.0)
        kf = known.astype(np.float64)
        acc[:, 1:, :] += xk[:, :-1, :]
        cnt[:, 1:, :] += kf[:, :-1, :]
        acc[:, :-1, :] += xk[:, 1:, :]
        cnt[:, :-1, :] += kf[:, 1:, :]
        acc[:, :, 1:] += xk[:, :, :-1]
        cnt[:, :, 1:] += kf[:, :, :-1]
        acc[:, :, :-1] += xk[:, :, 1:]
        cnt[:, :, :-1] += kf[:, :, 1:]
        new = ~known & (cnt > 0)
        x[new] = acc[new] / cnt[new]
        known = known | new
    x[~known] = centre
    return np.rint(x).astype(np.int64)


@nb.njit(cache=True, nogil=True)
def _deinterleave(vals, perm, centre):
    """Oligo-order values (-1 = unread) -> latent order, unread ones at ``centre``, and flagged."""
    total = perm.shape[0]
    flat = np.empty(total, dtype=np.int64)
    erased = np.zeros(total, dtype=np.bool_)
    for i in range(total):
        v = vals[i]
        if v < 0:
            flat[perm[i]] = centre
            erased[perm[i]] = True
        else:
            flat[perm[i]] = v
    return flat, erased


def symbols_crc(symbols: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(symbols, dtype=np.uint16).tobytes())


@dataclass
class EncodeResult:
    oligos: list[np.ndarray]
    names: list[str]
    header: Header
    model: str
    symbols: np.ndarray                 # (C, H', W') quantised latent
    n_header: int
    layout: Layout
    point: OperatingPoint | None = None

    @property
    def pixels(self) -> int:
        return self.header.height * self.header.width

    @property
    def payload_nt(self) -> int:
        """Nucleotides of codewords carrying latent values."""
        return int(self.symbols.size * self.header.codeword_nt)

    @property
    def total_nt(self) -> int:
        return int(sum(len(o) for o in self.oligos))

    def rates(self) -> dict:
        return {"pixels": self.pixels, "oligos": len(self.oligos), "data_oligos": self.header.n_data,
                "header_oligos": self.n_header, "payload_nt": self.payload_nt, "total_nt": self.total_nt,
                "payload_nt_per_pixel": self.payload_nt / self.pixels,
                "total_nt_per_pixel": self.total_nt / self.pixels,
                "payload_bits_per_nt": float(np.log2(self.header.levels) / self.header.codeword_nt)}

    def fasta_records(self):
        for name, o in zip(self.names, self.oligos):
            yield name, dna.decode(o)


def encode_image(image: str | Path | np.ndarray, model: str | None = None, layout: Layout | None = None,
                 header_copies: int = DEFAULT_HEADER_COPIES,
                 progress: Callable[[int], None] | None = None, rate: float | None = None,
                 noise_trained: bool = False) -> EncodeResult:
    """Image -> oligos.  ``model`` names a shipped model (``NAME:POINT`` one of its operating
    points); ``rate`` picks the best operating point at or under that many payload nt/pixel
    (see :func:`registry.select_point`)."""
    layout = layout or Layout()
    point = select_point(model, rate, noise_trained)
    img = load_image(image) if not isinstance(image, np.ndarray) else image
    model = point.model
    net, _ = load_model(model)
    cb = get_codebook(point.codeword_nt, point.levels)
    with torch.no_grad():
        symbols = net.compress(to_tensor(img), point.levels, point.channels)[0].numpy().astype(np.int64)
    crc = symbols_crc(symbols)
    n_data = n_data_oligos(layout, cb.n, symbols.size)
    if n_data > HEADER_BASE:
        raise LayoutError(f"image needs {n_data} oligos; at most {HEADER_BASE} are addressable")
    header = Header(model_id=model_id(model), levels=point.levels, codeword_nt=cb.n, channels=point.channels,
                    height=img.shape[0], width=img.shape[1], n_data=n_data, oligo_length=layout.oligo_length,
                    primer_f_nt=len(layout.primer_f), primer_r_nt=len(layout.primer_r),
                    seed=crc ^ 0xA5A5A5A5, tag=(crc >> 8) & 0xFF, symbols_crc=crc)
    heads = header_oligos(layout, header, header_copies)
    data = data_oligos(layout, header, symbols, cb.words, progress=progress)
    n_parts = len(heads) // header_copies
    names = [f"dnaimg_t{header.tag:02x}_header_c{i // n_parts}_p{i % n_parts}" for i in range(len(heads))]
    names += [f"dnaimg_t{header.tag:02x}_oligo{k:06d}" for k in range(len(data))]
    return EncodeResult(heads + data, names, header, model, symbols, len(heads), layout, point)


def reconstruct(symbols: np.ndarray, model: str, size: tuple[int, int], levels: int | None = None,
                precision: str = "fp32") -> np.ndarray:
    """Symbols -> uint8 image through the synthesis net (tiled for large images).  ``precision``:
    "fp32", "bf16" or "auto" (bf16 where the CPU computes it natively: several times faster, the
    same PSNR on Kodak to 0.01 dB, pixels within ~59 dB of fp32's)."""
    net, _ = load_model(model)
    with torch.no_grad():
        out = net.decompress(torch.from_numpy(np.asarray(symbols, dtype=np.int64))[None], size, levels,
                             precision=resolve_precision(precision))
    return to_uint8(out)


# ---------------------------------------------------------------------------------------------
# decoding

@dataclass
class DecodeResult:
    image: np.ndarray | None
    header: Header
    model: str
    symbols: np.ndarray
    report: dict = field(default_factory=dict)


def _decode_header(sorter: ReadSorter, tag: int) -> tuple[Header | None, str]:
    """Try to rebuild the header of image ``tag``; returns (header, why-not).

    Each copy is corrected on its own (Reed-Solomon with the invalid words as erasures), then
    a nibble-wise vote over the copies, then mixes of parts from different copies."""
    hgroups = {k - HEADER_BASE: sorter.best_group(tag, k) for k in sorter.numbers(tag, HEADER_BASE)}
    if not hgroups:
        return None, "no header oligo was read"
    lengths = np.concatenate([np.diff(g.packed()[1]) for _, g in hgroups.values()])
    med = int(np.median(lengths))
    nib_needed = header_codeword_nibbles()
    last_err = "header could not be corrected"
    other_versions: set[int] = set()
    for L in sorted(range(max(3, med - 3), med + 4), key=lambda x: (abs(x - med), x)):
        per_part = L // 3
        parts = -(-nib_needed // per_part)
        copies: dict[int, dict[int, tuple[np.ndarray, np.ndarray]]] = defaultdict(dict)
        words: dict[int, list[np.ndarray]] = defaultdict(list)
        soft: list[tuple[np.ndarray, np.ndarray]] = []
        for off in sorted(hgroups):
            c, p = off // 16, off % 16
            if p >= parts:
                continue
            s, g = hgroups[off]
            est = consensus_packed(*g.packed(), L)
            copies[c][p] = header_nibbles(est, HEADER_BASE + off, s, tag, per_part)
            words[p].append(header_words(est, HEADER_BASE + off, s, tag, per_part))
        if not copies:
            continue
        candidates = []
        for c in sorted(copies):
            if all(p in copies[c] for p in range(parts)):
                candidates.append(tuple(np.concatenate([copies[c][p][i] for p in range(parts)]) for i in (0, 1)))
        maj_nib, maj_ok = [], []
        for p in range(parts):
            arrs = [copies[c][p] for c in copies if p in copies[c]]
            if not arrs:
                break
            nibs = np.stack([a[0] for a in arrs])
            oks = np.stack([a[1] for a in arrs])
            votes = np.zeros((nibs.shape[1], 16), dtype=np.int64)
            for r in range(nibs.shape[0]):
                np.add.at(votes, (np.arange(nibs.shape[1]), nibs[r]), np.where(oks[r], 2, 1))
            maj_nib.append(votes.argmax(1))
            maj_ok.append(oks.any(0))
        if len(maj_nib) == parts:
            candidates.append((np.concatenate(maj_nib), np.concatenate(maj_ok)))
        if all(words[p] for p in range(parts)):
            # soft vote: per word the nibble nearest in Hamming distance summed over the copies;
            # then the least sure bytes erased, more and more (RS: 2 errors + erasures <= parity)
            voted = [soft_nibble_vote(words[p]) for p in range(parts)]
            nib = np.concatenate([v[0] for v in voted])[:nib_needed]
            margin = np.concatenate([v[1] for v in voted])[:nib_needed]
            byte_margin = np.minimum(margin[0::2], margin[1::2])
            order = np.argsort(byte_margin, kind="stable")
            for k in range(0, HEADER_PARITY + 1, 2):
                ok = np.ones(nib_needed, dtype=bool)
                ok[2 * order[:k]] = False
                ok[2 * order[:k] + 1] = False
                soft.append((nib, ok))
        options = [[copies[c][p] for c in copies if p in copies[c]] for p in range(parts)]
        if all(options):
            for combo in islice(product(*options), 64):
                candidates.append(tuple(np.concatenate([x[i] for x in combo]) for i in (0, 1)))
        valid: list[Header] = []
        for i, (nib, ok) in enumerate(candidates + soft):
            if len(nib) < nib_needed:
                continue
            try:
                h = header_from_nibbles(nib, ok)
            except HeaderVersionError as e:
                if i < len(candidates):     # heavy erasures can miscorrect into any version byte
                    other_versions.add(e.version)
                continue
            except ValueError as e:
                last_err = str(e)
                continue
            if h.oligo_length - h.primer_f_nt - h.primer_r_nt - 36 != L:
                continue
            if h not in valid:
                valid.append(h)
        if len(valid) > 1:
            raise DecodeError(f"contradictory headers for image tag {tag:02x}: the reads hold "
                              f"{len(valid)} different valid headers")
        if valid:
            return valid[0], ""
    if other_versions:
        raise DecodeError(f"the DNA holds format version {', '.join(map(str, sorted(other_versions)))}; "
                          f"this dnaimg reads version {FORMAT_VERSION}")
    return None, last_err


FEW_READS = 2            # with this many reads or fewer, each read is decoded on its own
OLIGO_BLOCK = 8192       # data oligos per call of the batch decoder (progress granularity)


def oligo_values(sorter: ReadSorter, tag: int, n_data: int, payload_nt: int, cb, count: int,
                 progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Values (n_data, count) of every data oligo of image ``tag`` from its reads (-1 where none
    could be read), and per oligo how many codewords needed repair.

    From 3 reads up: nucleotide consensus, then the resynchronising codeword decoder.  With 1 or 2
    reads a consensus cannot outvote an indel, so each read is decoded on its own (the
    codeword-aware alignment follows its frame shifts) and, with two, each value is taken from
    the read whose codeword was valid.  One numba call per block of oligos, in parallel."""
    flat, offs, order, first = sorter.store()
    slot, seed = sorter.best_slots(tag, n_data)
    rep = cb.repairer
    vals = np.empty((n_data, count), dtype=np.int64)
    bad = np.empty(n_data, dtype=np.int64)
    for k0 in range(0, n_data, OLIGO_BLOCK):
        k1 = min(n_data, k0 + OLIGO_BLOCK)
        vals[k0:k1], bad[k0:k1] = payload_values_batch(
            flat, offs, order, first, slot[k0:k1], seed[k0:k1], k0, tag, payload_nt, rep.n, count, rep.table, rep.dist,
            SIGMAS_INV, FEW_READS, RESYNC_INDEL_COST, RESYNC_DRIFT)
        if progress is not None:
            progress(k1 - k0)
    return vals, bad


def sort_reads(reads: Iterable, layout: Layout, progress: Callable[[int], None] | None = None) -> ReadSorter:
    """Orient, trim and index every read; the groups it returns are the consensus' input."""
    sorter = ReadSorter(layout.primer_f, layout.primer_r)
    if isinstance(reads, ReadBatches):
        # a reader thread parses blocks; two workers classify them side by side (numba, without
        # the GIL); this thread files them in file order, so the result is that of a serial run
        sorter.reserve(min(reads.size_hint(), 1 << 34))
        with ThreadPoolExecutor(max_workers=max(1, min(os.cpu_count() or 1, 8))) as pool:
            pending: deque = deque()

            def file_next():
                n, fut = pending.popleft()
                sorter.file_classified(fut.result())
                if progress is not None:
                    progress(n)

            for flat, offs in prefetched(reads):
                pending.append((len(offs) - 1, pool.submit(sorter.classify, flat, offs)))
                while len(pending) > pool._max_workers or (pending and pending[0][1].done()):
                    file_next()
            while pending:
                file_next()
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
        raise DecodeError("no reads in the input")
    if not sorter.n_slots:
        raise DecodeError(f"none of the {sorter.stats.seen} reads carries the primers and a readable index "
                          "(wrong primers? use --primer-f/--primer-r)")
    return sorter


def rescue_header_oligos(sorter: ReadSorter, tag: int) -> bool:
    """Second chance for the header oligos of image ``tag`` whose index did not decode: re-read
    the failed reads for the header numbers not yet seen.  True if any read was recovered."""
    if not sorter.rescue.count:
        return False
    wanted = np.zeros(HEADER_BASE + 256, dtype=np.bool_)
    wanted[HEADER_BASE:] = True
    wanted[sorter.numbers(tag, HEADER_BASE)] = False
    found = sorter.rescue_missing(tag, wanted)
    # then the nearest header index, for reads with too many substitutions in it: more reads
    # for every header oligo (seen or not) help the vote (a wrong one is outvoted, and the
    # header's Reed-Solomon code and CRC check the result)
    found += sorter.rescue_nearest(tag, np.arange(HEADER_BASE, HEADER_BASE + 256))
    return bool(found)


def find_headers(sorter: ReadSorter) -> tuple[dict[int, Header], dict[int, str], Counter]:
    """Headers decoded per image tag, the reasons where none could be, and reads per tag."""
    reads_per_tag = Counter(sorter.reads_per_tag())
    headers, why = {}, {}
    top = max(reads_per_tag.values(), default=0)
    for t, count in reads_per_tag.most_common():
        if count < max(3, 0.01 * top):
            break     # a handful of reads under a stray tag: index misreads, not an image
        h, w = _decode_header(sorter, t)
        if h is None and rescue_header_oligos(sorter, t):
            h, w = _decode_header(sorter, t)
        if h is not None:
            headers[t] = h
        else:
            why[t] = w
    return headers, why, reads_per_tag


def decode_reads(reads: Iterable, primer_f: str | None = None, primer_r: str | None = None,
                 progress: Callable[[int], None] | None = None, tag: int | None = None,
                 read_progress: Callable[[int], None] | None = None, precision: str = "auto") -> DecodeResult:
    """Reads (str or uint8 arrays, any order, either strand; or a :class:`ReadBatches` file) ->
    image and report.  ``precision`` is the synthesis net's (see :func:`reconstruct`)."""
    precision = resolve_precision(precision)
    lay = Layout(primer_f=primer_f or Layout.primer_f, primer_r=primer_r or Layout.primer_r)
    t0 = time.perf_counter()
    sorter = sort_reads(reads, lay, read_progress)
    t_sort = time.perf_counter()
    stats = sorter.stats
    headers, why, reads_per_tag = find_headers(sorter)
    if not headers:
        raise DecodeError("no header could be decoded from the reads (" + "; ".join(
            f"tag {t:02x}: {w}" for t, w in why.items()) + ")")
    if tag is None:
        tag = max(headers, key=lambda t: reads_per_tag[t])
    elif tag not in headers:
        raise DecodeError(f"no image with tag {tag:02x} in the reads (found: "
                          f"{', '.join(f'{t:02x}' for t in headers)})")
    h = headers[tag]
    if (h.primer_f_nt, h.primer_r_nt) != (len(lay.primer_f), len(lay.primer_r)):
        raise DecodeError("the header's primer lengths differ from the primers given")
    model = name_for_id(h.model_id)
    net, card = load_model(model)
    if not 1 <= h.channels <= net.cfg.channels or h.levels < 3 or h.levels % 2 == 0:
        raise DecodeError(f"model {model} does not match the header ({h.channels} channels, {h.levels} levels)")
    try:
        cb = get_codebook(h.codeword_nt, h.levels)
    except ValueError:
        raise DecodeError(f"the header's {h.levels} levels do not fit {h.codeword_nt}-nt codewords") from None
    layout = Layout(oligo_length=h.oligo_length, primer_f=lay.primer_f, primer_r=lay.primer_r)
    vpo = values_per_oligo(layout, cb.n)
    shape = h.latent_shape
    total = int(np.prod(shape))
    if n_data_oligos(layout, cb.n, total) != h.n_data:
        raise DecodeError("header is inconsistent: oligo count does not match the latent size")
    wanted = sorter.best_slots(tag, h.n_data)[0] < 0
    if wanted.any():
        sorter.rescue_missing(tag, wanted)
        wanted = sorter.best_slots(tag, h.n_data)[0] < 0
        if wanted.any():     # nearest index among all the image's data oligos, for the missing ones
            sorter.rescue_nearest(tag, np.arange(h.n_data), wanted, INDEX_NT + layout.payload_nt)
    slots = sorter.best_slots(tag, h.n_data)[0]
    missing = int(np.count_nonzero(slots < 0))
    vals, bad = oligo_values(sorter, tag, h.n_data, layout.payload_nt, cb, vpo, progress)
    repaired = int(bad.sum())
    perm = interleaver(total, h.seed)
    centre = (h.levels - 1) // 2
    flat, erased = _deinterleave(vals.reshape(-1), perm, centre)
    symbols = flat.reshape(shape)
    if erased.any():
        symbols = fill_erasures(symbols, erased.reshape(shape), centre)
    tags, numbers, _, counts = sorter.slot_fields()
    unknown = int(counts[(tags == tag) & (numbers >= h.n_data) & (numbers < HEADER_BASE)].sum())
    stats.unknown_oligo = unknown
    stats.used -= unknown
    exact = symbols_crc(symbols) == h.symbols_crc
    del sorter, vals, flat, perm, erased      # the reads are done with: free them before the network
    t_latent = time.perf_counter()
    image = reconstruct(symbols, model, (h.height, h.width), h.levels, precision)
    t_image = time.perf_counter()
    other = {f"{t:02x}": reads_per_tag[t] for t in reads_per_tag if t != tag}
    images = {f"{t:02x}": {"reads": reads_per_tag[t], "width": hh.width, "height": hh.height}
              for t, hh in headers.items()}
    report = {
        "reads": stats.to_dict(),
        "oligos": {"expected": h.n_data, "recovered": h.n_data - missing, "missing": missing},
        "codewords": {"total": total, "repaired": repaired, "erased": min(missing * vpo, total)},
        "latent_exact": exact,
        "image": {"height": h.height, "width": h.width, "model": model, "tag": f"{tag:02x}",
                  "channels": h.channels, "levels": h.levels, "codeword_nt": h.codeword_nt},
        "other_tags": other,
        "images_present": images,
        "header": h.to_dict(),
        "precision": precision,
        "timing_s": {"reads": round(t_sort - t0, 3), "headers_and_oligos": round(t_latent - t_sort, 3),
                     "network": round(t_image - t_latent, 3)},
    }
    return DecodeResult(image, h, model, symbols, report)
