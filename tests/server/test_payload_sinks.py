"""The payload log's sinks under a real server: CloudEvents received by a real HTTP endpoint on
loopback, a stalled endpoint and a full disk (requests still answered 200, drops counted), and
object storage on moto's S3 server."""

from __future__ import annotations

import contextlib
import json
import logging
import resource
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from .conftest import StartServer, metric_value

BODY = {"inputs": [{"name": "features", "shape": [1, 16], "datatype": "FP32", "data": [0.25] * 16}]}


def _infer(url: str, n: int, prefix: str) -> list[int]:
    with httpx.Client(timeout=30) as c:
        return [
            c.post(url + "/v2/models/mlp/infer", json=BODY, headers={"X-Request-Id": f"{prefix}{i}"})
            .status_code
            for i in range(n)
        ]


def _wait_for(check: Any, what: str, timeout: float = 30.0) -> None:
    # Waits for an outcome (records arriving), never measures how long it took.
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@contextlib.contextmanager
def _event_receiver() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    """A real HTTP endpoint on loopback that stores every POST it gets."""
    got: list[tuple[dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            got.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(202)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/events", got
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def _stalled_endpoint() -> Iterator[str]:
    """Accepts connections and never answers (a hung log collector)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/"
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        listener.close()


def test_cloudevents_reach_a_real_http_sink(
    models: dict[str, Path], start_server: StartServer
) -> None:
    with _event_receiver() as (url, got):
        server = start_server(
            models["mlp"], "--payload-log-sink", url, "--track", "shadow",
            env={"ONNXSERVE_PAYLOAD_LOG_AUTHORIZATION": "Bearer t0ken"},
        )
        assert _infer(server.url, 5, "ce-") == [200] * 5
        _wait_for(lambda: len(got) == 5, "5 CloudEvents")
        metrics = server.metrics()
    assert metric_value(metrics, "payload_log_written_total") == 5
    headers, body = got[2]
    assert headers["ce-specversion"] == "1.0"
    assert headers["ce-type"] == "org.onnxserve.inference.payload"
    assert headers["ce-id"] == "ce-2" and headers["ce-source"] == "onnxserve/mlp/1/shadow"
    assert headers["ce-endpoint"] == "shadow" and headers["content-type"] == "application/json"
    assert headers["authorization"] == "Bearer t0ken" and headers["ce-time"].endswith("Z")
    record = json.loads(body)
    assert (record["id"], record["track"], record["status"]) == ("ce-2", "shadow", 200)
    assert record["inputs"][0]["data"] == [0.25] * 16
    assert sorted(h["ce-id"] for h, _ in got) == [f"ce-{i}" for i in range(5)]


def test_a_stalled_http_sink_never_holds_up_a_request(
    models: dict[str, Path], start_server: StartServer
) -> None:
    with _stalled_endpoint() as url:
        server = start_server(
            models["mlp"], "--payload-log-sink", url, "--payload-log-queue-size", "4",
            "--payload-log-timeout-s", "2",
        )
        assert _infer(server.url, 60, "st-") == [200] * 60
        text = server.metrics()
        assert metric_value(text, "payload_log_sampled_total") == 60
        assert metric_value(text, "payload_log_written_total") == 0
        # The writer holds one record at the stalled endpoint and 4 wait in the queue: the rest
        # were dropped at once, however the requests and the writer's timeouts interleaved.
        full = metric_value(text, "payload_log_dropped_total", {"reason": "queue_full"})
        failed = metric_value(text, "payload_log_dropped_total", {"reason": "sink_error"})
        assert full is not None and failed is not None
        assert full >= 60 - 5 - failed and full > 0
        statuses = [
            line for line in text.splitlines()
            if line.startswith("model_requests_total") and 'status="200"' not in line
        ]
        assert statuses == []  # no 5xx, no other status at all
        assert server.stop() == 0  # the drain does not hang on the stalled sink either


def _mount_small_tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
    )
    return done.returncode == 0


def _limit_file_size(limit: int) -> Any:
    def apply() -> None:
        # A process over RLIMIT_FSIZE gets SIGXFSZ (which kills it) unless ignored; ignored,
        # the write fails with EFBIG like a full disk fails with ENOSPC.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_full_disk_drops_and_counts_and_keeps_whole_lines(
    models: dict[str, Path], tmp_path: Path, start_server: StartServer, monkeypatch: Any
) -> None:
    disk = tmp_path / "disk"
    tmpfs = _mount_small_tmpfs(disk, "48k")
    try:
        if not tmpfs:
            # No tmpfs without root: the same failure from the kernel's per-process file-size
            # limit on the server process (EFBIG instead of ENOSPC).
            disk.mkdir(exist_ok=True)
            real_popen = subprocess.Popen

            def limited(*args: Any, **kw: Any) -> Any:
                return real_popen(*args, preexec_fn=_limit_file_size(48 * 1024), **kw)

            monkeypatch.setattr(subprocess, "Popen", limited)
        server = start_server(
            models["mlp"], "--payload-log-sink", str(disk), "--payload-log-max-file-bytes",
            str(1 << 20), "--payload-log-backups", "0",
        )
        monkeypatch.undo()
        # each record is about 600 bytes: 150 of them do not fit in 48 KiB
        assert _infer(server.url, 150, "disk-") == [200] * 150
        _wait_for(
            lambda: metric_value(server.metrics(), "payload_log_queue_depth") == 0, "empty queue"
        )
        text = server.metrics()
        written = metric_value(text, "payload_log_written_total")
        failed = metric_value(text, "payload_log_dropped_total", {"reason": "sink_error"})
        full = metric_value(text, "payload_log_dropped_total", {"reason": "queue_full"})
        assert written and failed and written + failed + (full or 0) == 150
        lines = (disk / "payloads.jsonl").read_text().splitlines()
        assert len(lines) == written
        ids = [json.loads(line)["id"] for line in lines]  # every line whole
        assert ids == [f"disk-{i}" for i in range(len(ids))]
        assert "payload log:" in server.log and ("No space" in server.log or "too large" in server.log)
        assert server.stop() == 0
    finally:
        if tmpfs:
            subprocess.run(["umount", str(disk)], check=False)


@pytest.fixture(scope="module")
def s3_env() -> Iterator[dict[str, str]]:
    moto_server = pytest.importorskip("moto.server")
    pytest.importorskip("s3fs")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
    finally:
        server.stop()


def test_records_land_in_object_storage_in_batches(
    models: dict[str, Path], start_server: StartServer, s3_env: dict[str, str]
) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(
        key="testing", secret="testing", client_kwargs={"endpoint_url": s3_env["AWS_ENDPOINT_URL"]},
        skip_instance_cache=True, use_listings_cache=False,
    )
    fs.mkdir("payloads")
    server = start_server(
        models["mlp"], "--payload-log-sink", "s3://payloads/mlp", "--payload-log-max-file-bytes",
        "8192", "--payload-log-flush-s", "60", env=s3_env,
    )
    assert _infer(server.url, 40, "s3-") == [200] * 40
    # 8 KiB batches of ~600-byte records: whole objects appear while serving; SIGTERM writes
    # the rest (the 60 s age limit never comes into it).
    _wait_for(lambda: fs.find("payloads/mlp"), "a first object")
    assert server.stop() == 0
    keys = sorted(fs.find("payloads/mlp"))
    assert len(keys) >= 2 and all(k.endswith(".jsonl") for k in keys)
    records = [json.loads(line) for k in keys for line in fs.cat(k).decode().splitlines()]
    assert sorted(r["id"] for r in records) == sorted(f"s3-{i}" for i in range(40))
    assert all(np.isclose(sum(r["outputs"][0]["data"]), 1.0, atol=1e-5) for r in records)
