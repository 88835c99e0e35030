# Two commands do everything: `make demo` (set up + run the main job) and `make test`.
# Both create and reuse .venv and install the pinned dependencies from requirements.lock.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all bench docs clean

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps -e .
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/earnshaw demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" -n 2 --dist loadfile

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

# Benchmarks compare against PyTorch (CPU wheel, installed only here).
$(VENV)/.bench: $(STAMP)
	$(BIN)/python -m pip install -q torch==2.13.0
	@touch $(VENV)/.bench

bench: $(VENV)/.bench
	$(BIN)/python -m benchmarks.run

# The documentation site (mkdocs-material + mkdocstrings, pinned in requirements.lock) into site/.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) runs .pytest_cache site
