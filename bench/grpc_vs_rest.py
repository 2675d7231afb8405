#!/usr/bin/env python3
"""gRPC vs REST on the same reference server, model and load (a benchmark, not a test).

One onnxserve process serves both protocols (--port and --grpc-port). The same client family
drives both, tritonclient.http (binary tensors) and tritonclient.grpc (raw contents), so the
difference measured is the protocol, not the client: closed loop, N threads, D seconds per cell.
Usage: python bench/grpc_vs_rest.py [--seconds 4] [--concurrency 1,8] [--models tabular_classifier,image_cnn]
Prints a markdown table; writes bench/results/grpc_vs_rest.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_models() -> dict[str, Path]:
    spec = importlib.util.spec_from_file_location("be", ROOT / "examples" / "build_examples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.build_all(RESULTS / "models")


def one_call(protocol: str, client, name: str, inp: str, x: np.ndarray) -> None:
    lib = tgrpc if protocol == "grpc" else thttp
    tensor = lib.InferInput(inp, list(x.shape), "FP32")
    if protocol == "grpc":
        tensor.set_data_from_numpy(x)
    else:
        tensor.set_data_from_numpy(x, binary_data=True)
    client.infer(name, [tensor])


def cell(protocol: str, url: str, name: str, inp: str, x: np.ndarray, threads: int, seconds: float) -> dict:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def run() -> None:
        client = (tgrpc.InferenceServerClient(url) if protocol == "grpc"
                  else thttp.InferenceServerClient(url, concurrency=1))
        mine: list[float] = []
        while time.monotonic() < stop:
            start = time.perf_counter()
            try:
                one_call(protocol, client, name, inp, x)
                mine.append(time.perf_counter() - start)
            except Exception:
                errors[0] += 1
        with lock:
            latencies.extend(mine)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    began = time.monotonic()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.monotonic() - began
    latencies.sort()
    return {
        "protocol": protocol, "model": name, "concurrency": threads, "requests": len(latencies),
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 3) if latencies else None,
        "p99_ms": round(latencies[int(0.99 * (len(latencies) - 1))] * 1000, 3) if latencies else None,
        "errors": errors[0],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--concurrency", default="1,8")
    parser.add_argument("--models", default="tabular_classifier,image_cnn")
    args = parser.parse_args(argv)
    models = build_models()
    inputs = {"tabular_classifier": ("features", (1, 16)), "image_cnn": ("image", (1, 3, 64, 64))}
    rows = []
    for name in args.models.split(","):
        http_port, grpc_port = free_port(), free_port()
        env = dict(os.environ, PYTHONPATH=str(ROOT / "reference-server" / "src"))
        proc = subprocess.Popen(
            [sys.executable, "-m", "onnxserve", "--model", str(models[name]), "--port", str(http_port),
             "--grpc-port", str(grpc_port), "--log-level", "warning"], env=env,
        )
        try:
            probe = tgrpc.InferenceServerClient(f"127.0.0.1:{grpc_port}")
            deadline = time.monotonic() + 60
            while True:
                try:
                    if probe.is_server_ready():
                        break
                except Exception:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("server did not become ready")
                time.sleep(0.1)
            inp, shape = inputs[name]
            x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
            for threads in (int(c) for c in args.concurrency.split(",")):
                for protocol, url in (("rest", f"127.0.0.1:{http_port}"), ("grpc", f"127.0.0.1:{grpc_port}")):
                    row = cell(protocol, url, name, inp, x, threads, args.seconds)
                    rows.append(row)
                    print(json.dumps(row), file=sys.stderr)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "grpc_vs_rest.json").write_text(json.dumps(rows, indent=2))
    print("| model | concurrency | REST req/s | gRPC req/s | gRPC/REST | REST p50 ms | gRPC p50 ms |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in args.models.split(","):
        for threads in (int(c) for c in args.concurrency.split(",")):
            rest = next(r for r in rows if r["model"] == name and r["concurrency"] == threads and r["protocol"] == "rest")
            grpc_ = next(r for r in rows if r["model"] == name and r["concurrency"] == threads and r["protocol"] == "grpc")
            ratio = grpc_["rps"] / rest["rps"] if rest["rps"] else float("nan")
            print(f"| {name} | {threads} | {rest['rps']} | {grpc_['rps']} | {ratio:.2f} | {rest['p50_ms']} | {grpc_['p50_ms']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
