# make demo  - set up .venv and run encode -> simulate -> decode on the example image
# make test  - set up .venv and run the test suite (make test-slow: the heavy tests too)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.dnaimg-installed

.PHONY: demo test test-slow bench bench-rd bench-noise bench-channel bench-compact bench-microscopy bench-medical train-compact train-gray train-gray-wave train-gray-ctx context-gray wheel-check setup clean clean-cache

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash examples/demo.sh

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

bench: $(STAMP)
	$(PY) -m dnaimg.bench.speed

# the committed results in docs/results (all 24 Kodak images; add QUICK=--quick for a few minutes' run)
KODAK ?= ../shared/data/kodak
NOISE_POINTS := cae32-mr,cae32-mr-noise,cae32-l9,cae32-l9-noise
bench-rd: $(STAMP)
	$(VENV)/bin/dnaimg bench rd --images $(KODAK) --out docs/results/rd --points cae32-mr,cae32-l9,cae32-l9-noise \
	    --codecs jpeg,webp,jpeg2000,avif,jxl -j 2 --update-cards $(QUICK)

bench-noise: $(STAMP)
	$(VENV)/bin/dnaimg bench noise --images $(KODAK) --out docs/results/noise --points $(NOISE_POINTS) \
	    --rates 0,0.01,0.03,0.05,0.07,0.1 --update-cards $(QUICK)

bench-channel: $(STAMP)
	$(VENV)/bin/dnaimg bench channel --images $(KODAK) --out docs/results/channel --coverages 1,2,3,5,10,20 -j 2 $(QUICK)

# the compact codec: its rate sweep (compared with rd.json's codecs by `dnaimg bench report`), oligos lost
# beyond the outer code, and NextSeq 5x with 2 % of the oligos dropped, against AVIF at the same total nt
bench-compact: $(STAMP)
	$(VENV)/bin/dnaimg bench rd --images $(KODAK) --out docs/results/rd-compact --points none --codecs compact --update-cards $(QUICK)
	$(VENV)/bin/dnaimg bench loss --images $(KODAK) --out docs/results/loss --codecs compact,avif $(QUICK)
	$(VENV)/bin/dnaimg bench channel --images $(KODAK) --out docs/results/channel-compact --points cae32-mr:r050 \
	    --codecs compact,avif --presets nextseq,miseq --coverages 5 $(QUICK)
	$(VENV)/bin/dnaimg bench report --results docs/results --out docs/results/tables.md

# the compact model's training. compact-ms-v3 (the default) is runs/compact-ms2 at the end of its
# 40,000-step schedule (checkpoints/compact-ms2). Its continuation, runs/compact-ms3: 16,000 more
# steps from there at a lower learning rate (~0.3 s a step on 2 idle cores), resumed from
# checkpoints/compact-ms3 once one is committed
COMPACT_RUN ?= runs/compact-ms3
train-compact: $(STAMP)
	mkdir -p $(COMPACT_RUN)
	test -f $(COMPACT_RUN)/checkpoint.pt || test ! -f checkpoints/compact-ms3/checkpoint.pt || \
	    cp checkpoints/compact-ms3/checkpoint.pt $(COMPACT_RUN)/
	$(VENV)/bin/dnaimg train --arch compact --data ../shared/data/train --out $(COMPACT_RUN) --steps 16000 \
	    --init checkpoints/compact-ms2/checkpoint.pt --lr 6e-5 --seed 5 --threads 2

# fully connected AE vs convolutional AE vs CAE with a GAN-trained decoder on 128x128 microscopy crops, each
# latent through the DNA channel (README "Autoencoders on microscopy crops"; ~35 min on 2 shared CPU cores)
MICROSCOPY ?= ../shared/data/medical/microscopy
bench-microscopy: $(STAMP)
	nice -n 10 $(PY) -m dnaimg.bench.microscopy_ae --train $(MICROSCOPY)/train --eval $(MICROSCOPY)/eval \
	    --out docs/results/microscopy_ae --weights runs/microscopy_ae.pt $(QUICK)

