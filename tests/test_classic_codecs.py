"""dnaimg.codecs.classic: classic image codecs, image <-> one byte stream (no DNA)."""
import numpy as np
import pytest

from dnaimg.codecs.base import CodecError, Encoded, RateError, Stream
from dnaimg.codecs.classic import (CODEC_BY_ID, CODECS, ClassicCodec, check_codec, compress, decompress, get_codec,
                                   pack_meta, quality_for, unpack_meta)

LOSSY = ["jpeg", "webp", "jpeg2000", "avif", "jxl"]
LOSSLESS = ["png", "jxl-lossless"]
#: lossy quality used for the round trips and the PSNR each must beat on the smooth image (RGB, gray);
#: measured: jpeg 46.0/59.2, webp 43.2/50.4, jpeg2000 56.1/65.5, avif 46.2/56.7, jxl 45.3/55.5 dB
LOSSY_Q = {"jpeg": (90, 43.0, 55.0), "webp": (90, 40.0, 47.0), "jpeg2000": (4.0, 50.0, 60.0),
           "avif": (80, 43.0, 52.0), "jxl": (90, 42.0, 51.0)}
CHOICES = "jpeg, webp, jpeg2000, avif, jxl, png, jxl-lossless (aliases: jpg, j2k, jp2, jpegxl, jxl_lossless)"


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0 ** 2 / mse)


@pytest.fixture(scope="module")
def smooth():
    """48x64 RGB: smooth gradients and a slow sinusoid (no noise)."""
    y, x = np.mgrid[0:48, 0:64].astype(np.float64)
    img = np.stack([128 + 80 * np.sin(x / 11) * np.cos(y / 13), 100 + 2 * x + y, 200 - 1.5 * y - x / 2], -1)
    return img.round().clip(0, 255).astype(np.uint8)


