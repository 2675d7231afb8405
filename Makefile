# The two commands of the README: `make demo` (the main job on the example model) and
# `make test` (the whole suite). Each sets everything up on a fresh machine with Python 3.11,
# make and git: a .venv with the project, the reference server and the test tools.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_MODEL := examples/models/tabular_classifier.onnx

.PHONY: demo test lint examples bench clean claude-cli

$(STAMP): pyproject.toml reference-server/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q --upgrade pip
	$(BIN)/python -m pip install --disable-pip-version-check -q -e ./reference-server -e '.[dev]'
	@touch $@

$(DEMO_MODEL): examples/build_examples.py $(STAMP)
	$(BIN)/python examples/build_examples.py

examples: $(DEMO_MODEL)

demo: $(STAMP) $(DEMO_MODEL)
	$(BIN)/deploy-model deploy $(DEMO_MODEL) --answers examples/answers.yaml --out deploy/tabular-classifier

# The pinned Claude Code CLI (package.json) for `claude plugin validate --strict` and the
# end-to-end test of /deploy-model; installed into ./node_modules when npm is present.
node_modules/.bin/claude: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

claude-cli:
	@if command -v npm >/dev/null 2>&1; then $(MAKE) --no-print-directory node_modules/.bin/claude; \
	else echo "npm not found: the Claude Code CLI tests will skip"; fi

test: $(STAMP) claude-cli
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf deploy examples/models
