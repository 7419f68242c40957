"""The compact encoder's search for a cheaper hyper-latent (encoder only: no format change).

The analysis network ``h_a`` gives the hyper-latent ``z`` in one pass.  It was trained for
the average image, before the coder had its contexts (:mod:`dnaimg.zoo.context`,
:mod:`dnaimg.zoo.zcontext`), and without knowing that z's oligos carry a stronger outer code
than the latent's. For one image, another ``z`` can cost fewer bits in all: the decoder reads
whatever ``z`` it is given, so the encoder may look for it (the "latent refinement" of learned
codecs: Campos et al. 2019, Yang et al. 2020, here for the hyper-latent only, since the wavelet
models' latent is fixed by the image).

The search minimises a differentiable stand-in for the bits at one rate row, with Adam, from
``h_a``'s z (rounded):

- the latent's bits: each value's symbol and context bucket as the encoder chose them, its table
  ``remap[class, t, bucket]`` for the hyperprior's table index ``t``, which is made continuous
  (the scale's position between the scale table's thresholds) and the bits interpolated between
  the two nearest tables; LL4's mean moves its values, interpolated likewise.  ``h_s`` runs in
  floating point (bf16 where the CPU computes it natively) from the integer weights the decoder
  runs exactly;
- the hyper-latent's bits, each value's interpolated between its integer neighbours in the table
  of its context (the contexts follow the rounded z after every step), weighted by the ratio of
  the two streams' outer codes (z's oligos carry more parity);
- where the latent has no outer code to speak of (``keep_means``), a penalty on LL4's means erring
  more than with ``h_a``'s z (aiming 3 % below it): a value lost with its packet decodes as its mean, and without the
  penalty the search buys bits with the mean's accuracy.  A training X-ray with 5 % of its
  latent's oligos lost and no outer code: 0.8 dB lower without it, 0.3 dB higher with it than
  with ``h_a``'s z.  Behind an outer code the penalty is not applied, as for the 4-oligo packets
  (:func:`dnaimg.codecs.compact.packet_rows`): lost oligos are rebuilt, and only once the outer
  code is overwhelmed does the image fall further (the same X-ray at 0.3 nt/px, 14-22 % of all
  oligos lost: 2.0-2.5 dB lower than with ``h_a``'s z, against +0.23 dB when nothing is lost).

The result is rounded and kept only if the encoder's own objective (the RDO's squared error at
the row's weight plus the streams' bits, z's weighted as above) is lower than with ``h_a``'s z
(and, with ``keep_means``, LL4's means err at most 2 % more, measured with the exact h_s:
:func:`mean_error`, ``MEAN_ERROR_SLACK``).  Only models with a coder context are searched (the
wavelet models from compact-gray-v4).
Measured on training images at one row: 2-7 % fewer bits on X-rays, 2-6 % on microscopy, the
PSNR within +-0.05 dB.
"""
from __future__ import annotations

import numba as nb
import numpy as np
import torch
import torch.nn.functional as F

ITERS = 60          # Adam steps
LR = 0.1            # their size, in z's units
EPS = 0.3           # Adam's epsilon, in bits per unit of z: values whose bits hardly depend on them
                    # move less than a full step (measured on training images: never worse, and
                    # the search no longer makes a small image's z dearer)
MIN_VALUES = 64     # a hyper-latent smaller than this is left alone
KAPPA = 1.0         # bits per squared quantiser step that LL4's mean errs by more than MEAN_AIM of h_a's
MEAN_AIM = 0.97     # below the encoder's check (MEAN_ERROR_SLACK of h_a's, exact h_s): the search's
                    # h_s is approximate (bf16 where the CPU has it), so it aims a little lower


def _hs_float(hs, z: torch.Tensor, bf16: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The integer h_s (:class:`dnaimg.zoo.exact.ExactTables`'s layers, the last one cut to the
    outputs used: see :func:`_layers`) in floating point, without its floors: (LL4's mean (1, 1,
    H, W), the scales (1, M, H, W)) at FA fractional bits."""
    from dnaimg.zoo.exact import ACT_MAX, FA
    a = z * float(1 << FA)
    last = len(hs) - 1
    for i, (kind, W, B, fw, stride, pad) in enumerate(hs):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            o = (F.conv_transpose2d(a, W, None, stride, pad, stride - 1) if kind == "deconv"
                 else F.conv2d(a, W, None, stride, pad))
        o = (o.float() + B.view(1, -1, 1, 1)) / float(1 << fw)
        if i < last:
            o = torch.relu(o)
        a = o.clamp(-ACT_MAX, ACT_MAX)
    return a[:, :1], a[:, 1:].abs()


def _layers(t) -> list:
    """h_s's layers in float32, the last one's outputs cut to LL4's mean and the scales (the
    wavelet models' other means are 0: ``CompactHyperprior`` masks them): half its work."""
    hs = [(k, W.float(), B.float(), fw, s, p) for k, W, B, fw, s, p in t.hs]
    k, W, B, fw, s, p = hs[-1]
    M = W.shape[0] // 2
    keep = torch.cat([torch.zeros(1, dtype=torch.long), torch.arange(M, 2 * M)])
    hs[-1] = (k, W[keep].contiguous(), B[keep].contiguous(), fw, s, p)
    return hs


