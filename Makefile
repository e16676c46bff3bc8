# The two commands of the README:  make book  (build the book)  and  make test  (what CI runs).
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export PYDEVD_DISABLE_FILE_VALIDATION := 1
# Notebooks executed at a time (papermill and nbval), each kernel on one thread (runner.BOOK_THREADS).
JOBS ?= 2

.PHONY: book test lint unit notebooks nbval seeds site book-checks browser bench bench-lm bench-presets gpu-check gpu-wheels robustness venv lock clean

venv: $(STAMP)

# The virtualenv, from the full lock (torch 2.13.0: the CPU wheel here); rebuilt when the lock changes. Without
# bytecode at install (--no-compile: 35 s instead of 60 s here): Python compiles what it imports, once.
$(STAMP): requirements-lock.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-compile -r requirements-lock.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

## book: execute every notebook with papermill (cached) at the ci preset and build the HTML book
book: $(STAMP)
	$(BIN)/rlvr-book build --jobs $(JOBS)

## test: everything CI runs — the architecture and lint checks, unit tests, papermill + nbval on every notebook (and the determinism check),
## strict book build, HTML checks and every page in headless Chromium (skipped, saying how to install it,
## where there is no Chromium: `make browser`)
test: lint unit notebooks nbval seeds site book-checks

## lint: the package's layers (import-linter contracts in pyproject.toml) and ruff
lint: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/ruff check src tests

# Two workers that steal queued tests from each other (≈ 150 s instead of ≈ 210 s on 2 cores).
unit: $(STAMP)
	@echo "[make] unit at $$(date +%T)"
	$(BIN)/python -m pytest -n $(JOBS) --dist worksteal --durations=10 \
		-m "not built_book and not determinism and not reference" tests

notebooks: $(STAMP)
	@echo "[make] notebooks at $$(date +%T)"
	$(BIN)/rlvr-book execute-all --jobs $(JOBS)

# Re-execute the papermill-executed notebooks and compare every output (sanitized: see tests/nbval_sanitize.cfg);
# then compare the second execution's metrics.json and figure files with the first's (determinism). One notebook
# per worker at a time, the longest first (runner.EXECUTION_ORDER; xdist would order them by their cell counts).
nbval: notebooks
	@echo "[make] nbval at $$(date +%T)"
	$(BIN)/python -m rlvr_dynamics.book.determinism record build/outputs build/determinism/first-run.json
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest -p no:cacheprovider -n $(JOBS) --dist loadscope \
		--no-loadscope-reorder --durations=10 --nbval --nbval-current-env --nbval-sanitize-with \
		tests/nbval_sanitize.cfg $$($(BIN)/python -c "from rlvr_dynamics.book import runner; \
		print(*runner.executed_notebooks())")
	$(BIN)/python -m pytest -m "determinism or reference" tests

# Every chapter once more at another seed than the book's (claims must hold for any seed); the full
# record over seeds 0-9 is committed in data/robustness (make robustness) and checked by the unit tests.
SEED ?= 1
seeds: $(STAMP)
	@echo "[make] seeds at $$(date +%T)"
	$(BIN)/rlvr-book robustness --seeds $(SEED) --jobs $(JOBS) --output build/robustness-check

## robustness: every chapter at seeds 0-9 (about 40 min on 2 cores); writes data/robustness/NAME.json
robustness: $(STAMP)
	$(BIN)/rlvr-book robustness --seeds 0-9 --jobs $(JOBS)

site: notebooks
	@echo "[make] site at $$(date +%T)"
	$(BIN)/rlvr-book build --jobs $(JOBS)

book-checks: site
	@echo "[make] book-checks at $$(date +%T)"
	$(BIN)/python -m pytest -m built_book tests
	@echo "[make] done at $$(date +%T)"

## browser: install Debian's chromium for the browser tests (apt; root or sudo)
browser:
	.ci/install-browser

## bench: time the batched bandit engine against per-run loops and its exponential floor, then GRPO steps with
## gap tracking (prints the floor ratio and the tracking overhead; writes build/bench/bandit.json and lm.json)
bench: $(STAMP)
	$(BIN)/rlvr-book bench
	$(BIN)/rlvr-book bench-lm

## bench-lm: seconds per TRL GRPO step with gradient-gap tracking off / (a) / (a)+(b); writes build/bench/lm.json
bench-lm: $(STAMP)
	$(BIN)/rlvr-book bench-lm

## bench-presets: every chapter's paper preset, each in its own process (hours on 2 cores: figure1 ≈ 8 min, figure2
## is for a GPU); writes build/bench/presets.json (commit it under data/benchmarks/presets/ to show it in the book)
bench-presets: $(STAMP)
	$(BIN)/rlvr-book bench-presets --device cpu

## gpu-check: on a CUDA machine, the GPU benchmarks and the paper presets' run times in ≤ 8 min on one H200
## (.ci/gpu-check: it uses .venv when present, else python3 with the wheels of make gpu-wheels); writes
## data/benchmarks/gpu-bandit.json, lm/gpu-lm.json, presets/gpu-presets.json (or into $$OUT)
gpu-check:
	.ci/gpu-check

## gpu-wheels: download into .whl/ the wheels a bare GPU machine lacks (trl, papermill, the kernel stack)
gpu-wheels:
	.ci/gpu-wheels

## lock: regenerate requirements-lock.txt from a venv made from requirements.txt
lock:
	rm -rf build/lock-venv && $(PYTHON) -m venv build/lock-venv
	build/lock-venv/bin/pip install --quiet -r requirements.txt
	{ echo "# Full lock: pip freeze of a venv made from requirements.txt (Python 3.11, CPU torch)."; \
	  echo "# Regenerate: make lock"; \
	  build/lock-venv/bin/pip freeze | sed -e 's/^torch==\(.*\)+cpu$$/torch==\1/'; } > requirements-lock.txt

clean:
	rm -rf build runs
