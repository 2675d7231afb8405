"""--workers N: one readiness for the pod (every worker ready), and a dead worker restarted
(within a bound) while the others keep serving on the shared port."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import pytest
from onnxserve.group_state import (
    DRAINING,
    ENV_SLOT,
    LOADING,
    READY,
    RESTARTING,
    WorkerGroup,
    write_slot,
)
from onnxserve.metrics_merge import ENV_DIR, merge

# The protocol's messages from a private descriptor pool: tritonclient, loaded by other tests of
# this process, holds the package `inference` in the default one.
from deploy_model.measure.grpc_messages import Stub
from deploy_model.measure.grpc_messages import messages as pb
from tests.server.conftest import free_port, metric_value

BODY = {"inputs": [{"name": "features", "shape": [1, 16], "datatype": "FP32", "data": [0.5] * 16}]}


def _dead_pid() -> int:
    """A pid that is surely not running: a child of ours, exited and reaped."""
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def test_group_is_ready_only_when_every_slot_is(tmp_path: Path):
    group = WorkerGroup(tmp_path, 0, 2, replacement=False)
    assert not group.all_ready()  # no files yet: loading
    write_slot(tmp_path, 0, READY, os.getpid())
    write_slot(tmp_path, 1, LOADING, os.getpid())
    assert not group.all_ready() and not group.sibling_ready()
    write_slot(tmp_path, 1, READY, os.getpid())
    assert group.all_ready() and group.sibling_ready()
    # A replacement loading behind its serving sibling keeps the pod ready.
    write_slot(tmp_path, 1, RESTARTING, 0)
    assert group.all_ready() and not group.sibling_ready()
    # A sibling that died while ready is being replaced, not serving.
    write_slot(tmp_path, 1, READY, _dead_pid())
    assert group.states() == [READY, RESTARTING] and not group.sibling_ready()
    write_slot(tmp_path, 1, DRAINING, os.getpid())
    assert not group.all_ready()


def test_a_dead_workers_counters_stay_in_the_sum_but_not_its_gauges():
    live = (
        "# TYPE model_requests_total counter\n"
        'model_requests_total{endpoint="infer",status="200"} 3\n'
        "# TYPE model_inflight_requests gauge\nmodel_inflight_requests 1\n"
        "# TYPE model_ready gauge\nmodel_ready 1\n"
    )
    dead = live.replace(" 3\n", " 5\n").replace("model_ready 1", "model_ready 0")
    text = merge([live], [dead]).decode()
    assert metric_value(text, "model_requests_total", {"endpoint": "infer"}) == 8
    assert metric_value(text, "model_inflight_requests") == 1
    assert metric_value(text, "model_ready") == 1
    assert metric_value(text, "model_worker_processes") == 1


@pytest.mark.slow
def test_a_ready_worker_answers_503_until_its_sibling_is_ready(start_server, models, tmp_path):
    """Worker 0 of a group of 2, run as the supervisor would (its slot in the environment), with
    the sibling's slot played by this test: REST, /health and gRPC readiness wait for it."""
    folder = tmp_path / "group"
    folder.mkdir()
    write_slot(folder, 1, LOADING, 0)
    grpc_port = free_port()
    server = start_server(
        models["mlp"],
        "--grpc-port",
        str(grpc_port),
        wait=False,
        env={ENV_DIR: str(folder), ENV_SLOT: "0/2/0"},
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert server.proc.poll() is None, server.log[-3000:]
        try:
            health = httpx.get(server.url + "/health", timeout=5)
        except httpx.ConnectError:  # not listening yet
            time.sleep(0.1)
            continue
        if health.json()["worker_ready"]:
            break
        time.sleep(0.1)
    body = health.json()
    assert health.status_code == 503 and body["status"] == "loading" and body["ready"] is False
    assert body["worker"] == 0 and body["pid"] == server.proc.pid
    ready = httpx.get(server.url + "/v2/health/ready", timeout=5)
    assert ready.status_code == 503 and ready.json()["reason"] == "loading (another worker)"
    assert httpx.get(server.url + "/v2/models/mlp/ready", timeout=5).status_code == 503
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = Stub(channel)
        assert not stub.ServerReady(pb.ServerReadyRequest(), timeout=10).ready
        # The worker itself serves (a request that reached it is answered).
        answer = httpx.post(server.url + "/v2/models/mlp/infer", json=BODY, timeout=10)
        assert answer.status_code == 200
        write_slot(folder, 1, READY, os.getpid())  # the sibling is ready
        assert httpx.get(server.url + "/v2/health/ready", timeout=5).status_code == 200
        assert stub.ServerReady(pb.ServerReadyRequest(), timeout=10).ready
        health = httpx.get(server.url + "/health", timeout=5)
        assert health.status_code == 200 and health.json()["ready"] is True
        write_slot(folder, 1, DRAINING, os.getpid())  # the pod is being stopped
        assert httpx.get(server.url + "/v2/health/ready", timeout=5).status_code == 503
    assert (folder / "slot-0.state").read_text().split() == [READY, str(server.proc.pid)]


@pytest.mark.slow
def test_readiness_never_200_while_a_worker_still_loads(start_server, models):
    """Two workers warming up a slow model: whichever finishes first, a 200 from readiness comes
    only once both are ready, so no request sent after it finds a worker still loading."""
    # Warm-up at 8 batch sizes of a model of a few hundred MFLOP a row: seconds per worker.
    server = start_server(models["slower"], "--workers", "2", "--max-batch-size", "8", wait=False)
    seen: list[tuple[float, float, str, dict]] = []  # (sent, answered, kind, body)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for kind, path in (("ready", "/v2/health/ready"), ("health", "/health")):
            sent = time.monotonic()
            try:
                # A new connection each: answered by either worker.
                answer = httpx.get(server.url + path, timeout=5)
            except httpx.HTTPError:
                continue
            body = answer.json() | {"code": answer.status_code}
            seen.append((sent, time.monotonic(), kind, body))
        ready = {b["worker"] for _, _, k, b in seen if k == "health" and b["worker_ready"]}
        if ready == {0, 1}:
            break
        assert server.proc.poll() is None, server.log[-3000:]
    oks = [answered for _, answered, k, b in seen if k == "ready" and b["code"] == 200]
    if not oks:  # both became ready between the last two polls: one more look
        assert httpx.get(server.url + "/v2/health/ready", timeout=5).status_code == 200
        return
    first_ready = min(oks)
    late_loading = [
        b
        for sent, _, k, b in seen
        if k == "health" and sent > first_ready and not b["worker_ready"]
    ]
    assert late_loading == [], late_loading
    # And each /health that said the pod ready came from a ready worker.
    assert all(b["worker_ready"] for _, _, k, b in seen if k == "health" and b["ready"])


def _worker_pids(url: str, want: int = 2, timeout: float = 60) -> dict[int, int]:
    """worker index -> pid, from /health answers (a new connection each reaches either one)."""
    found: dict[int, int] = {}
    deadline = time.monotonic() + timeout
    while len(found) < want and time.monotonic() < deadline:
        with httpx.Client(timeout=5) as c:
            body = c.get(url + "/health").json()
        if body["worker_ready"]:
            found[body["worker"]] = body["pid"]
        time.sleep(0.02)
    return found


@pytest.mark.slow
def test_a_killed_worker_is_restarted_while_the_other_serves(start_server, models, metric):
    server = start_server(models["mlp"], "--workers", "2", wait=False)
    server.wait_ready(60)
    pids = _worker_pids(server.url)
    assert len(pids) == 2, pids
    threads, per_thread = 4, 150
    started = threading.Barrier(threads + 1)
    answered = threading.Semaphore(0)  # one release per answer: the kill waits on a count

    def client(_: int) -> tuple[int, list[int]]:
        errors, codes = 0, []
        started.wait()
        for _ in range(per_thread):
            try:
                # A new connection each, so one connection held by the killed worker fails
                # only the request on it.
                with httpx.Client(timeout=10) as c:
                    codes.append(c.post(server.url + "/v2/models/mlp/infer", json=BODY).status_code)
            except httpx.HTTPError:
                errors += 1
            answered.release()
        return errors, codes

    with ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(client, i) for i in range(threads)]
        started.wait()
        # Under load, however fast or slow this machine is: a sixth of the requests answered,
        # most still to come (not a sleep, which a fast machine outruns and a slow one wastes).
        for _ in range(threads * per_thread // 6):
            assert answered.acquire(timeout=60), "the load never built up"
        os.kill(pids[0], signal.SIGKILL)  # a worker of the server this test started
        results = [f.result() for f in futures]
    errors = sum(e for e, _ in results)
    codes = [c for _, cs in results for c in cs]
    # At most the killed worker's in-flight requests fail, one per client at most.
    assert errors <= threads, (errors, server.log[-3000:])
    assert set(codes) == {200}, sorted(set(codes))
    assert len(codes) + errors == threads * per_thread
    # The port never closed; worker 0 is back with a new pid, and readiness is 200.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        again = _worker_pids(server.url, timeout=10)
        if again.get(0) not in (None, pids[0]) and again.get(1) == pids[1]:
            break
    assert again.get(0) not in (None, pids[0]) and again[1] == pids[1], (pids, again)
    assert httpx.get(server.url + "/v2/health/ready", timeout=5).status_code == 200
    assert "exited with -9" in server.log and "restarting it" in server.log
    # Each worker writes its metrics file about once a second: wait for the restarted one's
    # (a fixed sleep races a delayed write on a busy machine).
    deadline = time.monotonic() + 60
    while metric(server.metrics(), "model_worker_processes") != 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert metric(server.metrics(), "model_worker_processes") == 2
    server.signal(signal.SIGTERM)
    assert server.proc.wait(30) == 0, server.log[-3000:]


@pytest.mark.slow
def test_too_many_restarts_stop_the_pod(start_server, models):
    server = start_server(
        models["mlp"], "--workers", "2", "--worker-restart-limit", "1", wait=False
    )
    server.wait_ready(60)
    pids = _worker_pids(server.url)
    os.kill(pids[0], signal.SIGKILL)  # restart 1 of 1: allowed
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        again = _worker_pids(server.url, timeout=10)
        if again.get(0) not in (None, pids[0]):
            break
    assert again.get(0) not in (None, pids[0]), server.log[-3000:]
    os.kill(again[0], signal.SIGKILL)  # a second within the window: too many
    assert server.proc.wait(30) == 1, server.log[-3000:]
    assert "more than 1 restarts in 60s: stopping all" in server.log
    with pytest.raises(httpx.HTTPError):
        httpx.get(server.url + "/v2/health/live", timeout=2)
