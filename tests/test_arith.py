"""The compact codec's arithmetic coder: exact round trips, packets, lost packets."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from dnaimg.codecs import arith as A


def _gauss_tables(scales, half_max=255):
    halves = [int(min(half_max, max(1, math.ceil(6 * s)))) for s in scales]
    W = 2 * max(halves) + 3
    cdf = np.zeros((len(scales), W), dtype=np.int64)
    n = np.zeros(len(scales), dtype=np.int64)
    for t, (s, R) in enumerate(zip(scales, halves)):
        v = np.arange(-R, R + 1)
        pmf = np.array([0.5 * (math.erf((x + 0.5) / s / 2 ** 0.5) - math.erf((x - 0.5) / s / 2 ** 0.5)) for x in v])
        c = A.quantized_cdf(np.append(pmf, max(0.0, 1 - pmf.sum())))
        cdf[t, :c.size] = c
        cdf[t, c.size:] = c[-1]
        n[t] = c.size - 1
    bits = np.array([A.table_bits(cdf[t], int(n[t])) for t in range(len(scales))])
    return cdf, n, np.array(halves, dtype=np.int64), bits


SCALES = np.exp(np.linspace(math.log(0.11), math.log(40.0), 24))
CDF, NSYM, OFF, BITS = _gauss_tables(SCALES)


def _data(n, seed=0, escapes=True):
    rng = np.random.default_rng(seed)
    tables = rng.integers(0, len(SCALES), n)
    vals = np.round(rng.normal(0, SCALES[tables])).astype(np.int64)
    if escapes and n > 100:
        vals[3], vals[50] = 30000, -20000           # far outside every table: escape + raw bits
    return vals, tables


def test_quantized_cdf_is_exact_and_keeps_every_symbol():
    c = A.quantized_cdf(np.array([0.5, 0.0, 1e-12, 0.25, 0.25]))
    assert c[0] == 0 and c[-1] == 1 << A.PREC
    assert (np.diff(c) >= 1).all()
    assert c.tolist() == A.quantized_cdf(np.array([0.5, 0.0, 1e-12, 0.25, 0.25])).tolist()


def test_stream_round_trip_exact_with_escapes():
    vals, tables = _data(20000)
    out, _ = A.encode_packets(vals, tables, CDF, NSYM, OFF, 0, 1)
    got, known = A.decode_stream(out[0], vals.size, tables, CDF, NSYM, OFF)
    assert known.all() and np.array_equal(got, vals)
    expected_bits = BITS[tables].sum()
    assert out.shape[1] * 8 < expected_bits * 1.02 + 32 * 2 + 64     # near the entropy (escapes cost ~2x16 bits)


@pytest.mark.parametrize("packet_bytes", [26, 52])
def test_packets_round_trip_exact(packet_bytes):
    vals, tables = _data(30000, seed=1)
    pk, starts = A.encode_packets(vals, tables, CDF, NSYM, OFF, packet_bytes, 100000)
    assert pk.shape[1] == packet_bytes and starts[0] == 0 and (np.diff(starts) > 0).all()
    for k in range(pk.shape[0]):
        assert A.read_head(pk[k]) == starts[k] % (1 << A.HEAD_BITS)
    exp = np.concatenate([[0.0], np.cumsum(BITS[tables])])
    got, known = A.decode_packets(pk, np.zeros(pk.shape[0], bool), vals.size, tables, CDF, NSYM, OFF, exp)
    assert known.all() and np.array_equal(got, vals)


@pytest.mark.parametrize("loss", [0.05, 0.3, 0.6])
def test_lost_packets_cost_only_their_values(loss):
    vals, tables = _data(40000, seed=2, escapes=False)
    pk, starts = A.encode_packets(vals, tables, CDF, NSYM, OFF, 26, 100000)
    rng = np.random.default_rng(3)
    lost = rng.random(pk.shape[0]) < loss
    exp = np.concatenate([[0.0], np.cumsum(BITS[tables])])
    got, known = A.decode_packets(pk, lost, vals.size, tables, CDF, NSYM, OFF, exp)
    assert np.array_equal(got[known], vals[known])          # nothing decoded is wrong
    assert (got[~known] == 0).all()
    ends = np.append(starts[1:], vals.size)
    in_lost = np.zeros(vals.size, bool)
    for k in np.flatnonzero(lost):
        in_lost[starts[k]:ends[k]] = True
    assert not known[in_lost].any()
    # what is not known lies in lost packets, apart from a few values at the end of a packet
    # followed by a lost one (decoded from its last bits, so distrusted)
    assert (~known & ~in_lost).sum() <= 12 * lost.sum()
    assert known.mean() > 1 - loss - 0.12


@pytest.mark.parametrize("next_lost", [False, True])
def test_a_cut_packet_keeps_what_its_known_bytes_decide(next_lost):
    """Packets of 4 oligos whose last oligos were lost (``readable``: the bytes known from their
    start): the values decided from the known bytes decode, exactly, and no value is read from
    the bytes past them (garbage there changes nothing)."""
    vals, tables = _data(40000, seed=7, escapes=False)
    pk, starts = A.encode_packets(vals, tables, CDF, NSYM, OFF, 4 * 26, 100000)
    P = pk.shape[0]
    rng = np.random.default_rng(8)
    readable = np.full(P, 4 * 26)
    cut = np.arange(1, P - 1, 3)
    readable[cut] = 26 * rng.integers(1, 4, cut.size)         # 1-3 of its 4 oligos, then one lost
    junk = pk.copy()
    for k in cut:
        junk[k, readable[k]:] = rng.integers(0, 256, 4 * 26 - readable[k])
    lost = np.zeros(P, bool)
    if next_lost:
        lost[cut + 1] = True
    exp = np.concatenate([[0.0], np.cumsum(BITS[tables])])
    got, known = A.decode_packets(junk, lost, vals.size, tables, CDF, NSYM, OFF, exp, readable=readable)
    assert np.array_equal(got[known], vals[known])          # nothing decoded is wrong
    ends = np.append(starts[1:], vals.size)
    kept = [known[starts[k]:ends[k]].mean() for k in cut]
    for k, f in zip(cut, kept):                              # a prefix of each cut packet, about its share of bits
        n = ends[k] - starts[k]
        assert known[starts[k]:starts[k] + int(0.6 * f * n)].all()
        assert 0.8 * readable[k] / (4 * 26) - 0.1 < f <= readable[k] / (4 * 26) + 0.05
    untouched = np.setdiff1d(np.arange(P), np.concatenate([cut, cut + 1]) if next_lost else cut)
    for k in untouched:
        assert known[starts[k]:ends[k]].all()
    # without ``readable`` the same junk would be decoded as values: they must come from the known bytes
    bad, _ = A.decode_packets(junk, lost, vals.size, tables, CDF, NSYM, OFF, exp)
    assert not np.array_equal(bad[starts[cut[0]]:ends[cut[0]]], vals[starts[cut[0]]:ends[cut[0]]])



@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(-300, 300), min_size=1, max_size=400), st.integers(0, 23), st.sampled_from([0, 26, 40]))
def test_any_values_round_trip(values, table, packet_bytes):
    vals = np.array(values, dtype=np.int64)
    tables = np.full(vals.size, table, dtype=np.int64)
    pk, _ = A.encode_packets(vals, tables, CDF, NSYM, OFF, packet_bytes, 10000)
    if packet_bytes == 0:
        got, known = A.decode_stream(pk[0], vals.size, tables, CDF, NSYM, OFF)
    else:
        exp = np.concatenate([[0.0], np.cumsum(BITS[tables])])
        got, known = A.decode_packets(pk, np.zeros(pk.shape[0], bool), vals.size, tables, CDF, NSYM, OFF, exp)
    assert known.all() and got.tolist() == values


# -- context (the wavelet models that extend a base model) ---------------------------------------

def _context(M=12, seed=5):
    """A random context over groups of M: each place's neighbours are earlier places."""
    rng = np.random.default_rng(seed)
    K = 3
    nbr = np.full((M, K), -1, dtype=np.int64)
    wts = np.zeros((M, K), dtype=np.int64)
    for c in range(1, M):
        js = rng.choice(c, size=min(K, c), replace=False)
        nbr[c, :js.size] = js
        wts[c, :js.size] = rng.integers(1, 4, js.size)
    cls = rng.integers(0, 3, M)
    edges = np.array([0, 1, 3, 6, 12], dtype=np.int64)
    remap = rng.integers(0, len(SCALES), (3, len(SCALES), edges.size))
    return nbr, wts, cls, edges, remap


