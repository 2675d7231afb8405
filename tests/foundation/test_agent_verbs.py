"""The verbs the /deploy-model command leans on: answers, inspect @request, trial, summary, and
plan's refusal of rollouts that a pattern cannot have."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from foundation_helpers import REPO

from deploy_model.model.request import split_request
from deploy_model.plan.spec import Answers


def cli(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "deploy_model", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env=env or dict(os.environ))


@pytest.fixture(scope="module")
def profiled(tmp_path_factory: pytest.TempPathFactory, tabular_model: Path) -> Path:
    project = tmp_path_factory.mktemp("agent")
    (project / "models").mkdir()
    shutil.copy(tabular_model, project / "models" / "clf.onnx")
    proc = cli("inspect", "models/clf.onnx", "--out", "base", "--runs", "3", cwd=project)
    assert proc.returncode == 0, proc.stderr
    return project


def _planned(project: Path, name: str, *answers: str) -> Path:
    directory = project / name
    shutil.rmtree(directory, ignore_errors=True)
    shutil.copytree(project / "base", directory)
    proc = cli("plan", "--out", directory, *answers, cwd=project)
    assert proc.returncode == 0, proc.stderr
    return directory


def test_answers_lists_every_key_with_type_allowed_values_and_default(tmp_path: Path) -> None:
    proc = cli("answers", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    keys = {k["key"]: k for k in json.loads(proc.stdout)["keys"]}
    assert {key for key in keys if "." not in key} == set(Answers.model_fields)
    # A nested group's keys follow it, dotted, with their own types and defaults.
    assert keys["ab_test.metric"]["default"] == "accuracy" and keys["ab_test.split"]["range"] == ">= 1, <= 99"
    assert keys["payload_logging.sampling"]["type"] == "number" and keys["payload_logging"]["default"] is None
    assert keys["rollout"]["allowed"] == ["direct", "canary", "shadow", "blue-green", "ab"]
    assert keys["rollout"]["default"] == "canary"
    assert keys["requests_per_second"] == {**keys["requests_per_second"], "type": "number", "default": 50.0,
                                           "range": ">= 0"}
    assert keys["canary_weight"]["range"] == ">= 1, <= 100"
    text = cli("answers", cwd=tmp_path).stdout
    assert "PydanticUndefined" not in text and "ab_test.mde: number" in text
    assert "requests_per_second: number [>= 0] = 50.0" in text and "rps" not in text.split("\n", 1)[1].split()[0]


@pytest.mark.parametrize(("typed", "model", "rest"), [
    ("models/my model.onnx peak 200 req/s", "models/my model.onnx", "peak 200 req/s"),
    ("models/v$2.onnx", "models/v$2.onnx", ""),
    ("'models/my model.onnx' rollout shadow", "models/my model.onnx", "rollout shadow"),
    ("missing.onnx and the rest", "missing.onnx", "and the rest"),
])
def test_the_request_splits_into_the_path_and_the_answers(tmp_path: Path, typed: str, model: str, rest: str) -> None:
    (tmp_path / "models").mkdir()
    for name in ("my model.onnx", "v$2.onnx"):
        (tmp_path / "models" / name).write_bytes(b"x")
    assert split_request(typed, tmp_path) == (model, rest)
    home, _ = split_request("~/m.onnx rps 5", tmp_path)
    assert home == str(Path.home() / "m.onnx")


def test_inspect_takes_the_model_from_the_request_file(profiled: Path) -> None:
    request = profiled / "request.txt"
    shutil.copy(profiled / "models" / "clf.onnx", profiled / "models" / "my $model.onnx")
    request.write_text("models/my $model.onnx latency 50 ms please\n")
    proc = cli("inspect", "@request.txt", "--out", "fromreq", "--runs", "2", cwd=profiled)
    assert proc.returncode == 0, proc.stderr
    assert "request: model models/my $model.onnx; typed after it" in proc.stderr and "latency 50 ms please" in proc.stderr
    assert (profiled / "fromreq" / "model-profile.json").is_file()
    request.write_text("")
    empty = cli("inspect", "@request.txt", "--out", "none", cwd=profiled)
    assert empty.returncode == 1
    assert "names no model file" in empty.stderr and "models/clf.onnx" in empty.stderr
    assert "Traceback" not in empty.stderr and not (profiled / "none").exists()


@pytest.mark.parametrize("answers", [("--target", "edge", "--rollout", "canary"),
                                     ("--traffic", "batch", "--latency-sla-ms", "60000", "--rollout", "shadow"),
                                     ("--traffic", "batch", "--latency-sla-ms", "60000", "--rollout", "blue-green")])
def test_plan_refuses_a_rollout_the_pattern_cannot_have(profiled: Path, answers: tuple[str, ...]) -> None:
    directory = profiled / "refused"
    shutil.rmtree(directory, ignore_errors=True)
    shutil.copytree(profiled / "base", directory)
    proc = cli("plan", "--out", directory, *answers, cwd=profiled)
    assert proc.returncode == 1
    assert "makes no sense for the" in proc.stderr and "expected 'direct'" in proc.stderr
    assert not (directory / "deployment.yaml").exists()


def test_plan_gives_batch_and_edge_a_direct_rollout_by_default(profiled: Path) -> None:
    for name, answers in (("edge", ("--target", "edge")), ("batch", ("--traffic", "batch", "--latency-sla-ms", "60000"))):
        spec = yaml.safe_load((_planned(profiled, f"default-{name}", *answers) / "deployment.yaml").read_text())
        assert spec["rollout"]["strategy"] == "direct"
        rule = next(d["rule"] for d in spec["decisions"] if d["decision"] == "rollout")
        assert "no live traffic" in rule or "no served traffic" in rule


def test_batch_trial_scores_the_users_sample(profiled: Path) -> None:
    directory = _planned(profiled, "batch", "--traffic", "batch", "--latency-sla-ms", "60000")
    rows = np.random.default_rng(1).normal(size=(300, 16)).astype(np.float32)
    np.savez(profiled / "sample.npz", features=rows)
    proc = cli("trial", "--out", directory, "--input", "sample.npz", "--json", cwd=profiled)
    assert proc.returncode == 0, proc.stderr
    record = json.loads((directory / "trial.json").read_text())
    assert record["ok"] is True and record["rows"] == 300 and record["rejected"] == 0
    shards = list((directory / "trial" / "output").glob("part-*.jsonl"))
    assert sum(len(s.read_text().splitlines()) for s in shards) == 300
    summary = json.loads(cli("summary", "--out", directory, cwd=profiled).stdout)
    assert summary["trial"]["rows"] == 300 and summary["pattern"] == "batch"


def test_trial_is_not_for_realtime_plans(profiled: Path) -> None:
    directory = _planned(profiled, "rt")
    proc = cli("trial", "--out", directory, cwd=profiled)
    assert proc.returncode == 2
    assert "serve --detach, smoke, loadtest" in proc.stderr


def test_streaming_trial_without_redis_server_is_a_clear_skip(profiled: Path, tmp_path: Path) -> None:
    directory = _planned(profiled, "stream-noredis", "--traffic", "streaming", "--latency-sla-ms", "2000")
    bare = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                           if p and not (Path(p) / "redis-server").exists())
    proc = cli("trial", "--out", directory, cwd=profiled, env={**os.environ, "PATH": bare})
    assert proc.returncode == 0, proc.stderr
    assert "skipped: redis-server is not installed" in proc.stderr
    summary = json.loads(cli("summary", "--out", directory, cwd=profiled).stdout)
    assert "local trial skipped" in " ".join(summary["notes"])


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed (make test installs it as root)")
def test_streaming_trial_round_trips_through_redis_and_the_worker(profiled: Path) -> None:
    directory = _planned(profiled, "stream", "--traffic", "streaming", "--latency-sla-ms", "2000")
    proc = cli("trial", "--out", directory, "--json", cwd=profiled)
    assert proc.returncode == 0, proc.stderr
    record = json.loads((directory / "trial.json").read_text())
    assert record["answered"] == record["sent"] == 20 and record["dead_lettered"] == 0
    assert record["p50_ms"] is not None


def test_summary_names_skipped_checks_and_what_was_not_run(profiled: Path) -> None:
    directory = _planned(profiled, "summary")
    (directory / "validation.json").write_text(json.dumps({"ok": True, "checks": [
        {"validator": "kubernetes-schema", "tool": "kubernetes-validate", "file": "k8s/a.yaml", "verdict": "pass", "message": "ok"},
        {"validator": "promtool-rules", "tool": "promtool", "file": "monitoring/rules.yaml", "verdict": "skip",
         "message": "promtool not installed"}]}))
    summary = json.loads(cli("summary", "--out", directory, cwd=profiled).stdout)
    assert summary["outcome"] == "incomplete" and summary["not_run"] == ["smoke", "loadtest"]
    assert summary["validation"] == {"ok": True, "passed": 1, "failed": 0, "skipped": 1,
                                     "skipped_checks": ["promtool-rules (promtool): promtool not installed"]}
    text = cli("summary", "--out", directory, "--text", cwd=profiled).stdout
    assert "validation: 1 passed, 0 failed, 1 skipped" in text
    assert "skipped: promtool-rules (promtool): promtool not installed" in text
    missing = cli("summary", "--out", profiled / "nowhere", cwd=profiled)
    assert missing.returncode == 1 and "run plan first" in missing.stderr


def test_models_lists_the_projects_model_files(profiled: Path) -> None:
    proc = cli("models", "--json", cwd=profiled)
    assert proc.returncode == 0, proc.stderr
    assert "models/clf.onnx" in json.loads(proc.stdout)["models"]


def test_no_module_names_this_checkouts_path() -> None:
    modules = sorted((REPO / "src" / "deploy_model").rglob("*.py"))
    assert len(modules) > 40
    here = str(REPO.resolve())
    for module in modules:
        assert here not in module.read_text(), module
