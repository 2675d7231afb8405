"""serve: the real reference server as a child process on loopback, always stopped by its PID."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from measure_helpers import cli, cli_json, fresh_copy, pid_alive, server_available

from deploy_model.common.errors import StageError
from deploy_model.measure.serve import ServerProcess, free_port, resolve_url, server_argv, stop_pid

pytestmark = pytest.mark.skipif(server_available() is not None, reason=str(server_available()))


def test_served_fixture_is_ready_and_recorded(served: dict) -> None:
    info = json.loads((served["dir"] / "server.json").read_text())
    assert info["state"] == "running"
    assert info["pid"] == served["pid"] and pid_alive(info["pid"])
    assert info["url"] == served["url"] and info["url"].startswith("http://127.0.0.1:")
    assert info["provider"] == "CPUExecutionProvider"
    assert httpx.get(served["url"] + "/v2/health/ready", timeout=5).status_code == 200
    assert resolve_url(served["dir"], None) == served["url"]


def test_context_manager_stops_the_server_by_pid(tabular_plan: Path, tmp_path: Path) -> None:
    directory = fresh_copy(tabular_plan, tmp_path / "d")
    with ServerProcess(directory) as server:
        pid = server.proc.pid
        assert pid_alive(pid)
    assert not pid_alive(pid)
    info = json.loads((directory / "server.json").read_text())
    assert info["state"] == "stopped" and info["stopped"].startswith("stopped")
    assert info["exit_code"] == 0, "SIGTERM should drain and exit cleanly"


def test_refused_model_fails_with_the_server_log(tabular_plan: Path, tmp_path: Path) -> None:
    directory = fresh_copy(tabular_plan, tmp_path / "d")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"this is not a protobuf")
    spec = (directory / "deployment.yaml").read_text()
    original = next(line.split(": ", 1)[1] for line in spec.splitlines() if line.strip().startswith("path: "))
    (directory / "deployment.yaml").write_text(spec.replace(original, str(broken)))
    server = ServerProcess(directory, ready_timeout_s=60)
    with pytest.raises(StageError) as caught:
        server.start()
    assert "exited with code" in caught.value.message
    assert any(line.startswith("server log:") for line in caught.value.problems)
    assert server.proc is not None and server.proc.poll() is not None


def test_detach_then_stop_through_the_cli(tabular_plan: Path, tmp_path: Path) -> None:
    directory = fresh_copy(tabular_plan, tmp_path / "d")
    started = cli_json("serve", "--out", directory, "--detach")
    pid = started["summary"]["pid"]
    try:
        assert pid_alive(pid)
        assert httpx.get(started["summary"]["url"] + "/v2/health/live", timeout=5).status_code == 200
        stopped = cli_json("serve", "--out", directory, "--stop")
        assert stopped["summary"]["outcome"].startswith("stopped")
        assert not pid_alive(pid)
        assert json.loads((directory / "server.json").read_text())["state"] == "stopped"
    finally:
        if pid_alive(pid):
            stop_pid(pid)
    again = cli("serve", "--out", directory, "--stop")
    assert again.returncode == 1 and "no running server" in again.stderr


def test_dry_run_prints_the_command_and_starts_nothing(tabular_plan: Path, tmp_path: Path) -> None:
    directory = fresh_copy(tabular_plan, tmp_path / "d")
    result = cli_json("serve", "--out", directory, "--dry-run", "--port", str(free_port()))
    assert "-m onnxserve" in result["summary"]["command"] and "--host 127.0.0.1" in result["summary"]["command"]
    assert not (directory / "server.json").exists()


def test_argv_follows_the_spec(tabular_plan: Path) -> None:
    from deploy_model.plan.specfile import load_spec

    spec = load_spec(tabular_plan)
    argv, notes = server_argv(spec, 12345)
    joined = " ".join(argv)
    assert f"--max-batch-size {spec.batching.max_batch_size}" in joined
    assert f"--model-name {spec.model.name}" in joined and "--port 12345" in joined
    assert notes == []
    gpu_argv, gpu_notes = server_argv(spec, 12345, device="cuda")
    assert "--allow-cpu-fallback" in gpu_argv and "CUDAExecutionProvider" in gpu_notes[0]


def test_missing_spec_is_refused(tmp_path: Path) -> None:
    done = cli("serve", "--out", tmp_path / "nothing", "--detach")
    assert done.returncode == 1 and "deployment.yaml" in done.stderr


def test_foreground_serve_stops_the_server_on_sigterm(tabular_plan: Path, tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    directory = fresh_copy(tabular_plan, tmp_path / "d")
    proc = subprocess.Popen([sys.executable, "-m", "deploy_model", "serve", "--out", str(directory)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (directory / "server.json").exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        pid = json.loads((directory / "server.json").read_text())["pid"]
        assert pid_alive(pid)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0
    assert not pid_alive(pid)
    assert json.loads((directory / "server.json").read_text())["state"] == "stopped"
