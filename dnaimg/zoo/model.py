"""The compressive autoencoder of Pic & Antonini (after Theis et al. 2017).

Encoder: two 5x5 stride-2 convolutions (3 -> 64 -> 128), residual blocks, a last 5x5 stride-2
convolution to ``channels`` latent maps, bounded by tanh.  The latent of an H x W image is
``channels x ceil(H/8) x ceil(W/8)``.  Decoder: the mirror image with sub-pixel (pixel shuffle)
upsampling.  Leaky ReLU throughout.

Quantisation is uniform with step ``q`` on [-1, 1]: ``Q(z) = q * floor(z/q + 1/2)``, giving
``2/q + 1`` levels, represented as integer symbols ``0 .. levels-1``.  Training uses the
straight-through estimator (identity gradient through the rounding).

Decoding a large latent runs the synthesis net tile by tile (:meth:`CompressiveAutoencoder.
synthesis_tiled`): each tile of at most ``tile`` x ``tile`` latent pixels is decoded in a window
with a halo of :func:`decoder_halo` latent pixels around it (never beyond the latent, so the image
border sees the same zero padding as the whole-image net), and only its valid part is kept.  The
halo covers the decoder's receptive field, so the result equals the whole-image decoding to float
round-off, with the peak memory of one tile instead of the whole image.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

DOWNSCALE = 8
DEFAULT_TILE = 64               # latent pixels per tile side in decompress (64 -> 512 x 512 px)
PRECISIONS = ("fp32", "bf16")


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AMX or AVX512-BF16): there bf16 decoding is
    several times faster than fp32; elsewhere it is slower."""
    try:
        return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    except Exception:     # noqa: BLE001 - private torch probes; assume no
        return False


def resolve_precision(precision: str) -> str:
    """"auto" -> "bf16" where the CPU computes it natively, else "fp32"; others pass through."""
    if precision == "auto":
        return "bf16" if native_bf16() else "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be auto or one of {PRECISIONS}, got {precision!r}")
    return precision


@dataclass(frozen=True)
class ModelConfig:
    channels: int = 32          # latent channels
    levels: int = 9             # quantisation levels, q = 2 / (levels - 1)
    width: int = 128            # feature width of the inner layers
    res_blocks: int = 3         # residual blocks in encoder and in decoder

    @property
    def q(self) -> float:
        return 2.0 / (self.levels - 1)

    def to_dict(self) -> dict:
        return asdict(self)


def _act() -> nn.Module:
    return nn.LeakyReLU(0.2, inplace=True)


class ResBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x):
        return x + self.conv2(self.act(self.conv1(x)))


class Encoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        w = cfg.width
        self.head = nn.Sequential(
            nn.Conv2d(3, w // 2, 5, stride=2, padding=2), _act(),
            nn.Conv2d(w // 2, w, 5, stride=2, padding=2), _act(),
        )
        self.body = nn.Sequential(*[ResBlock(w) for _ in range(cfg.res_blocks)])
        self.tail = nn.Conv2d(w, cfg.channels, 5, stride=2, padding=2)

    def forward(self, x):
        return torch.tanh(self.tail(self.body(self.head(x))))


class Decoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        w = cfg.width
        self.head = nn.Sequential(nn.Conv2d(cfg.channels, w * 4, 3, padding=1), nn.PixelShuffle(2), _act())
        self.body = nn.Sequential(*[ResBlock(w) for _ in range(cfg.res_blocks)])
        self.tail = nn.Sequential(
            nn.Conv2d(w, (w // 2) * 4, 3, padding=1), nn.PixelShuffle(2), _act(),
            nn.Conv2d(w // 2, 3 * 4, 3, padding=1), nn.PixelShuffle(2),
        )

    def forward(self, y):
        return self.tail(self.body(self.head(y)))


def decoder_halo(decoder: nn.Module) -> int:
    """Latent pixels on each side that one latent pixel's output block depends on.

    Walks the leaf modules backwards from the output (registration order is the forward order for
    :class:`Decoder`; a residual skip never reaches further than its conv path): a same-padded
    stride-1 conv widens the interval by its radius, a pixel shuffle by ``r`` maps output index
    ``p`` to input index ``floor(p / r)``.  For the default decoder (a 3x3 conv at 1/8, 7 at 1/4,
    one at 1/2) the block ``[0, 7]`` at full res becomes ``[-1, 4]`` at 1/2, ``[-8, 9]`` at 1/4
    and ``[-5, 5]`` at 1/8: a halo of 5 latent pixels.
    """
    leaves = [m for m in decoder.modules() if not list(m.children())]
    scale = 1
    for m in leaves:
        if isinstance(m, nn.PixelShuffle):
            scale *= m.upscale_factor
    lo, hi = 0, scale - 1                                  # one latent pixel's block at full res
    for m in reversed(leaves):
        if isinstance(m, nn.Conv2d):
            if any(st != 1 for st in m.stride):
                raise ValueError("decoder_halo: strided conv in the decoder")
            r = max((k - 1) // 2 * d for k, d in zip(m.kernel_size, m.dilation))
            lo, hi = lo - r, hi + r
        elif isinstance(m, nn.PixelShuffle):
            lo, hi = lo // m.upscale_factor, hi // m.upscale_factor
        elif not isinstance(m, (nn.LeakyReLU, nn.ReLU, nn.Identity, nn.Tanh, nn.Sigmoid)):
            raise ValueError(f"decoder_halo: unknown layer {type(m).__name__}")
    return max(-lo, hi)


def _splits(n: int, tile: int) -> list[tuple[int, int]]:
    """``[0, n)`` in ceil(n / tile) near-equal pieces of at most ``tile``."""
    k = -(-n // tile)
    edges = [round(i * n / k) for i in range(k + 1)]
    return list(zip(edges[:-1], edges[1:]))


class CompressiveAutoencoder(nn.Module):
    """Analysis net, uniform quantiser and synthesis net.

    Images are float tensors in [0, 1], shape (N, 3, H, W); H and W are padded to multiples of 8
    internally (edge replication) and the output is cropped back.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)

    # -- quantiser -----------------------------------------------------------------------
    def quantize_ste(self, z: torch.Tensor) -> torch.Tensor:
        q = self.cfg.q
        zq = q * torch.floor(z / q + 0.5)
        return z + (zq - z).detach()

    def to_symbols(self, z: torch.Tensor, levels: int | None = None) -> torch.Tensor:
        """Latent in [-1, 1] -> integer symbols 0 .. levels-1 (default: the config's levels)."""
        levels = levels or self.cfg.levels
        s = torch.floor((z + 1.0) * ((levels - 1) / 2.0) + 0.5)
        return s.clamp_(0, levels - 1).to(torch.int64)

    def from_symbols(self, s: torch.Tensor, levels: int | None = None) -> torch.Tensor:
        levels = levels or self.cfg.levels
        return s.to(torch.float32) * (2.0 / (levels - 1)) - 1.0

    # -- nets ----------------------------------------------------------------------------
    @staticmethod
    def _pad(x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ph, pw = (-h) % DOWNSCALE, (-w) % DOWNSCALE
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        return x

    def analysis(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(self._pad(x) - 0.5)

    def synthesis(self, y: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        out = self.decoder(y) + 0.5
        if size is not None:
            out = out[..., : size[0], : size[1]]
        return out

    def synthesis_tiled(self, y: torch.Tensor, size: tuple[int, int] | None = None, tile: int = DEFAULT_TILE,
                        halo: int | None = None, channels_last: bool = True) -> torch.Tensor:
        """:meth:`synthesis` of a latent (N, C, h, w), decoded in tiles of at most ``tile`` x ``tile``.

        The latent is split into near-equal tiles of at most ``tile`` per side.  Each tile is decoded
        in a window holding it plus ``halo`` latent pixels on each side (default
        :func:`decoder_halo`, the receptive field), and its valid part is written into a
        preallocated float32 output (cropped to ``size``).  The window never leaves the latent: at
        the latent border the net's own zero padding applies, as in the whole-image pass.  All
        windows have the same shape (a border window is shifted inward rather than clipped), so
        oneDNN builds its conv primitives once, not once per tile shape (which costs seconds in
        bf16).  ``channels_last`` runs the tiles in that memory format (faster with oneDNN; same
        result to round-off).  Runs under the caller's autocast, if any.
        """
        if tile < 1:
            raise ValueError(f"tile must be >= 1, got {tile}")
        halo = decoder_halo(self.decoder) if halo is None else halo
        n, _, h, w = y.shape
        s = DOWNSCALE
        oh, ow = h * s, w * s
        if size is not None:
            oh, ow = min(oh, size[0]), min(ow, size[1])
        out = torch.empty((n, 3, oh, ow), dtype=torch.float32, device=y.device)
        if out.numel() == 0:
            return out
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        rows, cols = _splits(h, tile), _splits(w, tile)
        wh = min(h, max(r1 - r0 for r0, r1 in rows) + 2 * halo)      # window shape, the same for all
        ww = min(w, max(c1 - c0 for c0, c1 in cols) + 2 * halo)
        for r0, r1 in rows:
            if r0 * s >= oh:
                break
            a0 = min(max(r0 - halo, 0), h - wh)          # window [a0, a0 + wh) holds [r0 - halo, r1 + halo) ∩ [0, h)
            for c0, c1 in cols:
                if c0 * s >= ow:
                    break
                b0 = min(max(c0 - halo, 0), w - ww)
                part = self.decoder(y[:, :, a0:a0 + wh, b0:b0 + ww].contiguous(memory_format=fmt))
                y0, y1 = r0 * s, min(r1 * s, oh)
                x0, x1 = c0 * s, min(c1 * s, ow)
                dst = out[:, :, y0:y1, x0:x1]
                dst.copy_(part[:, :, y0 - a0 * s: y1 - a0 * s, x0 - b0 * s: x1 - b0 * s])
                dst.add_(0.5)
                del part
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.analysis(x)
        return self.synthesis(self.quantize_ste(z), x.shape[-2:])

    # -- codec API (CompressAI-style) ----------------------------------------------------
    # An operating point keeps the first ``channels`` latent maps (the others are taken as 0) and
    # quantises with ``levels`` levels; a multi-rate model is trained for several of them.
    @torch.no_grad()
    def compress(self, x: torch.Tensor, levels: int | None = None, channels: int | None = None) -> torch.Tensor:
        """Image batch (N,3,H,W) in [0,1] -> integer symbols (N, channels, ceil(H/8), ceil(W/8))."""
        z = self.analysis(x)
        return self.to_symbols(z[:, : channels or self.cfg.channels], levels)

    @torch.no_grad()
    def decompress(self, symbols: torch.Tensor, size: tuple[int, int], levels: int | None = None, *,
                   precision: str = "fp32", tile: int | None = DEFAULT_TILE) -> torch.Tensor:
        """Symbols (N, k <= channels, h, w) -> image batch in [0,1] (float32), cropped to ``size`` = (H, W).

        ``precision``: "fp32" (default) or "bf16" (autocast to bfloat16 for the convs, output
        converted to float32 before the +0.5 offset and the clamp: several times faster on CPUs with
        AMX/AVX512-BF16 (slow on CPUs without); uint8 output ~59 dB from fp32's, same PSNR on Kodak).  A latent larger than
        ``tile`` x ``tile`` is decoded tile by tile (:meth:`synthesis_tiled`, channels_last; equal
        to the whole-latent pass to float round-off, with one tile's memory); ``tile=None`` (or a
        smaller latent) takes the whole-latent pass.
        """
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if tile is not None and tile < 1:
            raise ValueError(f"tile must be >= 1 or None, got {tile}")
        y = self.from_symbols(symbols, levels)
        k = y.shape[1]
        if k < self.cfg.channels:
            y = F.pad(y, (0, 0, 0, 0, 0, self.cfg.channels - k))
        tiled = tile is not None and max(y.shape[-2:]) > tile
        if precision == "fp32":
            if not tiled:
                return self.synthesis(y, size).clamp(0.0, 1.0)
            return self.synthesis_tiled(y, size, tile).clamp_(0.0, 1.0)
        with torch.autocast(y.device.type, dtype=torch.bfloat16):
            if tiled:
                out = self.synthesis_tiled(y, size, tile)
            else:
                out = self.decoder(y.contiguous(memory_format=torch.channels_last)).float() + 0.5
                if size is not None:
                    out = out[..., : size[0], : size[1]]
        return out.clamp_(0.0, 1.0).contiguous()


def latent_shape(cfg: ModelConfig, height: int, width: int) -> tuple[int, int, int]:
    return (cfg.channels, -(-height // DOWNSCALE), -(-width // DOWNSCALE))
