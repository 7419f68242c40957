# make demo  - set up .venv and run encode -> simulate -> decode on the example image
# make test  - set up .venv and run the test suite (make test-slow: the heavy tests too)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.dnaimg-installed

.PHONY: demo test test-slow bench bench-rd bench-noise bench-channel bench-compact train-compact wheel-check setup clean

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
	$(VENV)/bin/dnaimg bench rd --images $(KODAK) --out docs/results/rd --points cae32-mr,cae32-l9,cae32-l9-noise --update-cards $(QUICK)

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

# resume the compact model's training from the committed checkpoint (40,000 steps planned; ~0.3 s a step on 2 cores)
COMPACT_RUN ?= runs/compact-ms
train-compact: $(STAMP)
	mkdir -p $(COMPACT_RUN)
	test -f $(COMPACT_RUN)/checkpoint.pt || cp checkpoints/compact-ms/checkpoint.pt $(COMPACT_RUN)/
	$(VENV)/bin/dnaimg train --arch compact --data ../shared/data/train --out $(COMPACT_RUN) --steps 40000 \
	    --lr 4e-4 --seed 1 --threads 2

# build the wheel, install it in a fresh venv and encode/decode with it from outside the tree
wheel-check:
	bash scripts/check_wheel.sh

clean:
	rm -rf $(VENV) out
