"""deploy end to end on the example: every stage, a complete report, the server always stopped."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from measure_helpers import REPO, cli, pid_alive, png_size, server_available
from signature_models import build

from deploy_model.report.writer import find_placeholders

pytestmark = [pytest.mark.slow, pytest.mark.skipif(server_available() is not None, reason=str(server_available()))]


def _answers(tmp_path: Path, **values: object) -> Path:
    path = tmp_path / "answers.yaml"
    path.write_text(yaml.safe_dump({"latency_sla_ms": 50, "requests_per_second": 100, **values}))
    return path


def test_deploy_runs_every_stage_and_writes_a_complete_report(tabular_model: Path, tmp_path: Path) -> None:
    # A relative --out, as `make demo` passes it: every stage must resolve it from the caller's cwd.
    out = tmp_path / "deploy" / "tabular"
    done = cli("deploy", tabular_model, "--answers", _answers(tmp_path), "--out", "deploy/tabular",
               "--concurrency", "1,4", "--seconds", "0.5", timeout=240, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = out / "DEPLOYMENT.md"
    assert done.stdout.strip().splitlines()[-1] == "deploy: report deploy/tabular/DEPLOYMENT.md"
    for stage in ("plugins", "inspect", "plan", "serve", "smoke", "loadtest", "report"):
        assert re.search(rf"^\[\d+/\d+\] {stage} done in", done.stderr, flags=re.M), f"no progress line for {stage}"
    text = report.read_text()
    assert find_placeholders(text) == []
    load = json.loads((out / "loadtest.json").read_text())
    smoke = json.loads((out / "smoke.json").read_text())
    for lv in load["levels"]:
        assert f"| concurrency {lv['concurrency']} | {lv['rps']:,.1f} |" in text
    assert f"{smoke['passed']} of {len(smoke['checks'])} checks passed" in text
    assert "![Load test" in text and "(loadtest.png)" in text
    png_size(out / "loadtest.png")
    assert ("**SLA verdict: GO**" in text) == load["verdict"]["go"]
    for heading in ("## Configuration", "## Infrastructure", "## Serving endpoint", "## Monitoring", "## Measured results",
                    "## Rollout plan", "## Rollback procedure", "## Validation summary", "## Next steps"):
        assert heading in text
    assert "CPUExecutionProvider" in text
    validation = json.loads((out / "validation.json").read_text())
    assert f"({len(validation['checks'])} checks, from `validation.json`)" in text
    assert "The bundle (`manifest.json`:" in text and "```yaml" in text  # the rendered manifests are shown
    server = json.loads((out / "server.json").read_text())
    assert server["state"] == "stopped" and not pid_alive(server["pid"])
    record = json.loads((out / "deploy.json").read_text())
    assert record["ok"] is True and record["outcome"] == "GO" and "failed_stage" not in record
    assert "deploy: outcome GO" in done.stdout


class DeployRun:
    """A `deploy` subprocess whose stderr is read as it comes, to act at a given stage."""

    def __init__(self, model: Path, answers: Path, out: Path, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "deploy_model", "deploy", str(model), "--answers", str(answers), "--out", str(out), *extra],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
        self.lines: list[str] = []
        self.loadtest_started = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            if re.match(r"^\[\d+/\d+\] loadtest \.\.\.", line):
                self.loadtest_started.set()

    def wait_for_loadtest(self) -> None:
        assert self.loadtest_started.wait(timeout=120), "".join(self.lines)[-2000:]
        time.sleep(0.5)

    def finish(self) -> str:
        try:
            self.proc.wait(timeout=120)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.reader.join(timeout=10)
        return "".join(self.lines)


def test_a_server_that_dies_mid_run_fails_the_stage_and_is_reported(tabular_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "deploy" / "dies"
    run = DeployRun(tabular_model, _answers(tmp_path), out, "--concurrency", "1,1,1,1", "--seconds", "3")
    run.wait_for_loadtest()
    pid = json.loads((out / "server.json").read_text())["pid"]
    os.kill(pid, signal.SIGKILL)  # the server this test's deploy started, by its recorded PID
    err = run.finish()
    assert run.proc.returncode == 1, err[-2000:]
    assert re.search(r"\] loadtest failed: .*(exited with code -9|stopped answering)", err), err[-2000:]
    assert not pid_alive(pid)
    for kept in ("siblings.json", "model-profile.json", "deployment.yaml", "smoke.json"):
        assert (out / kept).is_file(), f"{kept} of an earlier stage was lost"
    assert not (out / "loadtest.json").exists()
    # The report is written anyway and says where and why the run stopped.
    text = (out / "DEPLOYMENT.md").read_text()
    assert find_placeholders(text) == []
    assert "**Outcome: NO-GO.** deploy stopped at `loadtest`" in text and "> **`deploy` stopped at `loadtest`**" in text
    assert re.search(r"exited with code -9|stopped answering", text)
    record = json.loads((out / "deploy.json").read_text())
    assert record["ok"] is False and record["failed_stage"] == "loadtest" and record["outcome"] == "NO-GO"


def test_sigterm_to_deploy_stops_the_server(tabular_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "deploy" / "cancelled"
    run = DeployRun(tabular_model, _answers(tmp_path), out, "--concurrency", "1,1,1,1", "--seconds", "3")
    run.wait_for_loadtest()
    pid = json.loads((out / "server.json").read_text())["pid"]
    run.proc.send_signal(signal.SIGTERM)  # as a CI runner cancelling the job would
    err = run.finish()
    assert run.proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "reference server stopped" in err
    assert not pid_alive(pid)
    assert json.loads((out / "server.json").read_text())["state"] == "stopped"


def test_edge_pattern_skips_the_live_stages_and_says_why(tabular_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "deploy" / "edge"
    done = cli("deploy", tabular_model, "--answers", _answers(tmp_path, target="edge"), "--out", out, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(r"\] serve done in .*skipped: the edge pattern", done.stderr)
    assert not (out / "server.json").exists() and not (out / "loadtest.json").exists()
    text = (out / "DEPLOYMENT.md").read_text()
    assert find_placeholders(text) == []
    assert "Not measured: the edge pattern runs the model on the device" in text
    assert "**Outcome: not measured.**" in text
    if (out / "quantization.json").is_file():  # the quantize stage of edge plans
        assert re.search(r"^\| Quantization \| .*size [\d,]+ -> [\d,]+ bytes", text, flags=re.M)


def test_a_failure_before_plan_writes_the_short_report(tmp_path: Path) -> None:
    model = tmp_path / "not-a-model.onnx"
    model.write_bytes(b"this is not a protobuf")
    out = tmp_path / "deploy" / "broken"
    done = cli("deploy", model, "--out", out, "--json", timeout=120)
    assert done.returncode == 1, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert summary["ok"] is False and summary["failed_stage"] == "inspect" and "not a readable ONNX model" in summary["error"]
    assert [s["stage"] for s in summary["stages"]] == ["plugins", "report"]
    text = (out / "DEPLOYMENT.md").read_text()
    assert "**Outcome: NO-GO.** deploy stopped at `inspect`: " in text and "not a readable ONNX model" in text
    assert "| inspect | **failed** |" in text and find_placeholders(text) == []
    assert json.loads((out / "deploy.json").read_text())["failed_stage"] == "inspect"


def test_a_model_that_rejects_synthetic_inputs_stops_at_smoke_then_deploys_with_its_sample(tmp_path: Path) -> None:
    import numpy as np

    model = build("triples", tmp_path)
    answers = _answers(tmp_path, requests_per_second=10)
    out = tmp_path / "deploy" / "triples"
    done = cli("deploy", model, "--answers", answers, "--out", out, "--concurrency", "1", "--seconds", "0.3", "--json",
               timeout=240)
    assert done.returncode == 1, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["failed_stage"] == "smoke" and summary["outcome"] == "NO-GO"
    assert any("the model rejected synthetic inputs (x [1, 8] float32)" in p and "cannot be reshaped" in p
               for p in summary["problems"]), summary["problems"]
    text = (out / "DEPLOYMENT.md").read_text()
    assert "deploy stopped at `smoke`" in text and "--sample FILE" in text and "| infer_v2 | **FAIL** |" in text
    assert find_placeholders(text) == []
    # With real values: the sample lands in the deployment directory and feeds every stage.
    sample = tmp_path / "triples.npz"
    np.savez(sample, x=np.arange(12, dtype=np.float32).reshape(2, 6))
    done = cli("deploy", model, "--answers", answers, "--out", out, "--sample", sample, "--concurrency", "1",
               "--seconds", "0.3", timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    profile = json.loads((out / "model-profile.json").read_text())
    assert (out / profile["sample"]["path"]).is_file() and profile["sample"]["path"].startswith("samples/")
    assert json.loads((out / "smoke.json").read_text())["inputs"] == "sample"
    assert json.loads((out / "loadtest.json").read_text())["inputs"] == "sample"
    text = (out / "DEPLOYMENT.md").read_text()
    assert "**Outcome: GO.**" in text and "the values of the sample" in text and "[[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]]" in text


def test_a_no_go_outcome_exits_1_with_the_report(tabular_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "deploy" / "nogo"
    done = cli("deploy", tabular_model, "--answers", _answers(tmp_path, requests_per_second=100000, max_replicas=2,
                                                                     min_replicas=2),
               "--out", out, "--concurrency", "1", "--seconds", "0.3", "--json", timeout=240)
    assert done.returncode == 1, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["ok"] is False and summary["outcome"] == "NO-GO" and "failed_stage" not in summary
    assert "below its share 50,000 req/s of the target 100,000 req/s over 2 planned replicas" in summary["error"]
    text = (out / "DEPLOYMENT.md").read_text()
    assert "**Outcome: NO-GO.**" in text and "**SLA verdict: NO-GO**" in text and "implies" in text


def test_three_deploys_of_one_model_give_the_same_verdict(tabular_model: Path, tmp_path: Path) -> None:
    """One replica is judged against its share of the target, so timing noise does not flip the verdict."""
    verdicts = []
    for run in range(3):
        out = tmp_path / "deploy" / f"run{run}"
        done = cli("deploy", tabular_model, "--answers", _answers(tmp_path), "--out", out, "--concurrency", "1,4",
                   "--seconds", "0.5", timeout=240)
        verdict = json.loads((out / "loadtest.json").read_text())["verdict"]
        verdicts.append((done.returncode, verdict["go"], verdict["replicas_planned"]))
    assert len(set(verdicts)) == 1, verdicts
    assert verdicts[0] == (0, True, 2)
