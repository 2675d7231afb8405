import json
import shutil

import pytest
import yaml
from foundation_helpers import run_json, run_script


@pytest.fixture(scope="module")
def profiled(tabular_model, tmp_path_factory):
    """A deployment directory holding the real profile of the tabular example."""
    directory = tmp_path_factory.mktemp("profiled")
    run_json("inspect_model.py", tabular_model, "--out", directory, "--runs", "10")
    return directory


@pytest.fixture()
def workdir(profiled, tmp_path):
    shutil.copy(profiled / "model-profile.json", tmp_path / "model-profile.json")
    return tmp_path


def _spec(directory):
    return yaml.safe_load((directory / "deployment.yaml").read_text())


def _rules(spec):
    return {d["decision"]: d for d in spec["decisions"]}


def test_defaults_give_realtime_canary(workdir):
    result = run_json("plan_deployment.py", "--out", workdir)
    assert result["wrote"] == [str(workdir / "deployment.yaml")]
    spec = _spec(workdir)
    assert spec["api_version"] == "deploy-model/v1"
    assert spec["name"] == "tabular-classifier" and spec["target"] == "kubernetes"
    assert spec["serving"]["pattern"] == "realtime" and spec["serving"]["protocol"] == "rest"
    assert spec["serving"]["device"] == "cpu"  # the CPU wheel: auto finds no GPU provider
    assert spec["rollout"]["strategy"] == "canary"
    assert spec["rollout"]["canary"]["steps"] == [10, 50, 100]
    assert spec["model"]["inputs"][0]["name"] == "features"
    decisions = _rules(spec)
    for key in ("name", "serving_pattern", "protocol", "device", "batching", "resources", "scaling", "rollout"):
        assert decisions[key]["rule"], f"decision {key} has no rule"
    assert spec["scaling"]["min_replicas"] >= 2  # availability floor


def test_latency_critical_and_high_throughput_batches(workdir):
    run_json("plan_deployment.py", "--out", workdir, "--latency-sla-ms", "20", "--rps", "500")
    spec = _spec(workdir)
    assert spec["serving"]["pattern"] == "realtime"
    assert "< 100 ms" in _rules(spec)["serving_pattern"]["rule"]
    assert spec["batching"]["enabled"] is True and spec["batching"]["max_batch_size"] == 32
    assert spec["batching"]["max_batch_delay_ms"] == 1.0  # SLA/20
    assert "high throughput" in _rules(spec)["batching"]["rule"]


def test_low_throughput_has_no_batching_delay(workdir):
    run_json("plan_deployment.py", "--out", workdir, "--rps", "5")
    spec = _spec(workdir)
    assert spec["batching"]["enabled"] is False and spec["batching"]["max_batch_delay_ms"] == 0.0


def test_not_latency_critical_batch_traffic(workdir):
    run_json("plan_deployment.py", "--out", workdir, "--latency-sla-ms", "5000", "--traffic", "batch")
    spec = _spec(workdir)
    assert spec["serving"]["pattern"] == "batch"
    assert spec["batch"]["schedule"] == "0 2 * * *"
    assert "batch inference" in _rules(spec)["serving_pattern"]["rule"]


def test_not_latency_critical_streaming_is_queue_workers(workdir):
    run_json("plan_deployment.py", "--out", workdir, "--latency-sla-ms", "1000", "--traffic", "streaming")
    spec = _spec(workdir)
    assert spec["serving"]["pattern"] == "event-driven"
    assert "message queue + workers" in _rules(spec)["serving_pattern"]["rule"]


def test_edge_quantizes_first(workdir):
    run_json("plan_deployment.py", "--out", workdir, "--target", "edge")
    spec = _spec(workdir)
    assert spec["serving"]["pattern"] == "edge" and spec["edge"] == {"quantize": True}
    assert "quantize" in _rules(spec)["quantize"]["rule"]


def test_answers_file_and_flags_override(workdir):
    answers = workdir / "answers.yaml"
    answers.write_text("rollout: shadow\nshadow_sample_rate: 0.25\nname: fraud-scorer\nrequests_per_second: 10\n")
    run_json("plan_deployment.py", "--out", workdir, "--answers", answers, "--set", "namespace=risk", "--rps", "80")
    spec = _spec(workdir)
    assert spec["name"] == "fraud-scorer" and spec["kubernetes"]["namespace"] == "risk"
    assert spec["rollout"]["strategy"] == "shadow" and spec["rollout"]["shadow"]["sample_rate"] == 0.25
    assert spec["slo"]["target_rps"] == 80  # the flag wins over the file


def test_every_problem_listed_at_once(workdir):
    answers = workdir / "answers.yaml"
    answers.write_text("target: mars\nrequests_per_second: -3\ncanary_weight: 300\nname: Bad_Name\ncolour: blue\n")
    proc = run_script("plan_deployment.py", "--out", workdir, "--answers", answers, "--json")
    assert proc.returncode == 1
    result = json.loads(proc.stdout)
    problems = "\n".join(result["problems"])
    assert len(result["problems"]) == 5, problems
    assert "target: got 'mars'; expected one of 'kubernetes', 'serverless', 'edge' or 'compose'" in problems
    assert "requests_per_second" in problems and "-3" in problems
    assert "canary_weight" in problems and "300" in problems
    assert "not a DNS-1123 label" in problems
    assert "unknown key 'colour'" in problems
    assert not (workdir / "deployment.yaml").exists()
    assert "Traceback" not in proc.stderr


def test_answers_not_a_mapping(workdir):
    answers = workdir / "answers.yaml"
    answers.write_text("- kubernetes\n- canary\n")
    proc = run_script("plan_deployment.py", "--out", workdir, "--answers", answers)
    assert proc.returncode == 1 and "must be a mapping" in proc.stderr


def test_missing_profile_says_run_inspect(tmp_path):
    proc = run_script("plan_deployment.py", "--out", tmp_path)
    assert proc.returncode == 1
    assert "model profile not found" in proc.stderr and "model-profile.json" in proc.stderr


def test_bad_flag_is_usage_error(workdir):
    proc = run_script("plan_deployment.py", "--out", workdir, "--set", "novalue")
    assert proc.returncode == 2 and "KEY=VALUE" in proc.stderr
