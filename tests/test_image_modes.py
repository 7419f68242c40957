"""Image modes (issue 14, item 1): the data is never changed silently.  Gray stays one channel,
16 bits stay 16 bits, alpha is kept or refused unless --flatten; the decoded file has the original's
mode and bit depth.  Everything through the command line, as a user runs it."""
import json

import imagecodecs
import numpy as np
import pytest
from PIL import Image

from conftest import EXAMPLE
from dnaimg.image import flatten, read_source, save_pixels, to_8bit
from helpers import cli, cli_json

LOSSY = ["jpeg", "webp", "jpeg2000", "avif", "jxl"]
LOSSLESS = ["png", "jxl-lossless"]


def run(*args):
    return cli(*args, debug=True)


_json = cli_json


def one_line_error(r, *fragments):
    assert r.exit_code == 1 and "Traceback" not in r.output, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dnaimg: error: "), r.output
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


def _psnr(a, b, peak):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(peak ** 2 / mse)


# --- the inputs -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def imgs(tmp_path_factory):
    """48x64 crops of the example photo in every mode, with 16-bit detail below the 8-bit step and
    real transparency (three alpha bands)."""
    d = tmp_path_factory.mktemp("modes")
    rng = np.random.default_rng(3)
    rgb = np.asarray(Image.open(EXAMPLE).convert("RGB").crop((100, 80, 164, 128)))
    gray = np.asarray(Image.fromarray(rgb).convert("L"))
    g16 = gray.astype(np.uint16) * 257 + rng.integers(0, 257, gray.shape).astype(np.uint16)
    rgb16 = rgb.astype(np.uint16) * 257 + rng.integers(0, 257, rgb.shape).astype(np.uint16)
    alpha = np.full(gray.shape, 255, np.uint8)
    alpha[:, :16], alpha[:, 16:32] = 0, 100
    p = {k: d / f"{k}.png" for k in ("rgb", "gray8", "gray16", "rgb16", "rgba", "rgba_opaque", "la", "rgba16",
                                      "palette_t")}
    Image.fromarray(rgb).save(p["rgb"])
    Image.fromarray(gray).save(p["gray8"])
    Image.fromarray(g16).save(p["gray16"])                                       # Pillow: mode I;16
    p["rgb16"].write_bytes(imagecodecs.png_encode(rgb16))                        # Pillow has no 16-bit RGB
    Image.fromarray(np.dstack([rgb, alpha])).save(p["rgba"])
    Image.fromarray(np.dstack([rgb, np.full_like(alpha, 255)])).save(p["rgba_opaque"])
    Image.fromarray(np.dstack([gray, alpha])).save(p["la"])
    p["rgba16"].write_bytes(imagecodecs.png_encode(np.dstack([rgb16, alpha.astype(np.uint16) * 257])))
    Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE).save(p["palette_t"], transparency=0)
    p["cmyk"] = d / "cmyk.jpg"
    Image.fromarray(rgb).convert("CMYK").save(p["cmyk"], quality=95)
    return p


def _round_trip(src, tmp_path, *opts, reads=None):
    """encode (JSON) -> [simulate] -> decode with --reference (JSON): (encode report, decode report,
    decoded pixels as read back from the PNG written)."""
    fa, out = tmp_path / "x.fasta", tmp_path / "out.png"
    enc = _json(run("encode", src, "-o", fa, "--json", "-q", *opts))
    if reads:
        fq = tmp_path / "r.fastq"
        r = run("simulate", fa, "-o", fq, *reads)
        assert r.exit_code == 0, r.output
        fa = fq
    dec = _json(run("decode", fa, "-o", out, "--reference", src, "--json", "-q", "--strict"))
    return enc, dec, read_source(out).pixels


# --- reading keeps what the file holds ---------------------------------------------------------------