def _context_reference(vals, tables, ctx, firsts):
    """The rule of the module docstring, plainly: value i's table from its group's values coded
    before it in the same packet (``firsts``: each packet's first index)."""
    nbr, wts, cls, edges, remap = ctx
    M = cls.size
    out = []
    for i, t in enumerate(tables):
        first = max(f for f in firsts if f <= i)
        c, base = i % M, i - i % M
        s = sum(int(w) * min(abs(int(vals[base + j])), A.CTX_CAP) for j, w in zip(nbr[c], wts[c])
                if j >= 0 and base + j >= first)
        b = sum(1 for e in edges[1:] if e <= s)
        out.append(int(remap[cls[c], t, b]))
    return np.array(out)


def test_context_packets_round_trip_and_follow_the_rule():
    ctx = _context()
    A.check_context(ctx, len(SCALES))
    vals, tables = _data(12 * 2000, seed=6)
    pk, starts = A.encode_packets(vals, tables, CDF, NSYM, OFF, 26, 100000, ctx)
    exp = np.concatenate([[0.0], np.cumsum(BITS[tables])])
    got, known = A.decode_packets(pk, np.zeros(pk.shape[0], bool), vals.size, tables, CDF, NSYM, OFF, exp, ctx)
    assert known.all() and np.array_equal(got, vals)
    # the coder used the documented tables: the packets decode without context, each value with
    # the table the rule gives it
    used = _context_reference(vals, tables, ctx, list(starts))
    assert (used != tables).mean() > 0.5
    got2, known2 = A.decode_packets(pk, np.zeros(pk.shape[0], bool), vals.size, used, CDF, NSYM, OFF, exp)
    assert known2.all() and np.array_equal(got2, vals)
    # and the array form (no packet boundaries) agrees wherever a group lies in one packet
    whole = A.context_tables(vals.reshape(-1, 12), tables.reshape(-1, 12), ctx).reshape(-1)
    inside = np.ones(vals.size, bool)
    for s in starts[1:]:
        inside[s - s % 12:s - s % 12 + 12] = False
    assert np.array_equal(whole[inside], used[inside])


