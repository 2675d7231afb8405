"""After a canary passed, its promotion in a release layout: re-planning the candidate writes beside its
release (never into it), `rollout promote` records the promoted release as the root's `current`, and a
model retrained again without a metadata change never takes the tag of the release before the stable one.
The cluster is the FAKE API server of fake_kube.py (no real one runs here)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fake_kube import FakeKube

from deploy_model.bundle.render import run_render
from deploy_model.cli.release_target import next_release
from deploy_model.cluster import rollout_advance
from deploy_model.cluster.apply import run_apply
from deploy_model.cluster.gates import Verdict
from deploy_model.cluster.rollout import run_advance, run_promote
from deploy_model.plan import release_layout
from deploy_model.plan.decide_version import decide_version, derived_version
from deploy_model.plan.decision_log import DecisionLog
from deploy_model.plan.planner import run_plan
from deploy_model.plan.spec import Answers, StableRelease

NAME = "tabular-classifier"
ANSWERS = {"latency_sla_ms": 50, "requests_per_second": 100, "rollout": "canary"}


def test_the_previous_release_directory_is_never_the_next_one(tmp_path: Path) -> None:
    root = tmp_path / "model"
    candidate = release_layout.release_dir(root, "1.0.0-abc")
    candidate.mkdir(parents=True)
    (candidate / "deployment.yaml").write_text("{}\n")  # its stages ran one by one: no deploy.json
    assert release_layout.new_release_dir(root, "1.0.0-abc") == candidate  # an unsucceeded run is redone...
    # ... but not the release planned against: its promotion goes beside it.
    assert release_layout.new_release_dir(root, "1.0.0-abc", candidate) == root / "releases" / "1.0.0-abc-2"
    assert release_layout.record_promotion(tmp_path / "elsewhere") is None
    assert not (root / "current").exists()


def test_promote_records_the_promoted_release_as_current(fake: FakeKube, inspected: Path, tabular_model: Path,
                                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "deploy" / "model"
    release2 = release_layout.release_dir(root, "1.0.0")
    shutil.copytree(inspected, release2)
    run_plan(release2, None, {**ANSWERS, "stable_version": "0.9.0"})
    run_render(release2)
    kc = fake.kubeconfig(tmp_path / "kc")
    run_apply(release2, kc, None, timeout_s=10)
    monkeypatch.setattr(rollout_advance, "evaluate", lambda *a, **k: Verdict("pass", "every gate passed"))
    outcomes = [run_advance(release2, "http://127.0.0.1:9", kc)["outcome"] for _ in range(4)]
    assert outcomes == ["advanced", "advanced", "advanced", "passed"]
    # The same model again: its promotion, planned against release 2, in a directory of its own.
    target = next_release(tabular_model, None, root)
    assert target.previous == release2 and target.out == root / "releases" / "1.0.0-2"
    shutil.copytree(inspected, target.out)
    run_plan(target.out, None, ANSWERS, previous=release2)
    run_render(target.out)
    dry = run_promote(release2, target.out, kc, dry_run=True)
    assert dry["action"] == "would promote" and not (root / "current").exists()
    done = run_promote(release2, target.out, kc, timeout_s=10)
    assert done["action"] == "promoted" and str(root / "current") in done["wrote"]
    assert (root / "current").read_text() == "1.0.0-2\n" and "names 1.0.0-2" in done["message"]
    assert release_layout.current_release(root)[0] == target.out
    assert run_promote(release2, target.out, kc)["action"] == "done"  # again: nothing more, the record stays
    assert (root / "current").read_text() == "1.0.0-2\n"


@pytest.mark.parametrize(("stable_version", "expected"), [
    ("1.0.0", "derived"),  # the stable version is the metadata's: derived
    (derived_version("1.0.0", "a" * 64), "derived"),  # derived from this same metadata: the tag 1.0.0 is release 1's
    ("0.9.0", "1.0.0"),  # a new metadata version: used as it is
    (derived_version("0.9.0", "a" * 64), "1.0.0"),
])
def test_a_third_retrain_never_takes_an_earlier_models_tag(stable_version: str, expected: str) -> None:
    sha = "b" * 64
    stable = StableRelease(version=stable_version, image=f"r/m:{stable_version}", sha256="a" * 64)
    log = DecisionLog()
    version = decide_version(log, Answers(), {"sha256": sha, "version": "1.0.0"}, stable)
    assert version == (derived_version("1.0.0", sha) if expected == "derived" else expected)
    if expected == "derived" and stable_version != "1.0.0":
        assert "an earlier model holds the tag 1.0.0" in log.decisions[-1].rule