def test_read_source_keeps_bits_alpha_and_channels(imgs, tmp_path):
    want = {"gray8": ("L", np.uint8, 2), "gray16": ("I;16", np.uint16, 2), "rgb16": ("RGB", np.uint16, 3),
            "rgba": ("RGBA", np.uint8, 3), "la": ("LA", np.uint8, 3), "rgba16": ("RGBA", np.uint16, 3)}
    for k, (mode, dtype, ndim) in want.items():
        s = read_source(imgs[k])
        assert s.file_mode == mode and s.pixels.dtype == dtype and s.pixels.ndim == ndim and not s.notes, k
    s = read_source(imgs["rgb16"])
    assert s.pixels.shape == (48, 64, 3) and len(np.unique(s.pixels % 257)) > 200      # all 16 bits, not Pillow's 8
    tif = tmp_path / "rgb16.tif"
    tif.write_bytes(imagecodecs.tiff_encode(s.pixels))
    assert np.array_equal(read_source(tif).pixels, s.pixels)                           # TIFF too
    assert read_source(imgs["la"]).pixels.shape == (48, 64, 2)
    assert read_source(imgs["palette_t"]).notes == ["palette image read as its RGBA colours"]
    assert "CMYK converted to RGB" in read_source(imgs["cmyk"]).notes[0]
    key = np.asarray(Image.open(imgs["rgb"]))
    Image.fromarray(key).save(tmp_path / "trns.png", transparency=tuple(int(v) for v in key[0, 0]))
    s = read_source(tmp_path / "trns.png")                                             # a tRNS colour key is alpha
    assert s.pixels.shape == (48, 64, 4) and s.pixels[0, 0, 3] == 0 and s.notes == ["RGB with a transparent "
                                                                                  "colour read as RGBA"]
    for k in ("gray16", "rgb16", "rgba16", "la"):                                      # and writing keeps it
        a = read_source(imgs[k]).pixels
        save_pixels(a, tmp_path / "w.png")
        assert np.array_equal(read_source(tmp_path / "w.png").pixels, a), k


def test_flatten_and_to_8bit():
    la = np.array([[[10, 255], [10, 0], [0, 128]]], np.uint8)
    assert flatten(la).tolist() == [[10, 255, 127]]                  # (0*128 + 255*127) / 255, rounded
    rgba16 = np.array([[[0, 65535, 1000, 32768]]], np.uint16)
    f = flatten(rgba16)
    assert f.dtype == np.uint16 and f.shape == (1, 1, 3) and f[0, 0, 1] == 65535
    assert to_8bit(np.array([0, 128, 129, 65406, 65407, 65535], np.uint16)).tolist() == [0, 0, 1, 254, 255, 255]


# --- 8-bit gray: one channel, decoded as gray ----------------------------------------------------------

@pytest.mark.parametrize("codec", LOSSLESS + LOSSY + ["robust"])
def test_gray8_round_trips_as_gray(codec, imgs, tmp_path):
    enc, dec, out = _round_trip(imgs["gray8"], tmp_path, "--codec", codec)
    src = read_source(imgs["gray8"]).pixels
    assert enc["codec"] == codec and enc["mode"] == "L" and enc["source_mode"] == "L"
    assert dec["image"]["mode"] == "L" and out.dtype == np.uint8 and out.shape == src.shape == (48, 64)
    assert dec["psnr_peak"] == 255
    if codec in LOSSLESS:
        assert np.array_equal(out, src) and dec["psnr_db"] == float("inf")
    else:
        assert dec["psnr_db"] == pytest.approx(_psnr(src, out, 255), abs=1e-3)
        assert dec["psnr_db"] > {"robust": 26.0, "jpeg2000": 28.0}.get(codec, 30.0)
    meta = bytes.fromhex(dec["header"]["meta"])
    if codec == "robust":       # coded as RGB by the RGB model; the 14th metadata byte says gray
        assert len(meta) == 14 and meta[13] == 0x01
        assert any("decoded to gray" in n for n in enc["notes"])
    else:
        assert meta[0] == 0x01                                        # classic layout: uint8, one channel


def test_gray_costs_less_than_the_same_picture_in_rgb(imgs, tmp_path):
    """JPEG codes gray as one plane: fewer oligos than the same picture as RGB (R = G = B)."""
    gray = read_source(imgs["gray8"]).pixels
    big = np.tile(gray, (3, 3))                                      # 144x192: enough oligos to compare
    Image.fromarray(big).save(tmp_path / "g.png")
    Image.fromarray(big).convert("RGB").save(tmp_path / "c.png")
    n = {}
    for k in ("g", "c"):
        e = _json(run("encode", tmp_path / f"{k}.png", "-o", tmp_path / f"{k}.fasta", "--codec", "jpeg",
                      "--quality", 90, "--json", "-q"))
        n[k] = e["data_oligos"]
    assert n["g"] < n["c"], n


