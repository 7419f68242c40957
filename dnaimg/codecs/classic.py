"""Classic image codecs: a numpy image <-> one byte stream (image level only; nothing of DNA here).

Codecs, their stable ids (written into DNA: never change them) and what ``quality`` means::

    name          id  kind      quality                         library
    jpeg           1  lossy     int 1..100                      Pillow (libjpeg-turbo)
    webp           2  lossy     int 0..100                      Pillow (libwebp)
    jpeg2000       3  lossy     float 0.01..24.0 bits per pixel Pillow (OpenJPEG)
    avif           4  lossy     int 0..100                      Pillow (libavif + aom)
    jxl            5  lossy     int 0..99                       imagecodecs (libjxl)
    png            6  lossless  ignored (None)                  Pillow (zlib); libpng for 16-bit RGB
    jxl-lossless   7  lossless  ignored (None)                  imagecodecs (libjxl)

Aliases: ``jpg`` -> jpeg, ``j2k`` / ``jp2`` -> jpeg2000, ``jpegxl`` -> jxl (names are case-insensitive).
Higher quality means more bytes (:func:`quality_for` assumes it).

Inputs.  Lossy codecs take ``uint8`` HxWx3 (RGB) or HxW (gray); jpeg2000 also ``uint16`` HxW (16-bit
gray: Pillow/OpenJPEG has no 16-bit colour mode) and jxl ``uint16`` HxW and HxWx3 (libjxl codes 16-bit
samples lossily and gives them back as 16-bit).  Gray is coded as one gray plane by jpeg, jpeg2000,
avif (4:0:0) and jxl; WebP has no gray mode, so a gray image is coded as RGB (R=G=B) and
:func:`decompress` gives HxWx3 back unless told ``channels=1`` (then the decoded luma, which is the
coded Y plane; :meth:`ClassicCodec.decode` does this from the meta).  No lossy codec is given alpha
(AVIF, WebP, JPEG 2000 and JPEG XL could carry it; dnaimg keeps alpha only losslessly).  Lossless
codecs take ``uint8`` and ``uint16`` HxW (gray), HxWx2 (gray+alpha), HxWx3 (RGB), HxWx4 (RGBA), and
give exactly the same array back.  :data:`LAYOUTS_OF` lists each codec's layouts.  Sides are
1..65535 px (the meta stores them as uint16; WebP itself stops at 16383).

Settings (each lossy codec at its strongest settings for RGB PSNR per byte; see the measurements below):

- **jpeg**: ``optimize=True`` (optimised Huffman tables), baseline (not progressive), chroma 4:2:0
  (``subsampling=2``), libjpeg's standard tables scaled by ``quality``.  4:2:0 beat 4:4:4 at all three
  rates, and progressive lost at 0.25 and 0.5 bpp (its extra scan headers) for a tiny gain at 1 bpp.
- **webp**: lossy, ``method=6`` (slowest, smallest), libwebp's 4:2:0 (the only lossy WebP format).
- **jpeg2000**: OpenJPEG rate mode as in the v1 baseline: ``quality_mode="rates"``, one quality layer at
  compression ratio ``8 * channels / bpp`` (so ``quality`` is the target bits per pixel of the
  codestream), 9/7 irreversible wavelet, the multi-component (YCbCr-like) transform ``mct=1`` for RGB
  (without it RGB is coded plane by plane, far worse), raw ``.j2k`` codestream (no JP2 boxes).  Rate
  mode targets the size directly; :func:`quality_for` searches the float bpp until the stream fits.
- **avif**: ``speed=2`` (libaom, slow and small: 2-4 s per encode of 768x512 on 2 cores, so about
  25 s for a :func:`quality_for` search; speed 6 is 15x faster for ~1.5 % more bytes), chroma
  ``subsampling="4:4:4"`` and ``advanced={"tune": "psnr"}`` (libaom's PSNR tuning: +0.3-0.6 dB at
  equal bytes, see the measurements), full range; gray images as 4:0:0.  Pillow 13's save options
  ``speed``, ``subsampling`` and ``advanced`` were checked by reading the plugin and by saving (each
  changes the stream; speed 2 is 15x slower than 6).
- **jxl**: ``imagecodecs.jpegxl_encode(img, level=quality, effort=7)`` (VarDCT; ``level`` maps
  to the butteraugli distance with libjxl's ``JxlEncoderDistanceFromQuality``: 0 -> 25, 90 -> 1.0,
  99 -> 0.19).  Level 100 is excluded: it means distance 0 in VarDCT mode, a stream larger than the
  lossless one (585 kB vs 347 kB on a 768x512 photo), so the range stops at 99.
- **png**: Pillow ``optimize=True`` (zlib level 9, adaptive filters) for modes L, RGB, RGBA and I;16
  (16-bit gray); Pillow has no 16-bit colour modes, so uint16 HxWx2/3/4 and uint8 HxWx2 (gray+alpha)
  go through libpng (``imagecodecs.png_encode(level=9)``).  All PNGs are decoded with libpng (``imagecodecs.png_decode``),
  which gives the stream's exact bit depth and channel count back.
- **jxl-lossless**: ``imagecodecs.jpegxl_encode(img, lossless=True, effort=9)`` (modular mode, bit
  exact for all five input layouts; ~2 s for a 768x512 RGB photo on 2 cores).

Errors.  Everything raises :class:`~dnaimg.codecs.base.CodecError` (unknown codec, bad image or
quality, a stream that does not decode: every exception of Pillow / imagecodecs is caught and re-raised
as CodecError with a one-line message), or :class:`~dnaimg.codecs.base.RateError` when even the lowest
quality does not fit.  A decoder only sees damage the format can see: PNG chunk CRCs are all checked
before decoding (libpng itself merely warns about a bad zlib check), a truncated stream fails for every
codec, but flipped bytes inside JPEG / WebP / AVIF / JPEG XL data may decode to a damaged image (the
container's CRC32 is what says whether a stream is exact).

Meta bytes (:meth:`ClassicCodec.encode` -> ``Encoded.meta``, written into DNA), 5 bytes::

    byte 0     layout code: bits 0-2 = channels (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA), bit 4 = 16-bit
               samples, other bits 0.  Valid codes: 0x01, 0x02, 0x03, 0x04 (uint8 HxW, HxWx2, HxWx3,
               HxWx4), 0x11, 0x12, 0x13, 0x14 (the same, uint16); per codec (:data:`LAYOUTS_OF`):
               jpeg, webp, avif 0x01 and 0x03; jpeg2000 also 0x11; jxl also 0x11 and 0x13; png and
               jxl-lossless all eight.
    bytes 1-2  height, big-endian uint16
    bytes 3-4  width,  big-endian uint16

:meth:`ClassicCodec.decode` decodes the stream, brings a lossy gray/RGB result to the coded channel
count (WebP gray) and raises CodecError if the dtype or shape differs from the meta (a damaged stream
that still decodes to something else).

API::

    CODECS["avif"].id                                  # 4;  CodecSpec(id, lossless, lo, hi, int_quality, ...)
    data = compress(img, "avif", 60);  img2 = decompress(data, "avif")
    q, data = quality_for(img, "jpeg", lambda n: n <= 20_000)   # highest quality that fits
    enc = get_codec("png").encode(img);  img2 = get_codec("png").decode(enc.streams[0].data, enc.meta)

Measurements (training photographs only; Kodak never used for tuning)
---------------------------------------------------------------------
CPU: ``lscpu | grep 'Model name'`` -> ``AMD EPYC`` (2 cores available; Pillow 13.0.0, libavif 1.4.2
with aom, libwebp 1.6.0, libjpeg-turbo (API 6.2), OpenJPEG 2.5.4, imagecodecs 2026.3.6).  Images: 6 of
the 1024x768 training photos of the CSun_Hays80 set (every 6th of the sorted 1024x768 ones:
aqueduct, cavern_indoor, forest_needleleaf, lift_bridge, ruin, viaduct), in three sets:

- ``down2``: ``Image.reduce(2)`` (2x2 box) to 512x384: removes the source JPEG's own 4:2:0 chroma and
  8x8 blocking, which would favour 4:2:0 and DCT8-only coding;
- ``crop``: the 768x512 crop at (128, 128), native resolution, *on* the source's 8x8/16x16 JPEG grid
  (biased: re-coding aligned DCT8 blocks is cheap);
- ``cropodd``: the 768x512 crop at (131, 133), native resolution, off that grid.

For each image and setting a quality sweep (jpeg 1,3,5,8,12,16,20,25,30,40..90,95; avif 0,10..90;
jxl 0,10..90,95) gives (bpp, RGB PSNR) points; PSNR is interpolated linearly in log(bpp) at 0.25 /
0.5 / 1.0 bpp, i.e. at equal bytes, and averaged over the images.  Command (script in the report of
the change that added this module)::

    .venv/bin/python measure.py {down2|crop|cropodd} jpeg420,jpeg444,... <tag>

Mean RGB PSNR (dB) at 0.25 / 0.5 / 1.0 bpp::

    JPEG (optimize=True)      down2                 crop                  cropodd
    4:2:0 baseline       25.33 27.79 30.47     25.79 28.58 31.87     25.70 28.48 31.73   <- chosen
    4:4:4 baseline       24.63 27.57 30.35     25.03 28.27 31.56     24.95 28.17 31.42
    4:2:0 progressive    25.05 27.70 30.53     25.58 28.53 32.10
    4:4:4 progressive    24.21 27.41 30.31     24.70 28.15 31.61

    AVIF (speed=2)            down2                 crop                  cropodd
    4:2:0                27.80 30.26 33.57
    4:4:4                27.85 30.29 33.63     28.38 31.51 37.69
    4:2:0 tune=psnr      28.01 30.59 33.97     28.61 31.87 37.76     28.52 31.41 35.37
    4:4:4 tune=psnr      28.14 30.75 34.26     28.72 32.09 38.10     28.64 31.57 35.60   <- chosen
    (seconds per encode, mean over the sweep: ~2.0 at 512x384, ~3.8 at 768x512)

    JPEG XL lossy, effort  down2                 crop                  cropodd             s/encode 768x512
    (the 5 images that reach 0.25 bpp at every effort; forest_needleleaf needs effort >= 8 for it)
    1 (= 2)                                     27.78 30.66 36.46                           0.03
    3                    27.69 30.00 32.94     28.42 31.34 37.43     28.35 30.96 34.43     0.03
    4                    27.70 29.95 32.90     28.41 31.28 37.36                           0.03
    5                                          28.27 31.25 36.98                           0.08
    6                                          28.35 31.35 36.89                           0.12
    7                    27.63 30.12 33.27     28.33 31.35 36.91     28.30 31.20 34.82     0.15-0.20  <- chosen
    8                                          28.25 31.35 36.89     28.27 31.20 34.82     0.55-0.64
    9                    27.62 30.14 33.32     28.27 31.36 36.90     28.28 31.21 34.84     0.80-0.87

    JPEG XL lossless (cropodd, uint8 RGB 768x512)   effort 5: 7.506 bpp 0.26 s, 7: 7.116 bpp 0.51 s,
        8: 7.085 bpp 1.52 s, 9: 7.034 bpp 2.11 s (<- chosen), 10: 7.051 bpp 6.49 s

Conclusions.  JPEG: 4:2:0 beats 4:4:4 by 0.1-0.75 dB everywhere; progressive loses at 0.25/0.5 bpp.
AVIF: 4:4:4 beats 4:2:0 (+0.03..0.3 dB) and tune=psnr adds 0.3-0.6 dB at every rate.  JPEG XL: effort
3 only wins on the grid-aligned crop (the source's own DCT8 blocks); off the grid and downscaled,
efforts 7, 8 and 9 tie within 0.05 dB and beat the low efforts by 0.2-0.4 dB at 0.5-1 bpp, and 7 is
4-5x faster than 9 (one quality_for search: ~7 encodes), so 7.  Lossless JPEG XL: effort 9, the
smallest, ~2 s per 768x512 RGB image (effort 10 is larger and 3x slower).
"""
from __future__ import annotations

