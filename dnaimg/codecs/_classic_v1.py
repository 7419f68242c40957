"""Classic-codec baseline in DNA: JPEG / WebP / JPEG 2000 / AVIF bytes through dnaimg's oligo layout.

The benchmark's reference points: a conventional image codec (Pillow) writes a byte stream, and
the stream is stored with the *same* oligos, index, primers, header convention, channel and read
pipeline as the learned codec, so every nucleotide counts in the rate exactly as in ours::

    img --Pillow--> bytes --cut into 24-byte rows--> RS(N, K) over GF(256) across oligos (parity rows)
        --rows: base-3 number (122 trits) + 2 check trits, trit mask, rotating code--> 124-nt payloads
        --guided scrambling (seed 0..11 in the index)--> oligos  +  header oligos (3 copies)

    reads --dnaimg.codec.sort_reads (orient, trim, index)--> groups --consensus_packed--> payload
        --un-rotate, un-mask, check trits--> rows (failures: erasures) --RS--> bytes --CRC32, Pillow--> img

Oligo (200 nt by default): ``primer_f | index (36) | payload (124) | revcomp(primer_r)``.

**Inner code (payload).**  A row of ``B`` bytes (24 for a 124-nt payload) is read as one big-endian
integer ``< 2^(8B)`` and written in base 3 with ``T`` trits, the least ``T`` with ``3^T >= 2^(8B)``
(122 for 192 bits).  The ``payload_nt - T`` remaining trits (2) carry a check: CRC32 of (tag, oligo
number, row) modulo 3^2, so a payload decoded wrong is usually seen (and becomes an erasure for the
outer code) rather than being an error.  All trits are then masked (added mod 3) with pseudo-random
trits drawn from (tag, oligo number, scrambling seed) and written with a rotating (Goldman-style) code:
``nt[i] = (nt[i-1] + 1 + trit[i]) mod 4``, i.e. each trit picks one of the three nucleotides that
differ from the previous one (the first follows the index's last nucleotide), so the payload has no
homopolymer at all.  Efficiency: 192 bits in 124 nt = **1.548 bits/nt** (1.574 counting the 122 data
trits only; log2(3) = 1.585 is the limit of the rotating code).  The encoder tries scrambling seeds
0..11 until the whole oligo passes :func:`dnaimg.constraints.oligo_ok` (GC 40-60 %, runs <= 3, tandem
repeats <= 12); the seed travels in the index, like the learned codec's.

A payload fails to decode (-> erasure) when it holds a repeated nucleotide (impossible in the code),
a base-3 number >= 2^(8B) or a wrong check; an undetected wrong payload (about 1 in 9 of the damaged
ones, less counting the other two tests) is an *error* for the outer code.

**Outer code.**  The stream is zero-padded to ``D`` rows (data oligos ``0..D-1``), split into
``n_blocks`` consecutive blocks of ``K`` (sizes differing by at most one, ``K + P <= 255``), and each of
the ``B`` byte columns of a block is a shortened RS(K + P, K) codeword over GF(256) (``reedsolo``,
primitive polynomial 0x11d, fcr 0): ``P`` parity oligos per block, numbered ``D + P*block + j``.  By
default ``P = max(2, ceil(0.15 K))``.  Per block and column, ``2*errors + erasures <= P`` is corrected
(erasures: oligos with no read, or whose payload did not decode); since a bad oligo hits the same
position in every column, the positions found as errors in one column are tried as erasures in the
columns that failed.  A block beyond that capacity is left as read (its systematic rows as they came,
zeros where lost); the CRC32 of the whole stream, in the header, says whether the result is exact
(it also catches an RS mis-correction).

**Header** (:class:`ClassicHeader`, 33 bytes, magic ``DK``: codec, stream length and CRC32, data
oligos, blocks, parity per block, image size, tag, oligo and primer lengths, and its own CRC32 seeded
differently from the learned codec's) goes through :func:`dnaimg.layout.header_oligos`: 16 RS parity
bytes over GF(256), nibble words, index numbers ``HEADER_BASE + 16*copy + part``, 3 copies.  The
learned decoder rejects it (its RS window / CRC / magic differ) and :func:`decode_classic` rejects the
learned codec's header the same way.

API::

    enc = encode_classic(img, "jpeg", 50)               # or encode_at_rate(img, "webp", 0.5)
    enc.oligos, enc.names, enc.rates()
    dec = decode_classic(reads)                         # .success, .image, .report, .data
"""
from __future__ import annotations

import io
import math
import struct
import warnings
import zlib
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Iterable

import numpy as np
import reedsolo
from PIL import Image

from dnaimg.dna import alphabet as dna
from dnaimg.dna.constraints import oligo_ok
from dnaimg.dna.index import HEADER_BASE, N_SCRAMBLE, encode_index
from dnaimg.dna.layout import (DEFAULT_HEADER_COPIES, HEADER_PARITY, Layout, LayoutError, header_nibbles, header_oligos,
                     nibbles_to_bytes)


class ClassicError(ValueError):
    """Unusable input for the classic-codec path (bad image, codec, quality, layout...)."""


class ClassicDecodeError(ClassicError):
    """Reads from which nothing can be decoded (no reads, no primers, no classic header)."""


class RateError(ClassicError):
    """Even the lowest quality does not fit the requested size."""


# ---------------------------------------------------------------------------------------------
# 1. the image codecs (Pillow)

