import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# importlib import mode: make this folder's helper module importable by the tests beside it.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure_helpers import plan_dir, server_available


@pytest.fixture(scope="session")
def tabular_plan(tmp_path_factory: pytest.TempPathFactory, tabular_model: Path) -> Path:
    """A deployment directory with siblings.json, model-profile.json and deployment.yaml."""
    return plan_dir(tabular_model, tmp_path_factory.mktemp("tabular") / "tabular-classifier")


@pytest.fixture(scope="session")
def served(tabular_plan: Path) -> Iterator[dict]:
    """The real reference server for the tabular example, on a free loopback port, for the session."""
    reason = server_available()
    if reason:
        pytest.skip(reason)
    from deploy_model.measure.serve import ServerProcess

    with ServerProcess(tabular_plan) as server:
        yield {"url": server.url, "pid": server.proc.pid, "dir": tabular_plan, "server": server}
