"""Fixtures of the render/validate tests: a profiled example model and planned deployment dirs."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from deploy_model.bundle.render import run_render
from deploy_model.model.inspection import run_inspect
from deploy_model.plan.planner import run_plan


@pytest.fixture(scope="session")
def render_profile(tmp_path_factory: pytest.TempPathFactory, tabular_model: Path) -> Path:
    out = tmp_path_factory.mktemp("render-profile")
    run_inspect(tabular_model, out, runs=3, large_batch=4)
    return out


@pytest.fixture
def planned_dir(render_profile: Path, tmp_path: Path) -> Callable[..., Path]:
    """planned_dir(**answers) -> a fresh deployment directory with profile and deployment.yaml."""
    def make(**answers: Any) -> Path:
        out = tmp_path / f"d{len(list(tmp_path.iterdir()))}"
        out.mkdir()
        shutil.copyfile(render_profile / "model-profile.json", out / "model-profile.json")
        run_plan(out, None, answers)
        return out

    return make


@pytest.fixture
def bundle(planned_dir: Callable[..., Path]) -> Callable[..., Path]:
    """bundle(**answers) -> a planned and rendered deployment directory."""
    def make(**answers: Any) -> Path:
        out = planned_dir(**answers)
        run_render(out)
        return out

    return make


def versioned_copy(model: Path, version: str, out: Path) -> Path:
    """The same network under another model version: a distinct file (sha256) as a real release is."""
    import onnx

    proto = onnx.load(str(model))
    props = {p.key: p for p in proto.metadata_props}
    if "model_version" in props:
        props["model_version"].value = version
    else:
        entry = proto.metadata_props.add()
        entry.key, entry.value = "model_version", version
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(out))
    return out


@pytest.fixture(scope="session")
def stable_answers(tmp_path_factory: pytest.TempPathFactory, tabular_model: Path) -> dict[str, Any]:
    """Answers naming a stable release 0.9.0 (its own model file) that the profiled model replaces."""
    stable = versioned_copy(tabular_model, "0.9.0", tmp_path_factory.mktemp("stable") / "tabular_classifier.onnx")
    return {"stable_version": "0.9.0", "stable_model": str(stable)}
