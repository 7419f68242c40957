"""The compact codec: a learned mean-scale hyperprior whose latent is entropy-coded into the
container's byte streams (:mod:`dnaimg.zoo.compact`, exact tables from :mod:`dnaimg.zoo.exact`).

Two byte streams:

0. the hyper-latent z, one arithmetic-coded stream (each channel its own stored table), with a
   stronger outer code than the rest (``Z_REDUNDANCY_MIN``, or three times the image's);
1. the latent y, in *packets* of ``packet_rows`` data oligos each (:mod:`dnaimg.codecs.arith`):
   latent positions in a keyed pseudo-random order, all channels of a position in turn, each
   packet decodable on its own.  A packet lost beyond what the outer code rebuilds costs the
   scattered positions it held, which decode as the hyperprior's predicted mean (the network was
   trained with such losses); the rest of the image is untouched.

Models with a context for their coder (:mod:`dnaimg.zoo.context`) adapt it to each image: a
shift of the table index per (subband class, context bucket), fitted by the encoder and written at
the head of stream 0 (metadata versions 2 and 4; :func:`pack_shifts`).

Codec metadata (11 bytes, big-endian): version (3, or 4: stream 0 begins with the table shifts) |
model id (4: first 4 bytes of the SHA-256 of the model's weights file) |
height - 1 (2) | width - 1 (2) | rate row (1: rate index x 8) | packet rows (1), and for a gray image
coded by an RGB model a last byte of flags (bit 0: the original was gray, coded as R = G = B; it
decodes to one channel, the rounded mean of the three).  Versions 1 and 2 (earlier releases) are
the same fields in 16 bytes: height (4) and width (4) as they are, rate row (2).  The 5 bytes
saved put a compact image's header (with its two streams) in 5 header oligos per copy instead of 6.
"""
from __future__ import annotations

import dataclasses
import functools
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numba as nb
import numpy as np
import torch

from dnaimg.codecs import arith
from dnaimg.codecs.base import CodecError, DecodeError, Encoded, RateError, Received, Stream
from dnaimg.dna.prng import interleaver

CODEC = "compact"
DEFAULT_MODEL = "compact-ms-v3"
DEFAULT_GRAY_MODEL = "compact-gray-v8"     # one channel (wavelet): compact-gray-v7 with a deeper post-filter: gray images' default
DEFAULT_RATE_INDEX = 3.0        # the rate without --rate / --quality (a card's "default_rate_index" overrides it)
META = ">BIIIHB"                # metadata versions 1 and 2 (16 bytes)
META_PACKED = ">BIHHBB"         # versions 3 and 4 (11 bytes: sides - 1 in 2 bytes each, the rate row in 1)
META_VERSION = 1
META_VERSION_ADAPTED = 2        # stream 0 begins with the context's per-image table shifts
META_VERSION_PACKED = 3         # version 1 in 11 bytes: what dnaimg writes
META_VERSION_PACKED_ADAPTED = 4     # version 2 in 11 bytes
META_VERSION_GAIN = 5           # version 3, stream 0 beginning with the post-filter's gain (one byte)
META_VERSION_ADAPTED_GAIN = 6   # version 4, stream 0 beginning with the gain, then the table shifts
META_VERSION_STRIPS = 7         # version 5 with the latent's positions in strips (:func:`strip_order`)
META_VERSION_ADAPTED_STRIPS = 8     # version 6 likewise
META_VERSION_LAST = META_VERSION_ADAPTED_STRIPS
ADAPTED_VERSIONS = (META_VERSION_ADAPTED, META_VERSION_PACKED_ADAPTED, META_VERSION_ADAPTED_GAIN,
                    META_VERSION_ADAPTED_STRIPS)
PACKED_VERSIONS = (META_VERSION_PACKED, META_VERSION_PACKED_ADAPTED, META_VERSION_GAIN, META_VERSION_ADAPTED_GAIN,
                   META_VERSION_STRIPS, META_VERSION_ADAPTED_STRIPS)
GAIN_VERSIONS = (META_VERSION_GAIN, META_VERSION_ADAPTED_GAIN, META_VERSION_STRIPS, META_VERSION_ADAPTED_STRIPS)
STRIP_VERSIONS = (META_VERSION_STRIPS, META_VERSION_ADAPTED_STRIPS)
STRIP = 4                       # positions across a strip (versions 7 and 8): the coding order runs down
                                # strips of 4 latent positions (64 px), a row of 4 at a time, so that a
                                # packet holds a position's left and upper neighbours (cross context)
GAIN_ONE = 32                   # the gain byte of the post-filter's residual as it is: gain = byte / 32
GAIN_TRIES = 8                  # bytes tried each side of the least-squares gain (rounded): the rounded
                                # image's error is not smooth in the gain on small images
SHIFT_MAX = 4                   # |shift| of a (class, bucket) cell's table index
FLAG_GRAY = 0x01                # the optional last metadata byte: a gray original coded as RGB
Z_REDUNDANCY_MIN = 0.5
MEAN_ERROR_SLACK = 1.02         # a searched hyper-latent's LL4 means may err this much more than h_a's
ORDER_KEY = 0x636F6D70          # "comp": the latent positions' coding order
PACKET_ROWS = 2                 # data oligos per packet where the latent has no outer code to speak of:
                                # a lost oligo costs only its packet's values (heads: 3.7 % of the bits)
PACKET_ROWS_PROTECTED = 16      # ... and where it has (PROTECTED or more): an eighth of the heads and splits
PROTECTED = 0.1                 # the latent's outer redundancy from which packets are 16 rows
MAX_SIDE = 1 << 16
#: the default gray model's alternatives: models with its very coder (context, tables, gains,
#: hyper-latent) and another post-filter (compact-gray-v9's fitted on X-rays only, compact-gray-v10's
#: fitted on from v9's at the rates X-rays are stored at; for compact-gray-v12's lifting steps,
#: v13's fitted to them, v14's fitted on from v13's and v15's fitted on from v14's to the X-rays
#: halved, clean of the JPEG blocks many training X-rays carry).  With no ``model`` named, the encoder
#: writes whichever draws the best image from its symbols.
POST_FILTER_CHOICES = {"compact-gray-v8": ("compact-gray-v9", "compact-gray-v10"),
                       "compact-gray-v12": ("compact-gray-v13", "compact-gray-v14", "compact-gray-v15"),
                       "compact-gray-v16": ("compact-gray-v17",)}
#: the default gray model's other families: models with another analysis (compact-gray-v12's
#: learned lifting steps), so other symbols; since the cross context, compact-gray-v16's (v14's
#: coder with it, so v12's family coded in fewer bits).  With no ``model`` named and a cap (``fits``), the
#: encoder also codes the image with each (and its own POST_FILTER_CHOICES) and writes whichever
#: streams decode to the better image (twice the encoding time; at a fixed quality the rates
#: differ and the default family is kept).
FAMILY_CHOICES = {"compact-gray-v8": ("compact-gray-v16",)}
REFINE_TRIES = 3                # refinements tried, each in fewer bits, until one fits (refine.py)
REFINE_CUT = 0.005              # ... each at most this share fewer
TILE_PX = 512                   # the transforms run on tiles of 512 x 512 pixels with the model's
                                # halo_px of context around each, the transforms' whole reach (gdn:
                                # 32 px, 2 latent positions: four stride-2 layers of 5 taps, a latent
                                # value reaches 1 + 1/2 + 1/4 + 1/8 positions, g_a's pixels 30 px;
                                # cdf97: 64 px), so the tiles compute what the whole image would
                                # (gdn g_s: bit for bit, measured; cdf97 g_s and g_a: to float rounding)