import io
import math
import numbers
import struct
import warnings
import zlib
from dataclasses import dataclass
from typing import Callable

import imagecodecs
import numpy as np
from PIL import Image, UnidentifiedImageError

from dnaimg.codecs import ALIASES, CODEC_IDS, canonical
from dnaimg.codecs.base import CodecError, Encoded, RateError, Stream

__all__ = ["CODECS", "CODEC_BY_ID", "CodecSpec", "ClassicCodec", "check_codec", "compress", "decompress",
           "get_codec", "quality_for", "pack_meta", "unpack_meta", "JXL_EFFORT", "JXL_LOSSLESS_EFFORT",
           "AVIF_SPEED", "AVIF_SUBSAMPLING", "JPEG_SUBSAMPLING", "LAYOUTS_OF"]

#: chosen by measurement (module docstring)
JPEG_SUBSAMPLING = 2            # Pillow: 0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0
AVIF_SPEED = 2
AVIF_SUBSAMPLING = "4:4:4"
AVIF_ADVANCED = {"tune": "psnr"}
JXL_EFFORT = 7
JXL_LOSSLESS_EFFORT = 9
MAX_SIDE = 65535


@dataclass(frozen=True)
class CodecSpec:
    id: int                     # stable id written into DNA
    lossless: bool
    lo: float | None            # quality range (None for lossless codecs)
    hi: float | None
    int_quality: bool           # quality is an integer (else a float: jpeg2000's bits per pixel)
    default: float | None       # quality used when none is given
    settings: str               # the settings used, in words


