"""loadtest: a short real sweep and an open-loop run against the real server; verdict rules; bounds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from measure_helpers import cli, cli_json, fresh_copy, png_size, server_available

from deploy_model.errors import StageError
from deploy_model.loadchart import draw_chart
from deploy_model.loadtest import parse_levels, verdict

needs_server = pytest.mark.skipif(server_available() is not None, reason=str(server_available()))
SLO = {"latency_p95_ms": 50.0, "target_rps": 100.0, "max_error_ratio": 0.01}


def level(concurrency: int, rps: float, p95: float | None, errors: int = 0, requests: int = 1000) -> dict:
    return {"mode": "closed", "concurrency": concurrency, "target_rps": None, "rps": rps, "p50_ms": p95, "p95_ms": p95,
            "p99_ms": p95, "errors": errors, "requests": requests, "error_ratio": errors / requests}


ENGINES = ["python", pytest.param("wrk", marks=pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed"))]


@needs_server
@pytest.mark.parametrize("engine", ENGINES)
def test_closed_loop_sweep_measures_each_level_and_draws_the_chart(served: dict, engine: str) -> None:
    result = cli_json("loadtest", "--out", served["dir"], "--concurrency", "1,2", "--seconds", "0.5", "--engine", engine)
    record = json.loads((served["dir"] / "loadtest.json").read_text())
    assert record["engine"] == engine
    assert [lv["concurrency"] for lv in record["levels"]] == [1, 2]
    for lv in record["levels"]:
        assert lv["requests"] > 0 and lv["ok"] == lv["requests"] and lv["errors"] == 0
        assert lv["by_status"] == {"200": lv["requests"]}
        assert lv["rps"] > 0 and 0 < lv["p50_ms"] <= lv["p95_ms"] <= lv["p99_ms"] <= lv["max_ms"]
        assert 0.4 < lv["seconds"] < 5
    assert record["endpoint"] == served["url"] + "/v2/models/tabular-classifier/infer"
    assert result["summary"]["verdict"] in ("go", "no-go") and record["verdict"]["reason"]
    width, height = png_size(served["dir"] / "loadtest.png")
    assert width > 600 and height > 300


@needs_server
def test_open_loop_sends_the_scheduled_count(served: dict, tmp_path: Path) -> None:
    directory = fresh_copy(served["dir"], tmp_path / "d")
    result = cli_json("loadtest", "--out", directory, "--url", served["url"], "--rate", "100", "--seconds", "1", "--concurrency", "8", "--no-chart")
    (lv,) = result["result"]["levels"]
    assert lv["mode"] == "open" and lv["target_rps"] == 100 and lv["requests"] == 100
    assert 50 < lv["rps"] <= 110
    assert not (directory / "loadtest.png").exists()


@needs_server
def test_request_cap_bounds_a_level(served: dict, tmp_path: Path) -> None:
    directory = fresh_copy(served["dir"], tmp_path / "d")
    result = cli_json("loadtest", "--out", directory, "--url", served["url"], "-c", "4", "-s", "5", "--max-requests", "40", "--no-chart",
                      "--engine", "python")
    (lv,) = result["result"]["levels"]
    assert lv["requests"] == 40 and lv["seconds"] < 4


@needs_server
def test_enforce_sla_turns_no_go_into_exit_1(served: dict, tmp_path: Path) -> None:
    directory = fresh_copy(served["dir"], tmp_path / "d")
    spec = (directory / "deployment.yaml").read_text()
    (directory / "deployment.yaml").write_text(spec.replace("target_rps: 100.0", "target_rps: 1000000.0"))
    done = cli("loadtest", "--out", directory, "--url", served["url"], "-c", "1", "-s", "0.3", "--no-chart", "--enforce-sla")
    assert done.returncode == 1 and "no-go" in done.stderr and "below the target 1,000,000" in done.stderr


def test_bad_levels_and_unreachable_url_are_refused(tabular_plan: Path, tmp_path: Path) -> None:
    with pytest.raises(StageError, match="1,4,16"):
        parse_levels("one,two")
    with pytest.raises(StageError, match="from 1 to 512"):
        parse_levels("0,4")
    assert parse_levels("1, 8,32") == [1, 8, 32]
    directory = fresh_copy(tabular_plan, tmp_path / "d")
    done = cli("loadtest", "--out", directory, "-c", "x")
    assert done.returncode == 1 and "--concurrency" in done.stderr
    from deploy_model.serving import free_port

    gone = cli("loadtest", "--out", directory, "--url", f"http://127.0.0.1:{free_port()}", "--timeout", "1")
    assert gone.returncode == 1 and "warm-up" in gone.stderr
    engine = cli("loadtest", "--out", directory, "--engine", "wrk", "--rate", "10", "--url", "http://127.0.0.1:1")
    assert engine.returncode == 1 and "open loop" in engine.stderr
    assert not (directory / "loadtest.json").exists()


def test_verdict_picks_the_best_level_within_the_sla() -> None:
    go = verdict([level(1, 80, 2.0), level(4, 300, 9.0), level(16, 500, 80.0)], SLO)
    assert go["go"] and go["capacity_rps_within_sla"] == 300 and go["best_level"] == "concurrency 4"
    slow = verdict([level(1, 500, 70.0)], SLO)
    assert not slow["go"] and "best p95 was 70.0 ms" in slow["reason"]
    short = verdict([level(1, 60, 3.0)], SLO)
    assert not short["go"] and "below the target 100" in short["reason"]
    failing = verdict([level(4, 300, 5.0, errors=50)], SLO)
    assert not failing["go"] and "errors <= 1.0%" in failing["reason"]
    nothing = verdict([level(1, 0, None, errors=10, requests=10)], SLO)
    assert not nothing["go"] and "no request succeeded" in nothing["reason"]


def test_chart_is_a_png_with_both_panels(tmp_path: Path) -> None:
    levels = [level(1, 80, 2.0), level(4, 300, 9.0, errors=3)]
    for lv in levels:
        lv["p99_ms"] = lv["p95_ms"] * 1.5
    path = draw_chart(levels, verdict(levels, SLO), tmp_path / "chart.png", title="t")
    width, height = png_size(path)
    assert (width, height) == (1210, 462)
