"""experiment plan|status|analyze through the CLI, and their inputs: payload logs, labels, arms.

Payload records here are written in the server's schema (onnxserve.payload/v1) by the test;
tests/experiment/test_ab_servers.py makes them from real servers' answers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from deploy_model.cli.main import main
from deploy_model.experiment.payloads import read_payloads
from deploy_model.experiment.sample_size import estimate
from deploy_model.experiment.sequential import always_valid_p

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def record(rid: str, track: str, t: float, outputs: list[dict], status: int = 200, latency: float = 0.01) -> dict:
    return {"schema": "onnxserve.payload/v1", "id": rid, "model_name": "m", "model_version": "2" if track == "canary" else "1",
            "track": track, "endpoint": "infer", "status": status, "received": t, "answered": t + latency,
            "inputs": [], "outputs": outputs}


def label_output(value: int) -> list[dict]:
    return [{"name": "label", "datatype": "INT64", "shape": [1], "data": [value]},
            {"name": "probabilities", "datatype": "FP32", "shape": [1, 2], "data": [0.5, 0.5]}]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict | None, str]:
    code = main(["experiment", *args])
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if "--json" in args and captured.out.strip() else None, captured.err


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_plan_prints_the_estimate_and_refuses_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    code, doc, _ = run(capsys, "plan", "--traffic-rps", "3", "--baseline", "0.9", "--mde", "0.02", "--split", "0.2", "--json")
    expected = estimate(traffic_rps=3, baseline=0.9, mde=0.02, split=0.2)
    assert code == 0 and doc is not None
    assert (doc["n_a"], doc["n_b"], doc["duration_seconds"]) == (expected.n_a, expected.n_b, expected.duration_seconds)
    assert doc["duration_hours"] == round(expected.duration_seconds / 3600, 2)
    code, _, err = run(capsys, "plan", "--traffic-rps", "3", "--mde", "0.02")
    assert code == 1 and "baseline rate" in err and "standard deviation" in err and len(err.strip().splitlines()) == 1
    assert main(["experiment", "plan", "--traffic-rps", "3", "--baseline", "0.9", "--mde", "0.02"]) == 0
    text = capsys.readouterr().out
    size = estimate(traffic_rps=3, baseline=0.9, mde=0.02)
    assert f"per arm: A {size.n_a}, B {size.n_b} labelled requests" in text and "h (" in text


def test_status_replays_hourly_looks_and_says_whether_to_continue(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(5)
    rows, labels = [], []
    # Five hours of traffic, B right 80% of the time and A 70%.
    for i in range(1000):
        track = "canary" if rng.random() < 0.5 else "stable"
        right = rng.random() < (0.8 if track == "canary" else 0.7)
        rows.append(record(f"r{i}", track, T0 + i * 18.0, label_output(int(right))))
        labels.append({"request_id": f"r{i}", "label": 1})
    log = write_jsonl(tmp_path / "payloads.jsonl", rows)
    truth = write_jsonl(tmp_path / "labels.jsonl", labels)
    out = tmp_path / "deploy"
    out.mkdir()
    code, doc, _ = run(capsys, "status", "--payloads", str(log), "--labels", str(truth), "--mde", "0.05", "--out", str(out), "--json")
    assert code == 0 and doc is not None
    history = doc["sequential"]["history"]
    assert len(history) == doc["sequential"]["looks"] == 5
    assert [h["at"] for h in history[:4]] == [T0 + 0.01 + 3600 * k for k in range(1, 5)]
    # The replayed p-values are the mSPRT's on each look's cumulative counts.
    correct = {r["id"]: r["outputs"][0]["data"][0] for r in rows}
    diffs, variances = [], []
    for h in history:
        at = h["at"] if h["at"] is not None else np.inf
        a = [correct[r["id"]] for r in rows if r["track"] == "stable" and r["answered"] <= at]
        b = [correct[r["id"]] for r in rows if r["track"] == "canary" and r["answered"] <= at]
        pooled = (sum(a) + sum(b)) / (len(a) + len(b))
        diffs.append(np.mean(b) - np.mean(a))
        variances.append(pooled * (1 - pooled) * (1 / len(a) + 1 / len(b)))
        assert (h["n_a"], h["n_b"]) == (len(a), len(b))
    expected = always_valid_p(np.array(diffs), np.array(variances), 0.05)
    assert [h["p_value"] for h in history] == pytest.approx(expected.tolist(), rel=1e-9)
    assert doc["decision"].startswith("stop: B better") == (doc["verdict"] == "B better")
    assert doc["decision"].startswith(("stop:", "continue"))
    assert json.loads((out / "experiment.json").read_text())["verb"] == "status"


def test_error_metric_for_a_regressor_is_welch_on_absolute_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(9)
    rows, labels, errors = [], [], {"stable": [], "canary": []}
    for i in range(300):
        track = ("stable", "canary")[i % 2]
        truth = float(rng.normal(10, 3))
        prediction = truth + float(rng.normal(0, 1.0 if track == "stable" else 1.6))
        rows.append(record(f"r{i}", track, T0 + i, [{"name": "y", "datatype": "FP32", "shape": [1, 1], "data": [prediction]}]))
        labels.append(f"r{i},{truth!r}")
        errors[track].append(abs(prediction - truth))
    (tmp_path / "labels.csv").write_text("request_id,label\n" + "\n".join(labels) + "\n")
    log = write_jsonl(tmp_path / "p.jsonl", rows)
    code, doc, _ = run(capsys, "analyze", "--payloads", str(log), "--labels", str(tmp_path / "labels.csv"), "--metric", "error", "--json")
    assert code == 0 and doc is not None
    ref = sps.ttest_ind(errors["canary"], errors["stable"], equal_var=False)
    assert doc["fixed_horizon"]["p_value"] == pytest.approx(ref.pvalue, rel=1e-8)
    assert doc["estimates"]["A"] == pytest.approx(np.mean(errors["stable"]))
    assert doc["rmse"]["B"] == pytest.approx(np.sqrt(np.mean(np.square(errors["canary"]))), rel=1e-6)
    assert doc["verdict"] == "B worse"  # larger errors: lower is better for this metric


def test_latency_metric_is_the_canary_judgement(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(2)
    slow = [record(f"r{i}", ("stable", "canary")[i % 2], T0 + i, label_output(1),
                   latency=float(rng.lognormal(np.log(0.02 if i % 2 else 0.01), 0.3))) for i in range(200)]
    code, doc, _ = run(capsys, "analyze", "--payloads", str(write_jsonl(tmp_path / "slow.jsonl", slow)), "--metric", "latency", "--json")
    assert code == 0 and doc is not None and doc["canary_judgement"] == "fail" and doc["verdict"] == "B worse"
    lat = {t: [r["answered"] - r["received"] for r in slow if r["track"] == t] for t in ("stable", "canary")}
    ref = sps.mannwhitneyu(lat["canary"], lat["stable"], method="asymptotic")
    assert doc["checks"]["latency"]["p_value"] == pytest.approx(ref.pvalue, rel=1e-9)
    same = [record(f"r{i}", ("stable", "canary")[i % 2], T0 + i, label_output(1), latency=float(rng.lognormal(np.log(0.01), 0.3)))
            for i in range(200)]
    code, doc, _ = run(capsys, "analyze", "--payloads", str(write_jsonl(tmp_path / "same.jsonl", same)), "--metric", "latency", "--json")
    assert code == 0 and doc is not None and doc["canary_judgement"] == "pass"
    few = same[:10]
    code, doc, _ = run(capsys, "analyze", "--payloads", str(write_jsonl(tmp_path / "few.jsonl", few)), "--metric", "latency", "--json")
    assert doc is not None and doc["canary_judgement"] == "inconclusive" and "fewer than 20" in doc["reasons"][0]


def test_payload_folder_with_rotated_files_and_a_torn_last_line(tmp_path: Path) -> None:
    folder = tmp_path / "log"
    folder.mkdir()
    write_jsonl(folder / "payloads.jsonl.1", [record("a", "stable", T0, label_output(1))])
    (folder / "payloads.jsonl").write_text(json.dumps(record("b", "canary", T0 + 1, label_output(0))) + "\n{\"id\": \"c\", \"tra")
    (folder / "notes.txt").write_text("not a log")
    log = read_payloads([folder])
    assert sorted(r.request_id for r in log.records) == ["a", "b"]
    assert log.skipped_lines == 1 and len(log.files) == 2
    iso = read_payloads([write_jsonl(tmp_path / "iso.jsonl", [{"id": "x", "track": "stable", "received": "2026-01-01T00:00:00Z",
                                                                "answered": "2026-01-01T00:00:00.250Z", "status": 503}])])
    assert iso.records[0].latency_s == pytest.approx(0.25) and iso.records[0].ok is False
    millis = read_payloads([write_jsonl(tmp_path / "ms.jsonl", [{"id": "y", "received": T0 * 1000, "answered": T0 * 1000 + 5}])])
    assert millis.records[0].received == pytest.approx(T0) and millis.records[0].latency_s == pytest.approx(0.005, abs=1e-6)


@pytest.mark.parametrize(("setup", "args", "words"), [
    ("none", ["--payloads", "{d}/missing.jsonl", "--labels", "{d}/labels.csv"], "missing.jsonl does not exist"),
    ("conflict", ["--payloads", "{d}/p.jsonl", "--labels", "{d}/labels.csv"], "labelled 1 before and 0 now"),
    ("ok", ["--payloads", "{d}/p.jsonl"], "needs ground truth: give --labels"),
    ("three", ["--payloads", "{d}/p.jsonl", "--labels", "{d}/labels.csv"], "cannot tell the two arms apart"),
    ("badcsv", ["--payloads", "{d}/p.jsonl", "--labels", "{d}/labels.csv"], "must name request_id and label"),
    ("ok", ["--payloads", "{d}/p.jsonl", "--labels", "{d}/labels.csv", "--control", "stable", "--treatment", "blue"],
     "no logged request of 'blue'"),
])
def test_bad_input_is_one_line_exit_1_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         setup: str, args: list[str], words: str) -> None:
    tracks = ("stable", "canary", "blue") if setup == "three" else ("stable", "canary")
    write_jsonl(tmp_path / "p.jsonl", [record(f"r{i}", tracks[i % len(tracks)], T0 + i, label_output(1)) for i in range(30)])
    labels = "request_id,label\n" + "".join(f"r{i},1\n" for i in range(30))
    if setup == "conflict":
        labels += "r3,0\n"
    if setup == "badcsv":
        labels = "rid,truth\nr1,1\n"
    (tmp_path / "labels.csv").write_text(labels)
    out = tmp_path / "deploy"
    out.mkdir()
    code, doc, err = run(capsys, "analyze", *[a.format(d=tmp_path) for a in args], "--out", str(out), "--json")
    assert code == 1 and words in err and doc is not None and doc["ok"] is False
    assert err.strip().splitlines()[0].startswith("experiment analyze: error:")
    assert list(out.iterdir()) == []


def test_hashed_outputs_cannot_be_scored_and_say_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hashed = [{"name": "probabilities", "datatype": "FP32", "shape": [1, 1000], "sha256": "ab" * 32, "nbytes": 4000}]
    write_jsonl(tmp_path / "p.jsonl", [record(f"r{i}", ("stable", "canary")[i % 2], T0 + i, hashed) for i in range(10)])
    (tmp_path / "l.csv").write_text("request_id,label\n" + "".join(f"r{i},3\n" for i in range(10)))
    code, _, err = run(capsys, "analyze", "--payloads", str(tmp_path / "p.jsonl"), "--labels", str(tmp_path / "l.csv"))
    assert code == 1 and "no logged request could be scored" in err and "10 labelled requests had no usable output" in err


def test_summary_shows_the_experiment_written_with_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from deploy_model.report.summary import build_summary, summary_lines

    rows = [record(f"r{i}", ("stable", "canary")[i % 2], T0 + i, label_output(int(i % 2 == 1 or i % 4 == 0)))
            for i in range(400)]
    write_jsonl(tmp_path / "p.jsonl", rows)
    (tmp_path / "l.csv").write_text("request_id,label\n" + "".join(f"r{i},1\n" for i in range(400)))
    out = tmp_path / "deploy"
    out.mkdir()
    (out / "deployment.yaml").write_text("serving: {pattern: realtime, protocol: rest}\nrollout: {strategy: canary}\n")
    code, doc, _ = run(capsys, "analyze", "--payloads", str(tmp_path / "p.jsonl"), "--labels", str(tmp_path / "l.csv"),
                       "--out", str(out), "--json")
    assert code == 0 and doc is not None and doc["verdict"] == "B better"  # B always right, A half the time
    summary = build_summary(out)
    assert summary["experiment"]["verdict"] == "B better" and summary["experiment"]["n"] == {"A": 200, "B": 200}
    assert summary["experiment"]["p_value"] == doc["sequential"]["p_value"]
    assert any(line.startswith("experiment (accuracy): B better, always-valid p=") for line in summary_lines(summary))
