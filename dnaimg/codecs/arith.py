"""Arithmetic coding of integer symbols with stored 16-bit cumulative tables, in packets.

Why not a library coder: the compact codec writes its latent into packets of one or two oligos
each (26 or 52 bytes), every packet decodable on its own, so that an oligo lost beyond what the
outer code rebuilds costs only the latent values in its packet.  Range/ANS coders such as
constriction's flush 32-bit words per stream (up to ~64 bits per 208-bit packet); this binary
arithmetic coder (Witten, Neal & Cleary 1987, 32-bit interval, bit output, "pending" underflow
bits) terminates in 2 bits plus the pending ones, and its termination leaves an interval that any
continuation bits decode correctly.  All arithmetic is on integers: encoder and decoder agree on
every machine.

Tables: ``cdf[t, 0..n_t]`` increasing from 0 to 2**16 with every symbol's frequency >= 1; a value
``v`` in table ``t`` is symbol ``v + offset[t]``; the last symbol of a table (``n_t - 1``) is the
escape: the value follows in 16 raw bits (``v + 32768``).

Packets: a packet of ``B`` bytes holds ``HEAD_BITS`` bits of its first symbol's index (mod
2**HEAD_BITS), then the coded symbols, as many as fit, then zero padding.  A symbol is in the
packet when, after coding it, the bits used plus the termination still fit; the decoder repeats
the same test, so no count is stored.

Context (optional): the values come in groups of ``M`` (a latent position's channels, in order),
and a value's table may depend on values of its own group coded before it in the same packet:
``remap[class[c], t, bucket]``, where ``t`` is the value's own table, ``c`` its place in the group
and ``bucket`` how many of ``edges[1:]`` are at most ``sum_k weight[c, k] * min(|v_k|, CTX_CAP)``
over the neighbours ``v_k`` (group places ``neighbors[c, k]``, a row ending at -1) that lie in the
same packet.  Without one, every value is coded with its own table.

Cross context (optional, three more arrays): the positions may also see their neighbouring
positions in the image.  ``pnb[q, d]`` (given per image) is the coding index of position q's
neighbour in direction d (0 left, 1 above-left, 2 above, 3 above-right) or -1; a value at place
``c`` then also counts ``xweights[c, k] * min(|v|, CTX_CAP)`` for each ``xneighbors[c, k] = c'``
(a row ending at -1): the value at place c' of position ``pnb[q, xdirections[c, k]]``, where that
value lies in the same packet.  Positions coded before a packet's first value are never seen, so
every packet still decodes on its own.
"""
from __future__ import annotations

import numba as nb
import numpy as np

PREC = 16                       # cumulative tables sum to 2**PREC
TOP = np.uint64(0xFFFFFFFF)
HALF = np.uint64(0x80000000)
QUARTER = np.uint64(0x40000000)
HEAD_BITS = 16
ESCAPE_BITS = 16
RAW_OFFSET = 1 << (ESCAPE_BITS - 1)
CTX_CAP = 255                   # a neighbour's magnitude counts at most this much in a context
TAIL_GUARD = 8                  # bits: symbols ending this close to a packet's end, when the next
                                # packet is lost, may have been decoded from the termination bits


@nb.njit(cache=True, inline="always")
def _narrow(low, high, c0, c1):
    rng = high - low + np.uint64(1)
    high = low + ((rng * np.uint64(c1)) >> np.uint64(PREC)) - np.uint64(1)
    low = low + ((rng * np.uint64(c0)) >> np.uint64(PREC))
    return low, high


@nb.njit(cache=True)
def _put(buf, pos, bit):
    if bit:
        buf[pos >> 3] |= np.uint8(1 << (7 - (pos & 7)))


@nb.njit(cache=True)
def _get(buf, pos, limit):
    if pos >= limit:
        return 0
    return (buf[pos >> 3] >> (7 - (pos & 7))) & 1