#: codec -> (id in the header, Pillow format, quality range).  What ``quality`` means:
#:  - jpeg:     Pillow/libjpeg quality 1..100 (int), optimize=True (optimised Huffman tables), 4:2:0;
#:  - webp:     libwebp quality 0..100 (int), method=6 (slowest, smallest), lossy, 4:2:0;
#:  - jpeg2000: target bits per pixel of the codestream (float > 0; OpenJPEG quality_mode="rates",
#:              one layer at compression ratio 24/bpp), 9/7 irreversible wavelet, the YCbCr-like
#:              multi-component transform (mct=1: without it RGB is coded plane by plane, 8 dB
#:              worse on kodim01 at 2.5 bpp), raw .j2k codestream
#:              (no JP2 boxes).  Rate mode targets size directly and beat quality_mode="dB" in
#:              PSNR at equal size on Kodak (kodim23 at 0.4 bpp: 34.8 vs 34.5 dB);
#:  - avif:     libavif quality 0..100 (int), Pillow's default speed (6) and 4:2:0.
#: Higher is better (more bytes) for all four.  Extra Pillow save options can be passed.
CODECS = {"jpeg": (1, "JPEG", (1, 100)), "webp": (2, "WEBP", (0, 100)),
          "jpeg2000": (3, "JPEG2000", (0.01, 24.0)), "avif": (4, "AVIF", (0, 100))}
_CODEC_BY_ID = {v[0]: k for k, v in CODECS.items()}
_DEFAULTS = {"jpeg": {"optimize": True}, "webp": {"method": 6, "lossless": False},
             "jpeg2000": {"quality_mode": "rates", "irreversible": True, "no_jp2": True, "mct": 1}, "avif": {}}


def _check_image(img) -> np.ndarray:
    a = np.asarray(img)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8 or min(a.shape[:2]) < 1:
        raise ClassicError(f"expected an HxWx3 uint8 image, got shape {a.shape} dtype {a.dtype}")
    if max(a.shape[:2]) > 65535:
        raise ClassicError("images up to 65535 px a side are supported")
    return np.ascontiguousarray(a)


def _check_codec(codec: str) -> str:
    c = str(codec).lower().replace("-", "").replace(" ", "")
    c = {"jpg": "jpeg", "j2k": "jpeg2000", "jp2": "jpeg2000"}.get(c, c)
    if c not in CODECS:
        raise ClassicError(f"unknown codec {codec!r}; choose from {', '.join(CODECS)}")
    return c


def compress(img: np.ndarray, codec: str, quality, **options) -> bytes:
    """HxWx3 uint8 image -> the codec's byte stream (see :data:`CODECS` for ``quality``)."""
    img = _check_image(img)
    codec = _check_codec(codec)
    lo, hi = CODECS[codec][2]
    if not lo <= quality <= hi:
        raise ClassicError(f"{codec} quality must be in {lo}..{hi}, got {quality}")
    opts = dict(_DEFAULTS[codec])
    if codec == "jpeg2000":
        opts["quality_layers"] = [24.0 / float(quality)]
    else:
        opts["quality"] = int(round(quality))
    opts.update(options)
    buf = io.BytesIO()
    Image.fromarray(img, "RGB").save(buf, CODECS[codec][1], **opts)
    return buf.getvalue()


