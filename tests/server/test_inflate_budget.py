"""The inflated bytes of compressed bodies share one budget per server process
(--inflate-budget-bytes): sixteen gzip bombs at once hold no more memory than one budget, each
is refused quickly (413 past its own limit, 503 + Retry-After when the budget is taken), and the
budget is all given back afterwards."""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
from onnxserve.bodies import InflateBudget, inflate
from onnxserve.codec import ApiError

from tests.server.conftest import Server

MIB = 1024 * 1024
LIMIT = 64 * MIB  # the default --max-request-bytes
BUDGET = 64 * MIB
BOMBS = 16
INFER = "/v2/models/mlp/infer"
BODY = orjson.dumps(
    {"inputs": [{"name": "features", "shape": [1, 16], "datatype": "FP32", "data": [0.5] * 16}]}
)


def _peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM): catches a spike however short."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc status")


def _gzip_bomb() -> bytes:
    """1 GiB of zeros as gzip: about 1 MB on the wire."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = b"\0" * (64 * MIB)
    return b"".join(comp.compress(zeros) for _ in range(16)) + comp.flush()


@pytest.fixture(scope="module")
def budget_server(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("inflate-budget") / "server.log"
    server = Server(
        models["mlp"], "--inflate-budget-bytes", str(BUDGET), "--no-warmup", log=log
    ).wait_ready()
    yield server
    server.stop()


@pytest.mark.slow
def test_concurrent_bombs_share_one_budget(budget_server):
    server = budget_server
    bomb = _gzip_bomb()
    assert len(bomb) < 2 * MIB
    headers = {"content-type": "application/json", "content-encoding": "gzip"}
    # Warm the path (thread pool, allocator) with one real compressed body before measuring.
    assert httpx.post(server.url + INFER, content=gzip.compress(BODY), headers=headers).is_success
    before = _peak_rss_mb(server.proc.pid)
    results: list[tuple[int, str | None, float]] = []
    lock = threading.Lock()
    go = threading.Event()

    def send() -> None:
        go.wait(30)
        start = time.monotonic()
        r = httpx.post(server.url + INFER, content=bomb, headers=headers, timeout=60)
        with lock:
            results.append((r.status_code, r.headers.get("retry-after"), time.monotonic() - start))

    threads = [threading.Thread(target=send) for _ in range(BOMBS)]
    for t in threads:
        t.start()
    go.set()
    # A plain body is never held back by the budget, even while the bombs take it all.
    plain = httpx.post(server.url + INFER, content=BODY, timeout=60)
    for t in threads:
        t.join(120)
    grown = _peak_rss_mb(server.proc.pid) - before
    assert plain.status_code == 200, plain.text
    assert len(results) == BOMBS, results
    statuses = sorted(status for status, _, _ in results)
    assert set(statuses) <= {413, 503}, statuses
    assert all(retry == "1" for status, retry, _ in results if status == 503), results
    # No bomb waited for the budget to free up: one held back would hit its 60 s client timeout
    # and be missing from `results` (its thread raises), which the count above already checks.
    # The budget plus the bombs as sent (16 x 1 MB) and some slack; each bomb alone would
    # inflate to the 64 MiB limit (six at once in the thread pool: ~400 MB without the budget).
    bound = BUDGET / MIB + BOMBS * len(bomb) / MIB + 40
    assert grown < bound, f"peak RSS grew by {grown:.0f} MB with a {BUDGET // MIB} MiB budget"
    # All of the budget came back: a body that inflates to most of it is accepted alone.
    big = gzip.compress(b" " * (48 * MIB) + BODY)
    ok = httpx.post(server.url + INFER, content=big, headers=headers, timeout=60)
    assert ok.status_code == 200, ok.text


def test_lease_takes_steps_and_gives_all_back():
    budget = InflateBudget(3 * MIB)
    first, second = budget.lease(), budget.lease()
    data = gzip.compress(b"x" * (2 * MIB + 10))
    out = inflate("gzip", data, LIMIT, first)
    assert len(out) == 2 * MIB + 10 and first.held == len(out) == budget.used
    # The second request cannot take a full step from what is left: 503, quickly, nothing kept.
    with pytest.raises(ApiError) as refused:
        inflate("gzip", data, LIMIT, second)
    assert refused.value.status == 503 and refused.value.headers == {"Retry-After": "1"}
    assert "--inflate-budget-bytes" in refused.value.message
    second.release()
    first.release()
    assert budget.used == 0
    # Past the request's own limit it is still 413, and its share comes back on release.
    with pytest.raises(ApiError) as too_big:
        inflate("gzip", data, MIB, first)
    assert too_big.value.status == 413
    first.release()
    assert budget.used == 0 and budget.refused == 1
