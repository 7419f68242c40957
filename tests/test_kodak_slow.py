"""Heavy checks over all 24 Kodak images (pytest -m slow)."""
import numpy as np
import pytest

from conftest import kodak_images
from dnaimg.codecs.robust import decode_reads, encode_image
from dnaimg.dna.constraints import report

pytestmark = pytest.mark.slow


@pytest.mark.skipif(not kodak_images(), reason="../shared/data/kodak not present")
@pytest.mark.parametrize("path", kodak_images(), ids=lambda p: p.stem)
def test_every_kodak_oligo_passes_check_and_round_trips(path):
    enc = encode_image(path)
    assert all(report(o).ok for o in enc.oligos)
    res = decode_reads(enc.oligos)
    assert res.report["latent_exact"]
    assert np.array_equal(res.symbols, enc.symbols)


@pytest.mark.skipif(not kodak_images(), reason="../shared/data/kodak not present")
@pytest.mark.parametrize("path", kodak_images(), ids=lambda p: p.stem)
def test_every_kodak_image_as_jpeg_bytes_passes_check_and_decodes_exactly(path):
    """The bytes path: every oligo meets the constraints and the stream comes back exactly."""
    from dnaimg import api
    enc = api.encode(path, "jpeg", rate=0.8)
    r = enc.rates()
    assert r["total_nt_per_pixel"] <= 0.8 and r["payload_bits_per_nt"] >= 1.9
    assert all(report(o).ok for o in enc.oligos)
    dec = api.decode(list(enc.oligos))
    assert dec.exact and dec.image.shape in ((512, 768, 3), (768, 512, 3))