def test_compact_gray_through_an_rgb_model_decodes_gray(imgs, tmp_path, monkeypatch):
    monkeypatch.setenv("DNAIMG_MODELS", str(EXAMPLE.parent.parent / "tests" / "golden" / "compact-model"))
    from dnaimg.codecs import compact
    compact._CACHE.clear()
    try:
        enc, dec, out = _round_trip(imgs["gray8"], tmp_path, "--codec", "compact", "--model", "compact-tiny",
                                    "--quality", 5)
    finally:
        compact._CACHE.clear()
    assert enc["mode"] == "L" and dec["image"]["mode"] == "L" and out.shape == (48, 64)
    meta = bytes.fromhex(dec["header"]["meta"])
    assert len(meta) == 12 and meta[0] == 3 and meta[11] == 0x01            # 11 bytes (version 3), then the flags


# --- 16 bits ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["gray16", "rgb16", "rgba16"])
def test_16bit_png_is_bit_exact_from_reads_with_lost_oligos(kind, imgs, tmp_path):
    enc, dec, out = _round_trip(imgs[kind], tmp_path, "--codec", "png",
                                reads=["--preset", "nextseq", "--coverage", 5, "--dropout", 0.03, "--seed", 2])
    src = read_source(imgs[kind]).pixels
    assert out.dtype == np.uint16 and out.shape == src.shape and np.array_equal(out, src)
    assert dec["exact"] is True and dec["image"]["mode"] == enc["mode"] == {"gray16": "I;16", "rgb16": "RGB;16",
                                                                           "rgba16": "RGBA;16"}[kind]
    assert dec["psnr_peak"] == 65535 and dec["psnr_db"] == float("inf")


def test_16bit_without_codec_goes_to_png_and_says_so(imgs, tmp_path):
    r = run("encode", imgs["gray16"], "-o", tmp_path / "x.fasta")
    assert r.exit_code == 0, r.output
    assert "with png" in r.output and "note: 16-bit gray input: chose png (lossless, 16 bits kept)" in r.output
    enc, dec, out = _round_trip(imgs["gray16"], tmp_path)
    assert enc["codec"] == "png" and np.array_equal(out, read_source(imgs["gray16"]).pixels)
    rgb = _json(run("encode", imgs["rgb"], "-o", tmp_path / "y.fasta", "--json", "-q"))
    assert rgb["codec"] == "avif" and rgb["notes"] == []                    # 8-bit: the default codec
    one_line_error(run("encode", imgs["gray16"], "-o", tmp_path / "z.fasta", "--quality", 50),
                   "png (lossless), which has no --quality", "--codec jxl", "--to-8bit")


@pytest.mark.parametrize("codec", ["jpeg", "webp", "avif", "robust"])
def test_16bit_is_refused_by_8bit_codecs(codec, imgs, tmp_path):
    msg = one_line_error(run("encode", imgs["gray16"], "-o", tmp_path / "x.fasta", "--codec", codec),
                         f"is a 16-bit gray image, which {codec} cannot keep (8 bits only)", "--codec png",
                         "--codec jxl-lossless", "--codec jpeg2000", "--to-8bit")
    assert not (tmp_path / "x.fasta").exists(), msg
    one_line_error(run("encode", imgs["rgb16"], "-o", tmp_path / "x.fasta", "--codec", "jpeg2000"),
                   "16-bit RGB image, which jpeg2000 cannot keep", "--codec jxl lossily")


@pytest.mark.parametrize("codec", ["jpeg2000", "jxl"])
def test_16bit_lossy_codecs_keep_16_bits_and_psnr_uses_the_16bit_peak(codec, imgs, tmp_path):
    q = {"jpeg2000": 6, "jxl": 95}[codec]
    enc, dec, out = _round_trip(imgs["gray16"], tmp_path, "--codec", codec, "--quality", q)
    src = read_source(imgs["gray16"]).pixels
    assert enc["mode"] == dec["image"]["mode"] == "I;16" and out.dtype == np.uint16 and out.shape == src.shape
    assert dec["psnr_peak"] == 65535
    assert dec["psnr_db"] == pytest.approx(_psnr(src, out, 65535), abs=1e-3) and dec["psnr_db"] > 35
    assert len(np.unique(out % 257)) > 100                             # 16-bit samples, not 8-bit ones x 257


