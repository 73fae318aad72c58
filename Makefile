# Cutover: `make demo` (the main job on embedded defaults) and `make test` (the full suite).
# Both create or update .venv from requirements.lock first; nothing else is needed but Python 3.11+.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
STATE  ?= .state
PATIENTS ?= 2000
SEED   ?= 7

.PHONY: venv demo test lint typecheck bench airflow lock clean

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@# --compile-bytecode: where PYTHONDONTWRITEBYTECODE is set (as on CI) nothing caches bytecode,
	@# and every task process would recompile Airflow, GX and pandas from source (import pandas 2.1 s → 0.7 s)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing $$(grep -c '==' requirements.lock) locked packages into $(VENV) (a minute or two the first time)"
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.9
	@$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -r requirements.lock
	@echo "installed: $$($(BIN)/uv pip list --python $(BIN)/python 2>/dev/null | tail -n +3 | wc -l) packages in $(VENV)"
	@$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@# the build leaves include/cutover.egg-info beside the package: on sys.path it is a second
	@# "cutover" distribution, and Airflow would load the plugin entry point twice (and say so)
	@rm -rf include/cutover.egg-info
	@touch $(STAMP)

demo: venv
	$(BIN)/cutover demo --patients $(PATIENTS) --seed $(SEED)

test: venv lint typecheck
	$(BIN)/python -m pytest -n 2 --timeout 900 $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

bench: venv
	$(BIN)/python -m bench
	$(BIN)/python -m bench pipeline --size 4m
	$(BIN)/python -m bench readme

airflow: venv
	$(BIN)/cutover airflow

lock:
	$(BIN)/uv pip compile --python 3.11 requirements.txt -o requirements.lock

clean:
	-test -x $(BIN)/cutover && $(BIN)/cutover stop
	rm -rf $(STATE) expectations/uncommitted
