"""Shared fixtures: the example models, built once per session by the project's own builder."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _load_builder():
    spec = importlib.util.spec_from_file_location("build_examples", REPO / "examples" / "build_examples.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def example_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{'tabular_classifier': path, 'image_cnn': path} built deterministically into a temp dir."""
    return _load_builder().build_all(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def tabular_model(example_models: dict[str, Path]) -> Path:
    return example_models["tabular_classifier"]


@pytest.fixture(scope="session")
def cnn_model(example_models: dict[str, Path]) -> Path:
    return example_models["image_cnn"]


@pytest.fixture(scope="session")
def cli_env() -> dict[str, str]:
    """Environment for running the scripts/CLI as a user would: the venv's python on PATH."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env
