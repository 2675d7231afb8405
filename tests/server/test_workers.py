"""--workers N: several processes on one port, each with its own session; metrics that add up
across them; SIGTERM drains them all."""

from __future__ import annotations

import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from onnxserve.metrics_merge import merge

from tests.server.conftest import free_port

BODY = {"inputs": [{"name": "features", "shape": [1, 16], "datatype": "FP32", "data": [0.5] * 16}]}


def _workers(pid: int) -> list[int]:
    """Worker processes of the supervisor ``pid`` (not multiprocessing's resource tracker)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and b"spawn_main" in cmdline:
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.parametrize("how", ["flag", "env"])
def test_two_workers_share_the_port_add_up_metrics_and_drain(start_server, models, metric, how):
    grpc_port = free_port()
    args, env = (
        (("--workers", "2"), None) if how == "flag" else ((), {"ONNXSERVE_WORKERS": "2"})
    )
    args = (*args, "--grpc-port", str(grpc_port))  # every worker binds it (SO_REUSEPORT)
    server = start_server(models["mlp"], "--drain-timeout-s", "8", *args, env=env, wait=False)
    server.wait_ready(60)
    deadline = time.monotonic() + 60
    workers = _workers(server.proc.pid)
    # Both workers ready (readiness is answered by whichever worker accepts the connection).
    while time.monotonic() < deadline:
        text = server.metrics()
        if metric(text, "model_worker_processes") == 2 and metric(text, "model_ready") == 1:
            break
        time.sleep(0.2)
    assert len(workers) == 2, workers
    n = 200

    def one(_: int) -> int:
        with httpx.Client(timeout=30) as c:  # a new connection each: spread over the workers
            return c.post(server.url + "/v2/models/mlp/infer", json=BODY).status_code

    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(one, range(n)))
    assert codes == [200] * n
    # Each worker writes its figures to the shared files about once a second: wait for the sum to
    # count every request (a busy machine can delay a write past any fixed sleep), then check it.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = server.metrics()
        counted = metric(text, "model_requests_total", {"endpoint": "infer", "status": "200"})
        if counted is not None and counted >= n:
            break
        time.sleep(0.2)
    assert metric(text, "model_worker_processes") == 2
    total = metric(text, "model_requests_total", {"endpoint": "infer", "status": "200"})
    assert total == n, text[:2000]
    # The statistics extension adds up across workers too.
    stats = httpx.get(server.url + "/v2/models/mlp/stats").json()["model_stats"][0]
    assert stats["inference_stats"]["success"]["count"] == n
    assert stats["inference_count"] == n
    # gRPC is served by the workers on one shared port.
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=10
        )
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    # Both workers did some of the work: each one's share shows in its own file.
    assert metric(text, "model_batch_size_count") >= 1
    server.signal(signal.SIGTERM)
    assert server.proc.wait(60) == 0, server.log[-3000:]  # a hang guard
    # Each worker drained by itself, before its budget ran out: a state in the log, not a clock.
    assert server.log.count("drained in") == 2, server.log[-3000:]
    assert "drain budget spent" not in server.log, server.log[-3000:]
    assert not [w for w in workers if _alive(w)]


def test_merge_sums_counters_and_keeps_facts_as_max_or_min():
    a = (
        "# TYPE model_requests counter\n"
        'model_requests_total{endpoint="infer",status="200"} 3\n'
        "# TYPE model_ready gauge\nmodel_ready 1\n"
        "# TYPE model_inflight_requests gauge\nmodel_inflight_requests 2\n"
        "# TYPE model_uptime_seconds gauge\nmodel_uptime_seconds 10\n"
    )
    b = a.replace(" 3\n", " 4\n").replace("model_ready 1", "model_ready 0").replace(
        "seconds 10", "seconds 12"
    )
    from tests.server.conftest import metric_value

    text = merge([a, b]).decode()
    assert metric_value(text, "model_requests_total", {"endpoint": "infer"}) == 7
    assert metric_value(text, "model_inflight_requests") == 4
    assert metric_value(text, "model_ready") == 0
    assert metric_value(text, "model_uptime_seconds") == 12
    assert metric_value(text, "model_worker_processes") == 2


@pytest.mark.slow
def test_a_killed_supervisor_takes_its_workers_with_it(start_server, models):
    """SIGKILL (or the OOM killer) gives the supervisor no chance to stop its workers: the kernel
    does it (PR_SET_PDEATHSIG), so no orphan keeps serving on the port."""
    server = start_server(models["mlp"], "--workers", "2", wait=False)
    server.wait_ready(60)
    deadline = time.monotonic() + 30
    while len(workers := _workers(server.proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(workers) == 2, workers
    server.proc.send_signal(signal.SIGKILL)  # the supervisor this test started
    server.proc.wait(timeout=10)
    deadline = time.monotonic() + 30  # a hang guard: the kernel stops them at once
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers), "a worker outlived its killed supervisor"
