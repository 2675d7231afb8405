"""Requests/s of ``python -m onnxserve --workers 1`` vs ``--workers 2`` on the overhead-bound
example model (examples/models/tabular_classifier.onnx: 16 features -> 3 classes, microseconds of
compute, so the Python cost per request is what caps one process).

Not a test: it measures. Needs ``wrk``. Rounds alternate 1 and 2 workers and the best round of
each is kept, because the host is shared; the load average before and after each round is
printed with it, since other work on the machine moves the figures.

    python bench/workers_bench.py [--duration 8] [--rounds 3] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from server_bench import LUA, run_wrk  # noqa: E402

MODEL = HERE.parent / "examples" / "models" / "tabular_classifier.onnx"
BODY = {
    "inputs": [{"name": "features", "shape": [1, 16], "datatype": "FP32", "data": [0.25] * 16}]
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(workers: int, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "onnxserve", "--model", str(MODEL), "--port", str(port),
         "--workers", str(workers), "--log-level", "warning"],
        stdout=open(log, "wb"), stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/v2/health/ready", timeout=1).status_code == 200:
                # Every worker answers readiness on its own: give the others time to warm up.
                time.sleep(3 if workers > 1 else 0.5)
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit("server not ready")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "workers_bench.json")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="workers-bench-"))
    lua = tmp / "post.lua"
    lua.write_text(LUA)
    body = tmp / "body.json"
    body.write_text(json.dumps(BODY))
    rounds: list[dict] = []
    for r in range(args.rounds):
        for workers in (1, 2):
            proc, url = start(workers, tmp / f"server-{workers}-{r}.log")
            try:
                load_before = os.getloadavg()[0]
                res = run_wrk(
                    url + "/v2/models/tabular_classifier/infer",
                    args.concurrency,
                    args.duration,
                    (body, "application/json", ""),
                    lua,
                )
                load_after = os.getloadavg()[0]
            finally:
                stop(proc)
            row = {"round": r, "workers": workers, **res,
                   "load_before": round(load_before, 2), "load_after": round(load_after, 2)}
            rounds.append(row)
            print(json.dumps(row), flush=True)
    best = {
        w: max((x for x in rounds if x["workers"] == w), key=lambda x: x["rps"]) for w in (1, 2)
    }
    summary = {
        "model": MODEL.name,
        "concurrency": args.concurrency,
        "duration_s": args.duration,
        "cpus": os.cpu_count(),
        "rounds": rounds,
        "best_rps": {str(w): best[w]["rps"] for w in best},
        "speedup": round(best[2]["rps"] / best[1]["rps"], 2),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: summary[k] for k in ("best_rps", "speedup", "cpus")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
