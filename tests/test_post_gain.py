"""The post-filter gain (compact metadata versions 5 and 6, FORMAT.md 12.3): one byte at the head
of stream 0 that scales the wavelet models' post-filter residual, fitted by the encoder."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dnaimg.codecs import compact
from dnaimg.codecs.base import DecodeError, Received

GOLDEN = Path(__file__).parent / "golden"
ROW = 26


@pytest.fixture(scope="module")
def gray():
    return np.asarray(Image.open(GOLDEN / "v2" / "source.png").convert("L"))


def _received(streams, first: bytes | None = None):
    data = [s.data for s in streams]
    if first is not None:
        data[0] = first + data[0][1:]
    return [Received("bytes", d, True, report={"row_bytes": ROW}) for d in data]


def _sse(a, b) -> float:
    return float(np.sum((a.astype(np.float64) - b.astype(np.float64)) ** 2))


def test_fit_gain_finds_the_least_squares_gain():
    rng = np.random.default_rng(0)
    x0 = rng.uniform(20, 230, (64, 64))
    r = rng.normal(0, 4, (64, 64))
    t = np.floor(x0 + 1.5 * r + 0.5)                    # the residual wanted 1.5 times over
    assert compact.fit_gain(x0, x0 + r, t) == 48
    t = np.floor(x0 + 0.5)                              # no residual wanted at all
    assert compact.fit_gain(x0, x0 + r, t) == 0
    assert compact.fit_gain(x0, x0, t) == compact.GAIN_ONE      # no residual: the byte for 1
    t = np.floor(x0 + r + 0.5)                          # the residual as it is
    assert compact.fit_gain(x0, x0 + r, t) == compact.GAIN_ONE


def test_encoder_writes_the_gain_that_draws_the_better_image(gray):
    e = compact.encode(gray, row_bytes=ROW, rate_index=4, model="compact-gray-v14")
    b = e.streams[0].data[0]
    assert e.meta[0] == compact.META_VERSION_GAIN and e.info["post_gain"] == b / 32 and b != compact.GAIN_ONE
    out, rep = compact.decode(_received(e.streams), e.meta)
    assert rep["post_gain"] == b / 32
    plain, rep1 = compact.decode(_received(e.streams, bytes([compact.GAIN_ONE])), e.meta)
    assert rep1["post_gain"] == 1.0
    assert _sse(out, gray) < _sse(plain, gray)
    # no other byte near it draws a better image (on this small image the rounded image's error
    # is far from smooth in the gain: 37/32 is best, the least-squares gain about 43/32)
    for k in range(28, 48):
        other, _ = compact.decode(_received(e.streams, bytes([k])), e.meta)
        assert _sse(other, gray) >= _sse(out, gray)
    # gain 0: the inverse wavelet alone, which the gain of 1 improves on
    bare, _ = compact.decode(_received(e.streams, bytes([0])), e.meta)
    assert _sse(plain, gray) < _sse(bare, gray)


def test_a_gain_of_one_is_the_post_filter_as_it_is(gray):
    """Streams with the gain byte 32 draw exactly what the same symbols without a gain byte
    (metadata version 3) draw."""
    e = compact.encode(gray, row_bytes=ROW, rate_index=4, model="compact-gray-v14")
    one, _ = compact.decode(_received(e.streams, bytes([compact.GAIN_ONE])), e.meta)
    p = compact.CompactParams.unpack(e.meta)
    p.version = compact.META_VERSION_PACKED
    old, rep = compact.decode([Received("bytes", e.streams[0].data[1:], True, report={"row_bytes": ROW}),
                               Received("bytes", e.streams[1].data, True, report={"row_bytes": ROW})], p.pack())
    assert "post_gain" not in rep and np.array_equal(one, old)


def test_fast_encoding_writes_no_gain(gray):
    e = compact.encode(gray, row_bytes=ROW, rate_index=4, model="compact-gray-v14", refine=False, search=False)
    assert e.meta[0] == compact.META_VERSION_PACKED and "post_gain" not in e.info


def test_gain_reserved_in_the_rate(gray):
    """The byte is in the streams from the first trial, so the rate search already paid for it:
    under a cap the gain never makes the streams larger."""
    e = compact.encode(gray, row_bytes=ROW, rate_index=4, model="compact-gray-v14")
    f = compact.encode(gray, row_bytes=ROW, rate_index=4, model="compact-gray-v14", refine=False)
    assert len(e.streams[0].data) == len(f.streams[0].data) + 1


def test_bad_gain_metadata_is_one_clear_error(gray):
    e = compact.encode(gray, row_bytes=ROW, rate_index=4, model="compact-gray-v14")
    with pytest.raises(DecodeError, match="ends before its post-filter gain"):
        compact.decode([Received("bytes", b"", True, report={"row_bytes": ROW}),
                        Received("bytes", e.streams[1].data, True, report={"row_bytes": ROW})], e.meta)
    meta = bytes([9]) + e.meta[1:]
    with pytest.raises(DecodeError, match="this dnaimg reads 1 to 8"):
        compact.decode(_received(e.streams), meta)
