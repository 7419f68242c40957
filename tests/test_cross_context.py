"""The cross context (compact-gray-v16, -v17; metadata versions 7 and 8, FORMAT.md 12.3): the
latent's positions coded in strips, a value at a block's edge seeing its neighbours in the blocks
left and above where they share its packet."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dnaimg.codecs import arith, compact
from dnaimg.codecs.base import Received

GOLDEN = Path(__file__).parent / "golden"
ROW = 26
MODEL = "compact-gray-v16"


@pytest.fixture(scope="module")
def crop():
    a = np.asarray(Image.open(Path(__file__).parents[1] / "examples" / "coffee.png").convert("L"))
    return np.ascontiguousarray(a[:128, :192])


def _received(streams):
    return [Received("bytes", s.data, True, report={"row_bytes": ROW}) for s in streams]


def test_strip_order_and_neighbours_as_documented():
    order = compact.strip_order(3, 6)       # strips of columns 0-3 and 4-5, each row by row
    assert order.tolist() == [0, 1, 2, 3, 6, 7, 8, 9, 12, 13, 14, 15, 4, 5, 10, 11, 16, 17]
    coding, raster = compact.position_neighbours(3, 6)
    # raster 9 = (1, 3): left (1, 2) = 8, above-left (0, 2) = 2, above (0, 3) = 3, above-right
    # (0, 4) is in the next strip: none
    assert raster[9].tolist() == [8, 2, 3, -1]
    assert raster[10].tolist() == [-1, -1, 4, 5]    # (1, 4): its left is in the strip before
    assert raster[0].tolist() == [-1, -1, -1, -1]
    rank = np.argsort(order)
    for p in range(18):                     # the coder's form: the same neighbours, by coded index
        want = [rank[n] if n >= 0 else -1 for n in raster[p]]
        assert coding[rank[p]].tolist() == want and all(w < rank[p] for w in want)


def test_cross_model_writes_strips_and_decodes_exactly(crop):
    _, t, card = compact.load(MODEL)
    _, t14, _ = compact.load("compact-gray-v14")
    assert arith.has_cross(t.ctx) and not arith.has_cross(t14.ctx) and card["extends"] == "compact-gray-v5"
    assert compact.same_coder(MODEL, "compact-gray-v17") and not compact.same_coder(MODEL, "compact-gray-v14")
    e = compact.encode(crop, row_bytes=ROW, rate_index=4, model=MODEL)
    p = compact.CompactParams.unpack(e.meta)
    assert p.strips and p.version in (compact.META_VERSION_STRIPS, compact.META_VERSION_ADAPTED_STRIPS)
    out, rep = compact.decode(_received(e.streams), e.meta)
    assert rep["model"] == MODEL and rep["latent_values_lost"] == 0
    # the same streams read in the keyed order (versions 5 and 6) do not give the image back
    keyed = bytes([compact.META_VERSION_GAIN if p.version == compact.META_VERSION_STRIPS
                   else compact.META_VERSION_ADAPTED_GAIN]) + e.meta[1:]
    other, _ = compact.decode(_received(e.streams), keyed)
    assert not np.array_equal(other, out)
    # what it decodes to is what the encoder measured: a good image of the crop
    mse = np.mean((out.astype(np.float64) - crop) ** 2)
    assert 10 * np.log10(255 ** 2 / mse) > 30


def test_cross_context_saves_bits_over_the_same_coder_without_it(crop):
    """On the same symbols (v14's RDO at two rate indexes), the cross context's packets (of the
    default size behind an outer code) are fewer bytes than v14's context gives them (each context
    with its own table shifts)."""
    an = compact.Analysis(crop, "compact-gray-v14")
    _, t16, _ = compact.load(MODEL)
    pb = compact.packet_rows(None) * ROW
    sizes = {"v14": 0, "v16": 0}
    for rate_index in (3.5, 4.5):
        row = an.tables.rate_row(rate_index)
        sym, idx, ctx, _ = an.coded(row)
        M, h, w = sym.shape
        coding = compact.position_neighbours(h, w)[0]
        # (v16's shifts fitted as its encoder does: on the neighbours in the same packet of a coding)
        starts = compact.strip_packets(sym, idx, an.tables, ctx, pb)
        shifts = compact.fit_shifts(sym, idx, t16, compact.packet_neighbours(h, w, starts))
        ctx16 = t16.ctx if shifts is None else compact.adapt_context(t16.ctx, shifts, t16.y_cdf.shape[0])
        flat, tabs = compact._y_layout(idx, h, w, strips=True)
        v = sym.reshape(-1)[flat]
        t = an.tables
        for name, c, pnb in (("v14", ctx, None), ("v16", ctx16, coding)):
            pk, _ = arith.encode_packets(v, tabs, t.y_cdf, t.y_n, t.y_off, pb, v.size // 8 + 16, c, pnb)
            sizes[name] += len(compact.trim_last_packet(pk))
    # (1.0 % fewer on this photograph with 16-oligo packets, AMD EPYC: 0.9 and 1.1 %; 1.6-3.3 % on
    # X-rays; with 8-oligo packets at rate index 3.5 alone it was 0.1 % here)
    assert sizes["v16"] < 0.995 * sizes["v14"], sizes


def test_fast_and_unprotected_latents_are_coded_in_strips_too(crop):
    """The cross model's tables were fitted for strips: --fast (gain 1, no refinement) and a latent
    without an outer code (2-row packets) are written in strips as well."""
    e = compact.encode(crop, row_bytes=ROW, rate_index=4, model=MODEL, search=False, refine=False)
    p = compact.CompactParams.unpack(e.meta)
    assert p.strips and e.streams[0].data[0] == compact.GAIN_ONE
    e0 = compact.encode(crop, row_bytes=ROW, rate_index=4, model=MODEL, redundancy=0.0)
    p0 = compact.CompactParams.unpack(e0.meta)
    assert p0.strips and p0.packet_rows == compact.PACKET_ROWS
    for enc in (e, e0):
        out, rep = compact.decode(_received(enc.streams), enc.meta)
        assert rep["latent_values_lost"] == 0
        mse = np.mean((out.astype(np.float64) - crop) ** 2)
        assert 10 * np.log10(255 ** 2 / mse) > 30


def test_a_lost_packet_costs_a_patch_and_nothing_else(crop):
    e = compact.encode(crop, row_bytes=ROW, rate_index=5, model=MODEL)
    whole, _ = compact.decode(_received(e.streams), e.meta)
    y = e.streams[1].data
    pb = compact.packet_rows(None) * ROW
    assert len(y) > 3 * pb
    erased = np.zeros(len(y), dtype=bool)
    erased[pb:2 * pb] = True                    # the second packet lost
    data = bytes(b if not x else 0 for b, x in zip(y, erased))
    rec = _received(e.streams)
    rec[1] = Received("bytes", data, False, report={"row_bytes": ROW}, erased=erased)
    out, rep = compact.decode(rec, e.meta)
    assert rep["packets_lost"] == 1 and rep["latent_values_lost"] > 0
    diff = np.abs(out.astype(int) - whole.astype(int)) > 0
    ys, xs = np.nonzero(diff)
    # the positions of one packet lie in one strip (64 px across), plus the synthesis's reach
    assert xs.max() - xs.min() < 64 + 2 * 64 and diff.mean() < 0.5


def test_the_fit_counts_packets_of_the_containers_default_rows():
    from dnaimg.dna import bytecode
    from dnaimg.dna.container import DEFAULT_INNER, Layout
    from dnaimg.zoo import context
    assert context.DEFAULT_ROW_BYTES == bytecode.data_bytes_per_payload(Layout().payload_nt, DEFAULT_INNER)


def test_packet_neighbours_drop_those_in_another_packet():
    # a 2 x 8 latent: strips of columns 0-3 and 4-7, coded as raster 0-3, 8-11, 4-7, 12-15;
    # packets starting at coded positions 0, 6 and 10
    assert compact.strip_order(2, 8).tolist() == [0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 12, 13, 14, 15]
    got = compact.packet_neighbours(2, 8, np.array([0, 6, 10]))
    full = compact.position_neighbours(2, 8)[1]
    # raster 10 = (1, 2) is coded 6th: a new packet, so it sees none of (1, 1), (0, 1-3)
    assert full[10].tolist() == [9, 1, 2, 3] and got[10].tolist() == [-1, -1, -1, -1]
    # raster 11 = (1, 3), coded 7th, in the same packet as 10: sees its left only
    assert got[11].tolist() == [10, -1, -1, -1]
    # raster 13 = (1, 5), coded 13th (packet from coded 10): (1, 4) coded 12 and (0, 6) coded 10
    # share it, (0, 4) and (0, 5), coded 8 and 9, do not
    assert full[13].tolist() == [12, 4, 5, 6] and got[13].tolist() == [12, -1, -1, 6]
