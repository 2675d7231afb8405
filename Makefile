# The commands of the README: `make demo` (the main job on the example model), `make test` (the
# whole suite) and `make check` (its quick tier). Each sets everything up on a fresh machine with
# Python 3.11, make and git: a .venv with the project, the reference server and the test tools.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_MODEL := examples/models/tabular_classifier.onnx

# Programs the suite runs for real (command:Debian package). `make test` installs the missing
# ones when it runs as root with apt-get, and otherwise stops naming them; ALLOW_MISSING=1 runs
# the suite anyway, and the tests that need a missing program skip saying which, as does the
# real-model suite when its models cannot be built (README, Tests).
SYSTEM_TOOLS := promtool:prometheus wrk:wrk redis-server:redis-server curl:curl npm:npm node:nodejs nginx:nginx

.PHONY: demo test check lint examples bench clean claude-cli system-tools locks

$(STAMP): pyproject.toml reference-server/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q --upgrade pip
	$(BIN)/python -m pip install --disable-pip-version-check -q -e ./reference-server -e '.[dev]'
	@touch $@

$(DEMO_MODEL): examples/build_examples.py $(STAMP)
	$(BIN)/python examples/build_examples.py

examples: $(DEMO_MODEL)

# The summary names every validation check that was skipped (a tool absent here) in plain words.
demo: $(STAMP) $(DEMO_MODEL)
	$(BIN)/deploy-model deploy $(DEMO_MODEL) --answers examples/answers.yaml --out deploy/tabular-classifier
	@$(BIN)/deploy-model summary --out deploy/tabular-classifier --text

# The pinned Claude Code CLI (package.json) for `claude plugin validate --strict` and the
# end-to-end test of /deploy-model; installed into ./node_modules when npm is present.
node_modules/.bin/claude: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

claude-cli:
	@if command -v npm >/dev/null 2>&1; then $(MAKE) --no-print-directory node_modules/.bin/claude; \
	else echo "npm not found: the Claude Code CLI tests will skip"; fi

system-tools:
	@missing=""; packages=""; \
	for pair in $(SYSTEM_TOOLS); do \
	  command -v "$${pair%%:*}" >/dev/null 2>&1 || { missing="$$missing $${pair%%:*}"; packages="$$packages $${pair#*:}"; }; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ -n "$(ALLOW_MISSING)" ]; then \
	  echo "make: missing$$missing: the tests that need them will skip (ALLOW_MISSING=1)"; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "make: installing Debian packages$$packages (for$$missing)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$packages >/dev/null || exit 1; \
	else \
	  echo "make: the test suite needs$$missing (Debian/Ubuntu packages:$$packages)."; \
	  echo "      Install them (as root, make test does it with apt-get), or run: make test ALLOW_MISSING=1"; \
	  exit 1; \
	fi

test: system-tools $(STAMP)
	@$(MAKE) --no-print-directory claude-cli
	$(BIN)/python -m pytest

# The quick tier (README, Tests): the whole suite but the Claude Code sessions (e2e), the real-model
# suite (realmodels) and the long real-server tests (slow); tests/conftest.py sets those markers.
check: system-tools $(STAMP)
	@$(MAKE) --no-print-directory claude-cli
	$(BIN)/python -m pytest -m "not e2e and not realmodels and not slow"

# Re-resolve the plugin environment's hashed locks (requirements/*.txt) after a dependency change
# in pyproject.toml; needs the network. `make test` checks that they still match.
locks: $(STAMP)
	$(BIN)/python requirements/lock.py --uv $(BIN)/uv

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf deploy examples/models