def test_to_8bit_reduces_and_psnr_compares_at_16_bits(imgs, tmp_path):
    enc, dec, out = _round_trip(imgs["gray16"], tmp_path, "--codec", "avif", "--to-8bit")
    src = read_source(imgs["gray16"]).pixels
    assert enc["mode"] == dec["image"]["mode"] == "L" and out.dtype == np.uint8
    assert "reduced from 16 to 8 bits (--to-8bit)" in enc["notes"]
    assert dec["psnr_peak"] == 65535
    assert dec["psnr_db"] == pytest.approx(_psnr(src, out.astype(np.uint16) * 257, 65535), abs=1e-3)


# --- alpha -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("codec", LOSSLESS)
@pytest.mark.parametrize("kind", ["rgba", "la", "palette_t"])
def test_alpha_is_kept_by_the_lossless_codecs(codec, kind, imgs, tmp_path):
    enc, dec, out = _round_trip(imgs[kind], tmp_path, "--codec", codec)
    src = read_source(imgs[kind]).pixels
    assert np.array_equal(out, src) and out.dtype == np.uint8
    assert dec["image"]["mode"] == enc["mode"] == {"rgba": "RGBA", "la": "LA", "palette_t": "RGBA"}[kind]
    assert Image.open(tmp_path / "out.png").mode == enc["mode"]


@pytest.mark.parametrize("codec", LOSSY + ["robust"])
def test_alpha_is_refused_without_flatten(codec, imgs, tmp_path):
    one_line_error(run("encode", imgs["rgba"], "-o", tmp_path / "x.fasta", "--codec", codec),
                   f"has an alpha channel (8-bit RGBA), which {codec} cannot keep", "--codec png", "--flatten")
    msg = one_line_error(run("encode", imgs["rgba_opaque"], "-o", tmp_path / "x.fasta", "--codec", codec),
                         "opaque everywhere: --flatten loses nothing")
    assert not (tmp_path / "x.fasta").exists(), msg


def test_alpha_is_refused_by_the_default_codec_and_flatten_composites_onto_white(imgs, tmp_path):
    one_line_error(run("encode", imgs["la"], "-o", tmp_path / "x.fasta"),
                   "(8-bit gray+alpha), which avif cannot keep", "--flatten")
    enc, dec, out = _round_trip(imgs["rgba"], tmp_path, "--flatten", "--codec", "jpeg", "--quality", 95)
    assert enc["mode"] == dec["image"]["mode"] == "RGB" and "alpha composited onto white (--flatten)" in enc["notes"]
    src = read_source(imgs["rgba"]).pixels
    assert out[:, :16].min() >= 235                                   # transparent -> white
    ref = flatten(src)
    assert dec["psnr_db"] == pytest.approx(_psnr(ref, out, 255), abs=1e-3) and dec["psnr_db"] > 30
    enc, dec, out = _round_trip(imgs["la"], tmp_path, "--flatten", "--codec", "robust")
    assert dec["image"]["mode"] == "L" and out.shape == (48, 64)       # gray+alpha flattened stays gray


def test_palette_and_cmyk_are_read_as_rgb_with_a_note(imgs, tmp_path):
    r = run("encode", imgs["cmyk"], "-o", tmp_path / "x.fasta", "--codec", "jpeg")
    assert r.exit_code == 0 and "note: CMYK converted to RGB" in r.output, r.output
    enc, dec, out = _round_trip(imgs["cmyk"], tmp_path, "--codec", "png")
    assert dec["image"]["mode"] == "RGB" and np.array_equal(out, read_source(imgs["cmyk"]).pixels)


# --- the metadata flag is backward compatible --------------------------------------------------------

