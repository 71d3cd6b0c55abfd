# citylab: `make demo` runs the lab, `make test` runs the test suite.
# Both start with `make setup`, which is idempotent: system packages when
# missing, a virtual environment in .venv, and the project installed into it.

VENV   ?= .venv
PYTHON ?= python3
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

NPM_STAMP := tools/pglite/node_modules/.installed

.PHONY: setup system demo test bench clean

setup: system $(STAMP) $(NPM_STAMP)

system:
	@bash scripts/setup-system.sh

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "citylab needs Python 3.11 or newer")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' --config-settings editable_mode=compat
	@touch $(STAMP)

# The TimescaleDB test engine (PGlite with TimescaleDB, served over the wire protocol).
$(NPM_STAMP): tools/pglite/package.json
	cd tools/pglite && npm install --no-save --silent
	@touch $(NPM_STAMP)

demo: setup
	$(BIN)/citylab up --demo

test: setup
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python -m bench --help

clean:
	rm -rf $(VENV) .citylab .pytest_cache test-artifacts tools/pglite/node_modules