CODECS: dict[str, CodecSpec] = {
    "jpeg": CodecSpec(CODEC_IDS["jpeg"], False, 1, 100, True, 75,
                      "Pillow JPEG, optimize=True (optimised Huffman), baseline, 4:2:0; quality 1..100"),
    "webp": CodecSpec(CODEC_IDS["webp"], False, 0, 100, True, 75,
                      "Pillow WebP lossy, method=6; quality 0..100"),
    "jpeg2000": CodecSpec(CODEC_IDS["jpeg2000"], False, 0.01, 24.0, False, 1.0,
                          "Pillow/OpenJPEG .j2k, rate mode (quality = target bits per pixel), 9/7 irreversible, "
                          "mct=1 for RGB"),
    "avif": CodecSpec(CODEC_IDS["avif"], False, 0, 100, True, 60,
                      f"Pillow AVIF (aom), speed={AVIF_SPEED}, subsampling {AVIF_SUBSAMPLING} (gray: 4:0:0), "
                      f"tune=psnr; quality 0..100"),
    "jxl": CodecSpec(CODEC_IDS["jxl"], False, 0, 99, True, 90,
                     f"imagecodecs JPEG XL (VarDCT), level=quality, effort={JXL_EFFORT}; quality 0..99"),
    "png": CodecSpec(CODEC_IDS["png"], True, None, None, False, None,
                     "Pillow PNG optimize=True (zlib 9); 16-bit RGB through libpng level 9; lossless"),
    "jxl-lossless": CodecSpec(CODEC_IDS["jxl-lossless"], True, None, None, False, None,
                              f"imagecodecs JPEG XL lossless=True, effort={JXL_LOSSLESS_EFFORT}"),
}
CODEC_BY_ID: dict[int, str] = {s.id: n for n, s in CODECS.items()}

