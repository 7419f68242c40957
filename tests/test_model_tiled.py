"""Tiled synthesis equals the whole-latent pass; the bf16 precision option; argument checks."""
import numpy as np
import pytest
import torch

from dnaimg.codecs.robust import to_uint8
from dnaimg.image import psnr
from dnaimg.zoo.model import CompressiveAutoencoder, ModelConfig, decoder_halo
from dnaimg.zoo.registry import load_model


@pytest.fixture(scope="module")
def net():
    return load_model("cae32-l9")[0]


@pytest.fixture(scope="module")
def odd_symbols(net):
    g = torch.Generator().manual_seed(7)
    return torch.randint(0, net.cfg.levels, (1, net.cfg.channels, 21, 29), generator=g)   # not multiples of the tile


SIZE = (21 * 8 - 5, 29 * 8 - 3)


@pytest.fixture(scope="module")
def plain_and_tiled(net, odd_symbols):
    """fp32 decompress of the odd latent: whole-latent pass and 3 x 4 uneven tiles (border windows shifted inward)."""
    return net.decompress(odd_symbols, SIZE, tile=None), net.decompress(odd_symbols, SIZE, tile=8)


def test_halo_is_the_receptive_field(net):
    # 3x3 conv at 1/8, seven at 1/4 (3 res blocks + the tail's first conv), one at 1/2
    assert decoder_halo(net.decoder) == 5
    small = CompressiveAutoencoder(ModelConfig(channels=4, width=16, res_blocks=1))
    assert decoder_halo(small.decoder) == 3          # [-1, 4] at 1/2 -> [-4, 5] at 1/4 -> [-3, 3] at 1/8


def test_tiled_equals_untiled_odd_latent(net, odd_symbols, plain_and_tiled):
    plain, tiled = plain_and_tiled
    size = SIZE
    assert tiled.shape == plain.shape == (1, 3) + size and tiled.dtype == torch.float32
    assert (tiled - plain).abs().max().item() < 1e-4
    a, b = to_uint8(tiled), to_uint8(plain)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    assert (a == b).mean() >= 0.9999
    # without channels_last the tiles reproduce the whole-latent pass (bit for bit on the dev machine)
    y = net.from_symbols(odd_symbols)
    with torch.no_grad():
        d = (net.synthesis_tiled(y, size, tile=8, channels_last=False) - net.synthesis(y, size)).abs().max()
    assert d.item() < 1e-5


def test_too_small_halo_shows(net, odd_symbols):
    """The check above has teeth: one latent pixel less than the receptive field breaks equality."""
    y = net.from_symbols(odd_symbols)
    with torch.no_grad():
        d = (net.synthesis_tiled(y, None, tile=8, halo=4, channels_last=False) - net.synthesis(y)).abs().max()
    assert d.item() > 1e-4


def test_small_latent_takes_plain_path(net):
    g = torch.Generator().manual_seed(1)
    s = torch.randint(0, 9, (1, 32, 9, 12), generator=g)
    with torch.no_grad():
        ref = net.synthesis(net.from_symbols(s), (70, 90)).clamp(0.0, 1.0)   # the pre-tiling decompress
    assert torch.equal(net.decompress(s, (70, 90)), ref)
    assert torch.equal(net.decompress(s, (70, 90), 9), ref)
    assert torch.equal(net.decompress(s, (70, 90), 9, tile=None), ref)


def test_fewer_channels_tiled(net):
    g = torch.Generator().manual_seed(2)
    s = torch.randint(0, 9, (1, 16, 20, 27), generator=g)
    a, b = net.decompress(s, (160, 216), tile=12), net.decompress(s, (160, 216), tile=None)
    assert (a - b).abs().max().item() < 1e-4


def test_bf16_close_to_fp32(net, odd_symbols, plain_and_tiled):
    size = SIZE
    ref = to_uint8(plain_and_tiled[0])
    for tile in (8, None):
        out = net.decompress(odd_symbols, size, precision="bf16", tile=tile)
        assert out.dtype == torch.float32 and out.shape == (1, 3) + size
        assert out.min() >= 0 and out.max() <= 1
        assert psnr(ref, to_uint8(out)) > 40.0


def test_bad_arguments(net, odd_symbols):
    for bad in ("fp16", "FP32", "", None):
        with pytest.raises(ValueError, match="precision"):
            net.decompress(odd_symbols, (8, 8), precision=bad)
    with pytest.raises(ValueError, match="tile"):
        net.decompress(odd_symbols, (8, 8), tile=0)
    with pytest.raises(ValueError, match="tile"):
        net.synthesis_tiled(net.from_symbols(odd_symbols), tile=-1)
