"""Image files in and out, and quality measures: shared by every codec and the command line."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError


class ImageError(ValueError):
    pass


#: the file suffixes read as images where a folder is given to encode
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".ppm", ".pgm", ".pnm", ".gif")
#: those that training and the benchmarks take from a data folder (what the shipped models were trained on)
DATA_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


#: EXIF orientation -> the array operation that turns the stored pixels upright (what Pillow's
#: ImageOps.exif_transpose does to the image; a test checks each against it)
_UPRIGHT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: np.swapaxes(a, 0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.swapaxes(a[::-1, ::-1], 0, 1),
    8: lambda a: np.rot90(a, 1),
}


def _read(path: str | Path, pixels, notes: list[str] | None = None) -> np.ndarray:
    """Open an image file and turn it into an array with ``pixels(im)``; one-line ImageErrors.  The
    pixels are turned upright as the file's EXIF orientation says (a viewer shows them so; the
    decoded file has no EXIF); of several frames the first is read.  ``notes`` gets a line for each."""
    p = Path(path)
    if not p.exists():
        raise ImageError(f"{path}: no such file")
    try:
        with Image.open(p) as im:
            im.load()
            frames = int(getattr(im, "n_frames", 1) or 1)
            try:
                orient = int(im.getexif().get(0x0112, 1))
            except (AttributeError, TypeError, ValueError):
                orient = 1
            a = pixels(im)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ImageError(f"{path}: not a readable image ({e.__class__.__name__})") from None
    if orient in _UPRIGHT:
        a = _UPRIGHT[orient](a)
        if notes is not None:
            notes.append(f"turned upright as its EXIF orientation ({orient}) says: the decoded image is "
                         f"{a.shape[1]}x{a.shape[0]} and has no EXIF")
    if frames > 1 and notes is not None:
        notes.append(f"only the first of its {frames} frames is stored")
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise ImageError(f"{path}: empty image")
    if a.shape[0] > 65535 or a.shape[1] > 65535:
        raise ImageError(f"{path}: images up to 65535 px a side are supported")
    return np.ascontiguousarray(a)


def _has_alpha(im) -> bool:
    return im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)


def _rgb(im) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        arr = np.clip(arr / (65535.0 if arr.max() > 255 else 255.0) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        im = Image.fromarray(arr, mode="L")
    if _has_alpha(im):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, im)
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def load_image(path: str | Path) -> np.ndarray:
    """Image file -> HxWx3 uint8 (the benches' and ``robust.encode_image(path)``'s view; ``api.encode``
    reads :func:`read_source` instead): grayscale and palette images become RGB, 16-bit images are
    scaled to 8 bits, alpha is composited onto white."""
    return _read(path, _rgb)


# ---------------------------------------------------------------------------------------------
# pixels as the file holds them (what api.encode gives every codec, through its checks)

#: (dtype, channels) -> the mode name dnaimg reports and writes (Pillow's where it has one)
MODE_NAMES = {(np.dtype(np.uint8), 1): "L", (np.dtype(np.uint8), 2): "LA", (np.dtype(np.uint8), 3): "RGB",
              (np.dtype(np.uint8), 4): "RGBA", (np.dtype(np.uint16), 1): "I;16", (np.dtype(np.uint16), 2): "LA;16",
              (np.dtype(np.uint16), 3): "RGB;16", (np.dtype(np.uint16), 4): "RGBA;16"}
_KINDS = {1: "gray", 2: "gray+alpha", 3: "RGB", 4: "RGBA"}


def channels(a: np.ndarray) -> int:
    return 1 if a.ndim == 2 else int(a.shape[2])


def has_alpha(a: np.ndarray) -> bool:
    """Gray+alpha (HxWx2) or RGBA (HxWx4) pixels."""
    return channels(a) in (2, 4)


def mode_of(a: np.ndarray) -> str:
    """The mode of pixels as :func:`load_pixels` gives them: L, LA, RGB, RGBA, I;16 (16-bit gray),
    LA;16, RGB;16, RGBA;16."""
    return MODE_NAMES.get((np.asarray(a).dtype, channels(a)), f"{a.dtype} x{channels(a)}")


def describe(a: np.ndarray) -> str:
    """E.g. "8-bit gray", "16-bit RGB", "8-bit RGBA"."""
    return f"{8 * a.dtype.itemsize}-bit {_KINDS.get(channels(a), f'{channels(a)}-channel')}"


def _deep_decode(fn, path) -> np.ndarray:
    try:
        return np.asarray(fn(Path(path).read_bytes()))
    except Exception as e:              # imagecodecs raises its own types
        raise ImageError(f"{path}: not a readable image ({e.__class__.__name__})") from None


def _deep_colour(im, path) -> np.ndarray | None:
    """The samples of a 16-bit colour or gray+alpha PNG or TIFF, which Pillow reduces to 8 bits
    without a word (it has no such modes): read them with libpng / libtiff instead."""
    import imagecodecs
    if im.format == "PNG":
        with open(path, "rb") as f:
            head = f.read(26)
        if len(head) == 26 and head[12:16] == b"IHDR" and head[24] == 16 and head[25] in (2, 4, 6):
            return _deep_decode(imagecodecs.png_decode, path)
    elif im.format == "TIFF" and im.mode not in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        bits = im.tag_v2.get(258) or (8,)
        if max(bits if isinstance(bits, tuple) else (bits,)) > 8:
            a = _deep_decode(imagecodecs.tiff_decode, path)
            if a.dtype != np.uint16:
                raise ImageError(f"{path}: a TIFF of {a.dtype} samples is not supported (8- or 16-bit integers)")
            return a
    return None


def _as_stored(im, path, notes: list[str]) -> np.ndarray:
    deep = _deep_colour(im, path)
    if deep is not None:
        a = np.asarray(deep)
        if a.ndim == 3 and a.shape[2] == 1:
            a = a[:, :, 0]
        if a.ndim == 3 and a.shape[2] not in (2, 3, 4) or a.ndim not in (2, 3):
            raise ImageError(f"{path}: {a.shape} samples are not supported")
        return a.astype(np.uint16)
    m = im.mode
    if m in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(im).astype(np.uint16)
    if m == "I":
        a = np.asarray(im)
        if a.min() < 0 or a.max() > 65535:
            raise ImageError(f"{path}: 32-bit integer pixels outside 0..65535 are not supported")
        notes.append("32-bit integer pixels (all within 0..65535) stored as 16-bit gray")
        return a.astype(np.uint16)
    if m == "F":
        raise ImageError(f"{path}: floating-point pixels (mode F) are not supported: convert them to 8- or "
                         "16-bit integers first")
    if m in ("L", "RGB") and "transparency" in im.info:        # a colour key (PNG tRNS): alpha after all
        to = "LA" if m == "L" else "RGBA"
        notes.append(f"{m} with a transparent colour read as {to}")
        return np.asarray(im.convert(to), dtype=np.uint8)
    if m == "L":
        return np.asarray(im, dtype=np.uint8)
    if m in ("LA", "La"):
        return np.asarray(im.convert("LA") if m == "La" else im, dtype=np.uint8)
    if m == "1":
        notes.append("1-bit image stored as 8-bit gray (0 and 255)")
        return np.asarray(im.convert("L"), dtype=np.uint8)
    if m in ("RGB", "RGBA", "RGBX", "RGBa"):
        return np.asarray(im.convert("RGBA" if m in ("RGBA", "RGBa") else "RGB"), dtype=np.uint8)
    alpha = _has_alpha(im)
    to = "RGBA" if alpha else "RGB"
    if m in ("P", "PA"):
        notes.append(f"palette image read as its {to} colours")
    else:
        notes.append(f"{m} converted to {to} (Pillow's plain conversion, no colour profile)")
    return np.asarray(im.convert(to), dtype=np.uint8)


@dataclass
class Source:
    """An image file's pixels as stored (:func:`load_pixels`) and what reading them changed."""
    pixels: np.ndarray
    file_mode: str | None = None              # Pillow's mode of the file (None: an array was given)
    notes: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, a: np.ndarray) -> "Source":
        a = np.asarray(a)
        if (a.dtype, channels(a) if a.ndim in (2, 3) else 0) not in MODE_NAMES:
            raise ImageError(f"unsupported image array: shape {a.shape} dtype {a.dtype} (expected uint8 or uint16, "
                             f"HxW, HxWx2, HxWx3 or HxWx4)")
        return cls(np.ascontiguousarray(a))


