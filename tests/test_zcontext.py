"""The hyper-latent's context (dnaimg.zoo.zcontext): each value of stream 0 coded with a table
chosen by its left and upper neighbours; shipped as compact-gray-v6, which extends
compact-gray-v5."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dnaimg import api
from dnaimg.codecs import compact
from dnaimg.zoo import zcontext

from test_compact_context import _fresh_cache  # noqa: F401  (autouse: a fresh model cache per test)

V6, V5 = "compact-gray-v6", "compact-gray-v5"


def _coffee_gray() -> np.ndarray:
    return np.asarray(Image.open(Path(__file__).resolve().parents[1] / "examples" / "coffee.png").convert("L"))


def test_contexts_follow_the_documented_rule():
    """The vectorised contexts (the encoder's) are the decoder's, value by value, and the rule of
    FORMAT.md: l = left (else upper, else 0), u = upper (else l), a and d clamped."""
    rng = np.random.default_rng(1)
    z = rng.integers(-9, 10, size=(3, 5, 7))
    k = zcontext.contexts(z)
    for c in range(3):
        for i in range(5):
            for j in range(7):
                l = z[c, i, j - 1] if j else (z[c, i - 1, j] if i else 0)
                u = z[c, i - 1, j] if i else l
                want = 4 * (min(6, max(-6, (l + u + 1) // 2)) + 6) + min(3, abs(l - u))
                assert k[c, i, j] == want == zcontext.context_at(z, c, i, j)
    assert k.min() >= 0 and k.max() < zcontext.K
    assert zcontext.contexts(np.full((1, 2, 2), -40))[0, 1, 1] == 0          # a clamped at -6, d = 0


def test_hyper_latent_round_trip_with_escapes():
    """Values past the tables' range (escapes) and every context: decode(encode(z)) == z."""
    _, t, _ = compact.load(V6)
    assert t.zctx is not None and t.zctx[0].shape == (128 * zcontext.K, 35)
    rng = np.random.default_rng(2)
    z = np.clip(np.round(rng.laplace(0, 3, size=(128, 3, 4))), -40, 40).astype(np.int64)
    z[5, 1, 2], z[7, 0, 0] = 300, -1000
    buf = np.frombuffer(compact.encode_z(z, t), np.uint8)
    assert np.array_equal(compact.decode_z(buf, z.shape, t), z)


@pytest.mark.slow          # (heavy: the default suite keeps to about ten minutes on a fresh clone)
def test_v6_codes_v5s_latent_with_a_shorter_stream_0(monkeypatch):
    """compact-gray-v6 is compact-gray-v5 with other tables for the hyper-latent: at the same rate
    and with h_a's hyper-latent (no search, which each model's tables steer their own way) the
    decoded image is v5's pixel for pixel, stream 0 is shorter, and each DNA names its own weights."""
    from test_compact_context import _no_search
    _no_search(monkeypatch)
    img = _coffee_gray()
    out = {}
    for m in (V5, V6):
        enc = api.encode(img, "compact", model=m, quality=4.0)
        dec = api.decode([s for _, s in enc.fasta_records()])
        assert dec.exact and dec.report["latent"]["model"] == m
        out[m] = (len(compact.Analysis(img, m).z_bytes), enc.written.oligos.shape[0], dec.image)
    assert np.array_equal(out[V5][2], out[V6][2])
    assert out[V6][0] < 0.95 * out[V5][0] and out[V6][1] <= out[V5][1]      # a photograph: 9 % (medical: 17-27 %)


def test_gray_default_is_v8():
    """compact-gray-v8 (v6's hyper-latent context, v7's narrow tables for the coder's, a deeper
    post-filter) is the default."""
    assert compact.default_model(np.zeros((8, 8), np.uint8)) == "compact-gray-v8"


def test_partial_or_malformed_hyper_latent_context_is_refused():
    _, t, _ = compact.load(V6)
    cdf, n, off = t.zctx
    good = {"zctx.cdf": torch.from_numpy(cdf.reshape(128, zcontext.K, -1)), "zctx.n": torch.from_numpy(n.reshape(128, -1)),
            "zctx.off": torch.from_numpy(off.reshape(128, -1))}
    assert zcontext.zcontext_of({}) is None
    with pytest.raises(ValueError, match="lacks zctx.off"):
        zcontext.zcontext_of({k: v for k, v in good.items() if k != "zctx.off"})
    with pytest.raises(ValueError, match="wrong shape"):
        zcontext.zcontext_of({**good, "zctx.n": good["zctx.n"][:, :3]})
    bad = good["zctx.cdf"].clone()
    bad[0, 0, 2] = bad[0, 0, 1]                  # a zero frequency
    with pytest.raises(ValueError, match="not a cumulative table"):
        zcontext.zcontext_of({**good, "zctx.cdf": bad})


def test_zcontext_refuses_to_overwrite_and_needs_a_coder_context(tmp_path):
    with pytest.raises(ValueError, match="never rewritten"):
        zcontext.build(V5, V6, ["unused"])
    with pytest.raises(ValueError, match="no context for its latent"):
        zcontext.build("compact-gray-v3", "x-new", ["unused"], out_dir=tmp_path)
    assert zcontext.main(["--base", "compact-gray-v3", "--name", "x-new", "--data", str(tmp_path), "--out", str(tmp_path)]) == 2


def test_a_hyper_latent_context_without_a_coder_context_is_refused(tmp_path, monkeypatch):
    """A standalone weights file with zctx tensors but no coder context: refused when loaded, in
    one line (the hyper-latent's context is only defined beside the latent's)."""
    import json

    from safetensors.torch import load_file, save_file

    from dnaimg.zoo.registry import ModelError, models_dir, sha256_file
    t = {**load_file(str(models_dir() / "compact-gray-v3.safetensors")),
         **{k: v for k, v in load_file(str(models_dir() / f"{V6}.safetensors")).items() if k.startswith("zctx.")}}
    save_file(t, str(tmp_path / "x-zonly.safetensors"))
    card = json.loads((models_dir() / "compact-gray-v3.json").read_text())
    card.update(name="x-zonly", weights_sha256=sha256_file(tmp_path / "x-zonly.safetensors"))
    (tmp_path / "x-zonly.json").write_text(json.dumps(card))
    monkeypatch.setenv("DNAIMG_MODELS", str(tmp_path))
    with pytest.raises(ModelError, match="x-zonly: a hyper-latent context needs a coder context"):
        compact.load("x-zonly")


def test_fitting_needs_two_images(tmp_path):
    Image.fromarray(np.full((32, 32), 90, np.uint8)).save(tmp_path / "one.png")
    with pytest.raises(ValueError, match="at least 2"):
        zcontext.build(V5, "x-new", [str(tmp_path)], out_dir=tmp_path)
    assert zcontext.main(["--base", V5, "--name", "x-new", "--data", str(tmp_path), "--out", str(tmp_path)]) == 2
