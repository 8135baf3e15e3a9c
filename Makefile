# rlgen: two commands do everything on a fresh machine with Python >= 3.11.
#   make demo   create .venv, install rlgen, run the main job (CPU or GPU)
#   make test   create/refresh .venv, run the test suite (CPU)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export JAX_COMPILATION_CACHE_DIR ?= $(CURDIR)/.jax_cache

.PHONY: venv demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --no-compile -e ".[dev]"  # .pyc written on first import
	touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(BIN)/rlgen demo

test: venv
	$(BIN)/python -m pytest

lint: venv
	$(BIN)/ruff check rlgen tests benchmarks experiments
	$(BIN)/ruff format --check rlgen tests benchmarks experiments

# every benchmark with its peer (--quick without a GPU): results/bench/bench.{json,md}
bench: venv
	$(BIN)/python -m benchmarks.run_all $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .jax_cache .pytest_cache
