"""An HTTP 503 while the server loads the model: smoke and loadtest say it was still loading (wait for
readiness, raise the start-up budget), never that the model rejected synthetic inputs."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import pytest
from measure_helpers import fresh_copy

from deploy_model.common.errors import StageError
from deploy_model.measure.loadtest import run_loadtest
from deploy_model.measure.smoke_session import Failed, SmokeSession

LOADING = {"error": "model is loading; retry shortly"}


def test_smoke_says_the_server_was_still_loading() -> None:
    session = SmokeSession("http://model.test", {}, "m")
    session.client = httpx.Client(transport=httpx.MockTransport(
        lambda request: httpx.Response(503, json=LOADING, headers={"Retry-After": "1"})))
    arrays = {"x": np.zeros((1, 4), dtype=np.float32)}
    with pytest.raises(Failed) as caught:
        session.post_inputs("/v2/models/m/infer", {}, arrays, "synthetic")
    message = str(caught.value)
    assert message.startswith("POST /v2/models/m/infer answered HTTP 503: model is loading; retry shortly;")
    assert "the server was still loading the model" in message and "/v2/health/ready" in message
    assert "--ready-timeout" in message
    assert "rejected synthetic inputs" not in message and "--sample" not in message
    # A refusal of the inputs themselves keeps its advice.
    session.client = httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(400, json={"error": "bad shape"})))
    with pytest.raises(Failed, match=r"rejected synthetic inputs .* --sample FILE"):
        session.post_inputs("/v2/models/m/infer", {}, arrays, "synthetic")
    session.close()


class _Loading(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # http.server calls it by this name
        self.rfile.read(int(self.headers.get("content-length") or 0))
        body = json.dumps(LOADING).encode()
        self.send_response(503)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def loading_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Loading)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_loadtest_says_the_server_was_still_loading(tabular_plan: Path, tmp_path: Path, loading_server: str) -> None:
    directory = fresh_copy(tabular_plan, tmp_path / "d")
    with pytest.raises(StageError) as caught:
        run_loadtest(directory, loading_server, levels=[1], seconds=0.2, progress=False, chart=False, engine="python")
    message = caught.value.message
    assert "did not answer the warm-up requests with 200: {'503': 20}" in message
    assert "the server was still loading the model" in message and "rejected synthetic inputs" not in message
    assert not (directory / "loadtest.json").exists()
