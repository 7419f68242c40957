"""The compact codec's wavelet transforms (``CompactConfig.transform = "cdf97"``).

The analysis is JPEG 2000's irreversible wavelet, the Cohen-Daubechies-Feauveau 9/7 filters in
their lifting form (Daubechies & Sweldens 1998; ITU-T T.800 Annex F), four levels with
whole-sample symmetric extension, each subband scaled by the norm of its synthesis functions
(so that one quantisation step costs every subband the same squared error) and rearranged into
the latent grid of the convolutional transforms: 4**4 = 256 values per 16 x 16 block of each
image plane, at 1/16 of the image's size::

    channel 0            LL4 (the block's mean, in effect)
    channels 1-3         level 4: LH, HL, HH (one value each)
    channels 4-15        level 3: LH, HL, HH, each a 2 x 2 patch (pixel_unshuffle order)
    channels 16-63       level 2: 3 subbands x 4 x 4
    channels 64-255      level 1: 3 subbands x 8 x 8

The transform has no parameters: what is learned is around it, the per-channel quantisation
gains of every rate point, the hyperprior that predicts each value's mean and scale, and the
synthesis's post-filter, a small residual network (at half resolution) that removes what the
quantisation left.  A wavelet starts where a well-tuned JPEG 2000 is and cannot forget it, which
matters where training is short: the convolutional transforms trained 24,000 steps on a CPU give
images 15-20 dB below what their latent could carry.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

LEVELS = 4
# lifting steps of the CDF 9/7 wavelet (T.800 Table F.4) and its scaling
ALPHA, BETA, GAMMA, DELTA = -1.586134342059924, -0.052980118572961, 0.882911075530934, 0.443506852043971
KAPPA = 1.230174104914001
# L2 norms of the synthesis functions with this scaling (LL4; then LH = HL, HH per level 1..4), so
# that analysis coefficients times these are in orthonormal units (tests check them)
NORM_LL = 16.935572
NORM_DETAIL = ((1.011286, 0.520218), (1.996812, 0.967216), (4.183367, 2.079256), (8.534116, 4.300482))
HALO_PX = 64        # reach: analysis 4 (1 + 2 + 4 + 8) = 60 px, synthesis SYNTHESIS_REACH_PX + the post-filter's
SYNTHESIS_REACH_PX = 46     # how far the inverse wavelet spreads a latent position's block (measured; tests check it)
POST_WIDTH = 32     # the post-filter's width and layers unless the card says otherwise
POST_LAYERS = 3
PREDICT_WIDTH = 32  # the lifting predictors' (LiftPredictor) width and layers unless the card says otherwise
PREDICT_LAYERS = 3
PREDICT_IN_SCALE = 4.0
MAX_POST_LAYERS = (HALO_PX - SYNTHESIS_REACH_PX) // 2   # 9: each layer reaches 2 px further; deeper would pass the halo


def _next(a: torch.Tensor) -> torch.Tensor:      # a[n + 1], mirrored at the end
    return torch.cat([a[..., 1:], a[..., -1:]], dim=-1)


def _prev(a: torch.Tensor) -> torch.Tensor:      # a[n - 1], mirrored at the start
    return torch.cat([a[..., :1], a[..., :-1]], dim=-1)


def lift_forward(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Along the last axis (even length): (low, high)."""
    s, d = x[..., 0::2], x[..., 1::2]
    d = d + ALPHA * (s + _next(s))
    s = s + BETA * (_prev(d) + d)
    d = d + GAMMA * (s + _next(s))
    s = s + DELTA * (_prev(d) + d)
    return s / KAPPA, d * KAPPA