def read_source(path: str | Path) -> Source:
    """Image file -> :class:`Source`: 8- or 16-bit, gray, gray+alpha, RGB or RGBA, as stored (16-bit
    colour PNG and TIFF through libpng / libtiff, as Pillow reduces them to 8 bits); palette images
    become RGB(A), CMYK and other colour spaces RGB, each with a note saying so."""
    notes: list[str] = []
    modes: list[str] = []

    def pixels(im):
        modes.append(im.mode)
        return _as_stored(im, path, notes)
    a = _read(path, pixels, notes)
    return Source(a, modes[0], notes)


def load_pixels(path: str | Path) -> np.ndarray:
    """Image file -> its pixels as stored, for lossless codecs: HxW (gray), HxWx2 (gray+alpha), HxWx3,
    HxWx4, uint8 or uint16 (16 bits kept, colour too); palette images become RGB(A), other modes RGB
    (:func:`read_source` says what changed)."""
    return read_source(path).pixels


def flatten(a: np.ndarray) -> np.ndarray:
    """Gray+alpha or RGBA -> gray or RGB composited onto white, at the same bit depth (rounded)."""
    if not has_alpha(a):
        return a
    peak = 65535 if a.dtype == np.uint16 else 255
    c = a[..., :-1].astype(np.int64)
    al = a[..., -1:].astype(np.int64)
    out = (c * al + peak * (peak - al) + peak // 2) // peak
    out = out.astype(a.dtype)
    return np.ascontiguousarray(out[..., 0] if out.shape[2] == 1 else out)


def to_8bit(a: np.ndarray) -> np.ndarray:
    """16-bit samples -> 8-bit (v / 257, rounded: 65535 -> 255); 8-bit ones unchanged."""
    if a.dtype != np.uint16:
        return a
    return ((a.astype(np.uint32) * 2 + 257) // 514).astype(np.uint8)


def gray_of_rgb(a: np.ndarray) -> np.ndarray:
    """RGB uint8 decoded from a gray image coded as R = G = B -> gray: the rounded mean of the three."""
    s = a.astype(np.uint16).sum(axis=2)
    return ((s + 1) // 3).astype(np.uint8)


def comparable(ref: np.ndarray, dec: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """A reference (as :func:`load_pixels` reads it) and a decoded image -> the two as compared and the
    PSNR peak: the reference flattened if the decoded image has no alpha (it was encoded with
    --flatten), a 16-bit reference against an 8-bit decoding (--to-8bit) at 16 bits (the decoded
    samples times 257), a gray reference against RGB (DNA of older releases) as R = G = B."""
    if has_alpha(ref) and not has_alpha(dec):
        ref = flatten(ref)
    if ref.dtype == np.uint16 and dec.dtype == np.uint8:
        dec = dec.astype(np.uint16) * 257
    elif ref.dtype == np.uint8 and dec.dtype == np.uint16:
        ref = ref.astype(np.uint16) * 257
    if ref.ndim == 2 and dec.ndim == 3 and dec.shape[2] == 3:
        ref = np.repeat(ref[:, :, None], 3, axis=2)
    return ref, dec, 65535.0 if dec.dtype == np.uint16 else 255.0


def psnr(a: np.ndarray, b: np.ndarray, peak: float | None = None) -> float:
    """PSNR in dB; the peak is 65535 for 16-bit pixels, else 255."""
    if peak is None:
        peak = 65535.0 if np.asarray(a).dtype == np.uint16 else 255.0
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(peak ** 2 / mse))




def save_pixels(arr: np.ndarray, path: str | Path) -> None:
    """Pixels (as :func:`load_pixels` gives them) -> PNG, keeping mode and bit depth (16-bit colour
    and gray+alpha through libpng: Pillow has no such modes)."""
    a = np.ascontiguousarray(arr)
    if a.dtype not in (np.uint8, np.uint16) or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (2, 3, 4)):
        raise ImageError(f"{path}: cannot write a {a.shape} {a.dtype} image")
    try:
        if a.dtype == np.uint16 and a.ndim == 3:
            import imagecodecs
            Path(path).write_bytes(imagecodecs.png_encode(a))
            return
        im = Image.fromarray(a)       # uint8 HxW, HxWx2, HxWx3, HxWx4: L, LA, RGB, RGBA; uint16 HxW: I;16
        im.save(path, format="PNG")
    except (OSError, ValueError) as e:
        raise ImageError(f"{path}: cannot write ({e})") from None