def _layouts():
    """40x56 test images of every lossless layout: a smooth ramp plus noise in the right half."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:40, 0:56]
    ramp = (x * 3 + y * 2).astype(np.int64)
    noise = rng.integers(0, 1 << 16, size=(40, 56, 4))
    noise[:, :28] = 0

    def mk(dtype, ch):
        top = 255 if dtype == np.uint8 else 65535
        base = np.stack([ramp * (c + 1) * (1 if dtype == np.uint8 else 257) for c in range(4)], -1)
        a = (base + noise) % (top + 1)
        a[0, 0, :] = top                              # extremes present
        a[1, 1, :] = 0
        a = a[:, :, :ch].astype(dtype)
        return a[:, :, 0] if ch == 1 else a
    return {"u8_gray": mk(np.uint8, 1), "u8_la": mk(np.uint8, 2), "u8_rgb": mk(np.uint8, 3), "u8_rgba": mk(np.uint8, 4),
            "u16_gray": mk(np.uint16, 1), "u16_la": mk(np.uint16, 2), "u16_rgb": mk(np.uint16, 3),
            "u16_rgba": mk(np.uint16, 4)}


LAYOUTS = _layouts()
META_CODE = {"u8_gray": 0x01, "u8_la": 0x02, "u8_rgb": 0x03, "u8_rgba": 0x04, "u16_gray": 0x11, "u16_la": 0x12,
             "u16_rgb": 0x13, "u16_rgba": 0x14}
#: the lossy codecs that keep 16-bit samples, and the layouts they take
LOSSY_16 = {"jpeg2000": ("u16_gray",), "jxl": ("u16_gray", "u16_rgb")}


# --- names, ids, specs ------------------------------------------------------------------------

def test_ids_are_stable():
    assert {n: s.id for n, s in CODECS.items()} == {"jpeg": 1, "webp": 2, "jpeg2000": 3, "avif": 4, "jxl": 5,
                                                      "png": 6, "jxl-lossless": 7}
    assert CODEC_BY_ID == {1: "jpeg", 2: "webp", 3: "jpeg2000", 4: "avif", 5: "jxl", 6: "png", 7: "jxl-lossless"}
    assert [n for n, s in CODECS.items() if s.lossless] == LOSSLESS
    assert (CODECS["jxl"].lo, CODECS["jxl"].hi, CODECS["jpeg"].lo, CODECS["jpeg"].hi) == (0, 99, 1, 100)
    assert CODECS["jpeg2000"].int_quality is False and CODECS["avif"].int_quality is True
    with pytest.raises(Exception):
        CODECS["png"].id = 9                                    # frozen


def test_aliases_and_case():
    assert [check_codec(n) for n in ("jpg", "J2K", "jp2", "JpegXL", " AVIF ", "jxl-lossless")] == \
        ["jpeg", "jpeg2000", "jpeg2000", "jxl", "avif", "jxl-lossless"]
    assert get_codec("jpg").name == "jpeg" and get_codec("jpg").codec_id == 1
    assert get_codec("jxl-lossless").codec_id == 7


@pytest.mark.parametrize("name", ["gif", "", "jpeg-xl", None, 5])
def test_unknown_codec(name, smooth):
    with pytest.raises(CodecError) as e:
        check_codec(name)
    assert str(e.value) == f"unknown codec {name!r}; choose from {CHOICES}"
    for f in (lambda: compress(smooth, name, 50), lambda: decompress(b"abc", name), lambda: get_codec(name)):
        with pytest.raises(CodecError, match="choose from jpeg, webp, jpeg2000, avif, jxl, png, jxl-lossless"):
            f()


# --- lossless ---------------------------------------------------------------------------------

@pytest.mark.parametrize("codec", LOSSLESS)
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_lossless_bit_exact(codec, layout):
    img = LAYOUTS[layout]
    data = compress(img, codec)
    assert compress(img, codec, 37) == data                        # quality ignored
    back = decompress(data, codec)
    assert back.dtype == img.dtype and back.shape == img.shape
    np.testing.assert_array_equal(back, img)
    enc = get_codec(codec).encode(img)
    assert enc.meta == bytes([META_CODE[layout], 0, 40, 0, 56])
    assert enc.info == {"quality": None, "stream_bytes": len(data)} and enc.streams[0].data == data
    out = get_codec(codec).decode(enc.streams[0].data, enc.meta)
    assert out.dtype == img.dtype and out.shape == img.shape
    np.testing.assert_array_equal(out, img)


@pytest.mark.parametrize("codec", LOSSLESS)
def test_lossless_smooth_is_small(codec, smooth):
    data = compress(smooth, codec)
    np.testing.assert_array_equal(decompress(data, codec), smooth)
    assert len(data) < smooth.nbytes / 2                           # 9216 raw bytes


def test_png_is_a_plain_png_with_the_right_depth():
    import io
    from PIL import Image
    for layout, mode in [("u8_gray", "L"), ("u8_rgb", "RGB"), ("u8_rgba", "RGBA"), ("u16_gray", "I;16")]:
        data = compress(LAYOUTS[layout], "png")
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert Image.open(io.BytesIO(data)).mode == mode
    data = compress(LAYOUTS["u16_rgb"], "png")
    assert data[24:26] == bytes([16, 2])                           # IHDR: bit depth 16, colour type RGB


# --- lossy ------------------------------------------------------------------------------------

@pytest.mark.parametrize("codec", LOSSY)
def test_lossy_round_trip_psnr(codec, smooth):
    q, thr_rgb, thr_gray = LOSSY_Q[codec]
    data = compress(smooth, codec, q)
    back = decompress(data, codec)
    assert back.shape == smooth.shape and back.dtype == np.uint8
    assert _psnr(smooth, back) > thr_rgb
    assert len(data) < 1500
    gray = np.ascontiguousarray(smooth[:, :, 1])
    enc = get_codec(codec).encode(gray, q)
    assert enc.meta == bytes([0x01, 0, 48, 0, 64])
    out = get_codec(codec).decode(enc.streams[0].data, enc.meta)
    assert out.shape == gray.shape and out.dtype == np.uint8
    assert _psnr(gray, out) > thr_gray
    if codec != "webp":                                            # coded as gray: decodes as gray
        assert decompress(enc.streams[0].data, codec).shape == gray.shape
    else:                                                          # WebP has no gray: RGB unless asked
        assert decompress(enc.streams[0].data, codec).shape == (48, 64, 3)
        assert decompress(enc.streams[0].data, codec, channels=1).shape == gray.shape


@pytest.mark.parametrize("codec", LOSSY)
def test_lossy_higher_quality_more_bytes_and_deterministic(codec, smooth):
    spec = CODECS[codec]
    lo = compress(smooth, codec, spec.lo + (0.5 if codec == "jpeg2000" else 10))
    hi = compress(smooth, codec, spec.hi if codec != "jpeg2000" else 3.0)
    assert len(lo) < len(hi)
    assert compress(smooth, codec, None) == compress(smooth, codec, spec.default)


@pytest.mark.parametrize("codec", LOSSY)
def test_lossy_rejects_other_layouts(codec):
    takes = {"jpeg2000": "a uint8 HxWx3 or HxW, or uint16 HxW image",
             "jxl": "a uint8 or uint16 HxWx3 or HxW image"}.get(codec, "a uint8 HxWx3 or HxW image")
    for layout in ("u8_la", "u8_rgba", "u16_gray", "u16_la", "u16_rgb", "u16_rgba"):
        if layout in LOSSY_16.get(codec, ()):
            continue
        img = LAYOUTS[layout]
        with pytest.raises(CodecError) as e:
            compress(img, codec, CODECS[codec].default)
        assert str(e.value) == (f"{codec} takes {takes}, got shape {img.shape} dtype {img.dtype} "
                                f"(use png or jxl-lossless)")


@pytest.mark.parametrize("codec,layout", [(c, lay) for c, lays in LOSSY_16.items() for lay in lays])
def test_lossy_16bit_keeps_16_bits(codec, layout):
    """jpeg2000 (gray) and jxl (gray, RGB) code 16-bit samples lossily and give 16 bits back; gray at a
    high rate closer to the original than any 8-bit code could be."""
    y, x = np.mgrid[0:48, 0:64].astype(np.float64)                 # smooth, with detail below 8 bits
    planes = [20000 + 9000 * np.sin(x / 9) * np.cos(y / 7) + 300 * x + 17 * y, 5000 + 811 * x + 401 * y,
              60000 - 500 * y - 333 * x]
    img = np.stack(planes[:3 if layout == "u16_rgb" else 1], -1).round().astype(np.uint16)
    img = img[:, :, 0] if layout == "u16_gray" else img
    q = 16.0 if codec == "jpeg2000" else 99
    enc = get_codec(codec).encode(img, q)
    assert enc.meta[0] == META_CODE[layout]
    out = get_codec(codec).decode(enc.streams[0].data, enc.meta)
    assert out.dtype == np.uint16 and out.shape == img.shape
    mse = np.mean((out.astype(np.float64) - img) ** 2)
    mse8 = np.mean((np.rint(img / 257.0) * 257 - img) ** 2)         # what 8 bits alone would cost
    if layout == "u16_gray":
        assert mse < mse8 / 2, (mse, mse8)                          # an 8-bit code cannot get below mse8
    else:       # libjxl's XYB quantisation of colour is not finer than 8 bits at level <= 99 (measured: 2.7x mse8)
        assert 10 * np.log10(65535.0 ** 2 / mse) > 45.0 and len(np.unique(out % 257)) > 100


def test_bad_images_and_qualities(smooth):
    with pytest.raises(CodecError, match=r"unsupported image: shape \(4, 4, 5\) dtype uint8"):
        compress(np.zeros((4, 4, 5), np.uint8), "png")
    with pytest.raises(CodecError, match=r"unsupported image: shape \(4, 4, 19\) dtype uint8"):
        compress(np.zeros((4, 4, 19), np.uint8), "png")                # 19 = 0x13: not 16-bit RGB
    with pytest.raises(CodecError, match="unsupported image: shape \\(4, 4\\) dtype float32"):
        compress(np.zeros((4, 4), np.float32), "png")
    with pytest.raises(CodecError, match=r"image sides must be 1\.\.65535 px, got 0x5"):
        compress(np.zeros((0, 5), np.uint8), "jpeg")
    with pytest.raises(CodecError) as e:
        compress(smooth, "jxl", 100)
    assert str(e.value) == "jxl quality must be in 0..99, got 100"
    with pytest.raises(CodecError, match="jpeg quality must be an integer in 1..100, got 50.5"):
        compress(smooth, "jpeg", 50.5)
    with pytest.raises(CodecError, match="jpeg2000 quality must be in 0.01..24.0, got 0.0"):
        compress(smooth, "jpeg2000", 0)
    with pytest.raises(CodecError, match="webp quality must be a number"):
        compress(smooth, "webp", "high")
    assert compress(smooth, "jpeg", 50.0) == compress(smooth, "jpeg", np.int64(50))


# --- rate control -----------------------------------------------------------------------------

@pytest.mark.parametrize("codec", ["jpeg", "avif", "webp", "jxl"])
def test_quality_for_is_highest_fitting(codec, smooth):
    lo, hi = len(compress(smooth, codec, CODECS[codec].lo)), len(compress(smooth, codec, CODECS[codec].hi))
    budget = (2 * lo + hi) // 3
    q, data = quality_for(smooth, codec, lambda n: n <= budget)
    assert isinstance(q, int) and CODECS[codec].lo <= q < CODECS[codec].hi
    assert len(data) <= budget and data == compress(smooth, codec, q)
    assert len(compress(smooth, codec, q + 1)) > budget            # one step higher does not fit
    enc = get_codec(codec).encode(smooth, fits=lambda n: n <= budget)
    assert enc.info == {"quality": q, "stream_bytes": len(data)} and enc.streams[0].data == data


def test_quality_for_top_quality_when_everything_fits(smooth):
    q, data = quality_for(smooth, "jpeg", lambda n: True)
    assert q == 100 and data == compress(smooth, "jpeg", 100)


def test_quality_for_jpeg2000_converges(smooth):
    budget = 400
    bpp, data = quality_for(smooth, "jpeg2000", lambda n: n <= budget)
    assert isinstance(bpp, float) and 0.01 <= bpp <= 24.0
    assert budget - 16 <= len(data) <= budget                      # within the 16-byte / 0.5 % tolerance
    assert compress(smooth, "jpeg2000", bpp) == data
    back = decompress(data, "jpeg2000")
    assert _psnr(smooth, back) > 35.0


@pytest.mark.parametrize("codec", ["jpeg", "webp", "jpeg2000", "avif", "jxl", "png", "jxl-lossless"])
def test_rate_error_when_nothing_fits(codec, smooth):
    with pytest.raises(RateError) as e:
        quality_for(smooth, codec, lambda n: n <= 40)
    msg = str(e.value)
    if CODECS[codec].lossless:
        assert msg == f"{codec}: the lossless stream needs {len(compress(smooth, codec))} bytes, which does not fit"
    elif codec == "jpeg2000":
        assert msg.startswith("jpeg2000 at its lowest quality 0.01 bpp needs ") and msg.endswith("which does not fit")
    else:
        n = len(compress(smooth, codec, CODECS[codec].lo))
        assert msg == f"{codec} at its lowest quality {CODECS[codec].lo} needs {n} bytes, which does not fit"
    with pytest.raises(RateError):
        get_codec(codec).encode(smooth, fits=lambda n: n <= 40)


def test_encode_quality_and_fits(smooth):
    n = len(compress(smooth, "jpeg", 60))
    enc = get_codec("jpeg").encode(smooth, 60, fits=lambda k: k <= n)
    assert enc.info == {"quality": 60, "stream_bytes": n}
    with pytest.raises(RateError, match=f"jpeg at quality 60 needs {n} bytes, which does not fit"):
        get_codec("jpeg").encode(smooth, 60, fits=lambda k: k < n)


# --- the codec interface ----------------------------------------------------------------------

@pytest.mark.parametrize("codec", LOSSY + LOSSLESS)
def test_classic_codec_encode_decode(codec, smooth):
    c = get_codec(codec)
    assert isinstance(c, ClassicCodec) and c.codec_id == CODECS[codec].id
    enc = c.encode(smooth)
    assert isinstance(enc, Encoded) and enc.codec == codec and len(enc.streams) == 1
    s = enc.streams[0]
    assert isinstance(s, Stream) and s.kind == "bytes" and isinstance(s.data, bytes)
    assert enc.meta == bytes([0x03, 0, 48, 0, 64])
    assert enc.info == {"quality": CODECS[codec].default, "stream_bytes": len(s.data)}
    out = c.decode(s.data, enc.meta)
    assert out.shape == smooth.shape and out.dtype == np.uint8
    if CODECS[codec].lossless:
        np.testing.assert_array_equal(out, smooth)
    else:
        assert _psnr(smooth, out) > 30.0
    # a meta that does not match the stream
    with pytest.raises(CodecError) as e:
        c.decode(s.data, bytes([0x03, 0, 48, 0, 65]))
    assert str(e.value) == f"{codec}: the stream decodes to (48, 64, 3) uint8, expected (48, 65, 3) uint8"


def test_meta_layout():
    assert pack_meta(LAYOUTS["u16_rgb"]) == b"\x13\x00\x28\x00\x38"
    assert unpack_meta(b"\x11\x01\x02\x03\x04") == (np.uint16, 1, 258, 772)
    for bad in (b"", b"\x03\x00\x01\x00", b"\x05\x00\x01\x00\x01", b"\x03\x00\x00\x00\x01", b"\x23\x00\x01\x00\x01",
                b"\x15\x00\x01\x00\x01"):
        with pytest.raises(CodecError):
            unpack_meta(bad)
    with pytest.raises(CodecError, match="jpeg: meta layout 04 is not a lossy layout"):
        get_codec("jpeg").decode(b"\xff\xd8", b"\x04\x00\x01\x00\x01")


# --- corrupted streams ------------------------------------------------------------------------

@pytest.mark.parametrize("codec", LOSSY + LOSSLESS)
def test_corrupted_streams_raise_codec_error(codec, smooth):
    rng = np.random.default_rng(3)
    data = compress(smooth, codec)
    meta = pack_meta(smooth)
    other = compress(smooth, "png" if codec != "png" else "jpeg")
    bad = [data[: len(data) // 2], data[:len(data) - 1] if codec != "jpeg2000" else data[:len(data) // 3],
           data[:10], b"", bytes(rng.integers(0, 256, 300, dtype=np.uint8)), other]
    for b in bad:
        with pytest.raises(CodecError) as e:
            decompress(b, codec)
        assert "\n" not in str(e.value) and str(e.value).startswith(f"{codec}: ")
        with pytest.raises(CodecError):
            get_codec(codec).decode(b, meta)
    with pytest.raises(CodecError, match="the stream must be bytes"):
        decompress("not bytes", codec)


@pytest.mark.parametrize("codec", LOSSY + LOSSLESS)
def test_damaged_streams_never_raise_anything_else(codec, smooth):
    """Random byte damage: a stream either decodes (to some image) or raises CodecError."""
    rng = np.random.default_rng(11)
    data = compress(smooth, codec)
    for t in range(40):
        b = bytearray(data)
        if t % 2:
            for _ in range(3):
                b[rng.integers(0, len(b))] = rng.integers(0, 256)
        else:
            i = int(rng.integers(0, len(b)))
            b = b[:i] + bytes(rng.integers(0, 256, 20, dtype=np.uint8)) + b[i + 5:]
        try:
            get_codec(codec).decode(bytes(b), pack_meta(smooth))
        except CodecError:
            pass


def test_png_damage_is_detected(smooth):
    data = bytearray(compress(smooth, "png"))
    data[len(data) // 2] ^= 0x01                                   # inside IDAT: chunk CRC mismatch
    with pytest.raises(CodecError, match="png: CRC mismatch in the chunk at byte"):
        decompress(bytes(data), "png")
    with pytest.raises(CodecError, match="png: 3 bytes after IEND"):
        decompress(compress(smooth, "png") + b"abc", "png")