@nb.njit(cache=True)
def _step_count(low, high, c0, c1):
    """Narrow to [c0, c1) and renormalise without writing; returns (low, high, shifts): each
    shift is one bit emitted or left pending."""
    low, high = _narrow(low, high, c0, c1)
    decided = 0
    under = 0
    while True:
        if high < HALF:
            decided += 1
        elif low >= HALF:
            decided += 1
            low -= HALF
            high -= HALF
        elif low >= QUARTER and high < HALF + QUARTER:
            under += 1
            low -= QUARTER
            high -= QUARTER
        else:
            break
        low = low << np.uint64(1)
        high = (high << np.uint64(1)) | np.uint64(1)
    return low, high, decided + under


@nb.njit(cache=True)
def _encode_step(buf, pos, pending, low, high, c0, c1):
    low, high = _narrow(low, high, c0, c1)
    while True:
        if high < HALF:
            _put(buf, pos, 0)
            pos += 1
            for _ in range(pending):
                _put(buf, pos, 1)
                pos += 1
            pending = 0
        elif low >= HALF:
            _put(buf, pos, 1)
            pos += 1
            for _ in range(pending):
                _put(buf, pos, 0)
                pos += 1
            pending = 0
            low -= HALF
            high -= HALF
        elif low >= QUARTER and high < HALF + QUARTER:
            pending += 1
            low -= QUARTER
            high -= QUARTER
        else:
            break
        low = low << np.uint64(1)
        high = (high << np.uint64(1)) | np.uint64(1)
    return pos, pending, low, high


@nb.njit(cache=True)
def _terminate(buf, pos, pending, low):
    pending += 1
    if low < QUARTER:
        _put(buf, pos, 0)
        pos += 1
        for _ in range(pending):
            _put(buf, pos, 1)
            pos += 1
    else:
        _put(buf, pos, 1)
        pos += 1
        for _ in range(pending):
            _put(buf, pos, 0)
            pos += 1
    return pos


@nb.njit(cache=True)
def _symbol_bounds(cdf, n, offset, v):
    """Coding steps of value v in a table: (symbol, escaped)."""
    s = v + offset
    if s < 0 or s >= n - 1:
        return n - 1, True
    return s, False


def no_context(n_tables: int) -> tuple:
    """The context that changes nothing: every value coded with its own table."""
    return (np.full((1, 1), -1, dtype=np.int64), np.zeros((1, 1), dtype=np.int64), np.zeros(1, dtype=np.int64),
            np.zeros(1, dtype=np.int64), np.arange(n_tables, dtype=np.int64).reshape(1, n_tables, 1)) + no_cross(1)


def no_cross(M: int) -> tuple:
    """(xneighbors, xdirections, xweights) of a context that sees no other position."""
    return (np.full((M, 1), -1, dtype=np.int64), np.zeros((M, 1), dtype=np.int64), np.zeros((M, 1), dtype=np.int64))


def full_context(ctx: tuple) -> tuple:
    """``ctx`` as the kernels take it: 8 arrays (a context of 5 sees no other position)."""
    return tuple(ctx) if len(ctx) == 8 else tuple(ctx) + no_cross(np.asarray(ctx[2]).size)


def has_cross(ctx: tuple | None) -> bool:
    """Whether context ``ctx`` (5 or 8 arrays) sees neighbouring positions."""
    return ctx is not None and len(ctx) == 8 and bool(np.any(np.asarray(ctx[5]) >= 0))


def layout_of(ctx: tuple) -> tuple:
    """The context without its remap (what :func:`dnaimg.zoo.context.bucket_probe` takes)."""
    return tuple(ctx[:4]) + tuple(ctx[5:])


def with_remap(layout: tuple, remap: np.ndarray) -> tuple:
    """The context of ``layout`` (:func:`layout_of`) with ``remap``."""
    return tuple(layout[:4]) + (remap,) + tuple(layout[4:])


def no_positions(n_positions: int) -> np.ndarray:
    """``pnb`` of positions that see no neighbour."""
    return np.full((max(1, n_positions), 4), -1, dtype=np.int64)