@dataclass
class CompactParams:
    model_id: int
    height: int
    width: int
    rate_row: int
    packet_rows: int = PACKET_ROWS
    gray: bool = False              # a gray original coded as RGB: decoded to one channel
    version: int = META_VERSION     # ADAPTED_VERSIONS: stream 0 begins with the table shifts;
                                    # PACKED_VERSIONS: 11 bytes (what the encoder writes), else 16;
                                    # GAIN_VERSIONS: stream 0 begins with the post-filter's gain

    @property
    def adapted(self) -> bool:
        """Stream 0 begins with the context's table shifts."""
        return self.version in ADAPTED_VERSIONS

    @property
    def strips(self) -> bool:
        """The latent's positions are coded in strips (:func:`strip_order`), not the keyed order."""
        return self.version in STRIP_VERSIONS

    @property
    def gained(self) -> bool:
        """Stream 0 begins with the post-filter's gain byte (before any table shifts)."""
        return self.version in GAIN_VERSIONS

    def pack(self) -> bytes:
        if self.version in PACKED_VERSIONS:
            b = struct.pack(META_PACKED, self.version, self.model_id, self.height - 1, self.width - 1, self.rate_row,
                            self.packet_rows)
        else:
            b = struct.pack(META, self.version, self.model_id, self.height, self.width, self.rate_row, self.packet_rows)
        return b + bytes([FLAG_GRAY]) if self.gray else b

    @classmethod
    def unpack(cls, meta: bytes) -> "CompactParams":
        v = meta[0] if len(meta) else 0
        if v not in (META_VERSION, META_VERSION_ADAPTED) + PACKED_VERSIONS:
            raise DecodeError(f"compact codec metadata version {v}; this dnaimg reads 1 to {META_VERSION_LAST}")
        n = struct.calcsize(META_PACKED if v in PACKED_VERSIONS else META)
        if len(meta) not in (n, n + 1):
            raise DecodeError(f"compact codec metadata of {len(meta)} bytes (expected {n}, or {n + 1} with flags, "
                              f"for version {v})")
        flags = meta[n] if len(meta) > n else 0
        if flags & ~FLAG_GRAY:
            raise DecodeError(f"compact codec metadata with unknown flags {flags:02x}")
        if v in PACKED_VERSIONS:
            v, mid, h, w, row, rows = struct.unpack(META_PACKED, bytes(meta[:n]))
            h, w = h + 1, w + 1
        else:
            v, mid, h, w, row, rows = struct.unpack(META, bytes(meta[:n]))
        if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE and 1 <= rows <= 64):
            raise DecodeError("compact codec metadata is inconsistent")
        return cls(mid, h, w, row, rows, bool(flags & FLAG_GRAY), v)

    def latent_hw(self) -> tuple[int, int]:
        return -(-self.height // 64) * 4, -(-self.width // 64) * 4


_LOCK = threading.Lock()
_CACHE: dict[str, tuple] = {}


def load(name: str = DEFAULT_MODEL):
    """(model in eval mode, exact tables, card) of a shipped compact model.  A model that
    ``extends`` another (:mod:`dnaimg.zoo.context`) is the base's network and tables with its own
    context for the coder."""
    from dnaimg.zoo.exact import load_tensors
    from dnaimg.zoo.registry import ModelError, build_model, card
    with _LOCK:
        if name in _CACHE:
            return _CACHE[name]
        c = card(name)
        if c.get("codec") != "compact":
            raise ModelError(f"model {name} is not a compact-codec model")
        own = _tensors(c, name)
        base = c.get("extends")
        if base is not None:
            try:
                bc = card(base)
            except ModelError:
                raise ModelError(f"model {name} extends {base}, which is not installed") from None
            if bc.get("codec") != "compact" or "extends" in bc or not bc.get("weights_sha256"):
                raise ModelError(f"model {name} extends {base}, which is not a compact base model with a weights hash")
            if "base.sha256" not in own or own["base.sha256"].dtype != torch.uint8:
                raise ModelError(f"model {name}: its weights file does not name its base's weights")
            if own["base.sha256"].numpy().tobytes().hex() != str(bc["weights_sha256"]).lower():
                raise ModelError(f"model {name} was made for other weights of {base} than those installed")
            # the base's networks and tables; the extension's own gain tables replace the base's,
            # its own latent tables too where it adds narrow ones after the base's (checked here),
            # and its own post-filter weights (dnaimg.zoo.postfit)
            t = _tensors(bc, base)
            if any(k in own for k in ("tables.y_cdf", "tables.y_n", "tables.y_off")):
                try:
                    _check_extra_tables(t, own)
                except ModelError as e:
                    raise ModelError(f"model {name}: {e}") from None
            if any(k.startswith(EXTENSION_POST) for k in own):     # (its post-filter whole: it may be deeper)
                t = {k: v for k, v in t.items() if not k.startswith(EXTENSION_POST)}
            t = {**t, **{k: v for k, v in own.items()
                         if k in EXTENSION_TABLES or k.startswith((EXTENSION_POST, EXTENSION_PREDICT))}}
        else:
            t = own
        model = build_model(c)
        try:
            tables = load_tensors(model, t)
            from dnaimg.zoo.context import context_of
            tables.ctx = context_of(own)        # the coder's context, where the model's own file has one
            from dnaimg.zoo.zcontext import K as ZK, zcontext_of
            tables.zctx = zcontext_of(own)      # the hyper-latent's, likewise
            if base is not None and tables.ctx is None:
                raise ValueError("its weights file holds no context")
            if tables.zctx is not None and (tables.ctx is None or tables.zctx[0].shape[0] != tables.z_cdf.shape[0] * ZK):
                raise ValueError("a hyper-latent context needs a coder context and one table set per channel")
            if tables.ctx is not None:
                from dnaimg.codecs.arith import check_context
                tables.ctx = check_context(tables.ctx, tables.y_cdf.shape[0])
                if tables.ctx[4].shape[1] != tables.thresholds.shape[0]:
                    raise ValueError("a context whose remap is not indexed by the hyperprior's tables")
                if tables.ctx[2].shape[0] != model.cfg.M:
                    raise ValueError(f"a context for {tables.ctx[2].shape[0]} channels, not {model.cfg.M}")
            if tables.gain.shape[1] != model.cfg.M or tables.inv_gain.shape != tables.gain.shape:
                raise ValueError("gain tables of the wrong shape")
        except (KeyError, ValueError, TypeError, IndexError) as e:
            raise ModelError(f"model {name}: {e}") from None
        model.eval()
        # channels-last weights for the synthesis transform: oneDNN's fast path on CPUs (a
        # 12-Mpx synthesis in fp32, AMD EPYC 2 cores: 19.0 -> 11.4 s)
        model.g_s.to(memory_format=torch.channels_last)
        _CACHE[name] = (model, tables, c)
        return _CACHE[name]


#: the tables an extension's own file may hold in place of its base's, and the networks' weights
#: (by prefix: the wavelet synthesis's post-filter; the wavelet's lifting predictors, which its
#: base does not have)
EXTENSION_TABLES = ("tables.gain", "tables.inv_gain", "tables.y_cdf", "tables.y_n", "tables.y_off")
EXTENSION_POST = "g_s.post."
EXTENSION_PREDICT = "predict."


def _check_extra_tables(base: dict, own: dict) -> None:
    """An extension's latent tables must be its base's, in the same rows, with extra ones after
    them (which only its context's remap reaches; the hyperprior's table indexes keep their
    meaning), each a valid table: ModelError otherwise."""
    from dnaimg.codecs.arith import PREC
    from dnaimg.zoo.registry import ModelError
    keys = ("tables.y_cdf", "tables.y_n", "tables.y_off")
    if not all(k in own for k in keys):
        raise ModelError("an extension's own latent tables need tables.y_cdf, tables.y_n and tables.y_off")
    cdf, n_, off = (own[k].to(torch.int64) for k in keys)
    bcdf, bn, boff = (base[k].to(torch.int64) for k in keys)
    n_base = bcdf.shape[0]
    if not (cdf.ndim == 2 and n_.ndim == 1 and off.ndim == 1 and cdf.shape[0] == n_.shape[0] == off.shape[0] > n_base
            and cdf.shape[1] == bcdf.shape[1] and torch.equal(cdf[:n_base], bcdf) and torch.equal(n_[:n_base], bn)
            and torch.equal(off[:n_base], boff)):
        raise ModelError("an extension's latent tables must begin with its base's and add rows after them")
    for row, n, o in zip(cdf[n_base:].numpy(), n_[n_base:].tolist(), off[n_base:].tolist()):
        if not (2 <= n < cdf.shape[1] and n == 2 * o + 2 and row[0] == 0 and (row[n:] == 1 << PREC).all()
                and (np.diff(row[:n + 1]) >= 1).all()):
            raise ModelError("an extension's extra latent table is not a valid table")


def _tensors(c: dict, name: str) -> dict:
    from safetensors.torch import load_file

    from dnaimg.zoo.registry import ModelError, models_dir, verify_weights
    path = models_dir() / f"{name}.safetensors"
    verify_weights(c, path)
    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises several types on corrupt files
        raise ModelError(f"cannot read model weights {path}: {e}") from None


def tiled(net, x: torch.Tensor, down: float, tile: int, halo: int) -> torch.Tensor:
    """``net`` (a transform that scales sizes by 1/``down``) on ``tile`` x ``tile`` tiles of ``x``
    with ``halo`` of context on every side, the halos cropped off: bounded memory on large images,
    the same result for a given image size whatever the machine."""
    H, W = x.shape[-2:]
    if H <= tile + 2 * halo and W <= tile + 2 * halo:
        return net(x)
    out = None          # filled tile by tile (no list of tiles and concatenated copies of it)
    for y0 in range(0, H, tile):
        for x0 in range(0, W, tile):
            a0, b0 = max(0, y0 - halo), max(0, x0 - halo)
            a1, b1 = min(H, y0 + tile + halo), min(W, x0 + tile + halo)
            o = net(x[..., a0:a1, b0:b1])
            oy, ox = round((y0 - a0) / down), round((x0 - b0) / down)
            th, tw = round((min(H, y0 + tile) - y0) / down), round((min(W, x0 + tile) - x0) / down)
            if out is None:
                out = o.new_empty(o.shape[0], o.shape[1], round(H / down), round(W / down))
            Y, X = round(y0 / down), round(x0 / down)
            out[..., Y:Y + th, X:X + tw] = o[..., oy:oy + th, ox:ox + tw]
            del o
    return out


def weights_id(card: dict) -> int:
    """The id written into the DNA: the first 32 bits of the weights' SHA-256, so DNA is only ever
    decoded with the very weights that encoded it (a retrained model is a new file and a new id)."""
    return int(str(card["weights_sha256"])[:8], 16)


def model_for_weights(mid: int) -> str:
    from dnaimg.zoo.registry import ModelError, list_models
    cards = list_models("compact")
    for c in cards:
        if c.get("weights_sha256") and weights_id(c) == mid:
            return c["name"]
    have = ", ".join(f"{c['name']} ({weights_id(c):08x})" for c in cards) or "none"
    raise ModelError(f"the DNA was written with compact model weights {mid:08x}, which are not installed "
                     f"(installed: {have})")


def rate_indexes(tables) -> np.ndarray:
    """Every rate index the model can code at (trained points and 1/8 steps between)."""
    from dnaimg.zoo.exact import RATE_STEPS
    return np.arange(tables.gain.shape[0]) / RATE_STEPS


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(np.array(img, dtype=np.uint8, order="C", copy=True))
    if x.ndim == 2:
        x = x[..., None]
    return x.permute(2, 0, 1)[None].float().div_(255.0)


def _order(h: int, w: int) -> np.ndarray:
    return interleaver(h * w, ORDER_KEY ^ (h << 16) ^ w)


def strip_order(h: int, w: int) -> np.ndarray:
    """The positions of an (h, w) latent (raster indexes) in the order of metadata versions 7 and 8:
    strip by strip (columns 0-3, 4-7, ..., the last one narrower where w is not a multiple of
    :data:`STRIP`), in each strip row by row, left to right."""
    by, bx = np.divmod(np.arange(h * w, dtype=np.int64), w)
    return np.lexsort((bx, by, bx // STRIP))


@functools.lru_cache(maxsize=8)
def position_neighbours(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """The positions' neighbours a cross context sees in :func:`strip_order` (left, above-left,
    above, above-right: :data:`dnaimg.zoo.wavelet.CROSS_DIRECTIONS`), those in the same strip:
    (by coding index, as the coder reads them; by raster index, for the encoder's estimates), -1
    where there is none."""
    from dnaimg.zoo.wavelet import CROSS_DIRECTIONS
    order = strip_order(h, w)
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    by, bx = np.divmod(np.arange(h * w, dtype=np.int64), w)
    raster = np.full((h * w, 4), -1, dtype=np.int64)
    for d, (dy, dx) in enumerate(CROSS_DIRECTIONS):
        ny, nx = by + dy, bx + dx
        ok = (ny >= 0) & (nx >= 0) & (nx < w) & (nx // STRIP == bx // STRIP)
        raster[ok, d] = (ny * w + nx)[ok]
    coding = np.ascontiguousarray(np.where(raster[order] >= 0, rank[np.maximum(raster[order], 0)], -1))
    coding.flags.writeable = raster.flags.writeable = False        # (cached: shared by every caller)
    return coding, raster


def packet_neighbours(h: int, w: int, starts: np.ndarray) -> np.ndarray:
    """:func:`position_neighbours` by raster index, less the neighbours in another packet than the
    position, packets starting at coded positions ``starts`` (a position split between two counts
    in the later one)."""
    full = position_neighbours(h, w)[1]
    packet = np.empty(h * w, dtype=np.int64)
    packet[strip_order(h, w)] = np.searchsorted(np.asarray(starts), np.arange(h * w), side="right") - 1
    same = (full >= 0) & (packet[np.maximum(full, 0)] == packet[:, None])
    return np.where(same, full, -1)


def strip_packets(sym: np.ndarray, idx: np.ndarray, t, ctx: tuple, packet_bytes: int) -> np.ndarray:
    """The coded positions at which packets of ``packet_bytes`` start when symbols ``sym`` (M, h,
    w) with hyperprior tables ``idx`` are coded in strips with context ``ctx`` (what a cross
    context's fit counts with: its neighbours where they share a packet)."""
    M, h, w = sym.shape
    flat, tabs = _y_layout(idx, h, w, strips=True)
    pnb = position_neighbours(h, w)[0] if arith.has_cross(ctx) else None
    _, starts = arith.encode_packets(sym.reshape(-1)[flat], tabs, t.y_cdf, t.y_n, t.y_off, packet_bytes,
                                     sym.size // 8 + 16, ctx, pnb)
    return starts // M


def _y_layout(idx: np.ndarray, h: int, w: int, strips: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Coding order of the latent (M, h, w): (flat indexes into the (M, h*w) array, tables);
    ``strips``: :func:`strip_order`, else the keyed order."""
    M = idx.shape[0]
    perm = strip_order(h, w) if strips else _order(h, w)
    flat = (np.arange(M)[None, :] * (h * w) + perm[:, None]).reshape(-1)
    return flat, idx.reshape(-1)[flat]


class Analysis:
    """The encoder's float work done once per image: y and the coded hyper-latent."""

    def __init__(self, img: np.ndarray, name: str):
        from dnaimg.zoo.compact import pad_faded
        self.name = name
        self.model, self.tables, self.card = load(name)
        self.height, self.width = int(img.shape[0]), int(img.shape[1])
        if max(self.height, self.width) > MAX_SIDE:
            raise CodecError(f"images up to {MAX_SIDE} px a side")
        chans = self.model.cfg.in_channels
        self.gray = img.ndim == 2 and chans == 3        # gray through an RGB model: R = G = B, flagged
        if self.gray:
            img = np.repeat(np.asarray(img, dtype=np.uint8)[:, :, None], 3, axis=2)
        if (img.ndim == 3 and img.shape[2] != chans) or (img.ndim == 2 and chans != 1):
            raise CodecError(f"model {name} takes {chans}-channel images")
        from dnaimg.zoo.model import native_bf16
        self.image = np.asarray(img, dtype=np.uint8) if img.ndim == 2 else None   # (one channel: refine.py)
        x, _ = pad_faded(_to_tensor(img), 64)
        # the encoder's float work may differ between machines (bf16 where the CPU has it natively):
        # only what it decides, the symbols, travels, and decoding them is exact everywhere
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=native_bf16()):
            y = tiled(self.model.g_a, x, 16, TILE_PX, self.model.halo_px).float()
            z = self.model.h_a(y).float()
        self.y = y[0].double().numpy()
        self.use_z(np.round(z.double().numpy()).astype(np.int64)[0])
        self.progress: Callable[[int], None] | None = None     # called with 0 after each trial encode
        self.post_gain: int | None = None       # a gain byte at the head of stream 0 (metadata 5, 6), or none

    def use_z(self, z: np.ndarray) -> None:
        """Code with the hyper-latent ``z`` (N, h, w), integers (``h_a``'s, or one the encoder
        found cheaper: :mod:`dnaimg.codecs.zsearch`)."""
        self.z = np.asarray(z, dtype=np.int64)[None]
        self.mu, self.sigma = self.tables.h_s(self.z)
        self.z_bytes = encode_z(self.z[0], self.tables)
        self._row, self._row_data = None, None

    def use_model(self, name: str) -> None:
        """Code with model ``name`` from now on, whose coder is this one's (:func:`same_coder`):
        the same symbols, another post-filter (and the DNA names ``name``)."""
        if not same_coder(self.name, name):
            raise ValueError(f"{name} does not code as {self.name} does")
        self.model, _, self.card = load(name)
        self.name = name

    def synthesis_error(self, row: int, sym: np.ndarray, model=None, grad: bool = True) -> tuple[float, np.ndarray | None]:
        """:func:`dnaimg.codecs.refine.synthesis_error` of the latent that symbols ``sym`` at rate
        row ``row`` decode to, through ``model``'s synthesis (default: this one's) on the decoder's
        tiles: (squared error of the 8-bit image, its gradient with respect to the latent or None)."""
        from dnaimg.codecs.refine import synthesis_error
        model = self.model if model is None else model
        u, _, _, g = self._rounded(row)
        return synthesis_error(model.g_s, self.y - (u - sym) / g, self.image, TILE_PX // 16, model.halo_px // 16, grad)

    def symbols(self, row: int, rdo_weight: float = 1.0, ctx: tuple | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(symbols (M, h, w), the hyperprior's table of each) at rate row ``row``.  ``rdo_weight``
        scales the rate-distortion optimisation's MSE weight (the wavelet models; > 1: fewer values
        rounded towards their mean, more bits): the encoder's fine rate control between rows.
        ``ctx``: the coder's context the RDO prices values with (default: the model's)."""
        t = self.tables
        u, sym, idx, g = self._rounded(row)
        if self.model.cfg.transform == "cdf97":
            # the context's tables for the rounded values: an estimate (the coder's differ where RDO
            # moves a neighbour or a packet splits a position)
            used = used_tables(sym, idx, t.ctx if ctx is None else ctx, self.estimate_pnb())
            sym = rdo_symbols(u, sym, used, g, t, _row_lambda(card_lambdas(self.card), row) * rdo_weight)
        return sym, idx

    def _rounded(self, row: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(exact values in quantiser steps, rounded symbols, hyperprior tables, gains (M, 1, 1)) at
        rate row ``row``; the last row's kept (the encoder tries several weights and contexts at one
        row)."""
        from dnaimg.zoo.exact import FA, GAIN_BITS
        if getattr(self, "_row", None) != row:
            self._row_data = None                # (the old row's arrays go first)
            t = self.tables
            mu_g, idx = t.gained(self.mu, self.sigma, row)
            g = t.gain[row].astype(np.float64).reshape(-1, 1, 1) / (1 << GAIN_BITS)
            u = self.y * g - mu_g[0] / float(1 << FA)
            del mu_g
            self._row_data = (u, np.floor(u + 0.5).astype(np.int64), idx[0], g)
            self._row = row
        u, sym, idx, g = self._row_data
        return u, sym.copy(), idx, g

    def coded(self, row: int, rdo_weight: float = 1.0) -> tuple[np.ndarray, np.ndarray, tuple | None, np.ndarray | None]:
        """What :meth:`encode` codes at rate row ``row``: (symbols, hyperprior tables, the coder's
        context, its table shifts or None).  A model with a context gets it adapted to the image
        (:func:`fit_shifts`) where that pays, and the RDO then prices values with the adapted one."""
        t = self.tables
        sym, idx = self.symbols(row, rdo_weight)
        if t.ctx is None:
            return sym, idx, None, None
        shifts = fit_shifts(sym, idx, t, self.estimate_pnb())
        if shifts is None:
            return sym, idx, t.ctx, None
        ctx = adapt_context(t.ctx, shifts, t.y_cdf.shape[0])
        sym, idx = self.symbols(row, rdo_weight, ctx)
        return sym, idx, ctx, shifts

    def squared_error(self, row: int, rdo_weight: float = 1.0) -> float:
        """The latent's squared error (orthonormal units: the image's) as :meth:`encode` codes it
        at rate row ``row``."""
        sym = self.coded(row, rdo_weight)[0]
        u, _, _, g = self._rounded(row)
        return float(np.sum(((sym - u) / g) ** 2))

    @property
    def fine_rate(self) -> bool:
        """Whether :meth:`encode`'s ``rdo_weight`` changes anything (the wavelet models' RDO)."""
        return self.model.cfg.transform == "cdf97"

    def estimate_pnb(self) -> np.ndarray | None:
        """The neighbouring positions the encoder's estimates count for a cross context: those of
        :func:`estimate_neighbours`, less those that the last coding in strips put in another
        packet than the position (packets move little between trials, and a packet's first row of
        positions sees little above it); None without a cross context."""
        t = self.tables
        if not arith.has_cross(t.ctx):
            return None
        h, w = self.y.shape[1], self.y.shape[2]
        starts = getattr(self, "_packet_starts", None)
        if starts is None:
            return position_neighbours(h, w)[1]
        key = (h, w, starts.tobytes())
        if getattr(self, "_pnb_key", None) != key:
            self._pnb_key, self._pnb = key, packet_neighbours(h, w, starts)
        return self._pnb

    @property
    def strips(self) -> bool:
        """Whether :meth:`encode` codes the positions in strips (metadata versions 7 and 8, which
        carry the gain byte): for a model whose context sees neighbouring positions, whose tables
        were fitted for them (in the keyed order it would see none: 7-10 % more bits on training
        X-rays).  A packet lost beyond what the outer code rebuilds then costs a patch of a strip
        rather than scattered positions."""
        return self.post_gain is not None and arith.has_cross(self.tables.ctx)

    @property
    def refinable(self) -> bool:
        """Whether :meth:`encode` can refine the symbols for the decoder's synthesis
        (:mod:`dnaimg.codecs.refine`: the wavelet models, one channel)."""
        return self.fine_rate and self.image is not None

    def encode(self, rate_index: float, packet_bytes: int, packet_rows: int,
               z_redundancy: float | None, rdo_weight: float = 1.0, refine: float | None = None) -> Encoded:
        """The streams at ``rate_index`` (``rdo_weight``: :meth:`symbols`); ``refine``: the symbols
        refined for the decoder's synthesis in at most that many times the RDO's bits
        (:mod:`dnaimg.codecs.refine`)."""
        t = self.tables
        try:
            row = t.rate_row(rate_index)
        except ValueError:
            top = (t.gain.shape[0] - 1) / 8
            raise CodecError(f"model {self.name} codes rate indexes (--quality) 0 to {top:g} in steps of 1/8, "
                             f"not {rate_index:g}") from None
        sym, idx, ctx, shifts = self.coded(row, rdo_weight)
        refined = None
        if refine is not None and self.refinable:
            from dnaimg.codecs import refine as rf
            found, refined = rf.refine(self, row, rdo_weight, sym, idx, ctx, budget=refine,
                                       progress=None if self.progress is None else (lambda: self.progress(0)))
            if refined["sse_after"] < refined["sse_before"]:      # (else the RDO's: never a worse image)
                sym = found
            else:
                refined["changed"] = 0
        head = b"" if shifts is None else pack_shifts(shifts)
        shift_bytes = len(head)
        version = META_VERSION_PACKED if shifts is None else META_VERSION_PACKED_ADAPTED
        strips = False
        if row > 0xFF:                          # (no shipped model has so many rate rows)
            version = META_VERSION if shifts is None else META_VERSION_ADAPTED
        elif self.post_gain is not None:
            head = bytes([self.post_gain]) + head
            strips = self.strips
            version = ((META_VERSION_STRIPS if shifts is None else META_VERSION_ADAPTED_STRIPS) if strips else
                       (META_VERSION_GAIN if shifts is None else META_VERSION_ADAPTED_GAIN))
        M, h, w = sym.shape
        flat, tabs = _y_layout(idx, h, w, strips)
        pk, starts = arith.encode_packets(sym.reshape(-1)[flat], tabs, t.y_cdf, t.y_n, t.y_off, packet_bytes,
                                          sym.size // 8 + 16, ctx, position_neighbours(h, w)[0] if strips else None)
        if strips:
            self._packet_starts = starts // M    # (the positions' packets, for the estimates that follow)
        if self.progress is not None:
            self.progress(0)
        if pk.shape[0] == 0:
            raise CodecError("the latent does not fit its packets")
        ybytes = trim_last_packet(pk)
        params = CompactParams(weights_id(self.card), self.height, self.width, row, packet_rows, self.gray, version)
        return Encoded(CODEC, [Stream("bytes", head + self.z_bytes, redundancy=z_redundancy),
                               Stream("bytes", ybytes)], params.pack(),
                       {"model": self.name, "rate_index": float(rate_index), "quality": float(rate_index),
                        "rdo_weight": float(rdo_weight), "table_shift_bytes": shift_bytes,
                        "stream_bytes": len(head) + len(self.z_bytes) + len(ybytes),
                        **({} if refined is None else {"refined_values": refined["changed"]})})


def trim_last_packet(packets: np.ndarray) -> bytes:
    """The latent's packets (P, bytes) as stream 1: the last packet without its trailing zero
    bytes (its padding after the termination, which always writes a one bit), which a reader
    restores (:func:`whole_packets`).  So the stream ends where its code does, not a whole packet
    later: under a cap, the oligos a larger packet would leave empty hold a higher rate."""
    data = packets.tobytes()
    keep = max(len(data.rstrip(b"\0")), (packets.shape[0] - 1) * packets.shape[1] + 1)
    return data[:keep]


def whole_packets(data: np.ndarray, packet_bytes: int, pad) -> np.ndarray:
    """Stream 1's bytes (or its erasure mask) as whole packets (P, ``packet_bytes``): the last
    one completed with ``pad`` (zero bytes; False for a mask), as it was before
    :func:`trim_last_packet`.  Files of earlier releases hold whole packets only."""
    short = -len(data) % packet_bytes
    if short:
        data = np.concatenate([data, np.full(short, pad, dtype=data.dtype)])
    return data.reshape(-1, packet_bytes)


def card_lambdas(card: dict) -> list[float]:
    """The MSE weight of each rate point: trained, and extrapolated where a model extends its
    base's range (its card's ``rate_points``)."""
    pts = card.get("rate_points")
    return [float(p["lambda"]) for p in pts] if pts else list(card["architecture"]["lambdas"])


def _row_lambda(lambdas, row: int) -> float:
    """The MSE weight of a rate row (geometric between the trained points, as the gains are)."""
    from dnaimg.zoo.exact import RATE_STEPS
    r = row / RATE_STEPS
    lo = min(int(np.floor(r)), len(lambdas) - 1)
    hi = min(lo + 1, len(lambdas) - 1)
    f = r - lo
    return float(np.exp((1 - f) * np.log(lambdas[lo]) + f * np.log(lambdas[hi])))


def used_tables(sym: np.ndarray, idx: np.ndarray, ctx: tuple | None, pnb=None) -> np.ndarray:
    """The tables the coder's context ``ctx`` (None: none) gives symbols ``sym`` (M, h, w) with
    hyperprior tables ``idx``, every neighbour counted (as when no packet splits a position; a
    cross context's neighbouring positions as ``pnb`` (raster indexes) names them, default
    :func:`estimate_neighbours`)."""
    if ctx is None:
        return idx
    M = sym.shape[0]
    pnb = estimate_neighbours(sym, ctx) if pnb is None else pnb
    return arith.context_tables_cm(sym.reshape(M, -1), idx.reshape(M, -1), ctx, pnb).reshape(sym.shape)


def estimate_neighbours(sym: np.ndarray, ctx: tuple | None) -> np.ndarray | None:
    """The positions' neighbours (raster indexes) the encoder's estimates count for a latent
    (M, h, w) under context ``ctx``: those of :func:`strip_order` where the context sees any (the
    coder sees them where they share a packet), else None."""
    return position_neighbours(sym.shape[1], sym.shape[2])[1] if arith.has_cross(ctx) else None


def symbol_bits(v: np.ndarray, idx: np.ndarray, t) -> np.ndarray:
    """Bits the coder spends on latent value ``v`` with table ``idx`` (:func:`coded_bits` of the
    latent's tables)."""
    return coded_bits(v, idx, t.y_cdf, t.y_n, t.y_off)


def coded_bits(v: np.ndarray, idx: np.ndarray, cdf: np.ndarray, n: np.ndarray, off: np.ndarray) -> np.ndarray:
    """Bits the arithmetic coder spends on value ``v`` with table ``idx`` of (``cdf``, ``n``,
    ``off``) (escapes: the escape symbol and 16 raw bits); ``v`` and ``idx`` broadcast."""
    from dnaimg.codecs.arith import ESCAPE_BITS, PREC
    n = n[idx]
    s = v + off[idx]
    esc = (s < 0) | (s >= n - 1)
    s = np.where(esc, n - 1, s)
    f = (cdf[idx, s + 1] - cdf[idx, s]).astype(np.float64)
    return PREC - np.log2(np.maximum(f, 1.0)) + ESCAPE_BITS * esc


def rdo_symbols(u: np.ndarray, sym: np.ndarray, idx: np.ndarray, g: np.ndarray, t, lam: float) -> np.ndarray:
    """Rate-distortion optimised quantisation for the wavelet models (encoder only: the decoder
    reads whatever symbols come): each value rounded one step towards its mean where the bits
    saved outweigh the squared error added, at the rate point's own weight (``lambda * 255^2 *
    squared error + bits``; the wavelet's coefficients are in orthonormal units, so a value's
    squared error is the image's).  ``u``: the exact values in quantiser steps (M, h, w);
    ``g``: the gains (M, 1, 1)."""
    nz = sym != 0
    if not nz.any():
        return sym
    v0 = sym[nz]
    v1 = v0 - np.sign(v0)
    uu, jj = u[nz], idx[nz]
    gg = np.broadcast_to(g, sym.shape)[nz]
    w = lam * 255.0 ** 2 / (gg * gg)
    c0 = w * (v0 - uu) ** 2 + symbol_bits(v0, jj, t)
    c1 = w * (v1 - uu) ** 2 + symbol_bits(v1, jj, t)
    out = sym.copy()
    out[nz] = np.where(c1 < c0, v1, v0)
    return out


def encode_z(z: np.ndarray, t) -> bytes:
    """Stream 0's arithmetic-coded run of the hyper-latent ``z`` (N, h, w), C order: each value
    with its channel's table, or with a hyper-latent context its context's (dnaimg.zoo.zcontext)."""
    if np.abs(z).max(initial=0) >= arith.RAW_OFFSET:
        raise CodecError("the hyper-latent has a value beyond what its escape codes: not a sane image for this model")
    if t.zctx is None:
        cdf, n, off = t.z_cdf, t.z_n, t.z_off
        tabs = np.repeat(np.arange(z.shape[0]), z[0].size)
    else:
        from dnaimg.zoo.zcontext import table_indexes
        (cdf, n, off), tabs = t.zctx, table_indexes(z)
    zb, _ = arith.encode_packets(np.ascontiguousarray(z, dtype=np.int64).reshape(-1), tabs, cdf, n, off, 0, 1)
    return zb[0].tobytes()


def decode_z(buf: np.ndarray, shape: tuple[int, int, int], t) -> np.ndarray:
    """:func:`encode_z` inverted: the hyper-latent (N, h, w)."""
    if t.zctx is None:
        N, h, w = shape
        z, _ = arith.decode_stream(buf, N * h * w, np.repeat(np.arange(N), h * w), t.z_cdf, t.z_n, t.z_off)
        return z.reshape(shape)
    from dnaimg.zoo.zcontext import decode
    return decode(buf, shape, t.zctx)


# ---------------------------------------------------------------------------------------------
# the context adapted to an image: a table shift per (class, bucket) cell

def shift_code_bits(d: np.ndarray) -> np.ndarray:
    """Bits of :func:`pack_shifts`'s code for shifts ``d``: 0 is "0"; +-k is "1", the sign (1:
    negative), then k - 1 ones and, when k < SHIFT_MAX, a closing 0."""
    k = np.abs(d)
    return np.where(k == 0, 1, 2 + (k - 1) + (k < SHIFT_MAX))


def pack_shifts(shifts: np.ndarray) -> bytes:
    """The table shifts (classes x buckets, each in -SHIFT_MAX..SHIFT_MAX) as stream 0's head:
    cells in C order, each coded as :func:`shift_code_bits` says, most significant bit first,
    zero bits to the end of the last byte."""
    bits: list[int] = []
    for d in np.asarray(shifts, dtype=np.int64).ravel():
        k = abs(int(d))
        if not k <= SHIFT_MAX:
            raise ValueError(f"table shift {d} beyond +-{SHIFT_MAX}")
        if k == 0:
            bits.append(0)
            continue
        bits += [1, int(d < 0)] + [1] * (k - 1) + ([0] if k < SHIFT_MAX else [])
    bits += [0] * (-len(bits) % 8)
    return np.packbits(np.array(bits, dtype=np.uint8)).tobytes() if bits else b""


def unpack_shifts(buf: np.ndarray, classes: int, buckets: int) -> tuple[np.ndarray, int]:
    """(shifts (classes, buckets), bytes they took) from the head of stream 0."""
    bits = np.unpackbits(np.asarray(buf, dtype=np.uint8))
    out = np.zeros(classes * buckets, dtype=np.int64)
    pos = 0

    def bit() -> int:
        nonlocal pos
        if pos >= bits.size:
            raise DecodeError("compact: stream 0 ends inside its table shifts")
        pos += 1
        return int(bits[pos - 1])
    for i in range(out.size):
        if bit() == 0:
            continue
        neg = bit()
        k = 1
        while k < SHIFT_MAX and bit() == 1:
            k += 1
        out[i] = -k if neg else k
    return out.reshape(classes, buckets), (pos + 7) // 8


def table_order(n_hyper: int, n_tables: int) -> np.ndarray:
    """The latent's tables from narrowest to widest: a model's extra narrow tables (indexes
    ``n_hyper`` and up, each narrower than the one before, reached only through the context's
    remap) narrowest first, then the hyperprior's own ``0 .. n_hyper - 1``."""
    return np.concatenate([np.arange(n_tables - 1, n_hyper - 1, -1), np.arange(n_hyper)]).astype(np.int64)


def shift_tables(j: np.ndarray, d, n_hyper: int, n_tables: int) -> np.ndarray:
    """Tables ``j`` moved ``d`` places along :func:`table_order` (negative: narrower), stopping at
    either end; with no extra tables ``clip(j + d, 0, n_hyper - 1)``."""
    order = table_order(n_hyper, n_tables)
    rank = np.empty(n_tables, dtype=np.int64)
    rank[order] = np.arange(n_tables)
    return order[np.clip(rank[j] + d, 0, n_tables - 1)]


def adapt_context(ctx: tuple, shifts: np.ndarray, n_tables: int | None = None) -> tuple:
    """The context with every table of its remap moved by its cell's shift:
    ``remap'[c, t, b] = shift_tables(remap[c, t, b], shifts[c, b])`` (``n_tables``: the
    latent's tables, the hyperprior's and any extra narrow ones; default the hyperprior's, for a
    remap that reaches no other)."""
    remap = ctx[4]
    n_hyper = remap.shape[1]
    if n_tables is None and remap.size and int(remap.max()) >= n_hyper:
        raise ValueError("a remap that reaches extra tables: give n_tables")
    d = np.asarray(shifts, dtype=np.int64)[:, None, :]
    return arith.with_remap(arith.layout_of(ctx), shift_tables(remap, d, n_hyper, n_tables or n_hyper))


def fit_shifts(sym: np.ndarray, idx: np.ndarray, t, pnb=None) -> np.ndarray | None:
    """The encoder's table shifts for symbols ``sym`` (M, h, w) with hyperprior tables ``idx``:
    per (class, bucket) cell the shift with the fewest bits (the code's own bits counted; every
    neighbour in the context, as when no packet splits a position; values beyond +-V_MAX counted
    at V_MAX), or None when the shifts would not save their own size."""
    from dnaimg.zoo.context import V_MAX, bucket_probe
    cls, remap = t.ctx[2], t.ctx[4]
    n_cls, n_tab, n_b = remap.shape
    n_all = t.y_cdf.shape[0]                                # (extra narrow tables included)
    bt = _value_bits(t)                                     # (tables, 2 V_MAX + 1)
    probe = bucket_probe(arith.layout_of(t.ctx), n_tab)
    M = sym.shape[0]
    s2, t2 = sym.reshape(M, -1), idx.reshape(M, -1)
    pnb = estimate_neighbours(sym, t.ctx) if pnb is None else pnb
    bk = arith.context_tables_cm(s2, t2, probe, pnb)        # (M, positions): each value's bucket
    cell = cls[:, None] * n_b + bk
    used = remap[cls[:, None], t2, bk]
    key = (cell * n_all + used) * (2 * V_MAX + 1) + np.clip(s2, -V_MAX, V_MAX) + V_MAX
    H = np.bincount(key.ravel(), minlength=n_cls * n_b * n_all * (2 * V_MAX + 1))
    H = H.reshape(n_cls * n_b, n_all, 2 * V_MAX + 1).astype(np.float64)
    ds = np.array(sorted(range(-SHIFT_MAX, SHIFT_MAX + 1), key=abs))     # ties go to the smaller shift
    every = np.arange(n_all)
    cost = np.stack([np.einsum("ctv,tv->c", H, bt[shift_tables(every, d, n_tab, n_all)]) for d in ds], axis=1)
    best = np.argmin(cost + shift_code_bits(ds)[None, :], axis=1)
    shifts = ds[best]
    saved = cost[:, 0].sum() - cost[np.arange(len(best)), best].sum()
    if saved <= shift_code_bits(shifts).sum():
        return None
    return shifts.reshape(n_cls, n_b)


def _value_bits(t) -> np.ndarray:
    """(tables, 2 V_MAX + 1): bits of each value -V_MAX..V_MAX in each table, kept with the tables."""
    bt = getattr(t, "_value_bits", None)
    if bt is None:
        from dnaimg.zoo.context import _bits
        bt = t._value_bits = _bits(t)
    return bt


def _latent_redundancy(redundancy: float | None) -> float:
    """The outer code of the latent's stream: ``redundancy``, or the container's default."""
    from dnaimg.dna.container import DEFAULT_REDUNDANCY
    return DEFAULT_REDUNDANCY["bytes"] if redundancy is None else redundancy


def z_redundancy(redundancy: float | None) -> float:
    return min(4.0, max(Z_REDUNDANCY_MIN, 3 * _latent_redundancy(redundancy)))


def default_model(img: np.ndarray) -> str:
    """The model a gray image (HxW) or a colour one gets when none is named: the one-channel model
    for gray where it is installed (else the RGB model codes it as R = G = B)."""
    from dnaimg.zoo.registry import models_dir
    if img.ndim == 2 and (models_dir() / f"{DEFAULT_GRAY_MODEL}.json").exists():
        return DEFAULT_GRAY_MODEL
    return DEFAULT_MODEL


def packet_rows(redundancy: float | None) -> int:
    """Data oligos per packet of the latent for an outer code of ``redundancy`` (None: the
    container's default).  With an outer code, lost oligos are rebuilt, and packets of 16 rows
    spend fewer bits on heads and on contexts split between packets (4 rows against 2: +0.04 to
    +0.5 dB on training images at 0.3 nt/px; 8 against 4, the last packet cut short: +0.05 dB on
    a training X-ray; 16 against 8 with the cross context, 15 % outer code: +0.085 and +0.038 dB
    on two training X-rays held out of the models' fits, 32: about 0.02 dB more); only once the
    outer code is overwhelmed do they cost more (that X-ray at 15 % of its oligos lost: 25.4-29.5
    dB with 8 rows, 27.2-32.1 with 4; with 16 against 8, 14 % lost at 5x coverage: 24.6-27.4
    against 26.4-27.1 dB, each packet decoding up to its first lost oligo).  Without an outer code
    every lost oligo costs (the rest of) its packet: 2 rows (5 % lost: 35.2 dB instead of 33.9
    with 4)."""
    return PACKET_ROWS_PROTECTED if _latent_redundancy(redundancy) >= PROTECTED else PACKET_ROWS


def encode(img: np.ndarray, *, row_bytes: int | None = None, packet_bytes: int | None = None,
           rate_index: float | None = None, model: str | None = None,
           redundancy: float | None = None, fits: Callable[[Encoded], bool] | None = None,
           search: bool = True, refine: bool = True, progress: Callable[[int], None] | None = None,
           choose: bool | None = None) -> Encoded:
    """Image (HxWx3 or HxW uint8) -> streams.  ``row_bytes``: data bytes per oligo of the latent's
    stream, packets being :func:`packet_rows` of them (or ``packet_bytes``: packets of that size,
    PACKET_ROWS rows).  ``rate_index``: the model's rate (0 .. points-1, 1/8 steps); with ``fits``
    instead, the highest rate whose streams fit.  No ``model``: the default for the image
    (:func:`default_model`); a gray image whose one-channel model cannot fit even at its lowest
    rate is coded by the RGB model (R = G = B, flagged), whose lowest rate costs less.
    ``search``: look for a cheaper hyper-latent than the analysis network's
    (:mod:`dnaimg.codecs.zsearch`; wavelet models with a context; a few % fewer bits, several
    times the encoding time).  ``refine``: the chosen symbols refined for the decoder's synthesis
    (:mod:`dnaimg.codecs.refine`; the wavelet models: at most the same bits, a better image).
    ``choose`` (default: when no ``model`` is named, and with ``refine``): the symbols written for
    whichever model of :data:`POST_FILTER_CHOICES` draws the better image from them; with ``fits``
    too, the image also coded by the models of :data:`FAMILY_CHOICES` and the better one written.
    ``progress(0)`` is called now and then (a sign of life: the work
    has no known length)."""
    if (row_bytes is None) == (packet_bytes is None):
        raise ValueError("give row_bytes or packet_bytes")
    rows = PACKET_ROWS if packet_bytes is not None else packet_rows(redundancy)
    pb = packet_bytes if packet_bytes is not None else row_bytes * rows
    name = model or default_model(img)
    choose = (model is None and refine) if choose is None else choose
    if model is None and name != DEFAULT_MODEL and fits is not None:
        kw = dict(row_bytes=row_bytes, packet_bytes=packet_bytes, rate_index=rate_index, redundancy=redundancy,
                  fits=fits, search=search, refine=refine, progress=progress, choose=choose)
        try:
            e = encode(img, model=name, **kw)
        except RateError:
            name = DEFAULT_MODEL
        else:
            return _choose_family(img, e, name, kw, pb // rows) if choose else e
    an = Analysis(img, name)
    an.progress = progress
    if (refine and an.refinable) or arith.has_cross(an.tables.ctx):     # (the wavelet models, which all have
        an.post_gain = GAIN_ONE         # a post-filter; its byte counted from the first trial: the gain is fitted
                                        # last; a cross model's strips go with the byte, 1 without the refinement)
    zr = z_redundancy(redundancy)
    z_weight = (1 + zr) / (1 + _latent_redundancy(redundancy))
    keep_means = _latent_redundancy(redundancy) < PROTECTED     # (no outer code to rebuild lost packets)
    if fits is None:
        r = float(an.card.get("default_rate_index", DEFAULT_RATE_INDEX)) if rate_index is None else float(rate_index)
        e = an.encode(r, pb, rows, zr)
        if search:
            e = _search_z(an, e, pb, rows, zr, z_weight, keep_means) or e
        if choose:
            e = _choose_post_filter(an, e, pb, rows, zr)
        return _with_gain(an, _refined(an, e, pb, rows, zr, None), pb // rows) if refine else e
    cands = rate_indexes(an.tables)
    if rate_index is not None:
        cands = cands[cands <= rate_index + 1e-9]
    best, lo = _highest(an, cands, 0, None, pb, rows, zr, fits)
    if search:      # at the highest row that fits, else the lowest (the search may make it fit)
        start = best if best is not None else an.encode(float(cands[0]), pb, rows, zr)
        found = _search_z(an, start, pb, rows, zr, z_weight, keep_means, fits)
        if found is not None:                   # (fewer bits: a higher row may fit now)
            best, lo = _highest(an, cands, max(lo, 1), found, pb, rows, zr, fits)
    if best is None:
        raise RateError("compact: even the lowest rate does not fit")
    filled = an.fine_rate and (lo < len(cands) or rate_index is None)   # (a rate index named is a ceiling)
    if filled:
        best = _fill(an, best, pb, rows, zr, fits)
    if choose:
        best = _choose_post_filter(an, best, pb, rows, zr)     # (the same streams' size: it still fits)
    return _with_gain(an, _refined(an, best, pb, rows, zr, fits, spend=filled), pb // rows) if refine else best


def _with_gain(an: Analysis, e: Encoded, row_bytes: int) -> Encoded:
    """``e`` with the post-filter's gain byte at the head of stream 0 (``an.post_gain``: reserved)
    set to the one whose image, as the decoder draws it from ``e``'s streams (in oligos of
    ``row_bytes`` data bytes), is closest to the original (:func:`fit_gain`); the same size."""
    if an.post_gain is None or e.meta[0] not in GAIN_VERSIONS:
        return e
    received = [Received("bytes", s.data, True, report={"row_bytes": row_bytes}) for s in e.streams]
    p, model, y_hat, _, _ = _decoded_latent(received, e.meta)
    with torch.inference_mode():
        x0, x1 = (_synthesis(model, y_hat, p, g)[0, 0].double().numpy() * 255.0 for g in (0.0, None))
    if an.progress is not None:
        an.progress(0)
    b = fit_gain(x0, x1, an.image)
    z = e.streams[0]
    streams = [dataclasses.replace(z, data=bytes([b]) + z.data[1:]), *e.streams[1:]]
    return Encoded(e.codec, streams, e.meta, {**e.info, "post_gain": b / GAIN_ONE})


def fit_gain(x0: np.ndarray, x1: np.ndarray, img: np.ndarray) -> int:
    """The gain byte (gain = byte / :data:`GAIN_ONE`) whose 8-bit image ``x0 + gain (x1 - x0)``
    has the least squared error against ``img``: ``x0`` and ``x1`` are the decoder's image before
    its rounding (8-bit units) without the post-filter and with it at gain 1.  The bytes tried are
    GAIN_ONE and those within GAIN_TRIES of the least-squares gain; GAIN_ONE wins ties."""
    t = np.asarray(img, dtype=np.float64)
    r = x1 - x0
    d = t - x0

    def sse(b: int) -> float:
        return float(np.sum((np.clip(np.floor(x0 + r * (b / GAIN_ONE) + 0.5), 0, 255) - t) ** 2))

    rr = float(np.sum(r * r))
    if rr == 0:
        return GAIN_ONE
    c = int(np.clip(round(float(np.sum(r * d)) / rr * GAIN_ONE), 0, 255))
    tries = sorted({GAIN_ONE} | {min(255, max(0, c + k)) for k in range(-GAIN_TRIES, GAIN_TRIES + 1)})
    return min(tries, key=lambda b: (sse(b), b != GAIN_ONE))


def _refined(an: Analysis, e: Encoded, packet_bytes: int, rows: int, zr: float,
             fits: Callable[[Encoded], bool] | None, spend: bool = True) -> Encoded:
    """``e`` with its symbols refined for the decoder's synthesis (:mod:`dnaimg.codecs.refine`),
    if the image got better and the streams still fit: in the bytes of the latent that ``fits``
    has room for where ``spend`` (else, and without ``fits``, in ``e``'s oligos); else ``e``."""
    if not an.refinable:
        return e
    used = len(e.streams[1].data)
    if fits is None or not spend:
        cap, row_bytes = fits, packet_bytes // rows
        room = -(-used // row_bytes) * row_bytes            # (to the end of its last oligo)
        fits = lambda f: len(f.streams[1].data) <= room and (cap is None or cap(f))  # noqa: E731
    else:
        room = _most_bytes(e, used, fits)
    budget = room / used
    over = None                         # the smallest budget whose refined streams did not fit
    for _ in range(REFINE_TRIES):
        found = an.encode(e.info["rate_index"], packet_bytes, rows, zr, e.info["rdo_weight"], refine=budget)
        if found.info.get("refined_values", 0) == 0:    # no better image in this budget than e's
            if over is None:
                return e
            budget = (budget + over) / 2                # (the cut went too far: halfway back)
            continue
        if fits(found):
            return found
        over = budget               # (over by an oligo or so: a cut of at most REFINE_CUT, small images too)
        budget *= max(min(room / len(found.streams[1].data), 1.0) - 0.002, 1.0 - REFINE_CUT)
    return e


def same_coder(a: str, b: str) -> bool:
    """Whether models ``a`` and ``b`` write and read the same symbols the same way: both extend
    the same base, their cards give the same rate-distortion weights, and their own weights files
    differ in the post-filter's weights only."""
    from dnaimg.zoo.registry import card
    if a == b:
        return True
    ca, cb = card(a), card(b)
    if (ca.get("codec") != "compact" or ca.get("extends") is None or ca.get("extends") != cb.get("extends")
            or card_lambdas(ca) != card_lambdas(cb)):
        return False
    ta, tb = ({k: v for k, v in _tensors(c, n).items() if not k.startswith(EXTENSION_POST)}
              for c, n in ((ca, a), (cb, b)))
    return ta.keys() == tb.keys() and all(ta[k].dtype == tb[k].dtype and torch.equal(ta[k], tb[k]) for k in ta)


def _choose_post_filter(an: Analysis, e: Encoded, packet_bytes: int, rows: int, zr: float) -> Encoded:
    """``e``, or the same symbols written for the installed model of :data:`POST_FILTER_CHOICES`
    whose synthesis draws a better image from them (``an`` then codes with it)."""
    from dnaimg.zoo.registry import ModelError
    names = [n for n in POST_FILTER_CHOICES.get(an.name, ()) if _installed(n)]
    if not names or not an.refinable:
        return e
    row = an.tables.rate_row(e.info["rate_index"])
    sym = an.coded(row, e.info["rdo_weight"])[0]
    best = (an.synthesis_error(row, sym, grad=False)[0], an.name)
    for n in names:
        try:                            # (an alternative that is not there as it should be: not chosen)
            if same_coder(an.name, n):
                best = min(best, (an.synthesis_error(row, sym, load(n)[0], grad=False)[0], n))
        except ModelError:
            pass
        if an.progress is not None:
            an.progress(0)
    if best[1] == an.name:
        return e
    an.use_model(best[1])
    return an.encode(e.info["rate_index"], packet_bytes, rows, zr, e.info["rdo_weight"])


def _installed(name: str) -> bool:
    """Whether model ``name``'s card and weights are both in the models folder (an alternative
    the encoder may try; whether they match is :func:`load`'s to check)."""
    from dnaimg.zoo.registry import models_dir
    return all((models_dir() / f"{name}.{x}").exists() for x in ("json", "safetensors"))


def _choose_family(img: np.ndarray, e: Encoded, name: str, kw: dict, row_bytes: int) -> Encoded:
    """``e`` (coded by ``name``), or the image coded by an installed model of
    :data:`FAMILY_CHOICES` (with ``kw``, the same cap) whose streams, in oligos of ``row_bytes``
    data bytes, decode to a better image."""
    from dnaimg.zoo.registry import ModelError
    best, err = e, _decoded_error(img, e, row_bytes)
    for n in FAMILY_CHOICES.get(name, ()):
        if not _installed(n):
            continue
        try:                            # (an alternative that is not there as it should be, or does not fit: not chosen)
            f = encode(img, model=n, **kw)
        except (RateError, ModelError):
            continue
        f_err = _decoded_error(img, f, row_bytes)
        if f_err < err:
            best, err = f, f_err
    return best


def _decoded_error(img: np.ndarray, e: Encoded, row_bytes: int) -> float:
    """Squared error of the image that ``e``'s streams, received whole in oligos of ``row_bytes``
    data bytes, decode to."""
    out, _ = decode([Received("bytes", s.data, True, report={"row_bytes": row_bytes}) for s in e.streams], e.meta)
    return float(np.sum((out.astype(np.float64) - img.astype(np.float64)) ** 2))


def _most_bytes(e: Encoded, used: int, fits: Callable[[Encoded], bool]) -> int:
    """The most bytes of the latent that still ``fit`` with ``e``'s other streams (at least
    ``used``, which do)."""
    def probe(n: int) -> Encoded:
        return Encoded(e.codec, [e.streams[0], Stream("bytes", bytes(n))], e.meta, e.info)
    lo, hi = used, 2 * used + 1
    while hi < 1 << 24 and fits(probe(hi)):
        lo, hi = hi, 2 * hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(probe(mid)) else (lo, mid)
    return lo


def _highest(an: Analysis, cands: np.ndarray, lo: int, best: Encoded | None, packet_bytes: int, rows: int,
             zr: float, fits: Callable[[Encoded], bool]) -> tuple[Encoded | None, int]:
    """Bisection over the rate indexes ``cands[lo:]`` (rate grows with the index; ``best``: what
    fits below ``lo``): (the highest that fits or ``best``, the index above it)."""
    hi = len(cands) - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        e = an.encode(float(cands[mid]), packet_bytes, rows, zr)
        if fits(e):
            best, lo = e, mid + 1
        else:
            hi = mid - 1
    return best, lo


def _objective(an: Analysis, e: Encoded, z_weight: float) -> float:
    """The encoder's objective for ``e`` (coded by ``an`` with its current hyper-latent): its
    RDO's weighted squared error plus the streams' bits, z's at ``z_weight``."""
    row, w = an.tables.rate_row(e.info["rate_index"]), e.info["rdo_weight"]
    lam = _row_lambda(card_lambdas(an.card), row) * w * 255.0 ** 2
    z_len, y_len = (len(s.data) for s in e.streams)
    return lam * an.squared_error(row, w) + 8.0 * (y_len + z_weight * z_len)


def _search_z(an: Analysis, e: Encoded, packet_bytes: int, rows: int, zr: float, z_weight: float,
              keep_means: bool, fits: Callable[[Encoded], bool] | None = None) -> Encoded | None:
    """``e`` coded again with a hyper-latent searched at its rate row (:mod:`dnaimg.codecs.zsearch`)
    when that lowers the encoder's objective, it still ``fits`` and, with ``keep_means``, LL4's
    means err at most ``MEAN_ERROR_SLACK`` times as much (what lost packets decode to); else
    None, ``an`` unchanged."""
    from dnaimg.codecs import zsearch
    if not an.fine_rate:
        return None
    r, w = e.info["rate_index"], e.info["rdo_weight"]
    row = an.tables.rate_row(r)
    z = zsearch.search(an, row, w, z_weight, keep_means,
                       progress=None if an.progress is None else (lambda i, n: an.progress(0)))
    if z is None:
        return None
    before, err = _objective(an, e, z_weight), zsearch.mean_error(an, row) if keep_means else 0.0
    z0 = an.z[0]
    an.use_z(z)
    found = an.encode(r, packet_bytes, rows, zr, w)
    if (_objective(an, found, z_weight) < before and (fits is None or fits(found))
            and (not keep_means or zsearch.mean_error(an, row) <= err * MEAN_ERROR_SLACK)):
        return found
    an.use_z(z0)
    return None


#: weights of the RDO tried at the highest rate row that fits (steps of 2^(1/32): near 1 a step
#: may already add several % of bits): a weaker rounding towards the mean
#: spends more bits, about one row's step by weight 2 at the X-rays' rates, several rows by weight
#: 16 at microscopy's highest (where fewer values are near zero); measured on training images of
#: both gray folders: on the line between the rows' (rate, PSNR) points, or above it
FILL_WEIGHTS = tuple(float(2 ** (k / 32)) for k in range(1, 129))


def _fill(an: Analysis, best: Encoded, packet_bytes: int, rows: int, zr: float,
          fits: Callable[[Encoded], bool]) -> Encoded:
    """The highest rate that fits, finer than the rate rows: ``best``'s row with the largest
    :data:`FILL_WEIGHTS` that still fits (bisection; the rate grows with the weight)."""
    r = best.info["rate_index"]
    lo, hi = 0, len(FILL_WEIGHTS) - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        e = an.encode(r, packet_bytes, rows, zr, FILL_WEIGHTS[mid])
        if fits(e):
            best, lo = e, mid + 1
        else:
            hi = mid - 1
    return best


def decode(received: list[Received], meta: bytes, precision: str = "fp32") -> tuple[np.ndarray, dict]:
    """Streams -> (image uint8 HxWx3 or HxW, report).  ``precision`` of the synthesis transform
    only ("bf16": about twice as fast on CPUs with native bf16; the symbols are the same)."""
    p, model, y_hat, gain, report = _decoded_latent(received, meta)
    with torch.inference_mode():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            x = _synthesis(model, y_hat, p, gain).float()
        del y_hat
        img = x[0].clamp_(0, 1).mul_(255.0).add_(0.5).to(torch.uint8).permute(1, 2, 0).numpy()
        del x
    if img.shape[2] == 1:
        img = img[..., 0]
    elif p.gray:
        from dnaimg.image import gray_of_rgb
        img = gray_of_rgb(img)
    return np.ascontiguousarray(img), report


def _synthesis(model, y_hat: torch.Tensor, p: CompactParams, gain: float | None) -> torch.Tensor:
    """The decoder's image (1, C, H, W), floats before its rounding, drawn by ``model``'s synthesis
    from the latent ``y_hat`` on the decoder's tiles, with the post-filter's ``gain`` (None: the
    model's synthesis as it is)."""
    gs = model.g_s if gain is None else (lambda t: model.g_s(t, post_gain=gain))
    return tiled(gs, y_hat, 1 / 16, TILE_PX // 16, model.halo_px // 16)[..., :p.height, :p.width]


def _decoded_latent(received: list[Received], meta: bytes) -> tuple[CompactParams, object, torch.Tensor, float | None, dict]:
    """Streams -> (metadata, model, the latent (1, M, h, w), the post-filter's gain or None, report)."""
    from dnaimg.zoo.exact import FA
    from dnaimg.zoo.registry import ModelError
    p = CompactParams.unpack(meta)
    if len(received) != 2 or any(r.kind != "bytes" for r in received):
        raise DecodeError("compact codec: expected two byte streams")
    try:
        name = model_for_weights(p.model_id)
        model, t, _ = load(name)
    except ModelError as e:
        raise DecodeError(str(e)) from None
    if not received[0].exact:
        # (the hyper-latent is arithmetic-coded: one wrong byte and every table after it is wrong)
        raise DecodeError("compact: the hyper-latent stream, which every part of the image needs, could not be "
                          "rebuilt from the reads (too many of its oligos lost or damaged); no image is drawn")
    N = model.cfg.N
    h, w = p.latent_hw()
    zh, zw = h // 4, w // 4
    zbuf = np.frombuffer(received[0].data, dtype=np.uint8)
    ctx = t.ctx
    gain = None
    if p.gained:
        if getattr(model.g_s, "post", None) is None:
            raise DecodeError(f"compact: metadata version {p.version} (a post-filter gain) for model {name}, "
                              "which has no post-filter")
        if len(zbuf) == 0:
            raise DecodeError("compact: stream 0 ends before its post-filter gain")
        gain, zbuf = int(zbuf[0]) / GAIN_ONE, zbuf[1:]
    if p.adapted:
        if t.ctx is None:
            raise DecodeError(f"compact: metadata version {p.version} (table shifts) for model {name}, "
                              "which has no context")
        shifts, used = unpack_shifts(zbuf, t.ctx[4].shape[0], t.ctx[3].shape[0])
        ctx, zbuf = adapt_context(t.ctx, shifts, t.y_cdf.shape[0]), zbuf[used:]
    z = decode_z(zbuf, (N, zh, zw), t)[None]
    mu, sigma = t.h_s(z)
    if p.rate_row >= t.gain.shape[0]:
        raise DecodeError(f"compact: rate row {p.rate_row} beyond the model's {t.gain.shape[0]}")
    mu_g, idx = t.gained(mu, sigma, p.rate_row)
    M = mu_g.shape[1]
    flat, tabs = _y_layout(idx[0], h, w, p.strips)
    total = flat.size
    ybytes = np.frombuffer(received[1].data, dtype=np.uint8)
    bd = _packet_bytes_from(received[1], p)
    if len(ybytes) == 0:
        raise DecodeError("compact: the latent stream is empty")
    packets = whole_packets(ybytes, bd, 0)
    er = received[1].erased
    readable = np.full(len(packets), bd)
    if er is not None:              # (a packet's bytes before the first one lost still decode)
        erp = whole_packets(er, bd, False)
        readable = np.where(erp.any(axis=1), erp.argmax(axis=1), bd)
    lost = arith.headless(readable)
    expected = np.concatenate([[0.0], np.cumsum(t.y_bits[tabs])])
    vals, known = arith.decode_packets(packets, lost, total, tabs, t.y_cdf, t.y_n, t.y_off, expected, ctx,
                                       readable, position_neighbours(h, w)[0] if p.strips else None)
    values_lost = int(len(known) - np.count_nonzero(known))
    yl = _latent_hat(vals, flat, mu_g.reshape(M, h * w), np.ascontiguousarray(t.inv_gain[p.rate_row]),
                     float(1 << FA))
    # the coder's int64 arrays (~8 bytes a latent value each) go before the synthesis runs
    del mu, sigma, mu_g, idx, flat, tabs, expected, vals, known
    y_hat = torch.from_numpy(yl).view(1, h, w, M).permute(0, 3, 1, 2)     # channels-last, no copy
    report = {"model": name, "rate_index": p.rate_row / 8, "table_shifts": p.adapted,
              **({} if gain is None else {"post_gain": gain}),
              "packets": int(len(packets)),
              "packets_lost": int(lost.sum()), "packets_cut": int(((~lost) & (readable < bd)).sum()),
              "latent_values_lost": values_lost,
              "latent_values": M * h * w, "z_exact": bool(received[0].exact)}
    return p, model, y_hat, gain, report


@nb.njit(cache=True, nogil=True, parallel=True)
def _latent_hat(vals, flat, mu_g, inv_gain, scale):
    """The decoded latent in channels-last order (h*w, M), float32: value ``i`` of the coding
    order (position ``flat[i]`` of the (M, h*w) latent) is ``(f32(vals[i]) + f32(mu_g / scale)) *
    inv_gain[c]``, exactly the float32 operations of FORMAT.md (one pass instead of six)."""
    M, P = mu_g.shape
    out = np.empty((P, M), dtype=np.float32)
    for i in nb.prange(flat.shape[0]):
        k = flat[i]
        c = k // P
        q = k - c * P
        out[q, c] = (np.float32(vals[i]) + np.float32(mu_g[c, q] / scale)) * inv_gain[c]
    return out


def _packet_bytes_from(r: Received, p: CompactParams) -> int:
    bd = r.report.get("row_bytes")
    if bd is None:
        raise DecodeError("compact: the container did not say its row size")
    return int(bd) * p.packet_rows
