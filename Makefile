# RadStream: `make demo` runs the pipeline on synthetic studies, `make test` runs the suite.
# Both create .venv on first use and install what they need into it.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/radstream demo --studies 60 --invalid 10

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	bash scripts/install-chromium.sh
	$(BIN)/pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/pipeline_vs_limit.py
	$(BIN)/python benchmarks/lake_queries.py

clean:
	rm -rf $(VENV) .radstream .pytest_cache .mypy_cache .ruff_cache