def test_learned_codec_gray_flag_is_optional_metadata():
    from dnaimg.codecs.base import DecodeError
    from dnaimg.codecs.compact import CompactParams
    from dnaimg.codecs.robust import RobustParams
    rgb = RobustParams(1, 8, 9, 2, 48, 64)
    assert len(rgb.pack()) == 13 and RobustParams.unpack(rgb.pack()) == rgb        # RGB: as before
    g = RobustParams(1, 8, 9, 2, 48, 64, gray=True)
    assert g.pack() == rgb.pack() + b"\x01" and RobustParams.unpack(g.pack()).gray
    with pytest.raises(DecodeError, match="unknown flags 02"):
        RobustParams.unpack(rgb.pack() + b"\x02")
    c = CompactParams(7, 48, 64, 24, 2)                 # metadata version 1 (earlier releases): 16 bytes
    assert len(c.pack()) == 16 and not CompactParams.unpack(c.pack()).gray
    assert CompactParams.unpack(c.pack() + b"\x01").gray
    with pytest.raises(DecodeError, match="16, or 17 with flags"):
        CompactParams.unpack(c.pack() + b"\x01\x00")
    p = CompactParams(7, 65536, 1, 80, 8, version=4)    # what dnaimg writes: 11 bytes, sides less one
    assert p.pack() == bytes([4, 0, 0, 0, 7, 0xFF, 0xFF, 0, 0, 80, 8]) and CompactParams.unpack(p.pack()) == p
    assert CompactParams.unpack(p.pack() + b"\x01").gray and p.adapted and not c.adapted
    with pytest.raises(DecodeError, match="11, or 12 with flags"):
        CompactParams.unpack(p.pack() + b"\x01\x00")
    q = CompactParams.unpack(bytes([6]) + p.pack()[1:])     # version 6: 4 with a post-filter gain
    assert q.version == 6 and q.gained and q.adapted and not p.gained
    s = CompactParams.unpack(bytes([8]) + p.pack()[1:])     # version 8: 6 with the positions in strips
    assert s.strips and s.gained and s.adapted and not q.strips
    s7 = CompactParams.unpack(bytes([7]) + p.pack()[1:])
    assert s7.strips and s7.gained and not s7.adapted
    with pytest.raises(DecodeError, match="metadata version 9; this dnaimg reads 1 to 8"):
        CompactParams.unpack(bytes([9]) + p.pack()[1:])


def test_a_pool_chooses_per_image_and_passes_flatten(imgs, tmp_path):
    """No --codec in a pool: png for the 16-bit image, the default codec for the others; --flatten
    reaches every image; each file comes back in its own mode."""
    d = tmp_path / "in"
    d.mkdir()
    for k in ("gray16", "rgba", "gray8"):
        (d / f"{k}.png").write_bytes(imgs[k].read_bytes())
    fa = tmp_path / "pool.fasta"
    one_line_error(run("encode", d, "-o", fa, "-j", 1, "-q"), "rgba.png has an alpha channel", "--flatten")
    r = run("encode", d, "-o", fa, "-j", 1, "-q", "--flatten")
    assert r.exit_code == 0, r.output
    man = json.loads((tmp_path / "pool.manifest.json").read_text())
    assert {e["file"]: e["codec"] for e in man["images"]} == {"gray16.png": "png", "rgba.png": "avif",
                                                               "gray8.png": "avif"}
    out = tmp_path / "out"
    r = run("decode", fa, "-o", f"{out}/", "-q")
    assert r.exit_code == 0, r.output
    assert np.array_equal(read_source(out / "gray16.png").pixels, read_source(imgs["gray16"]).pixels)
    assert Image.open(out / "gray16.png").mode == "I;16"
    assert Image.open(out / "rgba.png").mode == "RGB" and Image.open(out / "gray8.png").mode == "L"


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_pillow_does_and_noted(orientation, tmp_path):
    from PIL import ImageOps
    from dnaimg.image import read_source
    a = np.arange(5 * 3 * 3, dtype=np.uint8).reshape(5, 3, 3) * 5
    im = Image.fromarray(a)
    ex = im.getexif()
    ex[0x0112] = orientation
    p = tmp_path / "o.png"
    im.save(p, exif=ex.tobytes())
    src = read_source(p)
    with Image.open(p) as f:
        upright = np.asarray(ImageOps.exif_transpose(f).convert("RGB"))
    assert np.array_equal(src.pixels, upright)
    assert any("EXIF orientation" in n for n in src.notes) == (orientation != 1)


def test_only_the_first_frame_is_read_and_noted(tmp_path):
    from dnaimg.image import read_source
    frames = [Image.fromarray(np.full((4, 6), v, np.uint8)) for v in (10, 200, 90)]
    p = tmp_path / "m.tif"
    frames[0].save(p, save_all=True, append_images=frames[1:])
    src = read_source(p)
    assert np.array_equal(src.pixels, np.full((4, 6), 10, np.uint8))
    assert "only the first of its 3 frames is stored" in src.notes