def _z_bits_table(t) -> tuple[np.ndarray, int]:
    """(tables, 2 OFF + 1) bits of each hyper-latent value -OFF..OFF in each of its tables (the
    context's, else the channel's), and OFF."""
    from dnaimg.codecs.compact import coded_bits
    from dnaimg.zoo import zcontext
    cdf, n, off = t.zctx if t.zctx is not None else (t.z_cdf, t.z_n, t.z_off)
    O = zcontext.OFF
    return coded_bits(np.arange(-O, O + 1)[None, :], np.arange(cdf.shape[0])[:, None], cdf, n, off), O


def _z_tables(t, z: np.ndarray) -> np.ndarray:
    """Each value's table (row of :func:`_z_bits_table`), C order."""
    if t.zctx is not None:
        from dnaimg.zoo.zcontext import table_indexes
        return table_indexes(z)
    return np.repeat(np.arange(z.shape[0]), z[0].size)


@nb.njit(cache=True, nogil=True, parallel=True)
def _detail_grad(sigma, gain, log_thr, key, by_t, grad):
    """The derivative of the detail values' interpolated bits with respect to their scales, into
    ``grad`` (channels 1..: channel 0, LL4, is left to autograd): the same function as
    ``table_index`` and the two tables' bits of :func:`search`, in one pass without temporaries.
    ``sigma`` (M, P) FA fixed point, ``key[c - 1, p]`` the (class, bucket, symbol) row of ``by_t``
    times the number of tables."""
    M, P = sigma.shape
    nT = log_thr.shape[0]
    for c in nb.prange(1, M):
        g = gain[c]
        for q in range(P):
            sg = sigma[c, q] * g
            d = np.float32(0.0)
            if sg > 1.0:
                s = np.log(sg)
                i = np.searchsorted(log_thr, s)
                i = 1 if i < 1 else (nT - 1 if i > nT - 1 else i)
                lo, hi = log_thr[i - 1], log_thr[i]
                f = (s - lo) / (hi - lo)
                if 0.0 < f < 1.0:
                    tc = (i - 1) + f + 0.5
                    t0 = int(np.floor(tc))
                    t0 = 0 if t0 < 0 else (nT - 2 if t0 > nT - 2 else t0)
                    fr = tc - t0
                    if 0.0 < fr < 1.0:
                        k = key[c - 1, q] + t0
                        d = (by_t[k + 1] - by_t[k]) / ((hi - lo) * sigma[c, q])
            grad[c, q] = d


def mean_error(an, row: int) -> float:
    """How far LL4's values lie from their means at rate row ``row`` (sum of squares, quantiser
    steps): what values lost with their packets cost."""
    u = an._rounded(row)[0]
    return float(np.sum(u[0] * u[0]))