_PIL_FORMAT = {"jpeg": "JPEG", "webp": "WEBP", "jpeg2000": "JPEG2000", "avif": "AVIF"}

# layout code -> (dtype, channels)
_LAYOUTS = {0x01: (np.uint8, 1), 0x02: (np.uint8, 2), 0x03: (np.uint8, 3), 0x04: (np.uint8, 4),
            0x11: (np.uint16, 1), 0x12: (np.uint16, 2), 0x13: (np.uint16, 3), 0x14: (np.uint16, 4)}
_LOSSY_LAYOUTS = (0x01, 0x03)
#: the layouts each codec takes (and a reader accepts in its meta): 16-bit samples lossy through
#: jpeg2000 (gray: Pillow/OpenJPEG has no 16-bit colour mode) and jxl; alpha only losslessly
LAYOUTS_OF = {"jpeg": _LOSSY_LAYOUTS, "webp": _LOSSY_LAYOUTS, "avif": _LOSSY_LAYOUTS,
              "jpeg2000": (0x01, 0x03, 0x11), "jxl": (0x01, 0x03, 0x11, 0x13),
              "png": tuple(_LAYOUTS), "jxl-lossless": tuple(_LAYOUTS)}
_CODE_OF = {(np.dtype(d), c): code for code, (d, c) in _LAYOUTS.items()}


def _code_of(a: np.ndarray) -> int | None:
    """The layout code of an array, None if unsupported."""
    ch = 1 if a.ndim == 2 else (a.shape[2] if a.ndim == 3 else 0)
    return _CODE_OF.get((a.dtype, ch))
_META = struct.Struct(">BHH")
META_BYTES = _META.size        # every classic codec's metadata in the header


def _one_line(e: BaseException) -> str:
    s = " ".join(str(e).split())
    return f"{type(e).__name__}: {s[:200]}" if s else type(e).__name__


