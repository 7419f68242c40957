"""The robust codec (Pic & Antonini, "Image storage on synthetic DNA using autoencoders").

A compressive autoencoder (:mod:`dnaimg.zoo.model`) maps the image to a quantised latent; each
latent value is one fixed-length constrained codeword (a ``words`` stream), so a substitution
costs one value and a lost oligo costs scattered values, filled from their neighbours.

Codec metadata (format version 2, 13 bytes, little-endian): model id (4: CRC32 of the model
name) | latent channels (2) | levels (2) | codeword nt (1) | image height (2) | width (2), and for a
gray image a 14th byte of flags (bit 0: the original was gray; it was coded as RGB with R = G = B and
is decoded to one channel, the rounded mean of the three).  RGB images keep the 13 bytes.

    from dnaimg.codecs.robust import encode_image, decode_reads
    enc = encode_image("photo.png")                 # EncodeResult: oligos, header, rates
    dec = decode_reads(reads)                       # reads: iterable of str or uint8 arrays
    dec.image                                       # HxWx3 (gray: HxW) uint8; dec.report: what happened
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from dnaimg.codecs.base import DecodeError, Encoded, Received, Stream  # noqa: F401
from dnaimg.dna import container
from dnaimg.dna.container import DEFAULT_INNER, Layout, Written
from dnaimg.dna.header import DEFAULT_HEADER_COPIES, KIND_WORDS, Header, HeaderV1, StreamInfo
from dnaimg.image import gray_of_rgb, load_image
from dnaimg.zoo.model import resolve_precision
from dnaimg.zoo.registry import OperatingPoint, load_model, model_id, name_for_id, select_point

CODEC = "robust"
CODEC_ID = 0
_META = "<IHHBHH"
FLAG_GRAY = 0x01            # the optional 14th metadata byte: the original was gray



def to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(img, dtype=np.uint8, order="C", copy=True)).permute(2, 0, 1)[None].float().div(255.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """Image batch in [0, 1] -> the first image as HxWx3 uint8 (rounded), in torch (threads)."""
    y = x[0].float().clamp(0, 1).mul(255.0).add_(0.5).to(torch.uint8)
    return y.permute(1, 2, 0).contiguous().numpy()


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


def symbols_crc(symbols: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(symbols, dtype=np.uint16).tobytes())


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


@dataclass(frozen=True)
class RobustParams:
    """The robust codec's metadata: what the synthesis side needs besides the values."""
    model_id: int
    channels: int
    levels: int
    codeword_nt: int
    height: int
    width: int
    gray: bool = False          # coded as RGB (R = G = B), decoded to one channel

    def pack(self) -> bytes:
        b = struct.pack(_META, self.model_id, self.channels, self.levels, self.codeword_nt, self.height, self.width)
        return b + bytes([FLAG_GRAY]) if self.gray else b

    @classmethod
    def unpack(cls, meta: bytes) -> "RobustParams":
        n = struct.calcsize(_META)
        if len(meta) not in (n, n + 1):
            raise DecodeError(f"robust codec metadata of {len(meta)} bytes (expected {n}, or {n + 1} with flags)")
        flags = meta[n] if len(meta) > n else 0
        if flags & ~FLAG_GRAY:
            raise DecodeError(f"robust codec metadata with unknown flags {flags:02x}")
        return cls(*struct.unpack(_META, bytes(meta[:n])), gray=bool(flags & FLAG_GRAY))

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return (self.channels, -(-self.height // 8), -(-self.width // 8))


def _encoded(symbols: np.ndarray, point: OperatingPoint, height: int, width: int, gray: bool = False,
             markers: bool = False) -> Encoded:
    params = RobustParams(model_id(point.model), point.channels, point.levels, point.codeword_nt, height, width, gray)
    return Encoded(CODEC, [Stream("words", np.asarray(symbols, dtype=np.int64).reshape(-1), point.codeword_nt,
                                  point.levels, markers=markers)], params.pack(), {"model": point.label})


def total_nt_per_pixel(point: OperatingPoint, height: int, width: int, layout: Layout,
                       redundancy: float | None = None, copies: int = DEFAULT_HEADER_COPIES,
                       inner: int = DEFAULT_INNER, gray: bool = False, markers: bool = False) -> float:
    """Everything synthesised per pixel at this point (no need to run the network)."""
    n = point.channels * -(-height // 8) * -(-width // 8)
    enc = _encoded(np.zeros(n, dtype=np.int64), point, height, width, gray, markers)
    return container.total_oligos(layout, enc, redundancy, inner, copies) * layout.oligo_length / (height * width)


@dataclass
class EncodeResult:
    written: Written
    params: RobustParams
    model: str
    symbols: np.ndarray                 # (C, H', W') quantised latent
    point: OperatingPoint | None = None

    @property
    def oligos(self) -> list[np.ndarray]:
        return list(self.written.oligos)

    @property
    def names(self) -> list[str]:
        return self.written.names

    @property
    def header(self) -> Header:
        return self.written.header

    @property
    def n_header(self) -> int:
        return self.written.n_header

    @property
    def layout(self) -> Layout:
        return self.written.layout

    @property
    def pixels(self) -> int:
        return self.params.height * self.params.width

    @property
    def symbols_crc(self) -> int:
        return symbols_crc(self.symbols)

    def rates(self) -> dict:
        r = self.written.rates(self.pixels)
        r["payload_nt"] = int(self.symbols.size * self.params.codeword_nt)      # codewords carrying values
        r["payload_nt_per_pixel"] = r["payload_nt"] / self.pixels
        return r

    def fasta_records(self):
        return self.written.fasta_records()


def encode_image(image: str | Path | np.ndarray, model: str | None = None, layout: Layout | None = None,
                 header_copies: int = DEFAULT_HEADER_COPIES,
                 progress: Callable[[int], None] | None = None, rate: float | None = None,
                 noise_trained: bool = False, redundancy: float | None = None,
                 inner: int = DEFAULT_INNER, markers: bool = False) -> EncodeResult:
    """Image -> oligos.  ``model`` names a shipped model (``NAME:POINT`` one of its operating
    points); ``rate`` picks the best operating point at or under that many *total* nt/pixel
    (everything synthesised), see :func:`dnaimg.zoo.registry.select_point`.  ``redundancy``:
    the outer code's parity oligos per data oligo (default 0: none).  A gray array (HxW uint8) is
    coded as RGB with R = G = B and flagged in the metadata, so that it decodes to one channel (a file
    path is read as RGB: :func:`dnaimg.api.encode` reads files keeping gray).  ``markers``: a marker
    code in every data oligo (format version 4, :mod:`dnaimg.dna.words`): ~25 % more oligos, for
    nanopore runs at low coverage."""
    layout = layout or Layout()
    img = load_image(image) if not isinstance(image, np.ndarray) else image
    gray = img.ndim == 2
    if gray:
        img = np.repeat(np.asarray(img, dtype=np.uint8)[:, :, None], 3, axis=2)
    H, W = img.shape[:2]
    point = select_point(model, rate, noise_trained,
                         cost=lambda p: total_nt_per_pixel(p, H, W, layout, redundancy, header_copies, inner, gray,
                                                           markers))
    net, _ = load_model(point.model)
    with torch.no_grad():
        symbols = net.compress(to_tensor(img), point.levels, point.channels)[0].numpy().astype(np.int64)
    enc = _encoded(symbols, point, H, W, gray, markers)
    written = container.write(enc, CODEC_ID, layout, redundancy, inner, header_copies, progress=progress)
    return EncodeResult(written, RobustParams.unpack(enc.meta), point.model, symbols, point)


def decode_streams(received: list[Received], meta: bytes, precision: str = "auto"):
    """The container's streams -> (image, symbols, model name, params, report)."""
    params = RobustParams.unpack(meta)
    if len(received) != 1 or received[0].kind != "words":
        raise DecodeError("the robust codec expects one words stream")
    model = name_for_id(params.model_id)
    net, _ = load_model(model)
    if not 1 <= params.channels <= net.cfg.channels or params.levels < 3 or params.levels % 2 == 0:
        raise DecodeError(f"model {model} does not match the header ({params.channels} channels, {params.levels} levels)")
    shape = params.latent_shape
    r = received[0]
    if r.data.size != int(np.prod(shape)):
        raise DecodeError("header is inconsistent: the stream length does not match the latent size")
    centre = (params.levels - 1) // 2
    erased = r.erased.reshape(shape)
    symbols = np.where(erased, centre, r.data.reshape(shape))
    if erased.any():
        symbols = fill_erasures(symbols, erased, centre)
    image = reconstruct(symbols, model, (params.height, params.width), params.levels, precision)
    if params.gray:
        image = gray_of_rgb(image)
    return image, symbols, model, params


# ---------------------------------------------------------------------------------------------
# format version 1 (dnaimg 0.1)

def header_from_v1(h: HeaderV1) -> Header:
    """A version-1 header as the version-2 header it amounts to (one words stream from oligo 0,
    no outer code, the interleaver key and latent CRC32 it carries, this codec's metadata), so
    that version-1 DNA is read by the same code as version 2."""
    total = h.channels * -(-h.height // 8) * -(-h.width // 8)
    stream = StreamInfo(KIND_WORDS, first=0, n_data=h.n_data, length=total, codeword_nt=h.codeword_nt,
                        levels=h.levels, key=h.seed, crc=h.symbols_crc)
    meta = RobustParams(h.model_id, h.channels, h.levels, h.codeword_nt, h.height, h.width).pack()
    return Header(CODEC_ID, h.tag, h.oligo_length, h.primer_f_nt, h.primer_r_nt, [stream], meta, version=1)


@dataclass
class DecodeResult:
    image: np.ndarray | None
    header: Header | HeaderV1
    model: str
    symbols: np.ndarray
    report: dict = field(default_factory=dict)


def decode_reads(reads: Iterable, primer_f: str | None = None, primer_r: str | None = None,
                 progress: Callable[[int], None] | None = None, tag: int | None = None,
                 read_progress: Callable[[int], None] | None = None, precision: str = "auto",
                 redundancy=None) -> DecodeResult:
    """Reads (str or uint8 arrays, any order, either strand; or a :class:`ReadBatches` file) of a
    robust-codec image -> image and report (see :func:`dnaimg.api.decode`)."""
    from dnaimg import api
    res = api.decode(reads, primer_f=primer_f, primer_r=primer_r, progress=progress, tag=tag,
                     read_progress=read_progress, precision=precision)
    if res.codec != CODEC:
        raise DecodeError(f"the reads hold a {res.codec} image, not the robust codec's")
    return DecodeResult(res.image, res.header, res.report["image"]["model"], res.symbols, res.report)