# the one-channel compact model on gray medical images (microscopy and X-rays, eval folders), against the
# classic codecs under caps of total nt/px, through the same container; and its training (resumable)
MEDICAL ?= ../shared/data/medical
GRAY_RUN ?= runs/compact-gray2
WAVE_STEPS ?= 40000
bench-medical: $(STAMP)
	$(PY) -m dnaimg.bench.medical --images $(MEDICAL)/microscopy/eval --images $(MEDICAL)/xray/eval \
	    --out docs/results/medical

train-gray: $(STAMP)
	mkdir -p $(GRAY_RUN)
	test -f $(GRAY_RUN)/checkpoint.pt || cp checkpoints/compact-gray/checkpoint.pt $(GRAY_RUN)/
	$(VENV)/bin/dnaimg train --arch compact --gray --lambdas 0.0016,0.0035,0.0077,0.017,0.037,0.082,0.18,0.4 \
	    --data $(MEDICAL)/microscopy/train --data $(MEDICAL)/xray/train --no-downscale --out $(GRAY_RUN) \
	    --steps 14000 --lr 1e-4 --seed 11 --threads 2

# the one-channel wavelet model (transform cdf97): resumes the committed checkpoint
WAVE_RUN ?= runs/gray-wave
train-gray-wave: $(STAMP)
	mkdir -p $(WAVE_RUN)
	test -f $(WAVE_RUN)/checkpoint.pt || cp checkpoints/compact-gray-wave/checkpoint.pt $(WAVE_RUN)/
	$(VENV)/bin/dnaimg train --arch compact --gray --transform cdf97 \
	    --lambdas 0.0016,0.004,0.01,0.025,0.0625,0.156,0.39,0.977 \
	    --data $(MEDICAL)/microscopy/train --data $(MEDICAL)/xray/train --no-downscale --crop 256 \
	    --out $(WAVE_RUN) --steps $(WAVE_STEPS) --lr 2e-4 --seed 12 --threads 2 --no-bf16

# compact-gray-v5's network: the wavelet model trained on with the coder's context in its rate (resumes its checkpoint)
CTX_RUN ?= runs/gray-wave-ctx
CTX_STEPS ?= 20000
train-gray-ctx: $(STAMP)
	mkdir -p $(CTX_RUN)
	test -f $(CTX_RUN)/checkpoint.pt || cp checkpoints/compact-gray-wave-ctx/checkpoint.pt $(CTX_RUN)/
	$(VENV)/bin/dnaimg train --arch compact --gray --transform cdf97 --context \
	    --lambdas 0.0016,0.004,0.01,0.025,0.0625,0.156,0.39,0.977 \
	    --data $(MEDICAL)/microscopy/train --data $(MEDICAL)/xray/train --no-downscale --crop 256 \
	    --out $(CTX_RUN) --steps $(CTX_STEPS) --lr 1e-4 --seed 13 --threads 2 --no-bf16

# build the wheel, install it in a fresh venv and encode/decode with it from outside the tree
wheel-check:
	bash scripts/check_wheel.sh

clean: clean-cache
	rm -rf $(VENV) out

# numba's on-disk cache checks only a kernel's own file: after changing a kernel that others inline
# (consensus, words, index), drop every compiled cache so that no caller keeps the old code
clean-cache:
	find dnaimg -name __pycache__ -type d -prune -exec rm -rf {} +

# fit a context model for the gray wavelet model's coder (dnaimg.zoo.context) under a new name
# (compact-gray-v4 was made this way; a shipped model is never rewritten)
CONTEXT_NAME ?= compact-gray-ctx
context-gray: $(STAMP)
	$(PY) -m dnaimg.zoo.context --base compact-gray-v3 --name $(CONTEXT_NAME) \
	    --data $(MEDICAL)/microscopy/train --data $(MEDICAL)/xray/train --rows 0,8,16,24,32,40,48,56
