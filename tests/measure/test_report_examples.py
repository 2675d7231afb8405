"""The example requests of DEPLOYMENT.md really work against the real server: curl (V2 and
/predict), Python requests, tritonclient HTTP and gRPC; the same shapes in every snippet; from the
sample when there is one; run from a directory that is not the deployment's parent."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from measure_helpers import fresh_copy, plan_dir, server_available, with_sample
from signature_models import build

from deploy_model.measure.serve import ServerProcess
from deploy_model.report.examples import REQUEST_FILE
from deploy_model.report.writer import REPORT_FILE, run_report

pytestmark = pytest.mark.skipif(server_available() is not None, reason=str(server_available()))
EXAMPLE_URL = "http://127.0.0.1:8000"


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.S | re.M)


def run_python(code: str, where: Path, cwd: Path) -> str:
    script = where / f"example_{abs(hash(code))}.py"
    script.write_text(code)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False, cwd=cwd)
    assert done.returncode == 0, f"{code}\n---\n{done.stderr[-2000:]}"
    return done.stdout


def shapes_printed(stdout: str) -> dict[str, tuple[int, ...]]:
    """`name (d0, d1) ...` lines -> {name: shape}."""
    out = {}
    for line in stdout.splitlines():
        match = re.match(r"^(\S+) (\([\d, ]*\))", line)
        if match:
            out[match.group(1)] = tuple(ast.literal_eval(match.group(2)))
    return out


def run_every_example(directory: Path, server: ServerProcess, tmp_path: Path) -> dict[str, dict[str, tuple[int, ...]]]:
    """Run every snippet of the report from an unrelated directory; return the output shapes each printed."""
    run_report(directory)
    text = (directory / REPORT_FILE).read_text()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    grpc = server.info.get("grpc_target")
    printed: dict[str, dict[str, tuple[int, ...]]] = {}
    for block in code_blocks(text, "python"):
        code = block.replace("127.0.0.1:8000", server.url.removeprefix("http://"))
        if grpc:
            code = code.replace("127.0.0.1:8001", grpc)
        ast.parse(code)  # valid Python, whatever the inputs (0-d, strings)
        kind = "grpc" if "tritonclient.grpc" in code else "http" if "tritonclient.http" in code else "requests"
        printed[kind] = shapes_printed(run_python(code, tmp_path, elsewhere))
    curls = [b for b in code_blocks(text, "bash") if "curl -s -X POST" in b]
    if shutil.which("curl"):
        for block in curls:
            command = block.replace(EXAMPLE_URL, server.url).replace("\\\n", " ")
            done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30, check=False, cwd=elsewhere)
            assert done.returncode == 0, done.stderr
            answer = json.loads(done.stdout)
            if "/feedback" in command:
                # The report shows the ground-truth example only when the plan logs payloads (feedback
                # on); then the server takes it (tests/report/test_feedback_report.py parses its body).
                assert answer.get("received") == 1, answer
                continue
            assert "error" not in answer, (command[:300], answer)
            if "outputs" in answer and isinstance(answer["outputs"], list):
                printed["curl"] = {o["name"]: tuple(o["shape"]) for o in answer["outputs"]}
            else:
                assert "prediction" in answer, answer
    return printed


def test_tabular_examples_run_and_agree(served: dict, tmp_path: Path) -> None:
    directory = fresh_copy(served["dir"], tmp_path / "d")
    printed = run_every_example(directory, served["server"], tmp_path)
    assert set(printed) >= {"requests", "http"} and printed["requests"] == printed["http"] == {"probabilities": (1, 3)}
    if shutil.which("curl"):
        assert printed["curl"] == printed["requests"]


@pytest.mark.slow
@pytest.mark.parametrize("model", ["scalar", "strings", "token"])
def test_examples_for_0d_string_and_token_inputs_on_both_protocols(model: str, tmp_path: Path) -> None:
    pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] is in the dev extra")
    directory = plan_dir(build(model, tmp_path), tmp_path / model, requests_per_second=10, protocol="grpc")
    with ServerProcess(directory) as server:
        printed = run_every_example(directory, server, tmp_path)
    assert set(printed) >= {"requests", "http", "grpc"}
    assert printed["requests"] == printed["http"] == printed["grpc"], printed
    if shutil.which("curl"):
        assert printed["curl"] == printed["requests"]
    expected = {"scalar": {"y": (1, 4)}, "strings": {"label": (1,)}, "token": {"scores": (1, 8), "per_position": (8,)}}
    assert printed["requests"] == expected[model]


@pytest.mark.slow
def test_examples_use_the_sample_and_a_request_file_named_by_its_path(cnn_model: Path, tmp_path: Path) -> None:
    """A large input goes to request-v2.json; every snippet reads it by its path, from any directory."""
    directory = plan_dir(cnn_model, tmp_path / "deep" / "cnn", requests_per_second=10, protocol="grpc")
    image = np.linspace(-1, 1, 2 * 3 * 64 * 64, dtype=np.float32).reshape(2, 3, 64, 64)
    with_sample(directory, {"image": image})
    with ServerProcess(directory) as server:
        printed = run_every_example(directory, server, tmp_path)
    body = json.loads((directory / REQUEST_FILE).read_text())
    (tensor,) = body["inputs"]
    assert tensor["shape"] == [1, 3, 64, 64]
    assert np.allclose(tensor["data"], np.round(image[0].ravel().astype(np.float64), 4))  # the sample's first row
    text = (directory / REPORT_FILE).read_text()
    assert f"@{directory.resolve()}/{REQUEST_FILE}" in text and "the values of the sample" in text
    # Every path is the real one: --out is outside the current directory, so the report names it absolutely.
    assert f"--out {directory.resolve()}" in text and "deploy/cnn" not in text
    assert printed["requests"] == printed["http"] == printed["grpc"] == {"probabilities": (1, 10)}
