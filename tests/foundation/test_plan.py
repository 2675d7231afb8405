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


def _with_latency(directory, *rows):
    """Replace the profile's measured latency: rows of (batch size, p50 ms, p95 ms)."""
    path = directory / "model-profile.json"
    profile = json.loads(path.read_text())
    profile["latency"] = {"batches": [{"batch_size": b, "p50_ms": p50, "p95_ms": p95} for b, p50, p95 in rows]}
    path.write_text(json.dumps(profile))


def _plan_in_process(directory, **answers):
    from deploy_model.plan.planner import run_plan

    run_plan(directory, None, answers)
    return _spec(directory)


def test_low_throughput_keeps_multi_row_requests(workdir):
    spec = _plan_in_process(workdir, requests_per_second=5)
    assert spec["batching"]["enabled"] is False and spec["batching"]["max_batch_size"] == 1
    assert "requests of many rows are still accepted" in _rules(spec)["batching"]["rule"]
    # max_batch_size bounds what the server combines, not the rows one request carries: nothing in
    # the spec or the rendered bundle sets a per-request row limit.
    from deploy_model.bundle.render import run_render

    run_render(workdir)
    bundle = "\n".join(p.read_text(errors="replace") for p in workdir.rglob("*") if p.is_file() and p.suffix in (".yaml", ".yml", ""))
    assert "MAX_REQUEST_ROWS" not in bundle and "max_request_rows" not in bundle


def test_dynamic_batching_never_past_the_sla(workdir):
    # batch 32 measured at 13x the 20 ms SLA: no batching up to 32.
    _with_latency(workdir, (1, 2.0, 2.5), (32, 240.0, 260.0))
    spec = _plan_in_process(workdir, requests_per_second=500, latency_sla_ms=20)
    assert spec["batching"]["enabled"] is False and spec["batching"]["max_batch_size"] == 1
    rule = _rules(spec)["batching"]["rule"]
    assert "batch 32: 260 ms" in rule and "none fits the 20 ms SLA" in rule and "batching off" in rule
    # The largest measured batch that fits is chosen.
    _with_latency(workdir, (1, 2.0, 2.5), (8, 9.0, 11.0), (32, 240.0, 260.0))
    spec = _plan_in_process(workdir, requests_per_second=500, latency_sla_ms=20)
    assert spec["batching"]["enabled"] is True and spec["batching"]["max_batch_size"] == 8
    assert "batch 8 fits the 20 ms SLA with a 1 ms delay" in _rules(spec)["batching"]["rule"]
    # The capacity estimate uses the chosen batch: 1000 / (9/8 + 0.5) = 615 -> 620 (2 digits) req/s.
    assert spec["scaling"]["estimated_rps_per_replica"] == 620


def test_replicas_follow_measured_capacity_with_headroom_and_a_floor(workdir):
    _with_latency(workdir, (1, 9.5, 12.0))  # 1000 / (9.5 + 0.5) = 100 req/s per replica
    spec = _plan_in_process(workdir, requests_per_second=20)
    assert spec["scaling"]["min_replicas"] == 2  # the availability floor
    spec = _plan_in_process(workdir, requests_per_second=300)
    rule = _rules(spec)["scaling"]["rule"]
    assert spec["scaling"]["min_replicas"] == 5 and "ceil(300 / 60) = 5 replica(s)" in rule  # at 60% of 100 req/s
    assert "at least 2 for availability" in rule


def test_replicas_are_stable_across_noisy_re_plans(workdir):
    """inspect's p50 moving by +-20% between runs does not move the plan's replicas."""
    counts, rules = [], []
    for p50 in (9.5, 11.5, 8.0, 10.5, 9.0):  # 100, 83, 118, 91, 105 req/s per replica
        _with_latency(workdir, (1, p50, p50 * 1.2))
        spec = _plan_in_process(workdir, requests_per_second=300)
        counts.append(spec["scaling"]["min_replicas"])
        rules.append(_rules(spec)["scaling"]["rule"])
    assert counts == [5] * 5, counts
    # 83 req/s alone would give ceil(300 / 49.8) = 7: the previous plan's 5 is within 25% of the need.
    assert "= 7 replica(s); kept at the previous plan's 5 (the need 6.02 is within 25% of it" in rules[1]
    # A real change (the model got 3x slower) does move them.
    _with_latency(workdir, (1, 29.5, 35.0))
    assert _plan_in_process(workdir, requests_per_second=300)["scaling"]["min_replicas"] == 16  # ceil(300 / 19.8)
