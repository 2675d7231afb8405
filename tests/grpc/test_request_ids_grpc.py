"""gRPC request ids: the message's id, else the x-request-id metadata, else a new uuid4, echoed in
the response's id and the trailing metadata, and written into the payload log."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

service = pytest.importorskip("tritonclient.grpc.service_pb2", reason="tritonclient[grpc] is in the dev extra")
stubs = pytest.importorskip("tritonclient.grpc.service_pb2_grpc")
REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _request(request_id: str = "") -> object:
    req = service.ModelInferRequest(model_name="tabular_classifier", id=request_id)
    tensor = req.inputs.add(name="features", datatype="FP32", shape=[1, 16])
    tensor.contents.fp32_contents.extend(np.linspace(0, 1, 16).tolist())
    return req


def test_grpc_ids_are_echoed_and_logged(tabular_model: Path, tmp_path: Path) -> None:
    port, logs = _free_port(), tmp_path / "payloads"
    env = dict(os.environ, PYTHONPATH=str(REPO / "reference-server" / "src"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "onnxserve", "--model", str(tabular_model), "--port",
         str(_free_port()), "--grpc-port", str(port), "--payload-log-sink", str(logs)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = stubs.GRPCInferenceServiceStub(channel)
            deadline = time.monotonic() + 60
            while True:
                try:
                    if stub.ServerReady(service.ServerReadyRequest(), timeout=2).ready:
                        break
                except grpc.RpcError:
                    pass
                assert time.monotonic() < deadline and proc.poll() is None, "server not ready"
                time.sleep(0.1)
            own, call = stub.ModelInfer.with_call(_request("msg-1"), timeout=10)
            meta, call2 = stub.ModelInfer.with_call(
                _request(), metadata=(("x-request-id", "meta-2"),), timeout=10
            )
            made, call3 = stub.ModelInfer.with_call(_request(), timeout=10)
            with pytest.raises(grpc.RpcError) as refused:
                stub.ModelInfer(service.ModelInferRequest(model_name="tabular_classifier"),
                                metadata=(("x-request-id", "bad-4"),), timeout=10)
        assert own.id == "msg-1" and dict(call.trailing_metadata())["x-request-id"] == "msg-1"
        assert meta.id == "meta-2" and dict(call2.trailing_metadata())["x-request-id"] == "meta-2"
        assert len(made.id) == 36 and dict(call3.trailing_metadata())["x-request-id"] == made.id
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert dict(refused.value.trailing_metadata())["x-request-id"] == "bad-4"
    finally:
        proc.terminate()
        assert proc.wait(30) == 0
    records = {
        r["id"]: r for r in map(json.loads, (logs / "payloads.jsonl").read_text().splitlines())
    }
    assert set(records) == {"msg-1", "meta-2", made.id, "bad-4"}
    assert {r["endpoint"] for r in records.values()} == {"grpc"}
    assert records["bad-4"]["status"] == 400 and records["msg-1"]["status"] == 200
    assert records["meta-2"]["inputs"][0]["shape"] == [1, 16]
