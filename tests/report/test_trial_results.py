"""The local trial in DEPLOYMENT.md: batch and streaming figures from trial.json, and an outcome that
`summary` gives too; the streaming trial's latency is per message, its start-up recorded apart."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from deploy_model.measure.trial import TRIAL_FILE, run_trial
from deploy_model.report.summary import build_summary
from deploy_model.report.writer import REPORT_FILE, find_placeholders, run_report

# DEPLOYMENT.md's label and `summary`'s outcome for the same evidence.
SAME_OUTCOME = {"GO": "go", "NO-GO": "no-go", "INCOMPLETE": "incomplete", "not measured": "incomplete"}
NO_REDIS = "redis-server is not on PATH: the streaming trial needs it (apt-get install redis-server)"


def _validated(directory: Path) -> None:
    (directory / "validation.json").write_text(json.dumps({"ok": True, "checks": [
        {"validator": "kubernetes-schema", "tool": "kubernetes-validate", "file": "k8s/a.yaml", "verdict": "pass",
         "message": "ok"}]}))


def _report(directory: Path) -> tuple[str, str, dict]:
    """DEPLOYMENT.md's text, its outcome label, and `summary`'s document."""
    result = run_report(directory)
    text = (directory / REPORT_FILE).read_text()
    assert find_placeholders(text) == []
    return text, result["summary"]["outcome"], build_summary(directory)


def _measured(text: str) -> str:
    return text.split("## Measured results", 1)[1].split("## Rollout plan", 1)[0]


@pytest.mark.skipif(shutil.which("redis-server") is None, reason=NO_REDIS)
def test_streaming_trial_times_messages_after_the_start_up_and_the_report_shows_it(
        planned: Callable[..., Path]) -> None:
    directory = planned(traffic="streaming", latency_sla_ms=2000)
    run_trial(directory, None, timeout_s=120)
    record = json.loads((directory / TRIAL_FILE).read_text())
    assert record["ok"] is True and record["answered"] == record["sent"] == record["samples"] == 20
    assert record["dead_lettered"] == 0
    # Start-up (Python, onnxruntime, model load) is a figure of its own beside the messages' figures
    # (measured, reported; which is larger is not judged here: that is a timing race).
    assert record["startup_seconds"] > 0 and record["p50_ms"] > 0
    assert record["p50_ms"] <= record["p95_ms"] and record["messages_per_second"] > 0
    assert "p99_ms" not in record  # 20 samples carry no p99

    _validated(directory)
    text, label, summary = _report(directory)
    assert label == "GO" and SAME_OUTCOME[label] == summary["outcome"] == "go"
    assert f"**Outcome: {label}.**" in text and "local trial passed: 20 of 20 messages answered" in text
    section = _measured(text)
    assert "### Local trial" in section and "**Trial verdict: passed**" in section
    assert f"| {record['startup_seconds']:,.2f} | 20 of 20 | 0 | {record['p50_ms']} | {record['p95_ms']} | 20 |" in section
    assert summary["trial"]["startup_seconds"] == record["startup_seconds"] and summary["trial"]["samples"] == 20


def test_batch_trial_figures_and_outcome_in_the_report(planned: Callable[..., Path], tmp_path: Path) -> None:
    directory = planned(traffic="batch", latency_sla_ms=60000)
    sample = tmp_path / "rows.npz"
    np.savez(sample, features=np.random.default_rng(3).normal(size=(120, 16)).astype(np.float32))
    run_trial(directory, sample)
    record = json.loads((directory / TRIAL_FILE).read_text())
    assert record["ok"] is True and record["rows"] == 120 and record["rejected"] == 0
    # Throughput over the runner's scoring time: its start-up (interpreter, model load) is left out.
    # Two timings, but nested, not raced: scoring is timed inside the runner, the whole run around
    # its process, so the one is part of the other on any host.
    assert 0 < record["scoring_seconds"] < record["seconds"]
    assert record["rows_per_second"] == round(120 / record["scoring_seconds"], 1)

    text, label, summary = _report(directory)
    assert label == "INCOMPLETE" and summary["outcome"] == "incomplete"  # not validated yet
    assert "validation did not run" in text.split("\n## ", 1)[0]
    _validated(directory)
    text, label, summary = _report(directory)
    assert label == "GO" and summary["outcome"] == "go" and summary["report_outcome"] == "GO"
    section = _measured(text)
    assert "Not measured: the batch pattern" in section  # no request path: smoke and load test stay not applicable
    assert (f"| 120 | 0 | {record['scoring_seconds']:,.3f} | {record['seconds']:,.2f} | {record['rows_per_second']:,.1f} "
            "rows/s |") in section
    assert "**Trial verdict: passed**: 120 rows scored, 0 rejected, " in section
    assert "local trial passed: 120 rows scored, 0 rejected" in text.split("\n## ", 1)[0]


@pytest.mark.parametrize(("trial", "label", "says"), [
    (None, "not measured", "Not measured: local trial did not run"),
    ({"pattern": "event-driven", "ok": None, "skipped": "redis-server is not installed here"}, "not measured",
     "local trial skipped: redis-server is not installed here"),
    ({"pattern": "event-driven", "ok": False, "sent": 20, "answered": 3, "dead_lettered": 17,
      "error": "the worker answered 3 of 20 requests (17 dead-lettered)"}, "NO-GO",
     "**Trial verdict: FAILED**: local trial failed: the worker answered 3 of 20 requests (17 dead-lettered)"),
    ({"pattern": "batch", "ok": True, "rows": 5, "rejected": 0}, "not measured", "trial.json is from a batch plan"),
    ({"pattern": "event-driven", "ok": True, "sent": 1, "answered": 1, "dead_lettered": 0, "samples": 1,
      "p50_ms": None, "p50_note": "1 samples: too few for a p50", "p95_ms": None,
      "p95_note": "1 samples: too few for a p95", "startup_seconds": 1.5}, "GO",
     "| 1.50 | 1 of 1 | 0 | n/a (1 samples: too few for a p50) | n/a (1 samples: too few for a p95) | 1 |"),
])
def test_the_report_and_summary_read_a_streaming_trial_alike(planned: Callable[..., Path], trial: dict | None,
                                                              label: str, says: str) -> None:
    directory = planned(traffic="streaming", latency_sla_ms=2000)
    _validated(directory)
    if trial is not None:
        (directory / TRIAL_FILE).write_text(json.dumps(trial))
    text, shown, summary = _report(directory)
    assert shown == label and SAME_OUTCOME[label] == summary["outcome"]
    assert f"**Outcome: {label}.**" in text and says in _measured(text)
