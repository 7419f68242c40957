"""Learned lifting steps fitted for a wavelet model (dnaimg.zoo.liftfit), shipped in an extension's
own file (FORMAT.md 12.3), and the shipped models that have them (compact-gray-v12, v13)."""
import numpy as np
import pytest
import torch
from test_compact_context import _image_folder
from test_narrow_tables import _gray_xray_like
from test_postfit import codes_exactly, models  # noqa: F401  (the fixture: v5 and v6 in a models folder of their own)

from dnaimg import api
from dnaimg.codecs import compact
from dnaimg.image import psnr
from dnaimg.zoo import liftfit
from dnaimg.zoo.registry import ModelError

V5, V6, V10 = "compact-gray-v5", "compact-gray-v6", "compact-gray-v10"
V12, V13 = "compact-gray-v12", "compact-gray-v13"


def test_fitting_lifting_steps_writes_a_model_that_codes(models, tmp_path):
    data = _image_folder(tmp_path, [_gray_xray_like(192, 256, seed=i) for i in range(4)])
    card = liftfit.build(V6, "lift-test", [str(data)], out_dir=models, steps=40)
    arch, rec = card["architecture"], card["lifting"]
    assert card["extends"] == V5 and card["z_context"] and (arch["predict"], arch["predict_layers"]) == (2, 3)
    assert rec["images"] == 4 and rec["held_out_images"] == 1 and [r["level"] for r in rec["levels"]] == [1, 2]
    m, t, _ = compact.load("lift-test")
    m6, t6, _ = compact.load(V6)
    assert len(m.predict) == 2 and m.halo_px == 96 and float(m.predict[0].net[-1].weight.detach().abs().max()) > 0
    assert torch.equal(m.g_s.post.net[0].weight, m6.g_s.post.net[0].weight)          # (the base's post-filter)
    assert np.array_equal(t.ctx[4], t6.ctx[4])
    codes_exactly("lift-test")
    with pytest.raises(ValueError, match="exists"):
        liftfit.build(V6, "lift-test", [str(data)], out_dir=models, steps=1)
    with pytest.raises(ValueError, match="lift-test has lifting predictors already"):
        liftfit.build("lift-test", "lift-test2", [str(data)], out_dir=models, steps=1)
    with pytest.raises(ValueError, match="--levels 4: 1 to 3"):
        liftfit.build(V6, "lift-test3", [str(data)], levels=4, out_dir=models, steps=1)


def test_a_new_model_folder_is_made_before_any_fitting(tmp_path):
    from dnaimg.zoo.context import new_model_dir
    out = new_model_dir(tmp_path / "a" / "b", "x")
    assert out == tmp_path / "a" / "b" and out.is_dir()


def test_a_card_and_its_weights_must_agree_on_the_predictors(models, tmp_path):
    """A card that names predictors its file lacks, or a file with predictors its card does not
    name, is refused in one line."""
    import json
    data = _image_folder(tmp_path, [_gray_xray_like(192, 256, seed=i) for i in range(3)])
    liftfit.build(V6, "lift-a", [str(data)], out_dir=models, steps=5)
    c = json.loads((models / "lift-a.json").read_text())
    c["architecture"]["predict"] = 1
    (models / "lift-a.json").write_text(json.dumps(c))
    compact._CACHE.clear()
    with pytest.raises(ModelError, match="model lift-a: the weights hold 6 lifting predictor layers, the card says 3"):
        compact.load("lift-a")


def test_the_shipped_lifting_models_share_their_coder_and_predictors():
    """v12 and v13 differ in their post-filter only (so a stream of one decodes with the other);
    neither shares v10's coder, whose analysis has no predictors."""
    assert compact.same_coder(V12, V13)
    assert not compact.same_coder(V10, V13)
    m12, m13 = compact.load(V12)[0], compact.load(V13)[0]
    for a, b in zip(m12.predict.parameters(), m13.predict.parameters()):
        assert torch.equal(a, b)
    assert not torch.equal(m12.g_s.post.net[0].weight, m13.g_s.post.net[0].weight)
    assert torch.equal(m12.g_s.post.net[0].weight, compact.load(V10)[0].g_s.post.net[0].weight)


def test_lifting_steps_save_bits_at_the_same_quality():
    """compact-gray-v13 at the same quality as v10 (without the searches, so without the
    refinement that takes up the difference between the encoder's and the decoder's predictions):
    fewer bytes of latent on a gray photograph, and an image decoded from its DNA within 0.15 dB
    of v10's (measured: 8,044 against 8,182 bytes, 40.85 against 40.93 dB)."""
    from test_refine import _coffee_gray
    img = _coffee_gray(0, 280, 256, 320)
    out = {}
    for n in (V10, V13):
        enc = api.encode(img, "compact", model=n, quality=4.5, fast=True)
        dec = api.decode([s for _, s in enc.fasta_records()])
        assert dec.exact and dec.report["image"]["model"] == n
        out[n] = (enc.rates()["stream_bytes"], psnr(img, dec.image))
    assert out[V13][0] < 0.99 * out[V10][0] and out[V13][1] > out[V10][1] - 0.15, out
