"""Slow and idle clients (slow loris) cannot lock the others out: a request head has a deadline
(--header-timeout-s) and a size cap (--max-header-bytes), idle keep-alive connections close
(--keep-alive-timeout-s), and past --max-connections the oldest connection waiting for a head is
shed, so the file descriptors never run out. Loopback only; every loop is bounded in count and
in time."""

from __future__ import annotations

import http.client
import json
import resource
import selectors
import socket
import threading
import time
from pathlib import Path

import pytest
from onnxserve.connections import (
    DEFAULT_MAX_CONNECTIONS,
    FD_RESERVE,
    ConnectionGuard,
    connection_cap,
)
from onnxserve.settings import Settings, SettingsError

BODY = json.dumps(
    {"inputs": [{"name": "features", "shape": [1, 16], "datatype": "FP32", "data": [0.5] * 16}]}
).encode()
# What a trickling client sends, one byte a second: half of a request head, never its end.
HALF_HEAD = b"POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


def _need_descriptors(count: int) -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < count + 200:
        pytest.skip(f"needs {count + 200} file descriptors, ulimit -n is {soft}")


class SlowClients:
    """``trickling`` connections that send HALF_HEAD one byte a second and ``idle`` ones that
    send nothing, watched by one thread that records when the server closes each."""

    def __init__(self, port: int, trickling: int, idle: int) -> None:
        self.port = port
        self.socks: list[socket.socket] = []
        self.opened: dict[socket.socket, float] = {}
        self.closed: dict[socket.socket, float] = {}
        self.trickling = trickling
        self.idle = idle
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def open(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for _ in range(self.trickling + self.idle):
            assert time.monotonic() < deadline, "could not open the slow connections in time"
            # Timed from before the connect: the server's clock for it starts later, so a lifetime
            # measured here is never shorter than the server's timeout, however late this runs.
            opened = time.monotonic()
            s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            s.setblocking(False)
            self.socks.append(s)
            self.opened[s] = opened
        self._thread.start()

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        for s in self.socks:
            sel.register(s, selectors.EVENT_READ)
        sent = 0
        next_byte = time.monotonic()
        # Bounded: at most 120 s, or until stopped, or until every connection is closed.
        end = time.monotonic() + 120
        while not self._stop.is_set() and time.monotonic() < end:
            for key, _ in sel.select(timeout=0.2):
                s = key.fileobj
                try:
                    data = s.recv(65536)  # type: ignore[union-attr]
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(s)
                    with self._lock:
                        self.closed[s] = time.monotonic()  # type: ignore[index]
            if time.monotonic() >= next_byte and sent < len(HALF_HEAD):
                for s in self.socks[: self.trickling]:
                    if s not in self.closed:
                        try:
                            s.send(HALF_HEAD[sent : sent + 1])
                        except OSError:
                            pass  # closed by the server: the selector reports it
                sent += 1
                next_byte += 1.0
            with self._lock:
                if len(self.closed) == len(self.socks):
                    break
        sel.close()

    def closed_count(self) -> int:
        with self._lock:
            return len(self.closed)

    def wait_closed(self, count: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.closed_count() < count and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.closed_count()

    def lifetimes(self) -> list[float]:
        with self._lock:
            return [self.closed[s] - self.opened[s] for s in self.closed]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for s in self.socks:
            s.close()


def _good_request(port: int) -> tuple[int, float]:
    """One request on a new connection, as a well-behaved client sends it: status, seconds."""
    start = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(
            "POST", "/v2/models/mlp/infer", BODY, {"Content-Type": "application/json"}
        )
        status = conn.getresponse().status
    finally:
        conn.close()
    return status, time.monotonic() - start


@pytest.mark.slow
def test_trickling_and_idle_connections_are_closed_after_the_header_timeout(
    start_server, models
):
    """200 connections trickling half a head and 200 idle ones: a well-behaved client is answered
    while they are open, and each slow one is closed after --header-timeout-s."""
    trickling, idle, timeout = 200, 200, 6.0
    _need_descriptors(trickling + idle)
    server = start_server(models["mlp"], "--header-timeout-s", str(timeout))
    slow = SlowClients(server.port, trickling, idle)
    try:
        slow.open()
        answered = []
        # While they are open (none may close before the header timeout: asserted below).
        for _ in range(5):
            status, took = _good_request(server.port)
            answered.append((status, took, len(slow.socks) - slow.closed_count()))
        closed = slow.wait_closed(trickling + idle, timeout + 30)
        lifetimes = slow.lifetimes()
    finally:
        slow.close()
    assert all(status == 200 for status, _, _ in answered), answered
    # Not locked out: each good request was answered while the slow connections were still held
    # open around it (an order of events, counted, not timed against a clock).
    assert min(still_open for _, _, still_open in answered) >= (trickling + idle) // 2, answered
    assert closed == trickling + idle, f"{closed} of {trickling + idle} slow connections closed"
    # Not before the deadline (they are not shed: 400 is under the cap): a protocol bound, timed
    # from before each connect, so load only lengthens it. Not long after: a hang guard of 20 s
    # past the 6 s timeout (unfixed, a trickling connection is held for ever).
    assert min(lifetimes) >= timeout - 0.5, min(lifetimes)
    assert max(lifetimes) < timeout + 20, max(lifetimes)
    assert _good_request(server.port)[0] == 200


@pytest.mark.slow
def test_slow_connections_past_the_cap_are_shed_before_descriptors_run_out(start_server, models):
    """The server's descriptor limit lowered to 256 and a cap of 192: 400 slow connections (more
    than the descriptors; the header timeout far away) never lock a well-behaved client out."""
    trickling, idle, cap, nofile = 200, 200, 192, 256
    _need_descriptors(trickling + idle)
    server = start_server(
        models["mlp"], "--header-timeout-s", "120", "--max-connections", str(cap)
    )
    used = len(list(Path(f"/proc/{server.proc.pid}/fd").iterdir()))
    assert used + cap < nofile, f"the server already holds {used} descriptors"
    resource.prlimit(server.proc.pid, resource.RLIMIT_NOFILE, (nofile, nofile))
    slow = SlowClients(server.port, trickling, idle)
    try:
        slow.open()
        # The server holds at most `cap` of them: the others are closed, oldest first.
        shed = slow.wait_closed(trickling + idle - cap, 30)
        answered = [_good_request(server.port) for _ in range(5)]
        still_open = len(slow.socks) - slow.closed_count()
    finally:
        slow.close()
    assert shed >= trickling + idle - cap, f"only {shed} slow connections were shed"
    assert all(status == 200 for status, _ in answered), answered
    # Not locked out: a locked-out client waits for the 120 s header timeout to free a slot (or
    # for ever); 60 s is half that and hundreds of times a normal answer, so load cannot flip it.
    assert max(took for _, took in answered) < 60, answered
    assert still_open >= cap // 2, still_open  # shed as needed, not all
    assert "connection cap reached" in server.log


def _closed_after(sock: socket.socket, crlf: bool, start: float, limit_s: float = 30.0) -> float | None:
    """Seconds from ``start`` until the server closes ``sock`` (None: still open after ``limit_s``),
    sending a CRLF every half second when ``crlf``."""
    sock.settimeout(0.5)
    while time.monotonic() - start < limit_s:
        if crlf:
            try:
                sock.sendall(b"\r\n")
            except OSError:
                return time.monotonic() - start
        try:
            if not sock.recv(65536):
                return time.monotonic() - start
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - start
    return None


def _read_all(sock: socket.socket, timeout: float, start: float) -> tuple[bytes, float]:
    """Everything until the server closes ``sock``, and the seconds from ``start`` to then."""
    sock.settimeout(timeout)
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data, time.monotonic() - start
        data += chunk


@pytest.mark.slow
def test_keep_alive_header_timeout_and_head_size(start_server, models):
    server = start_server(
        models["mlp"],
        "--header-timeout-s", "2",
        "--keep-alive-timeout-s", "1",
        "--max-header-bytes", "4096",
    )
    port = server.port
    # Half a head, then silence: 408 (JSON) after the header timeout, and the connection closed.
    # Each time is taken before the connect, so the server's clock starts later: the lower bounds
    # below are protocol bounds that load cannot break; the upper ones are hang guards (unfixed,
    # such a connection stays open until the 40 s read gives up).
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(HALF_HEAD)
        data, took = _read_all(s, 40, start)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), data[:200]
    assert b"connection: close" in head.lower()
    assert "--header-timeout-s" in json.loads(body)["error"]
    assert 1.5 <= took < 30, took
    # Nothing sent at all: closed without an answer after the same timeout.
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        data, took = _read_all(s, 40, start)
    assert data == b"" and 1.5 <= took < 30, (data, took)
    # A head above --max-header-bytes: 431 and closed, whatever its pace.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(HALF_HEAD + b"X-Pad: " + b"a" * 8192 + b"\r\n")
        data, _ = _read_all(s, 40, time.monotonic())
    assert data.startswith(b"HTTP/1.1 431"), data[:200]
    assert "--max-header-bytes" in json.loads(data.partition(b"\r\n\r\n")[2])["error"]
    # An idle keep-alive connection is closed after --keep-alive-timeout-s; a stray CRLF every
    # half second (which starts no request) does not hold it open past the header timeout.
    # Timed from before the request: the server's keep-alive clock starts after its answer, so the
    # lower bounds (under the 1 s keep-alive and 2 s header timeouts) cannot break under load; the
    # upper one is a hang guard (unfixed, the CRLFs hold the connection open for ever).
    for crlf, low in ((False, 0.5), (True, 1.5)):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            start = time.monotonic()
            s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            first = s.recv(65536)
            assert first.startswith(b"HTTP/1.1 200"), first[:200]
            closed_after = _closed_after(s, crlf, start)
        assert closed_after is not None, f"connection still open after 30 s (crlf={crlf})"
        assert low <= closed_after < 20, (crlf, closed_after)
    # The server still answers.
    assert _good_request(port)[0] == 200


def test_connection_cap_is_derived_from_the_descriptor_limit(monkeypatch):
    assert connection_cap(100) == 100
    monkeypatch.setattr(resource, "getrlimit", lambda _: (1024, 4096))
    assert connection_cap(0) == 1024 - FD_RESERVE
    monkeypatch.setattr(resource, "getrlimit", lambda _: (1 << 20, 1 << 20))
    assert connection_cap(0) == DEFAULT_MAX_CONNECTIONS
    monkeypatch.setattr(
        resource, "getrlimit", lambda _: (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
    )
    assert connection_cap(0) == DEFAULT_MAX_CONNECTIONS


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("header_timeout_s", 0.0, "header_timeout_s must be > 0"),
        ("keep_alive_timeout_s", -1.0, "keep_alive_timeout_s must be > 0"),
        ("max_connections", -1, "max_connections must be >= 0"),
        ("max_header_bytes", 100, "max_header_bytes must be >= 1024"),
        ("inflate_budget_bytes", 10, "inflate_budget_bytes must be 0 (derived) or >="),
    ],
)
def test_connection_settings_are_checked(field, value, words):
    with pytest.raises(SettingsError, match=words.replace("(", r"\(").replace(")", r"\)")):
        Settings(model=Path("m.onnx"), **{field: value})
    assert Settings(model=Path("m.onnx")).inflate_budget == 2 * 64 * 1024 * 1024


