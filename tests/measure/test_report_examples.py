"""The curl and Python examples of DEPLOYMENT.md really work against the real server."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from measure_helpers import fresh_copy, server_available

from deploy_model.report import REPORT_FILE, run_report

pytestmark = pytest.mark.skipif(server_available() is not None, reason=str(server_available()))
EXAMPLE_URL = "http://127.0.0.1:8000"


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.S | re.M)


def test_python_example_runs_against_the_server(served: dict, tmp_path: Path) -> None:
    directory = fresh_copy(served["dir"], tmp_path / "d")
    run_report(directory)
    (python,) = code_blocks((directory / REPORT_FILE).read_text(), "python")
    script = tmp_path / "example.py"
    script.write_text(python.replace(EXAMPLE_URL, served["url"]))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("probabilities (1, 3)")


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_examples_run_against_the_server(served: dict, tmp_path: Path) -> None:
    directory = fresh_copy(served["dir"], tmp_path / "d")
    run_report(directory)
    blocks = [b for b in code_blocks((directory / REPORT_FILE).read_text(), "bash") if b.startswith("curl -s -X POST")]
    assert len(blocks) == 2, "expected the V2 and the /predict examples"
    for block in blocks:
        command = block.replace(EXAMPLE_URL, served["url"]).replace("\\\n", " ")
        done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30, check=False, cwd=directory)
        assert done.returncode == 0, done.stderr
        answer = json.loads(done.stdout)
        assert "outputs" in answer or "prediction" in answer, answer


def test_grpc_plan_is_served_on_both_protocols_and_its_python_example_runs(tabular_model: Path, tmp_path: Path) -> None:
    pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] is in the dev extra")
    from measure_helpers import plan_dir

    from deploy_model.serving import ServerProcess

    directory = plan_dir(tabular_model, tmp_path / "grpc", protocol="grpc")
    with ServerProcess(directory) as server:
        assert server.info["grpc_target"], "a gRPC plan must be served with --grpc-port"
        run_report(directory)
        blocks = code_blocks((directory / REPORT_FILE).read_text(), "python")
        (grpc_example,) = [b for b in blocks if "tritonclient.grpc" in b]
        script = tmp_path / "grpc_example.py"
        script.write_text(grpc_example.replace("127.0.0.1:8001", server.info["grpc_target"]))
        done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "probabilities (1, 3)"
