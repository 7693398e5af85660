# peninsula: two commands set everything up on a fresh machine.
#   make train   create .venv, install, train the default model on the shipped corpus, print metrics
#   make test    create .venv (and .venv-labelstudio), install, validate the corpus and run the test suite
# Later: make evaluate | predict | export | bench-train | bench-predict | bench-sib200 (ARGS=... passes overrides)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# Label Studio lives in a virtualenv of its own: its many pinned dependencies stay out of ours.
LABEL_STUDIO_VERSION := 1.23.2
LS_VENV := .venv-labelstudio
LS_STAMP := $(LS_VENV)/.installed-$(LABEL_STUDIO_VERSION)

.PHONY: install labelstudio train test validate evaluate predict export bench-train bench-predict bench-stream bench-sib200 bench-recipe bench-aggregation clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned: the CPU build (a plain `torch` would pull a multi-GB CUDA build)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# tests/test_label_studio.py starts this Label Studio (about 2 minutes to install)
$(LS_STAMP):
	test -x $(LS_VENV)/bin/python || $(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/python -m pip install --quiet label-studio==$(LABEL_STUDIO_VERSION)
	touch $(LS_STAMP)

labelstudio: $(LS_STAMP)

# The main job: train on the shipped corpus (calibration and thresholds fitted on validation), then
# print the test split's metrics and the cross-source split's beside TF-IDF and the frozen-embedding
# probe (sources never trained on: the number that says whether the model generalises).
# Full reports: `make evaluate`.
train: install
	$(PY) -m train $(ARGS)
	$(PY) -m train.evaluate split=test baselines=false bootstrap.resamples=200
	$(PY) -m train.evaluate split=cross_source 'baselines=[tfidf_logreg,embedding_probe]' bootstrap.resamples=200

test: install validate labelstudio
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

# The training-recipe ablation: hours on 2 CPU cores; resumes where it stopped (README, "Recipe").
bench-recipe: install
	$(PY) -m train.bench.recipe $(ARGS)

bench-aggregation: install
	$(PY) -m train.bench.aggregation $(ARGS)

clean:
	rm -rf $(VENV) $(LS_VENV) logs .pytest_cache