def search(an, row: int, rdo_weight: float, z_weight: float, keep_means: bool = True, iters: int = ITERS,
           lr: float = LR, progress=None) -> np.ndarray | None:
    """A hyper-latent (N, h, w) int64 for ``an`` (:class:`dnaimg.codecs.compact.Analysis`) at rate
    row ``row``, or None when the search finds none better than the current one.  ``z_weight``:
    what a bit of z costs in bits of the latent (the ratio of their streams' outer codes).
    ``keep_means``: LL4's means kept about as accurate as with h_a's z (the :data:`KAPPA`
    penalty)."""
    from dnaimg.codecs import arith
    from dnaimg.codecs.compact import _value_bits
    from dnaimg.zoo.context import V_MAX, bucket_probe
    from dnaimg.zoo.exact import FA, GAIN_BITS
    from dnaimg.zoo.model import native_bf16
    t = an.tables
    z0 = an.z[0]
    if t.ctx is None or z0.size < MIN_VALUES:
        return None
    sym, idx, ctx, _ = an.coded(row, rdo_weight)
    cls, remap = ctx[2], ctx[4]
    M, h, w = sym.shape
    _, nT, nB = remap.shape
    buckets = arith.context_tables_cm(sym.reshape(M, -1), idx.reshape(M, -1),
                                      bucket_probe(arith.layout_of(ctx), t.y_cdf.shape[0]),
                                      an.estimate_pnb()).reshape(M, h, w)
    W = 2 * V_MAX + 1
    value_bits = _value_bits(t).astype(np.float32)                                  # (tables, W)
    bits = torch.from_numpy(value_bits).reshape(-1)
    remap_t = torch.from_numpy(np.ascontiguousarray(remap, dtype=np.int64)).reshape(-1)
    # by (class, bucket, symbol): the bits at every hyperprior table t, (n_cls nB W, nT): each
    # detail value then finds its two tables' bits at one key (the table is 13 MB)
    by_t = np.ascontiguousarray(value_bits[remap].transpose(0, 2, 3, 1)).reshape(-1)
    key = (((np.asarray(cls, dtype=np.int64)[1:, None, None] * nB + buckets[1:]) * W
            + np.clip(sym[1:], -V_MAX, V_MAX) + V_MAX) * nT).astype(np.int32).reshape(M - 1, h * w)
    cell_ll = torch.from_numpy(int(cls[0]) * (nT * nB) + buckets[0])
    del sym, idx, buckets
    g = t.gain[row].astype(np.float64) / (1 << GAIN_BITS)
    g_ll = float(g[0])
    u_ll = torch.from_numpy((an.y[0] * g_ll).astype(np.float32))                      # LL4 before its mean
    log_thr_np = np.log(np.maximum(t.thresholds, 1)).astype(np.float32)
    log_thr = torch.from_numpy(log_thr_np)
    gain_np = g.astype(np.float32)
    grad = np.empty((M, h * w), dtype=np.float32)
    hs = _layers(t)
    bf16 = native_bf16()
    zb_table, O = _z_bits_table(t)
    zb = torch.from_numpy(zb_table.astype(np.float32)).reshape(-1)
    Z = 2 * O + 1

    def table_index(sigma):
        """LL4's continuous table index (t = k where the scale is at threshold k - 1/2 .. k + 1/2 in
        the coder's sense), its floor clipped to 0 .. nT - 2, and the fraction."""
        s = torch.log((sigma * g_ll).clamp(min=1.0))
        i = torch.searchsorted(log_thr, s.detach().reshape(-1).contiguous()).reshape(s.shape).clamp(1, nT - 1)
        lo, hi = log_thr[i - 1], log_thr[i]
        tc = (i - 1).float() + ((s - lo) / (hi - lo)).clamp(0, 1) + 0.5
        t0 = torch.floor(tc).detach().long().clamp(0, nT - 2)
        return t0, (tc - t0).clamp(0, 1)

    def y_bits(z):
        """A scalar whose gradient is that of the latent's bits (its value is not the bits)."""
        mu, sigma = _hs_float(hs, z, bf16)
        s = sigma[0].reshape(M, h * w)
        _detail_grad(s.detach().numpy(), gain_np, log_thr_np, key, by_t, grad)
        total = (s[1:] * torch.from_numpy(grad[1:])).sum()
        t0, fr = table_index(sigma[0, :1])
        # LL4: its mean moves its values (interpolated between integers) as well as its table
        u = u_ll - mu[0, 0] * (g_ll / float(1 << FA))
        uf = torch.floor(u).detach()
        c = uf.long().clamp(-V_MAX, V_MAX - 1) + V_MAX
        fu = u - uf
        j0 = remap_t[cell_ll + t0[0] * nB] * W
        j1 = remap_t[cell_ll + (t0[0] + 1) * nB] * W

        def at(j):
            return bits[j + c] + fu * (bits[j + c + 1] - bits[j + c])
        a0 = at(j0)
        return total + (a0 + fr[0] * (at(j1) - a0)).sum(), (u * u).sum()

    def z_bits(z, rows):
        v = z[0].clamp(-O, O - 1e-3)
        f = torch.floor(v).detach()
        k = (f.long() + O).reshape(-1)
        fr = (v - f).reshape(-1)
        lo = zb[rows * Z + k]
        hi = zb[rows * Z + k + 1]
        return (lo + fr * (hi - lo)).sum()

    zv = torch.from_numpy(z0.astype(np.float32))[None].requires_grad_(True)
    opt = torch.optim.Adam([zv], lr=lr, eps=EPS)
    e0 = None
    for it in range(iters):
        rows = torch.from_numpy(_z_tables(t, np.round(zv.detach().numpy()[0]).astype(np.int64)))
        yb, e = y_bits(zv)
        if e0 is None:
            e0 = float(e.detach())
        loss = yb + z_weight * z_bits(zv, rows)
        if keep_means:          # LL4's means, what values lost with their packets decode to
            loss = loss + KAPPA * torch.relu(e - MEAN_AIM * e0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            zv.clamp_(-O + 1, O - 1)
        if progress:
            progress(it + 1, iters)
    z = np.round(zv.detach().numpy()[0]).astype(np.int64)
    return None if np.array_equal(z, z0) else z