def check_context(ctx: tuple, n_tables: int) -> tuple:
    """:func:`_check_context` of ``ctx`` (5 arrays, or 8 with a cross context), as many arrays."""
    if len(ctx) not in (5, 8):
        raise ValueError("inconsistent context tables")
    base = _check_context(ctx[:5], n_tables)
    if len(ctx) == 5:
        return base
    try:
        xn, xd, xw = (np.ascontiguousarray(np.asarray(a), dtype=np.int64) for a in ctx[5:])
    except (TypeError, ValueError):
        raise ValueError("inconsistent context tables") from None
    M = base[2].size
    ok = (xn.ndim == 2 and xn.shape[0] == M and xn.shape[1] >= 1 and xd.shape == xn.shape and xw.shape == xn.shape
          and bool(np.all((xn >= -1) & (xn < M))) and not bool(np.any((xn[:, :-1] < 0) & (xn[:, 1:] >= 0)))
          and bool(np.all((xd >= 0) & (xd < 4))) and bool(np.all((xw >= 0) & (xw < 1 << 16))))
    if not ok:
        raise ValueError("inconsistent context tables")
    return base + (xn, xd, xw)


def check_positions(pnb, n_positions: int) -> np.ndarray:
    """``pnb`` (None: :func:`no_positions`) as the kernels read it; ValueError unless every
    neighbour is an earlier position."""
    if pnb is None:
        return no_positions(n_positions)
    pnb = np.ascontiguousarray(np.asarray(pnb), dtype=np.int64)
    if pnb.shape != (max(1, n_positions), 4) or not bool(np.all((pnb >= -1) & (pnb < np.arange(pnb.shape[0])[:, None]))):
        raise ValueError("inconsistent position neighbours")
    return pnb


def _check_context(ctx: tuple, n_tables: int) -> tuple:
    """``ctx`` = (neighbors, weights, classes, edges, remap) as contiguous int64 arrays (``remap``'s
    second size: the values' own tables, the first of the ``n_tables``; the rest, narrower ones a
    model may add, are reached only through ``remap``); raise
    ValueError unless the kernels can run it without reading out of bounds, and every form of the
    rule (kernel, :func:`context_tables`, the training's) reads it alike (a row of neighbours ends at
    its first -1: only -1 after it)."""
    try:
        nbr, wts, cls, edges, remap = (np.ascontiguousarray(np.asarray(a), dtype=np.int64) for a in ctx)
    except (TypeError, ValueError):
        raise ValueError("inconsistent context tables") from None
    ok = (cls.ndim == 1 and cls.size >= 1 and nbr.ndim == 2 and nbr.shape[1] >= 1 and wts.shape == nbr.shape
          and nbr.shape[0] == cls.size and edges.ndim == 1 and edges.size >= 1 and remap.ndim == 3
          and 1 <= remap.shape[1] <= n_tables and remap.shape[2] == edges.size)
    if ok:
        M = cls.size
        ok = (edges[0] == 0 and bool(np.all(np.diff(edges) > 0))
              and bool(np.all((nbr >= -1) & (nbr < np.arange(M)[:, None])))
              and not bool(np.any((nbr[:, :-1] < 0) & (nbr[:, 1:] >= 0)))
              and bool(np.all((cls >= 0) & (cls < remap.shape[0])))
              and bool(np.all((remap >= 0) & (remap < n_tables))) and bool(np.all((wts >= 0) & (wts < 1 << 16))))
    if not ok:
        raise ValueError("inconsistent context tables")
    return nbr, wts, cls, edges, remap