def lift_inverse(s: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    s, d = s * KAPPA, d / KAPPA
    s = s - DELTA * (_prev(d) + d)
    d = d - GAMMA * (s + _next(s))
    s = s - BETA * (_prev(d) + d)
    d = d - ALPHA * (s + _next(s))
    return torch.stack([s, d], dim=-1).flatten(-2)


def dwt2(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One level on (B, C, H, W), H and W even: LL, LH, HL, HH (first letter: along the rows' axis)."""
    lo, hi = lift_forward(x.transpose(-1, -2))           # along H
    lo, hi = lo.transpose(-1, -2), hi.transpose(-1, -2)
    ll, lh = lift_forward(lo)                            # along W
    hl, hh = lift_forward(hi)
    return ll, lh, hl, hh


def idwt2(ll, lh, hl, hh) -> torch.Tensor:
    lo = lift_inverse(ll, lh)
    hi = lift_inverse(hl, hh)
    return lift_inverse(lo.transpose(-1, -2), hi.transpose(-1, -2)).transpose(-1, -2)


class LiftPredictor(nn.Module):
    """A learned lifting step (as learned wavelets add to the 9/7's): a small network that predicts
    one level's three detail subbands, in orthonormal units, from that level's low band, each image
    plane on its own: ``layers`` 3 x 3 convolutions (``width`` channels between them, ReLU after all
    but the last) on the low band times :data:`PREDICT_IN_SCALE`.  The analysis subtracts the
    prediction from the unquantised low band, the synthesis adds it back from the decoded one.  Its
    last layer starts at zero (no prediction: the plain wavelet).  fp32 even under autocast."""

    def __init__(self, width: int = PREDICT_WIDTH, layers: int = PREDICT_LAYERS):
        super().__init__()
        if type(layers) is not int or type(width) is not int or not 2 <= layers <= 4 or width < 1:
            raise ValueError(f"a lifting predictor of {layers} layers of width {width} (2-4 layers, width >= 1)")
        mods: list[nn.Module] = [nn.Conv2d(1, width, 3, padding=1), nn.ReLU()]
        for _ in range(layers - 2):
            mods += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        self.net = nn.Sequential(*mods, nn.Conv2d(width, 3, 3, padding=1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.layers = layers

    def forward(self, low: torch.Tensor) -> torch.Tensor:
        """low (B, C, h, w) -> the predicted (B, C, 3, h, w) details (LH, HL, HH, orthonormal units)."""
        B, C, h, w = low.shape
        with torch.autocast(low.device.type, enabled=False):
            p = self.net(low.float().reshape(B * C, 1, h, w).contiguous() * PREDICT_IN_SCALE)
        return p.reshape(B, C, 3, h, w)


def predictors_halo(levels: int, layers: int) -> int:
    """The tiles' halo with lifting predictors at levels 1 .. ``levels`` of ``layers`` layers: each
    reaches ``layers`` positions of its level further (2**level px), and the 9/7 synthesis spreads
    what it adds about one position more (measured: tests check it), rounded up to the latent grid."""
    extra = sum((layers + 1) << lvl for lvl in range(1, levels + 1))
    return HALO_PX + -(-extra // 16) * 16


def _shared(predict: nn.ModuleList | None) -> tuple[tuple, int]:
    """(the lifting predictors as a plain tuple, which a module does not register: the model owns
    them; the tiles' halo with them)."""
    p = tuple(predict) if predict is not None else ()
    return p, predictors_halo(len(p), p[0].layers) if p else HALO_PX


class WaveletAnalysis(nn.Module):
    """x (B, C, H, W) in [0, 1], H and W multiples of 16 -> y (B, 256 C, H/16, W/16).
    ``predict``: the lifting predictors of levels 1, 2, ... (:class:`LiftPredictor`), shared with
    the synthesis (held here, not registered: the model owns them)."""

    halo_px = HALO_PX

    def __init__(self, predict: nn.ModuleList | None = None):
        super().__init__()
        self._predict, self.halo_px = _shared(predict)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        a = x.float() - 0.5
        parts = []
        pred = self._predict
        for lvl in range(LEVELS):
            a, lh, hl, hh = dwt2(a)
            n_d, n_hh = NORM_DETAIL[lvl]
            f = 1 << (LEVELS - 1 - lvl)            # patch side at the latent grid
            bands = torch.stack([lh * n_d, hl * n_d, hh * n_hh], dim=2)          # (B, C, 3, h, w)
            if lvl < len(pred):
                bands = bands - pred[lvl](a)
            bands = bands.reshape(B, C * 3, *bands.shape[-2:])
            parts.append(F.pixel_unshuffle(bands, f).reshape(B, C, 3 * f * f, H // 16, W // 16)
                         if f > 1 else bands.reshape(B, C, 3, H // 16, W // 16))
        parts.append((a * NORM_LL).reshape(B, C, 1, H // 16, W // 16))
        return torch.cat(parts[::-1], dim=2).reshape(B, C * 256, H // 16, W // 16)


class PostFilter(nn.Module):
    """A residual network at half resolution (2 x 2 pixels to 4 channels): ``layers`` 3 x 3
    convolutions (``width`` channels between them, ReLU after all but the last).  Its last layer
    starts at zero, so an untrained filter passes the wavelet's image unchanged."""

    def __init__(self, C: int, width: int = POST_WIDTH, layers: int = POST_LAYERS):
        super().__init__()
        if (type(layers) is not int or type(width) is not int or not 2 <= layers <= MAX_POST_LAYERS
                or width < 1):
            raise ValueError(f"a post-filter of {layers} layers of width {width} (2-{MAX_POST_LAYERS} layers, "
                             "width >= 1)")
        mods: list[nn.Module] = [nn.Conv2d(4 * C, width, 3, padding=1), nn.ReLU()]
        for _ in range(layers - 2):
            mods += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        self.net = nn.Sequential(*mods, nn.Conv2d(width, 4 * C, 3, padding=1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        """``x`` plus the network's residual times ``gain`` (the DNA's post-filter gain; 1: the
        residual as it is, bit for bit; 0: ``x``, the network not run)."""
        # fp32 even under autocast: at 45-50 dB the errors it removes are below bf16's step at 0.5
        with torch.autocast(x.device.type, enabled=False):
            x = x.float()
            if gain == 0:
                return x
            r = F.pixel_shuffle(self.net(F.pixel_unshuffle(x, 2)), 2)
            return x + r if gain == 1 else x + r * float(gain)


class WaveletSynthesis(nn.Module):
    """y (B, 256 C, h, w) -> x (B, C, 16 h, 16 w): the inverse wavelet, then the post-filter."""

    halo_px = HALO_PX

    def __init__(self, C: int, post_width: int = POST_WIDTH, post_layers: int = POST_LAYERS,
                 predict: nn.ModuleList | None = None):
        super().__init__()
        self.C = C
        self.post = PostFilter(C, post_width, post_layers)
        self._predict, self.halo_px = _shared(predict)

    def forward(self, y: torch.Tensor, post_gain: float = 1.0) -> torch.Tensor:
        """``post_gain``: the post-filter's gain (:meth:`PostFilter.forward`)."""
        B, _, h, w = y.shape
        C = self.C
        y = y.float().reshape(B, C, 256, h, w)
        a = (y[:, :, 0] / NORM_LL)
        start = 1
        pred = self._predict
        for lvl in reversed(range(LEVELS)):
            f = 1 << (LEVELS - 1 - lvl)
            n = 3 * f * f
            bands = y[:, :, start:start + n].reshape(B, C * n, h, w)
            start += n
            if f > 1:
                bands = F.pixel_shuffle(bands, f)
            bands = bands.reshape(B, C, 3, h * f, w * f)
            if lvl < len(pred):
                bands = bands + pred[lvl](a)
            n_d, n_hh = NORM_DETAIL[lvl]
            a = idwt2(a, bands[:, :, 0] / n_d, bands[:, :, 1] / n_d, bands[:, :, 2] / n_hh)
        # (gain 1 calls the post-filter as before: postfit may put a plain module in its place)
        return (self.post(a) if post_gain == 1 else self.post(a, post_gain)) + 0.5


#: the context of the wavelet models' entropy coder (:mod:`dnaimg.codecs.arith`, "Context"): a
#: detail value's neighbours coded before it in its block, with their weights: the two nearest in
#: its subband (left, above; weight 2), the two diagonal ones above (1), the same place in the
#: level's subbands coded before (LH before HL before HH; 2), and its parent (the same subband one
#: level coarser; 2)
CONTEXT_WEIGHTS = {"near": 2, "diagonal": 1, "band": 2, "parent": 2}
CONTEXT_EDGES = (0, 1, 2, 3, 4, 5, 7, 9, 12, 16, 22, 30, 40, 56, 80)
CONTEXT_K = 7
#: with ``far=True`` (compact-gray-v7) also the values two places left and two above in the
#: subband (weight 2) and two above and two to either side (1): 0.7-0.8 % fewer bits on held-out
#: training images, X-rays and microscopy alike
FAR_WEIGHTS = {"far": 2, "far_diagonal": 1}
CONTEXT_K_FAR = 11


def channel_of(f: int, band: int, dy: int, dx: int) -> int:
    """Latent channel (one plane) of the value at (dy, dx) of subband ``band`` (0 LH, 1 HL, 2 HH)
    of the level whose patches are ``f`` x ``f`` (1: level 4, 2: level 3, 4: level 2, 8: level 1)."""
    return f * f + band * f * f + dy * f + dx


def context_layout(C: int = 1, far: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(neighbours (256 C, CONTEXT_K), weights, classes (256 C,)) of the context: class 0 for
    the LL4 values (no context), 1 + 3 (level 4 - level) + band for a detail value (12 classes,
    the same for every plane); a row of neighbours ends at -1.  ``far``: the wider neighbourhood
    of :data:`FAR_WEIGHTS` too (CONTEXT_K_FAR columns)."""
    M = 256 * C
    K = CONTEXT_K_FAR if far else CONTEXT_K
    nbr = np.full((M, K), -1, dtype=np.int64)
    wts = np.zeros((M, K), dtype=np.int64)
    cls = np.zeros(M, dtype=np.int64)
    W = CONTEXT_WEIGHTS
    for p in range(C):
        o = 256 * p
        for li, f in enumerate((1, 2, 4, 8)):
            for b in range(3):
                for dy in range(f):
                    for dx in range(f):
                        c = o + channel_of(f, b, dy, dx)
                        cls[c] = 1 + 3 * li + b
                        nb = []
                        if dx > 0:
                            nb.append((channel_of(f, b, dy, dx - 1), W["near"]))
                        if dy > 0:
                            nb.append((channel_of(f, b, dy - 1, dx), W["near"]))
                        if dy > 0 and dx > 0:
                            nb.append((channel_of(f, b, dy - 1, dx - 1), W["diagonal"]))
                        if dy > 0 and dx < f - 1:
                            nb.append((channel_of(f, b, dy - 1, dx + 1), W["diagonal"]))
                        nb += [(channel_of(f, bb, dy, dx), W["band"]) for bb in range(b)]
                        if f > 1:
                            nb.append((channel_of(f // 2, b, dy // 2, dx // 2), W["parent"]))
                        if far:
                            if dx > 1:
                                nb.append((channel_of(f, b, dy, dx - 2), FAR_WEIGHTS["far"]))
                            if dy > 1:
                                nb.append((channel_of(f, b, dy - 2, dx), FAR_WEIGHTS["far"]))
                                if dx > 1:
                                    nb.append((channel_of(f, b, dy - 2, dx - 2), FAR_WEIGHTS["far_diagonal"]))
                                if dx < f - 2:
                                    nb.append((channel_of(f, b, dy - 2, dx + 2), FAR_WEIGHTS["far_diagonal"]))
                        for k, (j, w) in enumerate(nb):
                            nbr[c, k], wts[c, k] = o + j, w
    return nbr, wts, cls


#: the directions of a position's neighbours a cross context sees (``pnb``'s columns in
#: :mod:`dnaimg.codecs.arith`): (blocks down, blocks right)
CROSS_DIRECTIONS = ((0, -1), (-1, -1), (-1, 0), (-1, 1))


def cross_layout(C: int = 1, far: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(xneighbors, xdirections, xweights) (256 C, K) of a cross context: for each detail value
    the neighbours of :func:`context_layout`'s pattern (left, above, the two diagonals above;
    ``far``: those two places away too) that lie in a neighbouring 16 x 16 block (left, above-left,
    above, above-right: :data:`CROSS_DIRECTIONS`) rather than its own, with the same weights, so
    that a value at a block's edge sees what one inside it does where that block was coded
    before in the same packet.  A row ends at -1."""
    M = 256 * C
    W = CONTEXT_WEIGHTS
    offs = [(0, -1, W["near"]), (-1, 0, W["near"]), (-1, -1, W["diagonal"]), (-1, 1, W["diagonal"])]
    if far:
        offs += [(0, -2, FAR_WEIGHTS["far"]), (-2, 0, FAR_WEIGHTS["far"]), (-2, -2, FAR_WEIGHTS["far_diagonal"]),
                 (-2, 2, FAR_WEIGHTS["far_diagonal"])]
    rows: list[list[tuple[int, int, int]]] = [[] for _ in range(M)]
    for p in range(C):
        o = 256 * p
        for f in (1, 2, 4, 8):
            for b in range(3):
                for dy in range(f):
                    for dx in range(f):
                        c = o + channel_of(f, b, dy, dx)
                        for ddy, ddx, w in offs:
                            yn, xn = dy + ddy, dx + ddx
                            d = (yn // f, xn // f)
                            if d == (0, 0) or d not in CROSS_DIRECTIONS:
                                continue
                            rows[c].append((o + channel_of(f, b, yn % f, xn % f), CROSS_DIRECTIONS.index(d), w))
    K = max(1, max(len(r) for r in rows))
    xn = np.full((M, K), -1, dtype=np.int64)
    xd = np.zeros((M, K), dtype=np.int64)
    xw = np.zeros((M, K), dtype=np.int64)
    for c, r in enumerate(rows):
        for k, (j, d, w) in enumerate(r):
            xn[c, k], xd[c, k], xw[c, k] = j, d, w
    return xn, xd, xw


def synthesis_norms() -> tuple[float, tuple[tuple[float, float], ...]]:
    """The L2 norm of one synthesis function per subband, measured on a 512 x 512 image (what
    NORM_LL and NORM_DETAIL hold)."""
    def norm(put) -> float:
        z = torch.zeros(1, 1, 512, 512, dtype=torch.float64)
        bands = []
        a = z
        for _ in range(LEVELS):
            a, lh, hl, hh = dwt2(a)
            bands.append([lh, hl, hh])
        put(a, bands)
        for lh, hl, hh in reversed(bands):
            a = idwt2(a, lh, hl, hh)
        return float(a.pow(2).sum().sqrt())

    def at_centre(t):
        t[..., t.shape[-2] // 2, t.shape[-1] // 2] = 1.0

    ll = norm(lambda a, b: at_centre(a))
    det = tuple((norm(lambda a, b, l=l: at_centre(b[l][0])), norm(lambda a, b, l=l: at_centre(b[l][2])))
                for l in range(LEVELS))
    return ll, det
