"""The A/B experiment behind a REAL router: nginx (Debian's package, the proxy ingress-nginx runs)
splits the traffic between two real reference servers by a hash of the caller's key header, as an
ingress does for sticky callers. Every request goes through nginx; the servers log what they
answered themselves (`--payload-log-sink`, sampling 1), labels come from the data set's truth, and
`experiment analyze` on the servers' own logs must find the better model. Each caller's requests
must all reach the same arm (stickiness), and the split must be near the planned share.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from scipy import stats as sps

from deploy_model.cli.main import main

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_ab_servers as ab

FEATURES, _free_port, _metadata = ab.FEATURES, ab._free_port, ab._metadata
data_and_models, serve = ab.data_and_models, ab.serve  # the fixtures, shared

CALLERS, PER_CALLER, B_SHARE = 300, 3, 50  # percent of callers nginx sends to arm B


def _nginx_conf(folder: Path, port: int, a: str, b: str) -> Path:
    """nginx.conf: split_clients hashes X-User-Id (MurmurHash2) into arm a or b, then proxies there."""
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    conf = folder / "nginx.conf"
    conf.write_text(f"""
worker_processes 1;
daemon off;
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {folder}/body;
  proxy_temp_path {folder}/proxy;
  fastcgi_temp_path {folder}/fastcgi;
  uwsgi_temp_path {folder}/uwsgi;
  scgi_temp_path {folder}/scgi;
  split_clients "${{http_x_user_id}}" $arm {{
    {B_SHARE}% arm_b;
    * arm_a;
  }}
  upstream arm_a {{ server {a.removeprefix("http://")}; }}
  upstream arm_b {{ server {b.removeprefix("http://")}; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://$arm;
      proxy_http_version 1.1;
      proxy_set_header X-Request-Id $http_x_request_id;
      add_header X-Arm $arm always;
    }}
  }}
}}
""")
    return conf


@pytest.fixture
def router(tmp_path: Path) -> Iterator:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).is_file():  # as for promtool and redis-server: `make test` installs it (SYSTEM_TOOLS)
        pytest.skip("nginx is not installed (Debian package nginx; make test installs it, ALLOW_MISSING=1 skips)")
    started: list[subprocess.Popen] = []

    def start(a: str, b: str) -> str:
        port = _free_port()
        conf = _nginx_conf(tmp_path / "nginx", port, a, b)
        proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(conf.parent)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.STDOUT)
        started.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60  # a hang guard, not a timing assertion
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"nginx exited {proc.returncode}: {(conf.parent / 'error.log').read_text()}")
            try:
                httpx.get(url + "/v2/health/live", timeout=2)
                return url
            except httpx.HTTPError:
                time.sleep(0.1)
        raise TimeoutError("nginx did not listen")

    yield start
    for proc in started:  # only the nginx this fixture started, by its PID
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGQUIT)  # graceful: nginx's own shutdown signal
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5)


def test_a_real_router_splits_sticky_callers_and_analyze_finds_the_better_model(
        data_and_models, serve, router, tmp_path: Path, capsys) -> None:
    x, y, models = data_and_models
    a, b = serve(models["weak"], "1", "stable").wait_ready(), serve(models["strong"], "2", "canary").wait_ready()
    for server in (a, b):
        _metadata(server)
    url = router(a.url, b.url)
    rng = np.random.default_rng(5)
    arms: dict[str, set[str]] = {}
    labels = []
    with httpx.Client(timeout=30) as client:
        for caller in range(CALLERS):
            user = f"user-{caller:04d}"
            for turn in range(PER_CALLER):
                row = int(rng.integers(0, len(x)))
                rid = f"{user}-{turn}"
                response = client.post(f"{url}/v2/models/{a.name}/infer", headers={"X-User-Id": user, "X-Request-Id": rid},
                                       json={"inputs": [{"name": a.input, "datatype": "FP32", "shape": [1, FEATURES],
                                                         "data": x[row].tolist()}]})
                assert response.status_code == 200, response.text
                assert response.headers["x-request-id"] == rid, "the id the caller sent is the id the server logs"
                arms.setdefault(user, set()).add(response.headers["x-arm"])
                labels.append({"request_id": rid, "label": int(y[row])})
    # Sticky: every caller's requests reached one arm; the split is the planned share of callers.
    assert all(len(seen) == 1 for seen in arms.values()), {u: s for u, s in arms.items() if len(s) > 1}
    to_b = sum(seen == {"arm_b"} for seen in arms.values())
    assert sps.binomtest(to_b, CALLERS, B_SHARE / 100).pvalue > 1e-4, (to_b, CALLERS)
    logged_a, logged_b = a.logged((CALLERS - to_b) * PER_CALLER), b.logged(to_b * PER_CALLER)
    assert {r["id"] for r in logged_b} == {f"{u}-{t}" for u, s in arms.items() if s == {"arm_b"} for t in range(PER_CALLER)}
    assert {r["track"] for r in logged_a} == {"stable"} and {r["track"] for r in logged_b} == {"canary"}
    with (tmp_path / "labels.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["request_id", "label"])
        writer.writeheader()
        writer.writerows(labels)
    code = main(["experiment", "analyze", "--payloads", str(a.payloads), "--payloads", str(b.payloads),
                 "--labels", str(tmp_path / "labels.csv"), "--metric", "accuracy", "--mde", "0.05", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["arms"] == {"A": "stable", "B": "canary"}
    assert result["verdict"] == "B better", result
    assert result["n"]["A"] + result["n"]["B"] == CALLERS * PER_CALLER