def check_codec(name) -> str:
    """The canonical name of a classic codec (an alias or any case); CodecError if unknown."""
    try:
        key = canonical(name) if isinstance(name, str) else None
    except CodecError:
        key = None
    if key not in CODECS:
        raise CodecError(f"unknown codec {name!r}; choose from {', '.join(CODECS)} "
                         f"(aliases: {', '.join(a for a, c in ALIASES.items() if c in CODECS)})")
    return key


def _layout_code(img) -> tuple[np.ndarray, int]:
    """(contiguous array, layout code) of a supported image; CodecError otherwise."""
    a = np.asarray(img)
    code = _code_of(a)
    if code is None:
        raise CodecError(f"unsupported image: shape {a.shape} dtype {a.dtype} (expected uint8 or uint16 HxW, "
                         f"HxWx2, HxWx3 or HxWx4)")
    if min(a.shape[:2]) < 1 or max(a.shape[:2]) > MAX_SIDE:
        raise CodecError(f"image sides must be 1..{MAX_SIDE} px, got {a.shape[0]}x{a.shape[1]}")
    return np.ascontiguousarray(a), code


def _takes(codec: str) -> str:
    """The layouts a lossy codec takes, in words."""
    return {"jpeg2000": "a uint8 HxWx3 or HxW, or uint16 HxW image",
            "jxl": "a uint8 or uint16 HxWx3 or HxW image"}.get(codec, "a uint8 HxWx3 or HxW image")


def _check_image(img, codec: str) -> tuple[np.ndarray, int]:
    a, code = _layout_code(img)
    if code not in LAYOUTS_OF[codec]:
        raise CodecError(f"{codec} takes {_takes(codec)}, got shape {a.shape} dtype {a.dtype} "
                         f"(use png or jxl-lossless)")
    return a, code


def _check_quality(codec: str, quality):
    spec = CODECS[codec]
    if spec.lossless:
        return None
    if quality is None:
        return spec.default
    if isinstance(quality, bool) or not isinstance(quality, numbers.Real) or not math.isfinite(quality):
        raise CodecError(f"{codec} quality must be a number in {spec.lo}..{spec.hi}, got {quality!r}")
    if spec.int_quality:
        if quality != int(quality):
            raise CodecError(f"{codec} quality must be an integer in {spec.lo}..{spec.hi}, got {quality!r}")
        quality = int(quality)
    else:
        quality = float(quality)
    if not spec.lo <= quality <= spec.hi:
        raise CodecError(f"{codec} quality must be in {spec.lo}..{spec.hi}, got {quality}")
    return quality


# ---------------------------------------------------------------------------------------------
# encoders: (contiguous array of a valid layout, checked quality) -> bytes

def _pil_save(a: np.ndarray, fmt: str, **opts) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, fmt, **opts)
    return buf.getvalue()


def _enc_jpeg(a, q):
    return _pil_save(a, "JPEG", quality=q, optimize=True, subsampling=JPEG_SUBSAMPLING)


def _enc_webp(a, q):
    return _pil_save(a, "WEBP", quality=q, method=6, lossless=False)


def _enc_jpeg2000(a, bpp):
    ch = 1 if a.ndim == 2 else a.shape[2]
    ratio = max(1.0, 8.0 * a.dtype.itemsize * ch / bpp)     # of the raw samples (16-bit gray: 16 bits)
    return _pil_save(a, "JPEG2000", quality_mode="rates", quality_layers=[ratio], irreversible=True,
                     no_jp2=True, mct=1 if ch == 3 else 0)


def _enc_avif(a, q):
    sub = "4:0:0" if a.ndim == 2 else AVIF_SUBSAMPLING
    return _pil_save(a, "AVIF", quality=q, speed=AVIF_SPEED, subsampling=sub, advanced=AVIF_ADVANCED)


def _enc_jxl(a, q):
    return bytes(imagecodecs.jpegxl_encode(a, level=q, effort=JXL_EFFORT))


def _enc_png(a, q):
    if a.ndim == 3 and (a.dtype == np.uint16 or a.shape[2] == 2):     # Pillow has no 16-bit colour modes;
        return bytes(imagecodecs.png_encode(a, level=9))               # gray+alpha through libpng too
    im = Image.fromarray(a)
    if im.mode not in ("L", "RGB", "RGBA", "I;16"):
        raise CodecError(f"png: unexpected Pillow mode {im.mode}")
    buf = io.BytesIO()
    im.save(buf, "PNG", optimize=True)
    return buf.getvalue()