def test_context_lost_packets_cost_only_their_values():
    ctx = _context(seed=8)
    vals, tables = _data(12 * 3000, seed=9, escapes=False)
    pk, starts = A.encode_packets(vals, tables, CDF, NSYM, OFF, 26, 100000, ctx)
    lost = np.random.default_rng(10).random(pk.shape[0]) < 0.3
    exp = np.concatenate([[0.0], np.cumsum(BITS[tables])])
    got, known = A.decode_packets(pk, lost, vals.size, tables, CDF, NSYM, OFF, exp, ctx)
    assert np.array_equal(got[known], vals[known]) and (got[~known] == 0).all()
    ends = np.append(starts[1:], vals.size)
    in_lost = np.zeros(vals.size, bool)
    for k in np.flatnonzero(lost):
        in_lost[starts[k]:ends[k]] = True
    assert not known[in_lost].any()
    # a packet followed by a lost one ends where its termination is: at most a value or so of
    # its own is lost with it (where its last real bits happen to look like a termination)
    assert (~known & ~in_lost).sum() <= lost.sum()


def test_bad_context_is_refused():
    nbr, wts, cls, edges, remap = _context()
    bad = nbr.copy()
    bad[2, 0] = 5                       # a neighbour coded after the value
    with pytest.raises(ValueError, match="inconsistent context"):
        A.check_context((bad, wts, cls, edges, remap), len(SCALES))
    with pytest.raises(ValueError, match="inconsistent context"):
        A.check_context((nbr, wts, cls, edges, remap + len(SCALES)), len(SCALES))
    with pytest.raises(ValueError, match="inconsistent context"):
        A.check_context((nbr, wts, cls, edges[::-1].copy(), remap), len(SCALES))
    with pytest.raises(ValueError, match="inconsistent context"):
        A.check_context((nbr, wts, cls[:, None], edges, remap), len(SCALES))        # classes not one row
    gap = nbr.copy()
    gap[5, 0] = -1                      # an unused slot before a used one: the rule stops at the first -1
    assert gap[5, 1] >= 0
    with pytest.raises(ValueError, match="inconsistent context"):
        A.check_context((gap, wts, cls, edges, remap), len(SCALES))
    vals, tables = _data(120, seed=1, escapes=False)
    with pytest.raises(ValueError, match="packets, not an unbounded stream"):
        A.encode_packets(vals, tables, CDF, NSYM, OFF, 0, 1, (nbr, wts, cls, edges, remap))


# -- cross context (a position also sees neighbouring positions coded before it in its packet) --

def _cross(M=12, seed=11):
    """A context over groups of M with random cross neighbours (places of the positions left,
    above-left, above and above-right), and position neighbours for a 20-wide grid in raster order."""
    rng = np.random.default_rng(seed)
    base = _context(M, seed)
    K = 2
    xn = np.full((M, K), -1, dtype=np.int64)
    xd = np.zeros((M, K), dtype=np.int64)
    xw = np.zeros((M, K), dtype=np.int64)
    for c in range(M):
        k = int(rng.integers(0, K + 1))
        xn[c, :k] = rng.integers(0, M, k)
        xd[c, :k] = rng.integers(0, 4, k)
        xw[c, :k] = rng.integers(1, 4, k)
    return base + (xn, xd, xw)


