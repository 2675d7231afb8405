"""loadtest on a slow model: each level runs to its minimum count (or its time cap), a percentile from
too few samples is never given as one, and a verdict without enough requests says so."""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from pathlib import Path

import pytest
from measure_helpers import cli, plan_dir, png_size, server_available
from slow_model import slow_model

from deploy_model.measure.load_levels import Level, closed_loop, open_loop
from deploy_model.measure.load_verdict import NOT_JUDGED, verdict
from deploy_model.measure.percentiles import samples_needed
from deploy_model.report.writer import REPORT_FILE, run_report

needs_server = pytest.mark.skipif(server_available() is not None, reason=str(server_available()))
SLO = {"latency_p95_ms": 100.0, "target_rps": 10.0, "max_error_ratio": 0.01}
MIN = 6  # small, so the test stays short; far below the 20 a p95 needs


class SlowTarget:
    """A stand-in Target whose every answer takes `ms` (no server: the level's bounds only)."""

    def __init__(self, ms: float) -> None:
        self.ms = ms
        self.lock = threading.Lock()

    def client(self) -> _Client:
        return _Client()

    def send(self, client: object) -> str:
        time.sleep(self.ms / 1000)
        return "200"


class _Client:
    def __enter__(self) -> _Client:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class Quiet:
    def update(self, *args: object) -> None:
        return None


def _no_p95_from_too_few(lv: dict) -> None:
    """A level's percentiles: each a figure with enough samples behind it, else null with its note."""
    assert lv["samples"] == lv["ok"]
    for q in (50, 95, 99):
        if lv["samples"] >= samples_needed(q):
            assert lv[f"p{q}_ms"] is not None and f"p{q}_note" not in lv
        else:
            assert lv[f"p{q}_ms"] is None and lv[f"p{q}_note"] == f"{lv['samples']} samples: too few for a p{q}"


def test_a_slow_level_runs_on_to_its_minimum_and_stops_at_its_cap() -> None:
    target = SlowTarget(150)
    # Ran past its 0.2 s to its minimum and stopped there: one client sends exactly MIN (~0.9 s);
    # run on to the 30 s cap it would send ~200. A count, not a clock (the cap is 30x the need).
    reached = closed_loop(target, 1, 0.2, 10_000, Quiet(), min_requests=MIN, cap_s=30.0).summary()
    assert reached["requests"] == MIN, reached
    # The cap bounds a level that never reaches its minimum: not before the cap (a protocol bound:
    # load only lengthens it), and 2 clients of 150 ms answers fit at most 14 requests in 1 s.
    capped = closed_loop(target, 2, 0.2, 10_000, Quiet(), min_requests=10_000, cap_s=1.0).summary()
    assert capped["seconds"] >= 1.0 and capped["requests"] < samples_needed(95), capped
    _no_p95_from_too_few(capped)
    assert capped["p95_note"] == f"{capped['samples']} samples: too few for a p95"
    # The open loop stretches its schedule to the minimum (10 req/s for 0.2 s would be 2 requests).
    stretched = open_loop(SlowTarget(10), 10.0, 0.2, 4, Quiet(), min_requests=MIN, cap_s=10.0).summary()
    assert stretched["requests"] == MIN


def test_a_level_of_nineteen_has_no_p95_and_the_verdict_does_not_judge_it() -> None:
    level = Level("closed", 1, None, 20.0)
    for ms in range(19):
        level.record("200", 800.0 + ms)
    summary = level.summary()
    assert summary["samples"] == 19 and summary["p50_ms"] == 809.0
    assert summary["p95_ms"] is None and summary["p95_note"] == "19 samples: too few for a p95"
    decision = verdict([summary], SLO)
    assert decision["go"] is False and decision["judged"] is False and decision["reason"].startswith(NOT_JUDGED)
    # Twenty answers make a p95, and it is judged (a miss here); the short level beside it is named.
    level.record("200", 900.0)
    judged = verdict([level.summary(), summary], SLO)
    assert judged["judged"] and not judged["go"] and "best p95 was" in judged["reason"]
    assert "not judged for too few requests: concurrency 1 (19 samples: too few for a p95)" in judged["reason"]


@needs_server
@pytest.mark.parametrize("engine", ["python", pytest.param("wrk", marks=pytest.mark.skipif(
    shutil.which("wrk") is None, reason="wrk is not installed"))])
def test_a_slow_model_gets_its_minimum_per_level_and_no_p95_from_too_few(tmp_path: Path, engine: str) -> None:
    from deploy_model.measure.serve import ServerProcess

    directory = plan_dir(slow_model(tmp_path / "slow.onnx"), tmp_path / "slow", latency_sla_ms=50,
                         requests_per_second=10)
    levels = "1,2" if engine == "python" else "1"
    with ServerProcess(directory) as server:
        done = cli("loadtest", "--out", directory, "--url", server.url, "-c", levels, "-s", "0.5", "--min-requests",
                   str(MIN), "--engine", engine, "--json", timeout=150)
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((directory / "loadtest.json").read_text())
    assert record["min_requests_per_level"] == MIN and record["level_cap_seconds"] == 30.0
    for lv in record["levels"]:
        assert lv["requests"] >= MIN, lv  # its minimum, well within the 30 s cap
        _no_p95_from_too_few(lv)
        # A few hundred ms each: under 20 samples. The time bound is the protocol's own (the 30 s cap
        # plus a last request's 10 s timeout), 20x what the level takes, so load cannot flip it.
        assert lv["p95_ms"] is None and lv["seconds"] < 30 + 11
    assert record["verdict"]["judged"] is False and record["verdict"]["reason"].startswith(NOT_JUDGED)
    assert json.loads(done.stdout)["summary"]["verdict"] == NOT_JUDGED
    assert not re.search(r"p95 [\d.]+ ms", done.stderr)  # the progress lines print no p95 figure either
    assert "p95 n/a (" in done.stderr and "samples: too few for a p95)" in done.stderr
    assert png_size(directory / "loadtest.png")[0] > 600
    run_report(directory)
    text = (directory / REPORT_FILE).read_text()
    assert "**SLA verdict: not enough requests to judge**" in text and "too few samples" in text
    # The plan already said that no replica meets 50 ms: that is the first reason for the NO-GO.
    assert "**Outcome: NO-GO.** plan: the p95 SLA of 50 ms cannot be met by any number of replicas" in text