def _enc_jxl_lossless(a, q):
    return bytes(imagecodecs.jpegxl_encode(a, lossless=True, effort=JXL_LOSSLESS_EFFORT))


_ENCODERS = {"jpeg": _enc_jpeg, "webp": _enc_webp, "jpeg2000": _enc_jpeg2000, "avif": _enc_avif,
             "jxl": _enc_jxl, "png": _enc_png, "jxl-lossless": _enc_jxl_lossless}


def compress(img: np.ndarray, codec: str, quality=None) -> bytes:
    """Image -> the codec's byte stream.

    Lossy codecs: ``uint8`` HxWx3, or HxW gray (coded as gray by jpeg, jpeg2000, avif and jxl; as RGB
    with R=G=B by webp, which has no gray mode); jpeg2000 also ``uint16`` HxW, jxl ``uint16`` HxW and
    HxWx3.  ``quality`` in the codec's range (see :data:`CODECS`; None: the codec's default).  Lossless
    codecs (png, jxl-lossless): ``uint8`` or ``uint16`` HxW, HxWx2, HxWx3, HxWx4; ``quality`` is ignored."""
    codec = check_codec(codec)
    a, _ = _check_image(img, codec)
    q = _check_quality(codec, quality)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _ENCODERS[codec](a, q)
    except CodecError:
        raise
    except Exception as e:                  # Pillow / imagecodecs raise many types
        raise CodecError(f"{codec} encoder failed on a {a.shape} {a.dtype} image ({_one_line(e)})") from None


# ---------------------------------------------------------------------------------------------
# decoders: bytes -> array (uint8/uint16, HxW or HxWxC)

MAX_PIXELS = 1 << 28            # refuse to decode a (damaged) header that claims more pixels


def _dec_pillow(data: bytes, codec: str) -> np.ndarray:
    try:
        im = Image.open(io.BytesIO(data), formats=[_PIL_FORMAT[codec]])
    except UnidentifiedImageError:
        raise CodecError(f"{codec}: not a {_PIL_FORMAT[codec]} stream") from None
    with im:
        if im.size[0] * im.size[1] > MAX_PIXELS:
            raise CodecError(f"{codec}: the stream claims {im.size[0]}x{im.size[1]} px")
        im.load()
        if im.mode in ("I;16", "I;16L", "I;16B", "I;16N"):           # 16-bit gray (jpeg2000)
            return np.array(im).astype(np.uint16)
        if im.mode not in ("L", "RGB"):
            im = im.convert("RGB")
        return np.array(im, dtype=np.uint8)


