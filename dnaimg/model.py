"""The compressive autoencoder of the seed method (Pic & Antonini, after Theis et al. 2017).

Encoder: two 5x5 stride-2 convolutions (3 -> 64 -> 128), residual blocks, a last 5x5 stride-2
convolution to ``channels`` latent maps, bounded by tanh.  The latent of an H x W image is
``channels x ceil(H/8) x ceil(W/8)``.  Decoder: the mirror image with sub-pixel (pixel shuffle)
upsampling.  Leaky ReLU throughout.

Quantisation is uniform with step ``q`` on [-1, 1]: ``Q(z) = q * floor(z/q + 1/2)``, giving
``2/q + 1`` levels, represented as integer symbols ``0 .. levels-1``.  Training uses the
straight-through estimator (identity gradient through the rounding).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

DOWNSCALE = 8


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
    def decompress(self, symbols: torch.Tensor, size: tuple[int, int], levels: int | None = None) -> torch.Tensor:
        """Symbols (N, k <= channels, h, w) -> image batch in [0,1], cropped to ``size`` = (H, W)."""
        y = self.from_symbols(symbols, levels)
        k = y.shape[1]
        if k < self.cfg.channels:
            y = F.pad(y, (0, 0, 0, 0, 0, self.cfg.channels - k))
        return self.synthesis(y, size).clamp(0.0, 1.0)


def latent_shape(cfg: ModelConfig, height: int, width: int) -> tuple[int, int, int]:
    return (cfg.channels, -(-height // DOWNSCALE), -(-width // DOWNSCALE))
