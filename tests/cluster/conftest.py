"""Fixtures of the cluster tests: a FAKE API server (fake_kube.py; no real one runs here) and a
planned deployment directory of the example tabular model."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# importlib import mode: make this folder's helper modules importable by the tests beside it.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_kube import FakeKube


@pytest.fixture
def fake() -> Iterator[FakeKube]:
    kube = FakeKube(addons=("gateway", "prometheus-operator", "metrics")).start()
    yield kube
    kube.stop()


@pytest.fixture(scope="session")
def inspected(tmp_path_factory: pytest.TempPathFactory, tabular_model: Path) -> Path:
    """siblings.json + model-profile.json of the tabular example (inspect once per session)."""
    from deploy_model.model.inspection import run_inspect

    out = tmp_path_factory.mktemp("inspected") / "tabular-classifier"
    run_inspect(tabular_model, out, runs=3, large_batch=4, time_budget_s=1.0)
    return out


@pytest.fixture
def planned_dir(inspected: Path, tmp_path: Path) -> Path:
    """A fresh copy of the inspected directory to plan into."""
    out = tmp_path / "tabular-classifier"
    shutil.copytree(inspected, out)
    return out