def _check_png_chunks(data: bytes) -> None:
    """Signature, IHDR first, every chunk's CRC32, IEND last and nothing after it: libpng only warns
    about a bad zlib check and decodes the damaged pixels, so damage is caught here first."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise CodecError("png: not a PNG stream")
    pos, n = 8, len(data)
    while True:
        if pos + 12 > n:
            raise CodecError("png: truncated stream")
        length, = struct.unpack(">I", data[pos:pos + 4])
        end = pos + 12 + length
        if end > n:
            raise CodecError("png: truncated stream")
        if zlib.crc32(data[pos + 4:end - 4]) != struct.unpack(">I", data[end - 4:end])[0]:
            raise CodecError(f"png: CRC mismatch in the chunk at byte {pos}")
        if data[pos + 4:pos + 8] == b"IEND":
            if end != n:
                raise CodecError(f"png: {n - end} bytes after IEND")
            return
        pos = end


def _dec_png(data: bytes, codec: str) -> np.ndarray:
    _check_png_chunks(data)
    w, h = struct.unpack(">II", data[16:24])
    if w * h > MAX_PIXELS:
        raise CodecError(f"png: the stream claims {w}x{h} px")
    return imagecodecs.png_decode(data)


def _dec_jxl(data: bytes, codec: str) -> np.ndarray:
    if not (data[:2] == b"\xff\x0a" or data[:12] == b"\x00\x00\x00\x0cJXL \x0d\x0a\x87\x0a"):
        raise CodecError(f"{codec}: not a JPEG XL stream")
    return imagecodecs.jpegxl_decode(data)


_DECODERS = {"jpeg": _dec_pillow, "webp": _dec_pillow, "jpeg2000": _dec_pillow, "avif": _dec_pillow,
             "jxl": _dec_jxl, "png": _dec_png, "jxl-lossless": _dec_jxl}


def _to_gray(a: np.ndarray) -> np.ndarray:
    """RGB uint8 -> the luma Pillow computes (ITU-R 601 weights; for a WebP-coded gray image: its Y)."""
    return np.array(Image.fromarray(a, "RGB").convert("L"), dtype=np.uint8)


def decompress(data: bytes, codec: str, channels: int | None = None) -> np.ndarray:
    """A codec's byte stream -> image.  Lossy: HxWx3, or HxW for a gray stream (``uint16`` for a 16-bit
    jpeg2000 / jxl stream, else ``uint8``); lossless:
    exactly the dtype and shape that were compressed.  ``channels`` (1 or 3, lossy codecs only) converts
    the result to gray / RGB (a gray image coded by WebP comes back RGB otherwise).  Any failure (a
    corrupted or truncated stream, the wrong format) raises CodecError."""
    codec = check_codec(codec)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError(f"{codec}: the stream must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise CodecError(f"{codec}: empty stream")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = _DECODERS[codec](data, codec)
    except CodecError:
        raise
    except Exception as e:                  # Pillow / imagecodecs raise many types on a corrupt stream
        raise CodecError(f"{codec}: the stream does not decode ({_one_line(e)})") from None
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    code = _code_of(a)
    ch = _LAYOUTS[code][1] if code is not None else 0
    if code is None or a.size == 0 or code not in LAYOUTS_OF[codec]:
        raise CodecError(f"{codec}: the stream decodes to an unsupported array {a.shape} {a.dtype}")
    if channels is not None and channels != ch:
        if CODECS[codec].lossless or channels not in (1, 3) or a.dtype != np.uint8:
            raise CodecError(f"{codec}: cannot convert the decoded {a.shape} image to {channels} channels")
        a = _to_gray(a) if channels == 1 else np.repeat(a[:, :, None], 3, axis=2)
    return np.ascontiguousarray(a)


# ---------------------------------------------------------------------------------------------
# rate control

def quality_for(img: np.ndarray, codec: str, fits: Callable[[int], bool]) -> tuple[float | int | None, bytes]:
    """The highest quality whose stream length ``n`` satisfies ``fits(n)``, and that stream.

    ``fits`` must be monotone (a longer stream fits less).  Integer qualities: binary search over the
    codec's range (the result ``q`` fits and ``q + 1`` was compressed and did not, unless ``q`` is the
    top); jpeg2000: a search over the float bits per pixel that first finds the largest fitting length
    and then aims OpenJPEG's rate at it until the stream fits within 0.5 %.  Lossless codecs: one
    stream, quality None.  RateError if even the lowest quality does not fit."""
    codec = check_codec(codec)
    spec = CODECS[codec]
    a, _ = _check_image(img, codec)
    if spec.lossless:
        data = compress(a, codec)
        if not fits(len(data)):
            raise RateError(f"{codec}: the lossless stream needs {len(data)} bytes, which does not fit")
        return None, data
    if not spec.int_quality:
        return _bpp_search(a, codec, fits)
    lo, hi = int(spec.lo), int(spec.hi)
    data = compress(a, codec, lo)
    if not fits(len(data)):
        raise RateError(f"{codec} at its lowest quality {lo} needs {len(data)} bytes, which does not fit")
    best = (lo, data)
    left, right = lo + 1, hi            # invariant: best fits; the highest fitting quality is in left..right
    while left <= right:
        m = (left + right) // 2
        d = compress(a, codec, m)
        if fits(len(d)):
            best, left = (m, d), m + 1
        else:
            right = m - 1
    return best


def _bpp_search(a: np.ndarray, codec: str, fits) -> tuple[float, bytes]:
    spec = CODECS[codec]
    lo, hi = float(spec.lo), float(spec.hi)
    d_hi = compress(a, codec, hi)
    if fits(len(d_hi)):
        return hi, d_hi
    d_lo = compress(a, codec, lo)
    if not fits(len(d_lo)):
        raise RateError(f"{codec} at its lowest quality {lo} bpp needs {len(d_lo)} bytes, which does not fit")
    n_lo, n_hi = len(d_lo), len(d_hi) - 1          # the largest fitting length, by bisection on fits alone
    while n_lo < n_hi:
        m = (n_lo + n_hi + 1) // 2
        n_lo, n_hi = (m, n_hi) if fits(m) else (n_lo, m - 1)
    budget = n_lo
    tol = max(16, budget // 200)
    best, bad = (lo, d_lo), hi                      # best fitting (bpp, stream); lowest bpp known not to fit
    bpp = min(hi, max(lo, 8.0 * budget / (a.shape[0] * a.shape[1])))
    for _ in range(20):
        d = compress(a, codec, bpp)
        if fits(len(d)):
            if bpp > best[0]:
                best = (bpp, d)
            if len(d) >= budget - tol:
                break
            nxt = bpp * budget / max(1, len(d))
            if nxt >= bad:
                nxt = 0.5 * (bpp + bad)
        else:
            bad = min(bad, bpp)
            nxt = bpp * min(0.999, budget / len(d))
            if nxt <= best[0]:
                nxt = 0.5 * (best[0] + bpp)
        if abs(nxt - bpp) <= 1e-9 * bpp:
            break
        bpp = nxt
    return best


# ---------------------------------------------------------------------------------------------
# the codec interface

def pack_meta(img: np.ndarray) -> bytes:
    """The 5 meta bytes of an image: layout code, height, width (module docstring)."""
    a, code = _layout_code(img)
    return _META.pack(code, a.shape[0], a.shape[1])


def unpack_meta(meta: bytes) -> tuple[type, int, int, int]:
    """Meta bytes -> (dtype, channels, height, width); CodecError if malformed."""
    if len(meta) != _META.size:
        raise CodecError(f"classic meta must be {_META.size} bytes, got {len(meta)}")
    code, h, w = _META.unpack(bytes(meta))
    if code not in _LAYOUTS or h == 0 or w == 0:
        raise CodecError(f"bad classic meta {bytes(meta).hex()}")
    dtype, ch = _LAYOUTS[code]
    return dtype, ch, h, w


class ClassicCodec:
    """One classic codec behind the :mod:`dnaimg.codecs.base` interface: one ``bytes`` stream + 5 meta bytes."""

    def __init__(self, name: str):
        self.name = check_codec(name)
        self.spec = CODECS[self.name]
        self.codec_id = self.spec.id

    def __repr__(self):
        return f"ClassicCodec({self.name!r})"

    def encode(self, img: np.ndarray, quality=None, fits: Callable[[int], bool] | None = None) -> Encoded:
        """``fits`` None: compress at ``quality`` (None: the default).  ``fits`` given and ``quality``
        None: the highest quality that fits (:func:`quality_for`).  Both given: compress at ``quality``
        and RateError if the stream does not fit."""
        a, _ = _check_image(img, self.name)
        if fits is not None and quality is None:
            q, data = quality_for(a, self.name, fits)
        else:
            q = _check_quality(self.name, quality)
            data = compress(a, self.name, q)
            if fits is not None and not fits(len(data)):
                raise RateError(f"{self.name} at quality {q} needs {len(data)} bytes, which does not fit")
        return Encoded(codec=self.name, streams=[Stream("bytes", data)], meta=pack_meta(a),
                       info={"quality": q, "stream_bytes": len(data)})

    def decode(self, data: bytes, meta: bytes = b"") -> np.ndarray:
        """Stream + meta -> the image with the encoded dtype and shape; CodecError if the stream does
        not decode or decodes to another shape.  Empty meta: the stream as it decodes, unchecked."""
        if not meta:
            return decompress(data, self.name)
        dtype, ch, h, w = unpack_meta(meta)
        if meta[0] not in LAYOUTS_OF[self.name]:
            raise CodecError(f"{self.name}: meta layout {bytes(meta[:1]).hex()} is not a lossy layout of "
                             f"{self.name}")
        a = decompress(data, self.name, channels=None if self.spec.lossless else ch)
        want = (h, w) if ch == 1 else (h, w, ch)
        if a.dtype != dtype or a.shape != want:
            raise CodecError(f"{self.name}: the stream decodes to {a.shape} {a.dtype}, "
                             f"expected {want} {np.dtype(dtype).name}")
        return a


def get_codec(name: str) -> ClassicCodec:
    """The :class:`ClassicCodec` for a name or alias; CodecError if unknown."""
    return ClassicCodec(name)
