# RadStream: `make demo` runs the pipeline on synthetic studies, `make test` runs the suite,
# `make test-fast` the tests that start no process, server or emulator (the inner loop).
# All create .venv on first use and install into it from the lock file, with hashes, so a
# fresh clone gets the versions the suite last passed with. `make lock` refreshes the lock
# from pyproject's ranges (keeping pins that still fit; `make lock UPGRADE=1` takes the
# newest that fit).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
LOCK := requirements/lock.txt
STAMP := $(VENV)/.installed
# The lock is for the supported Python on this platform, whoever regenerates it.
LOCK_TARGET := --python-version 3.11 --python-platform x86_64-unknown-linux-gnu

.PHONY: demo test test-fast lint typecheck imports checkov bench lock clean

# The build backend (setuptools) comes from the lock too, so installing RadStream itself
# fetches nothing. `pip check` fails when pyproject asks for what the lock lacks: `make lock`.
$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/radstream demo --studies 60 --invalid 10

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts

typecheck: $(STAMP)
	$(BIN)/mypy

# The layers (pyproject's [tool.importlinter]), and no private name used across modules.
imports: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/python scripts/check_private_imports.py src

# checkov (pinned, in its own venv: its pins would hold RadStream's back) over the template
# of every variant (a variant's flags separated by commas); every check passes but those
# skipped, with reasons, in .checkov.yaml (or, for one resource, in its checkov Metadata).
CHECKOV := $(VENV)/checkov
CHECKOV_LOCK := requirements/checkov.txt
CHECKOV_OUT := .radstream/checkov
CHECKOV_VARIANTS := default: kms:--kms express-artifacts:--express-artifacts \
	express:--state-machine=EXPRESS endpoint:--model-endpoint=https://model.internal:8443 \
	arm64:--architecture=arm64 infer-capped:--reserved-concurrency=infer=10 \
	no-dashboard:--no-dashboard alarm-email:--alarm-email=ops@example.com \
	kms-alarm-email:--kms,--alarm-email=ops@example.com

$(CHECKOV)/.installed: $(CHECKOV_LOCK)
	test -x $(CHECKOV)/bin/python || $(PY) -m venv $(CHECKOV)
	$(CHECKOV)/bin/python -m pip install --quiet --require-hashes -r $(CHECKOV_LOCK)
	touch $@

checkov: $(STAMP) $(CHECKOV)/.installed
	rm -rf $(CHECKOV_OUT) && mkdir -p $(CHECKOV_OUT)
	for variant in $(CHECKOV_VARIANTS); do \
		$(BIN)/radstream aws template --stack rs-checkov $$(echo "$${variant#*:}" | tr , ' ') \
			> $(CHECKOV_OUT)/$${variant%%:*}.json || exit 1; \
	done
	$(CHECKOV)/bin/checkov --config-file .checkov.yaml -d $(CHECKOV_OUT)

test: lint typecheck imports checkov
	bash scripts/install-chromium.sh
	$(BIN)/pytest -q

test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

bench: $(STAMP)
	$(BIN)/python benchmarks/pipeline_vs_limit.py
	$(BIN)/python benchmarks/lake_queries.py

# Only uv is needed, from the current lock: pyproject may already ask for what it lacks.
$(BIN)/uv: $(LOCK)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	touch $(BIN)/uv

lock: $(BIN)/uv
	$(BIN)/uv pip compile pyproject.toml requirements/build.in --extra dev \
		--generate-hashes $(LOCK_TARGET) $(if $(UPGRADE),--upgrade) \
		--custom-compile-command "make lock" --quiet --output-file $(LOCK)
	$(BIN)/uv pip compile requirements/emulator.in \
		--generate-hashes $(LOCK_TARGET) $(if $(UPGRADE),--upgrade) \
		--custom-compile-command "make lock" --quiet --output-file requirements/emulator.txt
	$(BIN)/uv pip compile requirements/checkov.in \
		--generate-hashes $(LOCK_TARGET) $(if $(UPGRADE),--upgrade) \
		--custom-compile-command "make lock" --quiet --output-file $(CHECKOV_LOCK)

clean:
	rm -rf $(VENV) .radstream .pytest_cache .mypy_cache .ruff_cache
