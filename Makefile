# The two commands a new user runs: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Starts the gateway on the embedded defaults (SQLite file, built-in simulator)
# with a demo account; honours ROXGATE_* variables (e.g. ROXGATE_PORT=9000).
run: $(STAMP)
	$(BIN)/roxgate demo
	exec $(BIN)/roxgate serve

# Lint, then the whole suite against real parts (server over a socket, SQLite).
# The console's browser test drives Debian's headless Chromium (installed here
# when missing; Playwright's own browser downloads are never used).
test: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	@command -v chromium >/dev/null || { SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
		$$SUDO apt-get update && $$SUDO env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y chromium chromium-driver; }
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples

bench: $(STAMP)
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .ruff_cache
