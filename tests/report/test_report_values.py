"""report: a stage's value is data (a detail quoting JSON `null` is written as is), percentiles from
too few samples and a plan no replica can meet are named, and an unfilled value is still refused."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from deploy_model.common.errors import StageError
from deploy_model.report import writer
from deploy_model.report.summary import build_summary, summary_lines
from deploy_model.report.writer import REPORT_FILE, run_report

LOADING = '{"status":"loading","model":null,"detail":null}'


def _smoke(message: str) -> dict:
    return {"ok": False, "passed": 1, "failed": ["health"], "seconds": 0.1, "checks": [
        {"name": "live", "ok": True, "message": "GET /v2/health/live answered 200", "ms": 1.0},
        {"name": "health", "ok": False, "message": message, "ms": 2.0}]}


def test_a_detail_that_contains_null_is_written_not_refused(planned: Callable[..., Path]) -> None:
    directory = planned()
    (directory / "smoke.json").write_text(json.dumps(_smoke(f"GET /v2/health/ready: expected HTTP 200, got 503: {LOADING}")))
    result = run_report(directory)
    text = (directory / REPORT_FILE).read_text()
    assert result["summary"]["outcome"] == "NO-GO"
    assert LOADING in text  # quoted as the server said it, null and all
    for word in ("None", "nan", "TODO"):  # any word inside a value is data
        (directory / "smoke.json").write_text(json.dumps(_smoke(f"answer {{'x': {word}}} from the server")))
        run_report(directory)


def test_an_unfilled_value_is_still_refused(planned: Callable[..., Path], monkeypatch: pytest.MonkeyPatch) -> None:
    directory = planned()
    gather = writer.gather

    def unfilled(*args: object, **kwargs: object) -> dict:
        facts = gather(*args, **kwargs)
        facts["name"] = None  # `# Model deployment: None`: a value that was never filled
        return facts

    monkeypatch.setattr(writer, "gather", unfilled)
    with pytest.raises(StageError, match="unfilled markers"):
        run_report(directory)
    assert not (directory / REPORT_FILE).exists()


def _level(concurrency: int, samples: int, p50: float | None, p95: float | None, p99: float | None) -> dict:
    level = {"mode": "closed", "concurrency": concurrency, "target_rps": None, "seconds": 12.0, "requests": samples,
             "ok": samples, "errors": 0, "error_ratio": 0.0, "by_status": {"200": samples}, "rps": samples / 12.0,
             "samples": samples, "p50_ms": p50, "p95_ms": p95, "p99_ms": p99, "max_ms": 900.0, "mean_ms": 870.0}
    for q, value in ((50, p50), (95, p95), (99, p99)):
        if value is None:
            level[f"p{q}_note"] = f"{samples} samples: too few for a p{q}"
    return level


def test_percentiles_from_too_few_samples_are_named_in_the_report_and_summary(planned: Callable[..., Path]) -> None:
    from deploy_model.measure.load_verdict import verdict

    directory = planned()
    levels = [_level(1, 19, 872.0, None, None), _level(4, 1, None, None, None)]
    slo = {"latency_p95_ms": 100.0, "target_rps": 100.0, "max_error_ratio": 0.01}
    decision = verdict(levels, slo)
    assert decision["judged"] is False and decision["reason"].startswith("not enough requests to judge")
    record = {"stage": "loadtest", "endpoint": "http://127.0.0.1:1/v2/models/m/infer", "mode": "closed", "batch": 1,
              "inputs": "synthetic", "seconds_per_level": 2.0, "min_requests_per_level": 100, "level_cap_seconds": 30.0,
              "request_bytes": 100, "levels": levels, "slo": slo, "verdict": decision, "client": "test",
              "where": "here", "engine": "python"}
    (directory / "loadtest.json").write_text(json.dumps(record))
    result = run_report(directory)
    text = (directory / REPORT_FILE).read_text()
    assert "| concurrency 1 | 1.6 | 872.00 | too few samples | too few samples | 900.00 | 19 | 0 |" in text
    assert "- concurrency 1: 19 samples: too few for a p95 (nor a p99)." in text
    assert "- concurrency 4: 1 samples: too few for a p50 (no percentile)." in text
    assert "**SLA verdict: not enough requests to judge**" in text
    assert result["summary"]["outcome"] == "NO-GO"
    assert any(r.startswith("load test: not enough requests to judge") for r in result["summary"]["reasons"])
    summary = build_summary(directory)
    assert summary["loadtest"]["judged"] is False and summary["loadtest"]["best_level"]["p95_note"]
    assert any(line.startswith("load test: not judged: not enough requests to judge") for line in summary_lines(summary))


def test_a_plan_no_replica_can_meet_is_the_reason_for_no_go(planned: Callable[..., Path]) -> None:
    """deploy's summary and DEPLOYMENT.md: the plan's own finding comes first, whatever was measured."""
    directory = planned(latency_sla_ms=0.2)  # the tabular model's ~0.02 ms + 0.5 ms server overhead
    result = run_report(directory)
    text = (directory / REPORT_FILE).read_text()
    first = result["summary"]["reasons"][0]
    assert result["summary"]["outcome"] == "NO-GO" and first.startswith("plan: the p95 SLA of 0.2 ms cannot be met")
    assert "**Outcome: NO-GO.** plan: the p95 SLA of 0.2 ms cannot be met by any number of replicas" in text
    assert "| latency_feasibility |" in text  # and in the decisions table, with its rule
    summary = build_summary(directory)
    assert summary["outcome"] == "no-go" and summary["problems"][0].startswith("plan: the p95 SLA of 0.2 ms")


def test_the_text_checker_alone_would_have_refused_the_null_detail(planned: Callable[..., Path]) -> None:
    """Why the report checks a skeleton: the words of the written text include the detail's `null`."""
    directory = planned()
    (directory / "smoke.json").write_text(json.dumps(_smoke(LOADING)))
    run_report(directory)
    assert writer.find_placeholders((directory / REPORT_FILE).read_text())