def decompress(data: bytes) -> np.ndarray:
    """A codec's byte stream (format detected by Pillow) -> HxWx3 uint8.  ClassicError if unreadable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(bytes(data))) as im:
                im.load()
                return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except Exception as e:      # Pillow raises many types on a corrupt stream
        raise ClassicError(f"the stream does not decode ({e.__class__.__name__}: {e})") from None


def quality_for_bytes(img: np.ndarray, codec: str, max_bytes: int, **options) -> tuple[float, bytes]:
    """The highest quality whose stream has at most ``max_bytes`` bytes, and that stream (binary search;
    for jpeg2000 the bpp is aimed at the size and refined).  RateError if even the lowest is too big."""
    img = _check_image(img)
    codec = _check_codec(codec)
    lo, hi = CODECS[codec][2]
    if codec == "jpeg2000":
        best = None
        bpp = min(hi, max(lo, max_bytes * 8.0 / (img.shape[0] * img.shape[1])))
        for _ in range(12):          # OpenJPEG's rate mode lands within a few bytes; shrink if over
            data = compress(img, codec, bpp, **options)
            if len(data) <= max_bytes:
                best = (bpp, data)
                break
            if bpp <= lo:
                break
            bpp = max(lo, bpp * min(0.999, max_bytes / len(data)))
        if best is None:
            raise RateError(f"jpeg2000 at {lo} bpp needs more than {max_bytes} bytes")
        return best
    data = compress(img, codec, lo, **options)
    if len(data) > max_bytes:
        raise RateError(f"{codec} at quality {lo} needs {len(data)} bytes > {max_bytes}")
    best = (lo, data)
    a, b = lo + 1, hi              # invariant: best fits; search the highest fitting in a..b
    while a <= b:
        m = (a + b) // 2
        d = compress(img, codec, m, **options)
        if len(d) <= max_bytes:
            best, a = (m, d), m + 1
        else:
            b = m - 1
    return best


# ---------------------------------------------------------------------------------------------
# 2. the constrained byte coder: rows of B bytes <-> 124-nt payloads

MIN_CHECK_TRITS = 2
_CHUNK_TRITS = 20                   # 3^20 < 2^32: base-3^20 digits for the big-number conversion
_D = 3 ** _CHUNK_TRITS
_MAX_CHECK = 20


def trits_for_bytes(nbytes: int) -> int:
    """Least T with 3^T >= 2^(8*nbytes)."""
    t, p, top = 0, 1, 1 << (8 * nbytes)
    while p < top:
        p, t = p * 3, t + 1
    return t


def bytes_per_oligo(payload_nt: int) -> int:
    """Bytes per payload: the most whose trits leave MIN_CHECK_TRITS for the check (24 for 124 nt)."""
    b = 0
    while trits_for_bytes(b + 1) + MIN_CHECK_TRITS <= payload_nt:
        b += 1
    if b == 0:
        raise ClassicError(f"a {payload_nt}-nt payload cannot hold a byte")
    return b


def _limbs(rows: np.ndarray) -> np.ndarray:
    """(M, B) bytes -> (M, ceil(B/2)) big-endian 16-bit limbs (uint64)."""
    r = rows.astype(np.uint64)
    if r.shape[1] % 2:
        r = np.concatenate([np.zeros((r.shape[0], 1), np.uint64), r], axis=1)
    return (r[:, 0::2] << np.uint64(8)) | r[:, 1::2]


def bytes_to_trits(rows: np.ndarray) -> np.ndarray:
    """(M, B) uint8 rows, each a big-endian integer -> (M, T) base-3 digits, least significant first."""
    rows = np.asarray(rows, dtype=np.uint8)
    M, B = rows.shape
    T = trits_for_bytes(B)
    limbs = _limbs(rows)
    n_chunks = -(-T // _CHUNK_TRITS)
    out = np.empty((M, n_chunks * _CHUNK_TRITS), dtype=np.int64)
    D, S = np.uint64(_D), np.uint64(16)
    for c in range(n_chunks):                  # long division of the limb vector by 3^20, per row
        rem = np.zeros(M, dtype=np.uint64)
        for j in range(limbs.shape[1]):
            cur = (rem << S) | limbs[:, j]
            limbs[:, j] = cur // D
            rem = cur % D
        for t in range(_CHUNK_TRITS):
            out[:, c * _CHUNK_TRITS + t] = (rem % np.uint64(3)).astype(np.int64)
            rem //= np.uint64(3)
    return out[:, :T]


def trits_to_bytes(trits: np.ndarray, nbytes: int) -> tuple[np.ndarray, np.ndarray]:
    """(M, T) base-3 digits (least significant first) -> ((M, nbytes) uint8 rows, whether each number
    fits in nbytes bytes)."""
    trits = np.asarray(trits, dtype=np.int64)
    M, T = trits.shape
    n_chunks = -(-T // _CHUNK_TRITS)
    tp = np.zeros((M, n_chunks * _CHUNK_TRITS), dtype=np.int64)
    tp[:, :T] = trits
    weights = 3 ** np.arange(_CHUNK_TRITS, dtype=np.int64)
    digits = (tp.reshape(M, n_chunks, _CHUNK_TRITS) * weights).sum(axis=2).astype(np.uint64)
    L = (nbytes + 1) // 2
    limbs = np.zeros((M, L), dtype=np.uint64)
    over = np.zeros(M, dtype=bool)
    D, S, MASK = np.uint64(_D), np.uint64(16), np.uint64(0xFFFF)
    for c in range(n_chunks - 1, -1, -1):      # Horner: limbs = limbs * 3^20 + digit
        carry = digits[:, c]
        for j in range(L - 1, -1, -1):
            cur = limbs[:, j] * D + carry
            limbs[:, j] = cur & MASK
            carry = cur >> S
        over |= carry != 0
    out = np.empty((M, 2 * L), dtype=np.uint8)
    out[:, 0::2] = (limbs >> np.uint64(8)).astype(np.uint8)
    out[:, 1::2] = (limbs & np.uint64(0xFF)).astype(np.uint8)
    if nbytes % 2:
        over |= out[:, 0] != 0
        out = out[:, 1:]
    return out, ~over


_GOLD = np.uint64(0x9E3779B97F4A7C15)


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on a uint64 array (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def trit_mask(tag: int, numbers: np.ndarray, seeds: np.ndarray, n: int) -> np.ndarray:
    """(M, n) pseudo-random trits for oligos ``numbers`` with scrambling ``seeds`` (image ``tag``)."""
    numbers = np.asarray(numbers, dtype=np.uint64).reshape(-1)
    seeds = np.asarray(seeds, dtype=np.uint64).reshape(-1)
    with np.errstate(over="ignore"):
        base = _mix(np.full(numbers.shape, tag, dtype=np.uint64) * _GOLD + numbers * np.uint64(16) + seeds
                    + np.uint64(0xC1A551C))
        steps = np.arange(1, n + 1, dtype=np.uint64) * _GOLD
        return (_mix(base[:, None] + steps[None, :]) % np.uint64(3)).astype(np.int64)


def _check_values(rows: np.ndarray, numbers: np.ndarray, tag: int) -> np.ndarray:
    return np.array([zlib.crc32(rows[i].tobytes(), zlib.crc32(struct.pack("<BI", tag, int(numbers[i]))))
                     for i in range(rows.shape[0])], dtype=np.int64)


def _check_trits(rows: np.ndarray, numbers: np.ndarray, tag: int, c: int) -> np.ndarray:
    v = _check_values(rows, numbers, tag) % (3 ** min(c, _MAX_CHECK))
    out = np.zeros((rows.shape[0], c), dtype=np.int64)
    for t in range(min(c, _MAX_CHECK)):
        out[:, t] = v % 3
        v //= 3
    return out


def payload_encode(rows: np.ndarray, numbers: np.ndarray, seeds: np.ndarray, tag: int, prev: np.ndarray,
                   payload_nt: int) -> np.ndarray:
    """(M, B) byte rows -> (M, payload_nt) nucleotides; ``prev``: the nt before each payload."""
    rows = np.asarray(rows, dtype=np.uint8)
    data = bytes_to_trits(rows)
    c = payload_nt - data.shape[1]
    trits = np.concatenate([data, _check_trits(rows, numbers, tag, c)], axis=1)
    trits = (trits + trit_mask(tag, numbers, seeds, payload_nt)) % 3
    # rotating code: each nt is one of the three differing from the previous one
    return ((np.asarray(prev, dtype=np.int64)[:, None] + np.cumsum(trits + 1, axis=1)) % 4).astype(np.uint8)


def payload_decode(nts: np.ndarray, numbers: np.ndarray, seeds: np.ndarray, tag: int, prev: np.ndarray,
                   nbytes: int) -> tuple[np.ndarray, np.ndarray]:
    """(M, payload_nt) nucleotides -> ((M, nbytes) rows, whether each payload decoded and checked)."""
    nts = np.asarray(nts, dtype=np.int64)
    M, n = nts.shape
    full = np.concatenate([np.asarray(prev, dtype=np.int64)[:, None], nts], axis=1)
    d = (full[:, 1:] - full[:, :-1]) % 4
    ok = (nts <= 3).all(axis=1) & (d != 0).all(axis=1)      # a repeat cannot be written
    trits = (d - 1 - trit_mask(tag, numbers, seeds, n)) % 3
    T = trits_for_bytes(nbytes)
    rows, fits = trits_to_bytes(trits[:, :T], nbytes)
    ok &= fits
    ok &= (trits[:, T:] == _check_trits(rows, numbers, tag, n - T)).all(axis=1)
    return rows, ok


def coder_bits_per_nt(payload_nt: int) -> float:
    """Image bits per payload nt of the coder (1.548 for 124 nt: 24 bytes)."""
    return 8.0 * bytes_per_oligo(payload_nt) / payload_nt


# ---------------------------------------------------------------------------------------------
# 3. the outer code: RS over GF(256) across oligos, one codeword per byte column and block

MAX_N = 255


@dataclass(frozen=True)
class Blocks:
    n_data: int        # data oligos (rows of the padded stream)
    n_blocks: int
    parity: int        # parity oligos per block

    def sizes(self) -> list[int]:
        q, r = divmod(self.n_data, self.n_blocks)
        return [q + (i < r) for i in range(self.n_blocks)]

    @property
    def block_size(self) -> int:
        return -(-self.n_data // self.n_blocks)

    @property
    def n_parity(self) -> int:
        return self.n_blocks * self.parity

    @property
    def n_oligos(self) -> int:
        return self.n_data + self.n_parity

    def members(self, b: int) -> np.ndarray:
        """Oligo numbers of block b's codeword positions: its data rows, then its parity rows."""
        start = sum(self.sizes()[:b])
        k = self.sizes()[b]
        return np.concatenate([np.arange(start, start + k),
                               self.n_data + self.parity * b + np.arange(self.parity)]).astype(np.int64)