@nb.njit(cache=True, inline="always")
def _context_table(c, avail, t, group, nbr, wts, cls, edges, remap, xnbr, xdir, xwts, pnb, q, vals, first):
    """The table of the value at place ``c`` of its group (own table ``t``): ``group[j]`` is the
    group's value at place j, counted where ``j >= avail`` (the places coded in the same packet);
    the group is position ``q``, and ``vals[p * M + c']`` is place c' of position p, counted where
    that index is ``>= first`` (the cross context)."""
    s = 0
    for k in range(nbr.shape[1]):
        j = nbr[c, k]
        if j < 0:
            break
        if j >= avail:
            a = abs(group[j])
            s += wts[c, k] * (a if a < CTX_CAP else CTX_CAP)
    M = cls.shape[0]
    for k in range(xnbr.shape[1]):
        j = xnbr[c, k]
        if j < 0:
            break
        p = pnb[q, xdir[c, k]]
        if p >= 0 and p * M + j >= first:
            a = abs(vals[p * M + j])
            s += xwts[c, k] * (a if a < CTX_CAP else CTX_CAP)
    b = 0
    while b + 1 < edges.shape[0] and edges[b + 1] <= s:
        b += 1
    return remap[cls[c], t, b]


def context_tables(values: np.ndarray, tables: np.ndarray, ctx: tuple, pnb=None) -> np.ndarray:
    """The tables the context gives values (G, M) (groups of M) with own tables (G, M), every
    neighbour counted (as when a group is not split between packets; with a cross context, every
    neighbouring position that ``pnb`` names, indexed as the G groups are): :func:`_context_table`
    for a whole array, for what estimates costs (the fitter, the encoder's rate-distortion
    choices).  (:func:`context_tables_cm` for the latent's channel-major arrays.)"""
    return context_tables_cm(np.asarray(values).T, np.asarray(tables).T, ctx, pnb).T


def context_tables_cm(values: np.ndarray, tables: np.ndarray, ctx: tuple, pnb=None) -> np.ndarray:
    """:func:`context_tables` for arrays in the latent's own layout, (M, positions) (channel
    major), without transposed copies (but one where the context is a cross one): (M, positions)."""
    ctx = full_context(ctx)
    values = np.ascontiguousarray(values, dtype=np.int64)
    cross = has_cross(ctx) and pnb is not None
    vals = np.ascontiguousarray(values.T).reshape(-1) if cross else np.zeros(1, dtype=np.int64)
    pnb = np.ascontiguousarray(pnb, dtype=np.int64) if cross else no_positions(values.shape[1])
    return _context_tables_cm(values, np.ascontiguousarray(tables, dtype=np.int64), *ctx, pnb, vals)


