# peninsula: two commands set everything up on a fresh machine.
#   make train   create .venv, install, train the default model on the shipped corpus, print metrics
#   make test    create .venv, install, validate the corpus and run the test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install train test validate bench-train clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned: the CPU build (a plain `torch` would pull a multi-GB CUDA build)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

train: install
	$(PY) -m train $(ARGS)

test: install validate
	$(PY) -m pytest -q $(ARGS)

validate: install
	$(PY) -m train.data validate

bench-train: install
	$(PY) -m train.bench_train $(ARGS)

clean:
	rm -rf $(VENV) logs .pytest_cache