def _parity_count(k: int, frac: float) -> int:
    return 0 if frac == 0 else max(2, math.ceil(frac * k - 1e-9))


def plan_blocks(n_data: int, parity: float = 0.15) -> Blocks:
    """Blocks for ``n_data`` data oligos: as few as ``K + P(K) <= 255`` allows, balanced sizes."""
    if not 0 <= parity <= 10:
        raise ClassicError(f"parity must be a fraction in 0..10, got {parity}")
    kmax = MAX_N
    while kmax > 0 and kmax + _parity_count(kmax, parity) > MAX_N:
        kmax -= 1
    if kmax < 1:
        raise ClassicError(f"parity {parity} leaves no room for data in a 255-symbol codeword")
    nb = -(-n_data // kmax)
    k = -(-n_data // nb)
    return Blocks(n_data, nb, _parity_count(k, parity))


@lru_cache(maxsize=None)
def _rs(nsym: int) -> reedsolo.RSCodec:
    return reedsolo.RSCodec(nsym=nsym, nsize=MAX_N)


def rs_encode(rows: np.ndarray, blocks: Blocks) -> np.ndarray:
    """(n_data, B) data rows -> (n_parity, B) parity rows."""
    B = rows.shape[1]
    out = np.zeros((blocks.n_parity, B), dtype=np.uint8)
    if blocks.parity == 0:
        return out
    rs = _rs(blocks.parity)
    for b in range(blocks.n_blocks):
        data = rows[blocks.members(b)[:-blocks.parity]]
        for c in range(B):
            enc = rs.encode(data[:, c].tobytes())
            out[b * blocks.parity:(b + 1) * blocks.parity, c] = np.frombuffer(bytes(enc[-blocks.parity:]), np.uint8)
    return out


_RS_FAIL = (reedsolo.ReedSolomonError, ZeroDivisionError, IndexError, ValueError)


def rs_decode(rows: np.ndarray, erased: np.ndarray, blocks: Blocks) -> tuple[np.ndarray, dict]:
    """(n_oligos, B) received rows (anything where erased) -> (n_data, B) corrected data rows, report.

    Per block and byte column, erasures and errors with ``2*errors + erasures <= parity``; the oligos
    found in error by some column are then offered as erasures to the columns that failed."""
    B = rows.shape[1]
    out = rows[:blocks.n_data].copy()
    out[erased[:blocks.n_data]] = 0
    rep = {"blocks": blocks.n_blocks, "failed_blocks": [], "failed_columns": 0,
           "errors_corrected": 0, "erasures_filled": 0}
    if blocks.parity == 0:
        if erased[:blocks.n_data].any():
            rep["failed_blocks"] = sorted({b for b in range(blocks.n_blocks) if erased[blocks.members(b)].any()})
        return out, rep
    rs = _rs(blocks.parity)
    for b in range(blocks.n_blocks):
        mem = blocks.members(b)
        k = len(mem) - blocks.parity
        cw = rows[mem].copy()
        er = np.flatnonzero(erased[mem]).tolist()
        cw[er] = 0
        decoded, failed, err_pos = {}, [], set()
        if len(er) <= blocks.parity:
            for c in range(B):
                try:
                    msg, _, errata = rs.decode(cw[:, c].tobytes(), erase_pos=er or None)
                except _RS_FAIL:
                    failed.append(c)
                    continue
                decoded[c] = msg
                err_pos.update(int(p) for p in errata if int(p) not in er)
            extra = sorted(err_pos)
            if failed and extra and len(er) + len(extra) <= blocks.parity:
                for c in list(failed):
                    try:
                        msg, _, _ = rs.decode(cw[:, c].tobytes(), erase_pos=sorted(set(er) | set(extra)))
                    except _RS_FAIL:
                        continue
                    decoded[c] = msg
                    failed.remove(c)
        else:
            failed = list(range(B))
        for c, msg in decoded.items():
            out[mem[:k], c] = np.frombuffer(bytes(msg), np.uint8)
        if failed:
            rep["failed_blocks"].append(b)
            rep["failed_columns"] += len(failed)
        else:
            rep["erasures_filled"] += len(er)
            rep["errors_corrected"] += len(err_pos)
    return out, rep


# ---------------------------------------------------------------------------------------------
# 4. the header

CLASSIC_MAGIC = b"DK"
CLASSIC_VERSION = 1
_CRC_SEED = 0xC1A55100          # header CRC32 starts here (the learned codec's starts at 0)


@dataclass
class ClassicHeader:
    codec: int              # CODECS id
    n_bytes: int            # length of the codec's stream
    stream_crc: int         # CRC32 of the stream
    n_data: int             # data oligos
    n_blocks: int           # RS blocks
    parity: int             # parity oligos per block
    height: int
    width: int
    oligo_length: int
    primer_f_nt: int
    primer_r_nt: int
    tag: int                # image tag (also in every index)
    version: int = CLASSIC_VERSION

    _FMT = "<2sBBIIIHHHHHBBB"

    def pack(self) -> bytes:
        body = struct.pack(self._FMT, CLASSIC_MAGIC, self.version, self.codec, self.n_bytes, self.stream_crc,
                           self.n_data, self.n_blocks, self.parity, self.height, self.width, self.oligo_length,
                           self.primer_f_nt, self.primer_r_nt, self.tag)
        return body + struct.pack("<I", zlib.crc32(body, _CRC_SEED))

    @classmethod
    def size(cls) -> int:
        return struct.calcsize(cls._FMT) + 4

    @classmethod
    def unpack(cls, data: bytes) -> "ClassicHeader":
        n = cls.size()
        if len(data) < n:
            raise ValueError("header too short")
        body, crc = data[:n - 4], struct.unpack("<I", data[n - 4:n])[0]
        if zlib.crc32(body, _CRC_SEED) != crc:
            raise ValueError("header checksum mismatch")
        f = struct.unpack(cls._FMT, body)
        if f[0] != CLASSIC_MAGIC or f[1] != CLASSIC_VERSION:
            raise ValueError("not a classic-codec header of this version")
        h = cls(codec=f[2], n_bytes=f[3], stream_crc=f[4], n_data=f[5], n_blocks=f[6], parity=f[7], height=f[8],
                width=f[9], oligo_length=f[10], primer_f_nt=f[11], primer_r_nt=f[12], tag=f[13], version=f[1])
        if h.codec not in _CODEC_BY_ID or h.n_blocks < 1 or h.n_data < h.n_blocks:
            raise ValueError("inconsistent classic header")
        return h

    @property
    def codec_name(self) -> str:
        return _CODEC_BY_ID[self.codec]

    @property
    def blocks(self) -> Blocks:
        return Blocks(self.n_data, self.n_blocks, self.parity)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["codec_name"] = self.codec_name
        return d


_HEADER_RS = reedsolo.RSCodec(nsym=HEADER_PARITY)
_HEADER_NIBBLES = 2 * (ClassicHeader.size() + HEADER_PARITY)


def _header_from_nibbles(nib: np.ndarray, valid: np.ndarray) -> ClassicHeader | None:
    data = nibbles_to_bytes(nib[:_HEADER_NIBBLES])
    v = np.asarray(valid[:_HEADER_NIBBLES], dtype=bool)
    erased = [i for i in range(_HEADER_NIBBLES // 2) if not (v[2 * i] and v[2 * i + 1])]
    for erase_pos in ([erased] if 0 < len(erased) <= HEADER_PARITY else []) + [None]:
        try:
            body = bytes(_HEADER_RS.decode(bytearray(data), erase_pos=erase_pos)[0])
            return ClassicHeader.unpack(body)
        except (reedsolo.ReedSolomonError, ValueError, ZeroDivisionError, IndexError):
            continue
    return None


def n_header_oligos(layout: Layout, copies: int = DEFAULT_HEADER_COPIES) -> int:
    return -(-_HEADER_NIBBLES // (layout.payload_nt // 3)) * copies


def _read_header(sorter, tag: int) -> ClassicHeader | None:
    """The classic header of image ``tag`` from its header oligos: each copy on its own, then a
    nibble vote over the copies (a part from any copy); only a header whose CRC checks is returned."""
    from dnaimg.dna.consensus import consensus_packed
    groups = {k - HEADER_BASE: sorter.best_group(tag, k) for k in sorter.numbers(tag, HEADER_BASE)}
    groups = {k: g for k, g in groups.items() if g is not None}
    if not groups:
        return None
    med = int(np.median(np.concatenate([np.diff(g.packed()[1]) for _, g in groups.values()])))
    for L in sorted(range(max(3, med - 3), med + 4), key=lambda x: (abs(x - med), x)):
        per_part = L // 3
        parts = -(-_HEADER_NIBBLES // per_part)
        copies: dict[int, dict[int, tuple]] = {}
        for off, (s, g) in sorted(groups.items()):
            c, p = divmod(off, 16)
            if p < parts:
                est = consensus_packed(*g.packed(), L)
                copies.setdefault(c, {})[p] = header_nibbles(est, HEADER_BASE + off, s, tag, per_part)
        cands = [tuple(np.concatenate([cp[p][i] for p in range(parts)]) for i in (0, 1))
                 for cp in copies.values() if all(p in cp for p in range(parts))]
        vote_nib, vote_ok = [], []
        for p in range(parts):
            arrs = [cp[p] for cp in copies.values() if p in cp]
            if not arrs:
                break
            votes = np.zeros((per_part, 16), dtype=np.int64)
            for nib, ok in arrs:
                np.add.at(votes, (np.arange(per_part), nib), np.where(ok, 2, 1))
            vote_nib.append(votes.argmax(1))
            vote_ok.append(np.any([ok for _, ok in arrs], axis=0))
        if len(vote_nib) == parts:
            cands.append((np.concatenate(vote_nib), np.concatenate(vote_ok)))
        for nib, ok in cands:
            h = _header_from_nibbles(nib, ok)
            if h is not None and h.tag == tag and h.oligo_length - h.primer_f_nt - h.primer_r_nt - 36 == L:
                return h
    return None


# ---------------------------------------------------------------------------------------------
# 5. encoding

@dataclass
class ClassicEncodeResult:
    oligos: list[np.ndarray]        # uint8 arrays, A=0 C=1 G=2 T=3: header oligos, data, parity
    names: list[str]
    header: ClassicHeader
    data: bytes                     # the codec's stream
    codec: str
    quality: float
    layout: Layout
    n_header: int

    @property
    def pixels(self) -> int:
        return self.header.height * self.header.width

    def rates(self) -> dict:
        """payload_nt: the payload nt of the data oligos (n_data * 124: the stream's bytes in the
        rotating code, with the check trits and the zero padding of the last row); total_nt: every
        nt of every oligo (primers, indexes, header oligos and parity oligos included)."""
        h, lay = self.header, self.layout
        payload = h.n_data * lay.payload_nt
        total = int(sum(len(o) for o in self.oligos))
        return {"codec": self.codec, "quality": self.quality, "pixels": self.pixels, "stream_bytes": h.n_bytes,
                "stream_bits_per_pixel": 8.0 * h.n_bytes / self.pixels,
                "oligos": len(self.oligos), "data_oligos": h.n_data, "parity_oligos": h.blocks.n_parity,
                "header_oligos": self.n_header, "rs_blocks": h.n_blocks, "rs_block_size": h.blocks.block_size,
                "rs_parity_per_block": h.parity,
                "payload_nt": payload, "total_nt": total,
                "payload_nt_per_pixel": payload / self.pixels, "total_nt_per_pixel": total / self.pixels,
                "payload_bits_per_nt": coder_bits_per_nt(lay.payload_nt),
                "stream_bits_per_total_nt": 8.0 * h.n_bytes / total}

    def fasta_records(self):
        for name, o in zip(self.names, self.oligos):
            yield name, dna.decode(o)


def oligos_needed(n_bytes: int, layout: Layout | None = None, parity: float = 0.15,
                  header_copies: int = DEFAULT_HEADER_COPIES) -> int:
    """Total oligos (header + data + parity) for a stream of ``n_bytes``."""
    layout = layout or Layout()
    d = max(1, -(-n_bytes // bytes_per_oligo(layout.payload_nt)))
    return n_header_oligos(layout, header_copies) + plan_blocks(d, parity).n_oligos


def _data_oligos(layout: Layout, rows: np.ndarray, tag: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Rows (one per oligo number 0..M-1) -> oligos, guided scrambling; returns (oligos, seeds)."""
    M = rows.shape[0]
    pf, prc = layout.pf, layout.pr_rc
    out: list[np.ndarray | None] = [None] * M
    seeds = np.zeros(M, dtype=np.int64)
    pending = np.arange(M)
    for s in range(N_SCRAMBLE):
        if pending.size == 0:
            break
        idx = [encode_index(int(k), s, tag) for k in pending]
        prev = np.array([i[-1] for i in idx], dtype=np.int64)
        pay = payload_encode(rows[pending], pending, np.full(pending.size, s), tag, prev, layout.payload_nt)
        keep = []
        for j, k in enumerate(pending.tolist()):
            o = np.concatenate([pf, idx[j], pay[j], prc]).astype(np.uint8)
            if oligo_ok(o):
                out[k], seeds[k] = o, s
            else:
                keep.append(k)
        pending = np.array(keep, dtype=np.int64)
    if pending.size:
        raise LayoutError(f"{pending.size} oligos: no scrambling seed satisfies the constraints (check the primers)")
    return out, seeds


def encode_stream(data: bytes, codec: str, height: int, width: int, layout: Layout | None = None,
                  parity: float = 0.15, header_copies: int = DEFAULT_HEADER_COPIES,
                  quality: float = float("nan")) -> ClassicEncodeResult:
    """A codec's byte stream (of an image of ``height`` x ``width``) -> oligos."""
    layout = layout or Layout()
    codec = _check_codec(codec)
    data = bytes(data)
    if not data:
        raise ClassicError("empty stream")
    B = bytes_per_oligo(layout.payload_nt)
    blocks = plan_blocks(-(-len(data) // B), parity)
    if blocks.n_oligos > HEADER_BASE:
        raise LayoutError(f"the stream needs {blocks.n_oligos} oligos; at most {HEADER_BASE} are addressable")
    if blocks.n_data > 0xFFFFFFFF or blocks.n_blocks > 0xFFFF:
        raise ClassicError("stream too long")
    crc = zlib.crc32(data)
    tag = (crc >> 8) & 0xFF
    padded = np.zeros(blocks.n_data * B, dtype=np.uint8)
    padded[:len(data)] = np.frombuffer(data, np.uint8)
    rows = padded.reshape(blocks.n_data, B)
    rows = np.concatenate([rows, rs_encode(rows, blocks)])
    header = ClassicHeader(codec=CODECS[codec][0], n_bytes=len(data), stream_crc=crc, n_data=blocks.n_data,
                           n_blocks=blocks.n_blocks, parity=blocks.parity, height=height, width=width,
                           oligo_length=layout.oligo_length, primer_f_nt=len(layout.primer_f),
                           primer_r_nt=len(layout.primer_r), tag=tag)
    heads = header_oligos(layout, header, header_copies)   # duck-typed: uses .pack() and .tag
    body, _ = _data_oligos(layout, rows, tag)
    n_parts = len(heads) // header_copies
    pre = f"classic_{codec}_t{tag:02x}"
    names = [f"{pre}_header_c{i // n_parts}_p{i % n_parts}" for i in range(len(heads))]
    names += [f"{pre}_data{k:06d}" for k in range(blocks.n_data)]
    names += [f"{pre}_parity_b{b}_{j}" for b in range(blocks.n_blocks) for j in range(blocks.parity)]
    return ClassicEncodeResult(heads + body, names, header, data, codec, quality, layout, len(heads))


def encode_classic(img: np.ndarray, codec: str, quality, layout: Layout | None = None, parity: float = 0.15,
                   header_copies: int = DEFAULT_HEADER_COPIES, **options) -> ClassicEncodeResult:
    """Image -> Pillow stream (``codec`` at ``quality``, see :data:`CODECS`) -> oligos."""
    img = _check_image(img)
    data = compress(img, codec, quality, **options)
    return encode_stream(data, codec, img.shape[0], img.shape[1], layout, parity, header_copies, quality)


def encode_at_rate(img: np.ndarray, codec: str, total_nt_per_pixel: float, layout: Layout | None = None,
                   parity: float = 0.15, header_copies: int = DEFAULT_HEADER_COPIES,
                   **options) -> ClassicEncodeResult:
    """The highest-quality encoding whose *total* nt per pixel (all oligos) is at most the target.
    RateError if even the codec's lowest quality needs more."""
    img = _check_image(img)
    layout = layout or Layout()
    max_oligos = int(total_nt_per_pixel * img.shape[0] * img.shape[1] // layout.oligo_length)
    B = bytes_per_oligo(layout.payload_nt)
    spare = max_oligos - n_header_oligos(layout, header_copies)
    d = spare
    while d >= 1 and plan_blocks(d, parity).n_oligos > spare:
        d -= 1
    if d < 1:
        raise RateError(f"{total_nt_per_pixel} nt/px ({max_oligos} oligos) does not even hold the header")
    quality, data = quality_for_bytes(img, codec, d * B, **options)
    return encode_stream(data, codec, img.shape[0], img.shape[1], layout, parity, header_copies, quality)


# ---------------------------------------------------------------------------------------------
# 6. decoding

@dataclass
class ClassicDecodeResult:
    success: bool                   # every RS block decoded, CRC32 of the stream matches, Pillow decoded
    image: np.ndarray | None        # also given when Pillow decodes a damaged stream (success False)
    header: ClassicHeader | None
    data: bytes | None              # the stream as decoded (possibly damaged)
    report: dict = field(default_factory=dict)


def decode_classic(reads: Iterable, primer_f: str | None = None, primer_r: str | None = None,
                   tag: int | None = None) -> ClassicDecodeResult:
    """Reads (str or uint8 arrays, any order, either strand, with errors) -> stream -> image.

    Raises only :class:`ClassicDecodeError` (a ValueError) for unusable input: no reads, no read with
    the primers and an index, no classic header.  Anything past the correction capacity gives a
    result with ``success=False``."""
    from dnaimg.codecs.robust import DecodeError, rescue_header_oligos, sort_reads
    from dnaimg.dna.consensus import consensus_packed
    try:
        lay = Layout(primer_f=primer_f or Layout.primer_f, primer_r=primer_r or Layout.primer_r)
        sorter = sort_reads(reads, lay)
    except (DecodeError, LayoutError) as e:
        raise ClassicDecodeError(str(e)) from None
    except TypeError:
        raise ClassicDecodeError("reads must be str, bytes or uint8 arrays") from None
    reads_per_tag = sorter.reads_per_tag()
    order = sorted(reads_per_tag, key=lambda t: -reads_per_tag[t]) if tag is None else [tag]
    h = None
    for t in order:
        if tag is None and reads_per_tag[t] < max(3, 0.01 * max(reads_per_tag.values())):
            break
        h = _read_header(sorter, t)
        if h is None and rescue_header_oligos(sorter, t):     # second chance for header oligos with a bad index
            h = _read_header(sorter, t)
        if h is not None:
            tag = t
            break
    if h is None:
        raise ClassicDecodeError("no classic-codec header could be decoded from the reads")
    if (h.primer_f_nt, h.primer_r_nt) != (len(lay.primer_f), len(lay.primer_r)):
        raise ClassicDecodeError("the header's primer lengths differ from the primers given")
    try:
        layout = Layout(oligo_length=h.oligo_length, primer_f=lay.primer_f, primer_r=lay.primer_r)
        B = bytes_per_oligo(layout.payload_nt)
    except ValueError as e:
        raise ClassicDecodeError(f"unusable header: {e}") from None
    blocks = h.blocks
    N, P_nt = blocks.n_oligos, layout.payload_nt
    if not (blocks.n_data - 1) * B < h.n_bytes <= blocks.n_data * B or N > HEADER_BASE:
        raise ClassicDecodeError("inconsistent header: stream length does not match the oligo count")

    # reads -> one payload estimate per oligo (consensus), second chance for missing oligos
    wanted = np.array([sorter.best_group(tag, k) is None for k in range(N)], dtype=np.bool_)
    if wanted.any():
        sorter.rescue_missing(tag, wanted)
    est = np.zeros((N, P_nt), dtype=np.uint8)
    seeds = np.zeros(N, dtype=np.int64)
    have = np.zeros(N, dtype=bool)
    groups = {}
    for k in range(N):
        g = sorter.best_group(tag, k)
        if g is None:
            continue
        seeds[k], groups[k] = g[0], g[1]
        est[k] = consensus_packed(*g[1].packed(), P_nt)
        have[k] = True
    numbers = np.arange(N)
    prev = np.array([encode_index(k, int(s), tag)[-1] for k, s in zip(numbers, seeds)], dtype=np.int64)
    rows, ok = payload_decode(est, numbers, seeds, tag, prev, B)
    ok &= have
    # a consensus that does not check: try the reads of the right length one by one
    single = 0
    for k in np.flatnonzero(have & ~ok).tolist():
        cand = [r for r in groups[k].reads() if len(r) == P_nt]
        if not cand:
            continue
        m = len(cand)
        r2, ok2 = payload_decode(np.stack(cand), np.full(m, k), np.full(m, seeds[k]), tag, np.full(m, prev[k]), B)
        if ok2.any():
            j = int(np.argmax(ok2))
            rows[k], ok[k] = r2[j], True
            single += 1
    erased = ~ok
    data_rows, rs_rep = rs_decode(rows, erased, blocks)
    data = data_rows.reshape(-1)[:h.n_bytes].tobytes()
    crc_ok = zlib.crc32(data) == h.stream_crc
    image, pil_ok = None, False
    try:
        img = decompress(data)
        if img.shape[:2] == (h.height, h.width):
            image, pil_ok = img, True
    except ClassicError:
        pass
    success = bool(crc_ok and pil_ok and not rs_rep["failed_blocks"])
    tags, numbers, _, counts = sorter.slot_fields()
    unknown = int(counts[(tags == tag) & (numbers >= N) & (numbers < HEADER_BASE)].sum())
    report = {
        "reads": sorter.stats.to_dict() | {"unknown_oligo": unknown},
        "oligos": {"expected": N, "data": blocks.n_data, "parity": blocks.n_parity,
                   "missing": int((~have).sum()), "payload_failed": int((have & ~ok).sum()),
                   "recovered_from_single_read": single},
        "erasures": int(erased.sum()),
        "rs": rs_rep,
        "crc_ok": bool(crc_ok),
        "pillow_decoded": bool(pil_ok),
        "success": success,
        "codec": h.codec_name,
        "image": {"height": h.height, "width": h.width, "tag": f"{tag:02x}"},
        "header": h.to_dict(),
    }
    return ClassicDecodeResult(success, image, h, data, report)
