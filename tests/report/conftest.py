from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from deploy_model.model.inspection import run_inspect
from deploy_model.plan.planner import run_plan
from deploy_model.plan.plugins import run_plugins

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def profiled(tmp_path_factory: pytest.TempPathFactory, tabular_model: Path) -> Path:
    """A directory holding model-profile.json of the tabular example (inspected once)."""
    out = tmp_path_factory.mktemp("profiled")
    run_inspect(tabular_model, out, runs=3, large_batch=4)
    return out


@pytest.fixture
def planned(profiled: Path, tmp_path: Path) -> Callable[..., Path]:
    """planned(**answers) -> a fresh deployment directory with siblings, profile and spec."""
    def make(**answers: Any) -> Path:
        out = tmp_path / f"d{len(list(tmp_path.iterdir()))}"
        out.mkdir()
        (out / "model-profile.json").write_bytes((profiled / "model-profile.json").read_bytes())
        run_plugins(out, REPO, [], home=out / "no-home")
        run_plan(out, None, answers)
        return out

    return make
