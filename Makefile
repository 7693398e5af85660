# peninsula: two commands set everything up on a fresh machine.
#   make train   create .venv, install, train the default model on the shipped corpus, print metrics
#   make test    create .venv, install, validate the corpus and run the test suite
# Later: make evaluate | predict | export | bench-train | bench-predict | bench-sib200 (ARGS=... passes overrides)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install train test validate evaluate predict export bench-train bench-predict bench-stream bench-sib200 clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned: the CPU build (a plain `torch` would pull a multi-GB CUDA build)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# The main job: train on the shipped corpus, then tune topic thresholds on validation and print
# test-split metrics (the full report with baselines is `make evaluate`).
train: install
	$(PY) -m train $(ARGS)
	$(PY) -m train.evaluate baselines=false bootstrap.resamples=200

test: install validate
	$(PY) -m pytest -q $(ARGS)

validate: install
	$(PY) -m train.data validate

evaluate: install
	$(PY) -m train.evaluate $(ARGS)

predict: install
	$(PY) -m train.predict input=seeds mode=article $(ARGS)

export: install
	$(PY) -m train.export $(ARGS)

bench-train: install
	$(PY) -m train.bench.train $(ARGS)

bench-predict: install
	$(PY) -m train.bench.predict $(ARGS)

bench-stream: install
	$(PY) -m train.bench.stream $(ARGS)

bench-sib200: install
	$(PY) -m train.bench.sib200 $(ARGS)

clean:
	rm -rf $(VENV) logs .pytest_cache