class _Conn:
    """Stands in for a connection: its own transport, recording the close."""

    def __init__(self) -> None:
        self.transport = self
        self.is_closed = False

    def close(self) -> None:
        self.is_closed = True


def test_cap_sheds_a_fresh_connection_first_then_an_idle_one_never_a_busy_one():
    guard = ConnectionGuard(10.0, 1024, 3)
    answered, slow, busy = _Conn(), _Conn(), _Conn()
    for conn in (answered, slow, busy):
        guard.opened(conn)  # type: ignore[arg-type]
    guard.busy(answered)  # type: ignore[arg-type]
    guard.waiting(answered)  # type: ignore[arg-type]  (answered: idle keep-alive)
    guard.busy(busy)  # type: ignore[arg-type]  (a request in flight)
    newcomer = _Conn()
    guard.opened(newcomer)  # type: ignore[arg-type]
    assert slow.is_closed and not answered.is_closed and not newcomer.is_closed
    guard.busy(newcomer)  # type: ignore[arg-type]
    # Nothing waits for a first head but the next newcomer: the idle keep-alive one goes.
    late = _Conn()
    guard.opened(late)  # type: ignore[arg-type]
    assert answered.is_closed and not late.is_closed
    # Every other connection busy: the newcomer itself is closed.
    guard.busy(late)  # type: ignore[arg-type]
    last = _Conn()
    guard.opened(last)  # type: ignore[arg-type]
    assert last.is_closed and not busy.is_closed
    assert guard.shed == 3 and len(guard.open) == 3