@nb.njit(cache=True, parallel=True)
def _context_tables_cm(values, tables, nbr, wts, cls, edges, remap, xnbr, xdir, xwts, pnb, vals):
    M, G = values.shape
    B = 64                                      # positions per block: a small transposed copy each
    out = np.empty((M, G), dtype=np.int64)
    for blk in nb.prange((G + B - 1) // B):
        g0 = blk * B
        n = min(B, G - g0)
        group = np.empty((n, M), dtype=np.int64)
        for c in range(M):
            for k in range(n):
                group[k, c] = values[c, g0 + k]
        for k in range(n):
            for c in range(M):
                out[c, g0 + k] = _context_table(c, 0, tables[c, g0 + k], group[k], nbr, wts, cls, edges, remap,
                                                xnbr, xdir, xwts, pnb, g0 + k, vals, 0)
    return out


def encode_packets(values, tables, cdf, n_sym, offset, packet_bytes, max_packets, ctx=None, pnb=None):
    """Code ``values`` (in order; ``tables[i]`` the table of value i) into packets of
    ``packet_bytes`` bytes.  Returns (packets (P, packet_bytes) uint8, first symbol index per
    packet).  ``packet_bytes`` 0: one packet of unbounded size (returns its bytes in a (1, n) array).
    ``ctx``: the context (module docstring), none by default; packets only (an unbounded stream
    is read by :func:`decode_stream`, which has none).  ``pnb``: the positions' neighbours in the
    coding order, for a cross context (None: none seen)."""
    if ctx is None:
        ctx = no_context(cdf.shape[0])
    elif packet_bytes == 0:
        raise ValueError("a context codes packets, not an unbounded stream")
    else:
        ctx = full_context(check_context(ctx, cdf.shape[0]))
    pnb = check_positions(pnb, values.shape[0] // ctx[2].size)
    return _encode_packets(values, tables, cdf, n_sym, offset, packet_bytes, max_packets, *ctx, pnb)


@nb.njit(cache=True)
def _encode_packets(values, tables, cdf, n_sym, offset, packet_bytes, max_packets, nbr, wts, cls, edges, remap,
                    xnbr, xdir, xwts, pnb):
    total = values.shape[0]
    M = cls.shape[0]
    unbounded = packet_bytes == 0
    if unbounded:
        cap = 1 << 62
        out = np.zeros((1, max(16, total * 5 + 64)), dtype=np.uint8)
    else:
        cap = packet_bytes * 8
        out = np.zeros((max_packets, packet_bytes), dtype=np.uint8)
    starts = np.zeros(out.shape[0], dtype=np.int64)
    i = 0
    k = 0
    while True:
        if k >= out.shape[0]:
            return out[:0], starts[:0]          # did not fit in max_packets
        buf = out[k]
        starts[k] = i
        pos = 0
        if not unbounded:
            for b in range(HEAD_BITS):
                _put(buf, pos, (i >> (HEAD_BITS - 1 - b)) & 1)
                pos += 1
        low = np.uint64(0)
        high = TOP
        pending = 0
        n_in = 0
        while i < total:
            c = i % M
            t = _context_table(c, starts[k] - (i - c), tables[i], values[i - c:], nbr, wts, cls, edges, remap,
                               xnbr, xdir, xwts, pnb, i // M, values, starts[k])
            s, esc = _symbol_bounds(cdf[t], n_sym[t], offset[t], values[i])
            # dry run: bits this value needs
            l2, h2, used = _step_count(low, high, cdf[t, s], cdf[t, s + 1])
            if esc:
                raw = values[i] + RAW_OFFSET
                for b in range(ESCAPE_BITS):
                    bit = (raw >> (ESCAPE_BITS - 1 - b)) & 1
                    l2, h2, u = _step_count(l2, h2, bit * (1 << (PREC - 1)), (bit + 1) * (1 << (PREC - 1)))
                    used += u
            if pos + pending + used + 2 > cap:
                break
            pos, pending, low, high = _encode_step(buf, pos, pending, low, high, cdf[t, s], cdf[t, s + 1])
            if esc:
                raw = values[i] + RAW_OFFSET
                for b in range(ESCAPE_BITS):
                    bit = (raw >> (ESCAPE_BITS - 1 - b)) & 1
                    pos, pending, low, high = _encode_step(buf, pos, pending, low, high, bit * (1 << (PREC - 1)),
                                                           (bit + 1) * (1 << (PREC - 1)))
            i += 1
            n_in += 1
            if n_in == (1 << HEAD_BITS) - 1 and not unbounded:
                break                           # heads must tell consecutive packets apart
        if n_in == 0 and i < total:
            return out[:0], starts[:0]          # a value larger than a packet: cannot happen with sane tables
        pos = _terminate(buf, pos, pending, low)
        k += 1
        if i >= total:
            if unbounded:
                return out[:, :(pos + 7) // 8].copy(), starts[:1]
            return out[:k], starts[:k]


@nb.njit(cache=True)
def _decode_symbol(cdf_t, n, value, low, high):
    rng = high - low + np.uint64(1)
    target = (((value - low + np.uint64(1)) << np.uint64(PREC)) - np.uint64(1)) // rng
    lo = 0
    hi = n - 1
    while lo < hi:                      # largest s with cdf[s] <= target
        mid = (lo + hi + 1) >> 1
        if np.uint64(cdf_t[mid]) <= target:
            lo = mid
        else:
            hi = mid - 1
    return lo


@nb.njit(cache=True)
def _decode_step(buf, limit, pos, value, low, high, c0, c1, pending):
    """Narrow and renormalise, shifting in bits; returns (pos, value, low, high, shifts, pending):
    ``pending`` counts, as the encoder's, the shifts whose bit the encoder had not yet written."""
    low, high = _narrow(low, high, c0, c1)
    shifts = 0
    while True:
        if high < HALF:
            pending = 0
        elif low >= HALF:
            low -= HALF
            high -= HALF
            value -= HALF
            pending = 0
        elif low >= QUARTER and high < HALF + QUARTER:
            low -= QUARTER
            high -= QUARTER
            value -= QUARTER
            pending += 1
        else:
            break
        low = low << np.uint64(1)
        high = (high << np.uint64(1)) | np.uint64(1)
        value = (value << np.uint64(1)) | np.uint64(_get(buf, pos, limit))
        pos += 1
        shifts += 1
    return pos, value, low, high, shifts, pending


@nb.njit(cache=True, inline="always")
def decoder_start(buf, limit, pos):
    """A fresh decoder on the code from bit ``pos``: (pos after its first 32 bits, value, low, high)."""
    value = np.uint64(0)
    for _ in range(32):
        value = (value << np.uint64(1)) | np.uint64(_get(buf, pos, limit))
        pos += 1
    return pos, value, np.uint64(0), TOP


@nb.njit(cache=True, inline="always")
def decode_value(buf, limit, pos, value, low, high, cdf_t, n, off, pending):
    """One value with table ``cdf_t`` (``n`` symbols, offset ``off``), its escape's 16 raw bits
    included: (v, pos, value, low, high, shifts, pending), ``shifts`` counting every
    renormalisation step (:func:`_decode_step`)."""
    s = _decode_symbol(cdf_t, n, value, low, high)
    pos, value, low, high, u, pending = _decode_step(buf, limit, pos, value, low, high, cdf_t[s], cdf_t[s + 1],
                                                     pending)
    if s != n - 1:
        return s - off, pos, value, low, high, u, pending
    half = np.array([0, 1 << (PREC - 1), 1 << PREC], dtype=np.int64)
    raw = 0
    for b in range(ESCAPE_BITS):
        bit = _decode_symbol(half, 2, value, low, high)
        pos, value, low, high, u2, pending = _decode_step(buf, limit, pos, value, low, high, bit * (1 << (PREC - 1)),
                                                          (bit + 1) * (1 << (PREC - 1)), pending)
        u += u2
        raw = (raw << 1) | bit
    return raw - RAW_OFFSET, pos, value, low, high, u, pending


@nb.njit(cache=True)
def _ends_here(buf, limit, written, low, pending):
    """Whether the bits from ``written`` on are what the encoder writes when a packet ends at
    this state: the termination (one bit, then ``pending + 1`` of the other) and zero bits."""
    b = 0 if low < QUARTER else 1
    if written + pending + 2 > limit:
        return False
    if _get(buf, written, limit) != b:
        return False
    for q in range(written + 1, written + pending + 2):
        if _get(buf, q, limit) != 1 - b:
            return False
    for q in range(written + pending + 2, limit):
        if _get(buf, q, limit) != 0:
            return False
    return True


@nb.njit(cache=True)
def decode_run(buf, limit, bit0, first, end, values, tables, cdf, n_sym, offset, cap, known,
               nbr, wts, cls, edges, remap, xnbr, xdir, xwts, pnb, trust=1 << 62):
    """Decode symbols ``first, first+1, ..`` from ``buf`` (``limit`` valid bits, coded bits start
    at ``bit0``) up to ``end`` (exclusive; -1: unknown, as when the next packet is lost: then up to
    the first symbol after which the rest of the packet is exactly a termination and zero bits.
    The true last symbol always passes that test, so nothing is ever decoded from the termination;
    an earlier symbol may pass it too (when the true symbols after it wrote no bits, or bits that
    look like a termination), and those after it are then reported unknown (about one packet in
    ten followed by a lost one loses 1-3 true values so; none is ever wrong).  Should no symbol
    pass, the size test bounds the run and the symbols ending in the last TAIL_GUARD bits are
    distrusted).  ``trust``: only the first ``trust`` bits of ``buf`` are known (the rest of a
    packet whose later oligo was lost): the run stops before the first symbol whose decisions
    read a bit past them; every symbol before it was decided from known bits alone.  Fills
    ``values`` and ``known``; returns the index after the run, and whether the run was consistent
    (every symbol before ``end`` fitted).  ``nbr`` .. ``remap``: the context (module docstring)."""
    total = values.shape[0]
    stop = total if end < 0 else min(end, total)
    pos, value, low, high = decoder_start(buf, limit, bit0)
    used = bit0            # bits the encoder had emitted or left pending (head included)
    pending = 0
    i = first
    i_safe = first
    M = cls.shape[0]
    group = np.zeros(M, dtype=np.int64)     # this run's values of the current group (no other thread's)
    while i < stop:
        c = i % M
        t = _context_table(c, first - (i - c), tables[i], group, nbr, wts, cls, edges, remap, xnbr, xdir, xwts,
                           pnb, i // M, values, first)
        v, pos, value, low, high, u, pending = decode_value(buf, limit, pos, value, low, high, cdf[t], n_sym[t],
                                                            offset[t], pending)
        if pos > trust:         # (its decisions read bits up to pos)
            return i, True
        used2 = used + u
        if used2 + 2 > cap:
            if end < 0:         # the run's end is unknown: distrust what ends in the last bits
                for j in range(i_safe, i):
                    values[j] = 0
                    known[j] = False
            return i, end < 0
        used = used2
        values[i] = v
        group[c] = v
        known[i] = True
        i += 1
        if used + 2 + TAIL_GUARD <= cap:
            i_safe = i
        if end < 0 and _ends_here(buf, limit, used - pending, low, pending):
            return i, True
    return i, True


@nb.njit(cache=True)
def read_head(buf):
    h = 0
    for b in range(HEAD_BITS):
        h = (h << 1) | _get(buf, b, HEAD_BITS)
    return h


@nb.njit(cache=True)
def packet_starts(packets, lost, total, expected_cum):
    """First symbol of every readable packet (-1: lost or implausible).  Heads give it modulo
    2**HEAD_BITS; after a readable packet the next start is the first candidate after it (a
    packet holds fewer than 2**HEAD_BITS symbols), after lost packets the candidate nearest to
    where the expected code length puts it (``expected_cum[i]``: bits expected for symbols < i)."""
    P = packets.shape[0]
    M = 1 << HEAD_BITS
    per_packet = expected_cum[total] / max(P, 1)
    starts = np.full(P, -1, dtype=np.int64)
    prev_k = -1
    prev_s = 0
    for k in range(P):
        if lost[k]:
            continue
        head = read_head(packets[k])
        if k == 0:
            s = head
        elif prev_k == k - 1:
            d = (head - prev_s) % M
            s = prev_s + (d if d > 0 else M)
        else:
            ref_k = prev_k if prev_k >= 0 else 0
            target = expected_cum[prev_s] + (k - ref_k) * per_packet
            est = np.searchsorted(expected_cum, target)
            c = prev_s + ((head - prev_s) % M)
            if prev_k >= 0 and c == prev_s:
                c += M
            best = c
            while c <= total:
                if abs(c - est) < abs(best - est):
                    best = c
                c += M
            s = best
        if s >= total:
            continue
        starts[k] = s
        prev_k = k
        prev_s = s
    return starts


def headless(readable) -> np.ndarray:
    """Which packets are lost for want of their head, given how many of their first bytes are
    known (``readable``, per packet)."""
    return np.asarray(readable, dtype=np.int64) * 8 < HEAD_BITS


def decode_packets(packets, lost, total, tables, cdf, n_sym, offset, expected_cum, ctx=None, readable=None,
                   pnb=None):
    """Decode packets (P, B) of which ``lost[k]`` could not be read.  Each readable packet decodes
    on its own, from its first symbol to the next readable packet's.  ``readable[k]`` (default B):
    how many of packet k's first bytes are known where a later part of it was lost (an oligo of
    it not rebuilt): its symbols decided from those bytes alone are decoded, the rest are unknown;
    a packet without its whole head is lost.  Returns (values, known): unknown values are 0 (the
    decoder's predicted mean).  ``ctx`` and ``pnb``: as the encoder's."""
    ctx = no_context(cdf.shape[0]) if ctx is None else full_context(check_context(ctx, cdf.shape[0]))
    pnb = check_positions(pnb, total // ctx[2].size)
    P, B = packets.shape
    readable = np.full(P, B, dtype=np.int64) if readable is None else np.asarray(readable, dtype=np.int64)
    lost = np.asarray(lost, dtype=np.bool_) | headless(readable)
    return _decode_packets(packets, lost, total, tables, cdf, n_sym, offset, expected_cum, readable, *ctx, pnb)


@nb.njit(cache=True, parallel=True)
def _decode_packets(packets, lost, total, tables, cdf, n_sym, offset, expected_cum, readable, nbr, wts, cls, edges,
                    remap, xnbr, xdir, xwts, pnb):
    P, B = packets.shape
    cap = B * 8
    values = np.zeros(total, dtype=np.int64)
    known = np.zeros(total, dtype=np.bool_)
    starts = packet_starts(packets, lost, total, expected_cum)
    for k in nb.prange(P):
        s = starts[k]
        if s < 0:
            continue
        if k == P - 1:
            end = total
        elif starts[k + 1] > s:
            end = starts[k + 1]
        else:
            end = -1
        trust = (1 << 62) if readable[k] >= B else readable[k] * 8
        decode_run(packets[k], cap, HEAD_BITS, s, end, values, tables, cdf, n_sym, offset, cap, known,
                   nbr, wts, cls, edges, remap, xnbr, xdir, xwts, pnb, trust)
    return values, known


def decode_stream(buf, total, tables, cdf, n_sym, offset):
    """One unbounded stream (no head, no context): every symbol."""
    return _decode_stream(buf, total, tables, cdf, n_sym, offset, *no_context(cdf.shape[0]), no_positions(1))


@nb.njit(cache=True)
def _decode_stream(buf, total, tables, cdf, n_sym, offset, nbr, wts, cls, edges, remap, xnbr, xdir, xwts, pnb):
    values = np.zeros(total, dtype=np.int64)
    known = np.zeros(total, dtype=np.bool_)
    decode_run(buf, buf.shape[0] * 8, 0, 0, total, values, tables, cdf, n_sym, offset, 1 << 62, known,
               nbr, wts, cls, edges, remap, xnbr, xdir, xwts, pnb)
    return values, known


def quantized_cdf(pmf: np.ndarray, precision: int = PREC) -> np.ndarray:
    """Probabilities (n,) -> cumulative table (n + 1,) of integers summing to 2**precision with
    every frequency >= 1 (largest-remainder rounding, then the deficit taken from the largest)."""
    pmf = np.asarray(pmf, dtype=np.float64)
    n = pmf.size
    total = 1 << precision
    if n > total // 2:
        raise ValueError("table too long for the precision")
    p = np.maximum(pmf, 0) / max(pmf.sum(), 1e-300)
    f = np.floor(p * (total - n)).astype(np.int64) + 1
    rem = total - int(f.sum())
    if rem > 0:
        order = np.argsort(-(p * (total - n) - np.floor(p * (total - n))), kind="stable")
        f[order[:rem]] += 1
    elif rem < 0:
        f[int(np.argmax(f))] += rem
    cdf = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(f, out=cdf[1:])
    assert cdf[-1] == total and (f >= 1).all()
    return cdf


def table_bits(cdf_row: np.ndarray, n: int) -> float:
    """Entropy (bits) of a table's distribution, escape excluded."""
    f = np.diff(cdf_row[:n + 1]).astype(np.float64) / (1 << PREC)
    f = f[f > 0]
    return float(-(f * np.log2(f)).sum())
