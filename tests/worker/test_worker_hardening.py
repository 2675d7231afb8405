"""The worker under hostile messages, stream growth and scraping, against a real redis-server."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import urllib.request

import numpy as np
import pytest
from worker_helpers import REPO, free_port, start_worker, wait_for

redis = pytest.importorskip("redis", reason="the redis client is part of the worker extra")
pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None,
    reason="redis-server not installed (.ci/run installs it as root)",
)

REQUESTS, RESULTS, DEAD, GROUP = "inference:requests", "inference:results", "inference:dead", "onnx-workers"


def _good(client, count: int) -> list[str]:
    rows = np.random.default_rng(7).standard_normal((count, 16)).astype(np.float32)
    return [
        client.xadd(REQUESTS, {"body": json.dumps({"id": f"good-{i}", "inputs": {"features": [row.tolist()]}})}).decode()
        for i, row in enumerate(rows)
    ]


POISON: dict[str, dict[str, bytes | str]] = {
    # 100,000 nested lists: json.loads raises RecursionError, which used to end the worker.
    "deep": {"body": "[" * 100_000 + "]" * 100_000},
    "deep-inputs": {"body": '{"inputs": {"features": ' + "[" * 50_000 + "]" * 50_000 + "}}"},
    "huge-int": {"body": '{"inputs": {"features": [[' + "9" * 10_000 + "]]}}"},
    "inputs-list": {"body": '{"inputs": [1, 2, 3]}'},
    "object-rows": {"body": '{"inputs": {"features": {"a": 1}}}'},
    "string-rows": {"body": '{"inputs": {"features": [["x", "y"]]}}'},
    "nan": {"body": '{"inputs": {"features": [[NaN, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]]}}'},
    "not-utf8": {"body": b'{"inputs": {"features": "\xff\xfe"}}'},
    "no-body": {"payload": "{}"},
    "empty": {"body": ""},
}


def _metrics(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def test_poison_messages_are_dead_lettered_and_the_worker_keeps_running(tabular_model, redis_url):
    client = redis.Redis.from_url(redis_url)
    good = _good(client, 6)
    poison = {client.xadd(REQUESTS, fields).decode(): kind for kind, fields in POISON.items()}
    good += _good(client, 6)  # after the poison: the rest of the batch must still be answered
    port = free_port()
    worker = start_worker(
        tabular_model, redis_url, "--batch-size", "8", "--claim-idle-ms", "200",
        "--max-attempts", "2", "--housekeeping-s", "0.2", "--metrics-port", str(port),
    )
    try:
        wait_for(lambda: worker.poll() is not None or client.xlen(DEAD) >= len(poison), 90, "every poison dead-lettered")
        assert worker.poll() is None, f"the worker exited {worker.returncode}: {worker.stderr.read()}"
        answered = {f[b"request_id"].decode() for _, f in client.xrange(RESULTS)}
        assert answered == set(good)
        dead = {f[b"request_id"].decode(): f for _, f in client.xrange(DEAD)}
        assert set(dead) == set(poison)
        for entry_id, fields in dead.items():
            assert fields[b"attempts"] == b"2", poison[entry_id]
            assert fields[b"reason"], poison[entry_id]
            assert len(fields[b"reason"]) <= 500
        by_kind = {kind: dead[entry_id] for entry_id, kind in poison.items()}
        assert b"nests too deeply" in by_kind["deep"][b"reason"]
        assert b"nests too deeply" in by_kind["deep-inputs"][b"reason"]
        assert b"no 'body' field" in by_kind["no-body"][b"reason"]
        assert b"NaN" in by_kind["nan"][b"reason"]
        # A body that is not UTF-8 is kept byte for byte, so it can be inspected and replayed.
        assert by_kind["not-utf8"][b"body"] == POISON["not-utf8"]["body"]
        assert client.xpending(REQUESTS, GROUP)["pending"] == 0

        wait_for(lambda: _metrics(port).get("worker_stream_pending", -1) == 0, 10, "pending gauge to settle")
        m = _metrics(port)
        assert m["worker_messages_processed_total"] == len(good)
        assert m["worker_messages_dead_lettered_total"] == len(poison)
        assert m['worker_messages_failed_total{stage="decode"}'] == 2 * len(poison)
        assert m['worker_messages_failed_total{stage="internal"}'] == 0
        assert m["worker_stream_lag"] == 0
        assert m["worker_message_latency_seconds_count"] == len(good)
        assert m["worker_messages_claimed_total"] == len(poison)
        assert m["worker_loop_heartbeat_timestamp_seconds"] > 0
        # Settled entries are trimmed from the request stream (acknowledged by the only group).
        wait_for(lambda: client.xlen(REQUESTS) == 0, 10, "acknowledged requests to be trimmed")

        # Still serving after all that: a fresh good message is answered.
        late = _good(client, 1)[0]
        wait_for(lambda: any(f[b"request_id"].decode() == late for _, f in client.xrange(RESULTS)), 30, "late answer")
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=30)
    assert code == 0, worker.stderr.read()


def test_metrics_scrape_is_valid_prometheus_text(tabular_model, redis_url):
    """promtool (the real Prometheus parser) accepts what the worker serves; env var sets the port."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus; .ci/run installs it)")
    client = redis.Redis.from_url(redis_url)
    _good(client, 3)
    port = free_port()
    worker = start_worker(tabular_model, redis_url, env={"ONNXSERVE_WORKER_METRICS_PORT": str(port)})
    try:
        wait_for(lambda: client.xlen(RESULTS) == 3, 60, "three answers")
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, timeout=30)
    # promtool exits 0 for valid text; lint notes (exit 3) are about naming style only.
    assert check.returncode in (0, 3), check.stderr.decode() + check.stdout.decode()
    assert b"parse" not in check.stderr.lower()
    assert b"worker_messages_processed_total 3.0" in text


