"""The compact encoder's last step for the wavelet models: the latent's symbols refined for the
decoder's own synthesis (encoder only: no format change, a decoder reads whatever symbols come).

The RDO (:func:`dnaimg.codecs.compact.rdo_symbols`) prices a value's squared error in the
wavelet's domain, as if the decoder drew the inverse wavelet of the symbols.  It draws more: a
post-filter (:class:`dnaimg.zoo.wavelet.PostFilter`) runs after the inverse wavelet and changes
what each symbol costs in the image.  A symbol one step away from the RDO's may then give a
better image for the same bits, or as good an image for fewer.  Finding such symbols is the
"latent refinement" of learned codecs (Campos et al. 2019, Yang et al. 2020) for a latent of
integers, done greedily:

1. the gradient of the decoded image's squared error with respect to every symbol, through the
   post-filter (the synthesis on the decoder's tiles, so that memory stays bounded);
2. for each value, the change of one step up or down with the lowest estimated cost: the
   gradient's first-order change of the squared error plus the wavelet's own curvature (the
   RDO's weight), plus the change of the value's own bits in its context's table; weighted
   by the rate row's lambda as in the RDO;
3. the best ``fraction`` of the values whose cost falls each take their step;
4. the step is kept if the image the decoder would draw (8-bit, as it rounds) costs less, its
   squared error weighted as in the RDO plus its bits at the current price of a bit; else the
   fraction halves.  The price (1: the RDO's) rises after a step that leaves the bits over the
   budget (the bits of the packets the DNA has room for) and falls after one within: the search
   may go over the budget and come back, and returns the lowest error it met within it.

Then the bits left in the budget are spent: values stepped where a bit lowers the estimated
error most, as long as the image gets better; from the lowest error met within the budget and,
where the search ended within it on other symbols, from those too (a search that went over the
budget and came back under it may have met no lower error within it, yet have bits left to
spend), the lower error winning.  A search that would make the image worse keeps the RDO's
symbols.

Measured on training images at a cap of 0.3 total nt/px (``dnaimg encode --rate 0.3``, 15 %
outer code): X-rays +0.14 dB (5 images, 43.11 to 43.25 dB; 4 others, 42.86 to 42.99 dB),
microscopy +0.17 dB (5 images, 47.31 to 47.48 dB); 8 steps instead of 16 gave about 0.04 dB
less, 32 steps 0.004 dB more.  Tried and dropped: half the candidates per step instead of 0.3
(the same 43.21 dB at 8 steps), and steps that must stay within the budget (0.02 dB less than
going over and coming back).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

ITERS = 16              # gradient steps (each one synthesis forward and backward on the image)
EXTRA_ITERS = 8         # more steps, at a rising price, where the last one left the bits over the budget
MIN_ITERS = 4           # ... at least, however large the image
FULL_PIXELS = 2_000_000 # images up to this many pixels get all ITERS steps, larger ones proportionally fewer
FRACTION = 0.3          # of the values whose estimated cost falls, the best this share changes per step
TOP_UP_STEPS = 3        # then the bits left in the budget spent (values stepped where a bit buys the most)
TOP_UP_SHARE = 0.8      # ... this share of them at a time (the context moves the neighbours' bits too)
TOP_UP_MIN_BITS = 64    # ... while at least this many are left
MIN_FRACTION = 0.01     # halved below this (steps that made the image worse or cost too much): done
MIN_CHANGES = 16        # a step that would change fewer values ends the search
PRICE_STEP = 1.5        # a bit's price (1: the RDO's) grows by this after a step over the budget, falls after one within
PRICE_MIN = 0.25        # ... down to this: bits the packets have room for are spent


def iterations(pixels: int) -> int:
    """Gradient steps for an image of ``pixels``: :data:`ITERS` up to :data:`FULL_PIXELS`, fewer
    beyond (the work of each grows with the image), at least :data:`MIN_ITERS`."""
    return max(MIN_ITERS, min(ITERS, ITERS * FULL_PIXELS // max(1, pixels)))


def _tile_slices(n: int, tile: int, halo: int) -> list[tuple[int, int, int, int]]:
    """(start with halo, start, end, end with halo) of the tiles along one side of ``n`` positions."""
    out = []
    for a in range(0, n, tile):
        b = min(n, a + tile)
        out.append((max(0, a - halo), a, b, min(n, b + halo)))
    return out


def synthesis_error(gs, y_hat: np.ndarray, img: np.ndarray, tile: int, halo: int,
                    grad: bool = True) -> tuple[float, np.ndarray | None]:
    """(squared error of the 8-bit image the decoder draws from ``y_hat`` (M, h, w) against
    ``img`` (H, W) uint8, in 8-bit units; the gradient of the same error before the decoder's
    rounding with respect to ``y_hat``, or None), the synthesis ``gs`` run on the decoder's tiles
    (``tile`` latent positions with ``halo`` positions of context each side)."""
    M, h, w = y_hat.shape
    H, W = img.shape
    f = 16                                     # pixels per latent position
    y = torch.from_numpy(np.ascontiguousarray(y_hat, dtype=np.float32))
    x = torch.from_numpy(img.astype(np.float32))
    g = np.zeros((M, h, w), dtype=np.float32) if grad else None
    sse = 0.0
    with torch.inference_mode(False):       # (the encoder may run under inference mode)
        for a0, a, b, b1 in _tile_slices(h, tile, halo):
            for c0, c, d, d1 in _tile_slices(w, tile, halo):
                ys = y[:, a0:b1, c0:d1].clone().requires_grad_(grad)
                with torch.set_grad_enabled(grad):
                    o = gs(ys[None])[0, 0]
                    py0, py1 = (a - a0) * f, min(H, b * f) - a0 * f
                    px0, px1 = (c - c0) * f, min(W, d * f) - c0 * f
                    if py1 <= py0 or px1 <= px0:
                        continue
                    o = o[py0:py1, px0:px1] * 255.0
                    t = x[a * f:a * f + (py1 - py0), c * f:c * f + (px1 - px0)]
                    with torch.no_grad():
                        sse += float(torch.sum((torch.clamp(torch.floor(o + 0.5), 0, 255) - t) ** 2))
                    if grad:
                        torch.sum((o - t) ** 2).backward(inputs=[ys])      # (not into the model's weights)
                if grad:
                    g[:, a0:b1, c0:d1] += ys.grad.numpy()
    return sse, g


CHUNK = 16              # channels whose step costs are worked out at a time (memory: a few arrays of that size)


def _chunks(M: int):
    return ((c, min(M, c + CHUNK)) for c in range(0, M, CHUNK))


def _step_changes(s, used, b_now, g, lam, gain, curv, t):
    """For each chunk of channels ``a:b`` and each step of one (-1, 1): (a, b, step, the estimated
    change of the weighted squared error, the gradient ``g`` weighted by ``lam`` plus the wavelet's
    curvature; the change of the values' bits)."""
    from dnaimg.codecs.compact import symbol_bits
    for a, b in _chunks(s.shape[0]):
        dsse = lam * g[a:b] / gain[a:b]                         # d(lam * sse) / d(symbol)
        for step in (-1, 1):
            yield a, b, step, dsse * step + curv[a:b], symbol_bits(s[a:b] + step, used[a:b], t) - b_now[a:b]


def _best_steps(s, used, b_now, g, lam, gain, curv, price, t) -> tuple[np.ndarray, np.ndarray]:
    """(step of each value, -1, 0 or 1; its estimated change of cost, <= 0): the step of one with
    the lowest estimated cost (:func:`_step_changes`, the bits at ``price``), where that is below 0."""
    steps = np.zeros(s.shape, dtype=np.int64)
    best_j = np.zeros(s.shape)
    for a, b, step, dd, dr in _step_changes(s, used, b_now, g, lam, gain, curv, t):
        j = dd + price * dr
        st, bj = steps[a:b], best_j[a:b]
        m = j < bj
        bj[m], st[m] = j[m], step
    return steps, best_j


def _top_up_steps(s, used, b_now, g, lam, gain, curv, t) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(step of each value, -1, 0 or 1; the estimated error it saves per bit it adds; those bits):
    the step with the most saved per bit, among those that lower the error and add bits."""
    steps = np.zeros(s.shape, dtype=np.int64)
    ratio = np.zeros(s.shape)
    cost = np.zeros(s.shape)
    for a, b, step, dd, dr in _step_changes(s, used, b_now, g, lam, gain, curv, t):
        r = np.where((dd < 0) & (dr > 0), -dd / np.maximum(dr, 1e-9), 0.0)
        st, ra, co = steps[a:b], ratio[a:b], cost[a:b]
        m = r > ra
        ra[m], st[m], co[m] = r[m], step, dr[m]
    return steps, ratio, cost


def refine(an, row: int, rdo_weight: float, sym: np.ndarray, idx: np.ndarray, ctx: tuple | None,
           budget: float = 1.0, iters: int | None = None, fraction: float | None = None,
           progress: Callable[[], None] | None = None) -> tuple[np.ndarray, dict]:
    """(symbols refined for the decoder's synthesis, {"changed", "sse_before", "sse_after",
    "bits_before", "bits_after"}) for ``sym`` (M, h, w) coded by ``an`` (a
    :class:`dnaimg.codecs.compact.Analysis` of a wavelet model) at rate row ``row`` with the RDO's
    ``rdo_weight``, hyperprior tables ``idx`` and the coder's context ``ctx`` (None: none), in at
    most ``budget`` times the bits of ``sym``."""
    from dnaimg.codecs.compact import _row_lambda, card_lambdas, symbol_bits, used_tables
    iters = iterations(an.height * an.width) if iters is None else iters
    fraction = FRACTION if fraction is None else fraction
    t = an.tables
    gain = an._rounded(row)[3]
    lam = _row_lambda(card_lambdas(an.card), row) * rdo_weight     # per squared 8-bit level
    curv = lam * 255.0 ** 2 / gain ** 2                             # the wavelet's: the RDO's weight

    def used_of(s):
        return used_tables(s, idx, ctx, an.estimate_pnb())

    def measure(s, grad=True):
        return an.synthesis_error(row, s, grad=grad)

    s = sym.copy()
    used = used_of(s)
    b_now = symbol_bits(s, used, t)
    bits = float(b_now.sum())
    budget *= bits
    sse, g = measure(s)
    report = {"changed": 0, "sse_before": sse, "bits_before": bits}
    best = (sse, s, g) if bits <= budget else (np.inf, sym, None)    # the lowest squared error within the budget
    last_in = None                      # the last step's symbols, if within the budget (bits left to spend)
    price = 1.0
    extra = EXTRA_ITERS if iters >= ITERS else iters // 2      # (large images: fewer of each)
    top_ups = TOP_UP_STEPS if iters >= ITERS else 1
    step_no = 0
    while step_no < iters or (bits > budget and step_no < iters + extra):
        step_no += 1
        steps, best_j = _best_steps(s, used, b_now, g, lam, gain, curv, price, t)
        cand = np.flatnonzero(steps)
        if len(cand) < MIN_CHANGES:
            break
        k = max(MIN_CHANGES, int(len(cand) * fraction))
        sel = cand[np.argsort(best_j.ravel()[cand], kind="stable")[:k]]
        s2 = s.copy().ravel()
        s2[sel] += steps.ravel()[sel]
        s2 = s2.reshape(s.shape)
        used2 = used_of(s2)
        b2 = symbol_bits(s2, used2, t)
        sse2, g2 = measure(s2)
        if progress is not None:
            progress()
        bits2 = float(b2.sum())
        if lam * sse2 + price * bits2 < lam * sse + price * bits:
            s, used, b_now, bits, sse, g = s2, used2, b2, bits2, sse2, g2
            if bits <= budget and sse < best[0]:
                best = (sse, s, g)
            last_in = (sse, s, g) if bits <= budget else None
        else:                                                   # a worse step: smaller steps
            fraction /= 2
            if fraction < MIN_FRACTION:
                break
        price = price * PRICE_STEP if bits > budget else max(PRICE_MIN, price / PRICE_STEP)
    if best[0] == np.inf:                               # nothing within the budget: the RDO's symbols
        return sym.copy(), {**report, "sse_after": report["sse_before"], "bits_after": report["bits_before"]}

    def top_up(sse, s, g):
        """The budget's bits left after ``s`` spent where they buy most: (squared error, symbols)."""
        for k in range(top_ups):
            used = used_of(s)
            b_now = symbol_bits(s, used, t)
            bits = float(b_now.sum())
            if budget - bits < TOP_UP_MIN_BITS:
                break
            steps, ratio, cost = _top_up_steps(s, used, b_now, g, lam, gain, curv, t)
            cand = np.flatnonzero(steps)
            order = cand[np.argsort(-ratio.ravel()[cand], kind="stable")]
            take = order[np.cumsum(cost.ravel()[order]) <= TOP_UP_SHARE * (budget - bits)]
            if len(take) < MIN_CHANGES:
                break
            s2 = s.copy().ravel()
            s2[take] += steps.ravel()[take]
            s2 = s2.reshape(s.shape)
            bits2 = float(symbol_bits(s2, used_of(s2), t).sum())
            sse2, g2 = measure(s2, grad=k + 1 < top_ups)         # (the next top-up's gradient)
            if progress is not None:
                progress()
            if not (sse2 < sse and bits2 <= budget):
                break
            s, sse, g = s2, sse2, g2
        return sse, s

    # from the lowest error met within the budget and, where the search ended within it on other
    # symbols (with bits left that a top-up may spend better), from those: the lower error wins
    sse, s = min((top_up(*start) for start in [best] + ([last_in] if last_in is not None
                                                          and last_in[1] is not best[1] else [])),
                 key=lambda r: r[0])
    bits = float(symbol_bits(s, used_of(s), t).sum())
    report.update(changed=int(np.count_nonzero(s != sym)), sse_after=sse, bits_after=bits)
    return s, report
