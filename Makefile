# The two commands of the README: `make demo` (the main job on the example model) and
# `make test` (the whole suite). Each sets everything up on a fresh machine with Python 3.11,
# make and git: a .venv with the project, the reference server and the test tools.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_MODEL := examples/models/tabular_classifier.onnx

.PHONY: demo test lint examples bench clean

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

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf deploy examples/models
