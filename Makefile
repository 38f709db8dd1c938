# The two commands: `make demo` and `make test`. Both create the environment when it is missing.
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTHON ?= python3

.PHONY: demo test test-slow browser bench clean

# pyproject.toml states compatible ranges; constraints.txt pins the versions this repository is tested with.
# --no-compile: Python compiles only the modules it imports, on first use (byte-compiling all of torch costs ~40 s).
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --no-compile -c constraints.txt torch torchvision
	$(BIN)/pip install -q --disable-pip-version-check --no-compile -c constraints.txt -e '.[test]'
	touch $(STAMP)

# Headless Chromium (Debian package) for the report's browser tests, driven by Playwright's Python package
# (in .[test]; it uses this system Chromium and downloads no browser); the tests skip, saying why, without it.
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
	  || echo "chromium could not be installed: the browser tests will be skipped"

demo: $(STAMP)
	$(BIN)/cemap demo --out out/demo

# The tests, after the linters: ruff (pyproject.toml) and the import contract (.importlinter: the one-way flow of packages).
test: $(STAMP) browser
	$(BIN)/ruff check src tests scripts docs
	$(BIN)/lint-imports
	$(BIN)/pytest -q

test-slow: $(STAMP) browser
	$(BIN)/pytest -q -m slow

bench: $(STAMP)
	$(BIN)/cemap bench --out out/bench.json

clean:
	rm -rf out .pytest_cache
