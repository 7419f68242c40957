"""Image files in and out, and quality measures: shared by every codec and the command line."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError


class ImageError(ValueError):
    pass


def _read(path: str | Path, pixels) -> np.ndarray:
    """Open an image file and turn it into an array with ``pixels(im)``; one-line ImageErrors."""
    p = Path(path)
    if not p.exists():
        raise ImageError(f"{path}: no such file")
    try:
        with Image.open(p) as im:
            im.load()
            a = pixels(im)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ImageError(f"{path}: not a readable image ({e.__class__.__name__})") from None
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
    """Image file -> HxWx3 uint8, as the lossy codecs take it: grayscale and palette images become
    RGB, 16-bit images are scaled to 8 bits, alpha is composited onto white."""
    return _read(path, _rgb)


def _as_stored(im, path) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L"):
        return np.asarray(im).astype(np.uint16)
    if im.mode == "I":
        a = np.asarray(im)
        if a.min() < 0 or a.max() > 65535:
            raise ImageError(f"{path}: 32-bit integer pixels outside 0..65535 are not supported")
        return a.astype(np.uint16)
    if im.mode == "L":
        return np.asarray(im, dtype=np.uint8)
    return np.asarray(im.convert("RGBA" if _has_alpha(im) else "RGB"), dtype=np.uint8)


def load_pixels(path: str | Path) -> np.ndarray:
    """Image file -> its pixels as stored, for lossless codecs: HxW (gray) or HxWx3 / HxWx4, uint8
    or uint16 (16-bit gray keeps 16 bits); palette images become RGB(A), other modes RGB."""
    return _read(path, lambda im: _as_stored(im, path))


def psnr(a: np.ndarray, b: np.ndarray, peak: float | None = None) -> float:
    """PSNR in dB; the peak is 65535 for 16-bit pixels, else 255."""
    if peak is None:
        peak = 65535.0 if np.asarray(a).dtype == np.uint16 else 255.0
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(peak ** 2 / mse))




def save_pixels(arr: np.ndarray, path: str | Path) -> None:
    """Pixels (as :func:`load_pixels` gives them) -> PNG, keeping mode and bit depth."""
    a = np.ascontiguousarray(arr)
    if a.dtype == np.uint16:
        if a.ndim != 2:
            raise ImageError("16-bit colour images are written as 16-bit PNG only through a lossless codec's file")
        im = Image.fromarray(a)       # uint16 HxW: mode I;16
    else:
        im = Image.fromarray(a.astype(np.uint8))
    try:
        im.save(path, format="PNG")
    except (OSError, ValueError) as e:
        raise ImageError(f"{path}: cannot write ({e})") from None
