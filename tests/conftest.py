from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
KODAK = ROOT.parent / "shared" / "data" / "kodak"
EXAMPLE = ROOT / "examples" / "coffee.png"


def kodak_images() -> list[Path]:
    return sorted(KODAK.glob("*.png")) if KODAK.is_dir() else []


@pytest.fixture(scope="session")
def kodak_image() -> Path:
    imgs = kodak_images()
    return imgs[22] if len(imgs) > 22 else EXAMPLE   # kodim23, else the shipped example


@pytest.fixture(scope="session")
def encoded(kodak_image):
    from dnaimg.codecs.robust import encode_image, reconstruct
    from dnaimg.image import load_image
    enc = encode_image(kodak_image)
    orig = load_image(kodak_image)
    ref = reconstruct(enc.symbols, enc.model, orig.shape[:2], enc.params.levels)
    return enc, orig, ref


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
