"""serve: the profile's sample warms the server up, and a refused start-up says the server's reason."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from measure_helpers import fresh_copy, server_available, with_sample

from deploy_model.common.errors import StageError
from deploy_model.measure.serve import ServerProcess, refusal_reason

pytestmark = pytest.mark.skipif(server_available() is not None, reason=str(server_available()))


def test_profile_sample_is_passed_as_warmup_sample(tabular_plan: Path, tmp_path: Path) -> None:
    directory = fresh_copy(tabular_plan, tmp_path / "d")
    profile = json.loads((directory / "model-profile.json").read_text())
    spec = profile["inputs"][0]
    width = [d for d in spec["shape"] if isinstance(d, int) and d > 0][-1]
    with_sample(directory, {spec["name"]: np.full((3, width), 0.5, dtype=np.float32)})
    with ServerProcess(directory) as server:
        argv = server.argv
        assert argv[argv.index("--warmup-sample") + 1] == str((directory / "samples" / "sample.npz").resolve())
        health = httpx.get(server.url + "/health", timeout=5).json()
        assert health["warmed"] is True and health["warmup_source"] == "sample"
    info = json.loads((directory / "server.json").read_text())
    assert info["warmup_sample"].endswith("sample.npz")


def test_no_sample_no_flag(tabular_plan: Path, tmp_path: Path) -> None:
    directory = fresh_copy(tabular_plan, tmp_path / "d")
    assert "--warmup-sample" not in ServerProcess(directory).argv


def test_refusal_carries_the_servers_own_reason(tabular_plan: Path, tmp_path: Path) -> None:
    """A model with an output type no V2 response can carry: the StageError names it."""
    from onnx import TensorProto, helper, save

    graph = helper.make_graph(
        [helper.make_node("SequenceConstruct", ["x", "x"], ["pieces"])],
        "seq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
        [helper.make_tensor_sequence_value_info("pieces", TensorProto.FLOAT, ["N", 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    unservable = tmp_path / "seq.onnx"
    save(model, str(unservable))
    directory = fresh_copy(tabular_plan, tmp_path / "d")
    spec = (directory / "deployment.yaml").read_text()
    original = next(line.split(": ", 1)[1] for line in spec.splitlines() if line.strip().startswith("path: "))
    (directory / "deployment.yaml").write_text(spec.replace(original, str(unservable)))
    with pytest.raises(StageError) as caught:
        ServerProcess(directory, ready_timeout_s=60).start()
    message = caught.value.message
    assert "exited with code 1" in message
    assert "cannot be served" in message and "'pieces'" in message and "seq(tensor(float))" in message


def test_refusal_reason_prefers_the_servers_own_line(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text(
        "INFO:     Started server process [1]\n"
        "2026-01-01 ERROR onnxserve: start-up refused: ProviderError: no GPU\n"
        "onnxserve: start-up refused: ProviderError: no GPU\n"
        "INFO:     Finished server process [1]\n"
    )
    assert refusal_reason(log) == "start-up refused: ProviderError: no GPU"
    log.write_text("INFO:     Waiting\nsomething odd happened\n")
    assert refusal_reason(log) == "something odd happened"
    assert refusal_reason(tmp_path / "absent.log") is None