def test_result_and_dead_letter_streams_are_capped(tabular_model, redis_url):
    client = redis.Redis.from_url(redis_url)
    good = _good(client, 400)
    for _ in range(300):
        client.xadd(REQUESTS, {"body": "not json"})
    worker = start_worker(
        tabular_model, redis_url, "--batch-size", "64", "--max-attempts", "1",
        "--results-maxlen", "50", "--dead-letter-maxlen", "20", "--max-messages", str(len(good) + 300),
    )
    assert worker.wait(timeout=120) == 0, worker.stderr.read()
    # MAXLEN ~ trims whole radix-tree nodes (100 entries by default): the cap plus one node at most.
    assert 50 <= client.xlen(RESULTS) <= 150
    assert 20 <= client.xlen(DEAD) <= 120
    assert client.xlen(REQUESTS) == 0  # every request settled and trimmed
    assert "trimmed 700" in worker.stderr.read()


def test_trimming_keeps_pending_and_unread_entries(redis_url):
    """XTRIM MINID never removes what any group still needs (pending, or not yet delivered)."""
    import sys

    sys.path.insert(0, str(REPO / "reference-server" / "src"))
    from onnxserve.worker.streams import StreamNames, Streams

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    streams = Streams(client, StreamNames(REQUESTS, RESULTS, DEAD, GROUP), "a")
    streams.ensure_group()
    ids = [client.xadd(REQUESTS, {"body": str(i)}) for i in range(10)]
    read = streams.read_new(5, 100)
    assert [e for e, _ in read] == ids[:5]
    client.xack(REQUESTS, GROUP, ids[0], ids[1], ids[3])  # ids[2] and ids[4] stay pending
    assert streams.trim_acknowledged() == 2
    assert [e for e, _ in client.xrange(REQUESTS)] == ids[2:]
    state = streams.group_state()
    assert state is not None and state.pending == 2 and state.lag == 5
    # A second group that has read nothing holds everything back.
    client.xgroup_create(REQUESTS, "audit", id="0")
    client.xack(REQUESTS, GROUP, ids[2], ids[4])
    assert streams.trim_acknowledged() == 0
    assert client.xlen(REQUESTS) == 8


def test_bad_worker_settings_are_usage_errors(tabular_model):
    for args, env, expected in [
        (["--metrics-port", "70000"], {}, "--metrics-port must be 0-65535"),
        (["--results-maxlen", "-1"], {}, "--results-maxlen must be >= 0"),
        ([], {"ONNXSERVE_WORKER_BATCH_SIZE": "lots"}, "ONNXSERVE_WORKER_BATCH_SIZE='lots' is not an integer"),
    ]:
        worker = start_worker(tabular_model, "redis://127.0.0.1:1/0", *args, env=env)
        assert worker.wait(timeout=30) == 2
        assert expected in worker.stderr.read()


def test_metrics_port_in_use_is_refused(tabular_model, redis_url):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        worker = start_worker(tabular_model, redis_url, "--metrics-port", str(port))
        assert worker.wait(timeout=30) == 1
        assert f"cannot serve metrics on 127.0.0.1:{port}" in worker.stderr.read()


def test_a_message_that_killed_its_workers_is_dead_lettered_unscored(tabular_model, redis_url):
    """Delivered past --max-attempts without being settled (holders crashed): not scored again."""
    client = redis.Redis.from_url(redis_url)
    client.xgroup_create(REQUESTS, GROUP, id="0", mkstream=True)
    (entry,) = _good(client, 1)
    client.xreadgroup(GROUP, "crashed-1", {REQUESTS: ">"})
    for holder in ("crashed-2", "crashed-3"):  # each claim is one more delivery, as XAUTOCLAIM does
        client.xclaim(REQUESTS, GROUP, holder, 0, [entry])
    worker = start_worker(tabular_model, redis_url, "--max-attempts", "2", "--claim-idle-ms", "100",
                          "--max-messages", "1")
    assert worker.wait(timeout=60) == 0, worker.stderr.read()
    ((_, dead),) = client.xrange(DEAD)
    assert dead[b"request_id"].decode() == entry and dead[b"attempts"] == b"4"
    assert b"never settled" in dead[b"reason"]
    assert client.xlen(RESULTS) == 0