def _grid_neighbours(n_pos, w=20):
    """pnb of positions in raster order on a grid ``w`` wide (left, above-left, above, above-right)."""
    q = np.arange(n_pos)
    y, x = np.divmod(q, w)
    pnb = np.full((n_pos, 4), -1, dtype=np.int64)
    for d, (dy, dx) in enumerate(((0, -1), (-1, -1), (-1, 0), (-1, 1))):
        ok = (y + dy >= 0) & (x + dx >= 0) & (x + dx < w)
        pnb[ok, d] = ((y + dy) * w + x + dx)[ok]
    return pnb


def _cross_reference(vals, tables, ctx, pnb, firsts):
    """The cross rule of the module docstring, plainly."""
    nbr, wts, cls, edges, remap, xn, xd, xw = ctx
    M = cls.size
    out = []
    for i, t in enumerate(tables):
        first = max(f for f in firsts if f <= i)
        c, q = i % M, i // M
        base = q * M
        s = sum(int(w) * min(abs(int(vals[base + j])), A.CTX_CAP) for j, w in zip(nbr[c], wts[c])
                if j >= 0 and base + j >= first)
        for j, d, w in zip(xn[c], xd[c], xw[c]):
            if j < 0:
                break
            p = pnb[q, d]
            if p >= 0 and p * M + j >= first:
                s += int(w) * min(abs(int(vals[p * M + j])), A.CTX_CAP)
        b = sum(1 for e in edges[1:] if e <= s)
        out.append(int(remap[cls[c], t, b]))
    return np.array(out)


def test_cross_context_round_trips_follows_the_rule_and_sees_only_its_packet():
    ctx = _cross()
    assert A.has_cross(ctx) and not A.has_cross(ctx[:5])
    vals, tables = _data(12 * 1500, seed=12, escapes=False)
    pnb = _grid_neighbours(1500)
    pk, starts = A.encode_packets(vals, tables, CDF, NSYM, OFF, 52, 100000, ctx, pnb)
    exp = np.concatenate([[0.0], np.cumsum(BITS[tables])])
    got, known = A.decode_packets(pk, np.zeros(pk.shape[0], bool), vals.size, tables, CDF, NSYM, OFF, exp, ctx,
                                  pnb=pnb)
    assert known.all() and np.array_equal(got, vals)
    used = _cross_reference(vals, tables, ctx, pnb, list(starts))
    in_block = _context_reference(vals, tables, ctx[:5], list(starts))
    assert (used != in_block).mean() > 0.02            # the neighbouring positions do change tables (3 %)
    got2, known2 = A.decode_packets(pk, np.zeros(pk.shape[0], bool), vals.size, used, CDF, NSYM, OFF, exp)
    assert known2.all() and np.array_equal(got2, vals)
    # the estimate form counts every neighbouring position (as if no packet split them)
    whole = A.context_tables(vals.reshape(-1, 12), tables.reshape(-1, 12), ctx, pnb).reshape(-1)
    assert np.array_equal(whole, _cross_reference(vals, tables, ctx, pnb, [0]))
    # a lost packet costs only its own values: the others never saw it
    lost = np.random.default_rng(13).random(pk.shape[0]) < 0.3
    got3, known3 = A.decode_packets(pk, lost, vals.size, tables, CDF, NSYM, OFF, exp, ctx, pnb=pnb)
    assert np.array_equal(got3[known3], vals[known3])
    ends = np.append(starts[1:], vals.size)
    in_lost = np.zeros(vals.size, bool)
    for k in np.flatnonzero(lost):
        in_lost[starts[k]:ends[k]] = True
    assert not known3[in_lost].any() and (~known3 & ~in_lost).sum() <= lost.sum()
    # decoded without the position neighbours, the same packets give other values
    got4, _ = A.decode_packets(pk, np.zeros(pk.shape[0], bool), vals.size, tables, CDF, NSYM, OFF, exp, ctx)
    assert not np.array_equal(got4, vals)


def test_bad_cross_context_and_positions_are_refused():
    ctx = _cross()
    bad = ctx[5].copy()
    bad[0, 0], bad[0, 1] = -1, 3        # a gap before a used slot
    with pytest.raises(ValueError, match="inconsistent context"):
        A.check_context(ctx[:5] + (bad, ctx[6], ctx[7]), len(SCALES))
    d = ctx[6].copy()
    d[0, 0] = 4                         # no fifth direction
    with pytest.raises(ValueError, match="inconsistent context"):
        A.check_context(ctx[:5] + (ctx[5], d, ctx[7]), len(SCALES))
    with pytest.raises(ValueError, match="inconsistent context"):
        A.check_context(ctx[:6], len(SCALES))
    pnb = _grid_neighbours(100)
    pnb[5, 0] = 7                       # a neighbour coded after the position
    vals, tables = _data(1200, seed=1, escapes=False)
    with pytest.raises(ValueError, match="inconsistent position neighbours"):
        A.encode_packets(vals, tables, CDF, NSYM, OFF, 26, 1000, ctx, pnb)
