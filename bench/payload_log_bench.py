"""Payload logging's cost: onnxserve's throughput with --payload-log-sink at sampling 1.0 against
the same server with logging off, under the load generator server_bench.py uses (wrk), on the same
model and body, alternating off/on rounds so both see the same machine.

Not a test: it measures. Needs ``wrk``; run with the project's or the bench's venv:

    python bench/payload_log_bench.py [--duration 5] [--rounds 3] [--concurrency 16]

Prints a table and writes ``payload_log_bench.json`` under --out. After each logged round it
checks that nothing was lost: every sampled record written (payload_log_dropped_total 0).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from server_bench import LUA, bodies, free_port, run_wrk, stop  # noqa: E402
from server_models import build  # noqa: E402


def _metric(url: str, name: str, labels: str = "") -> float:
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + (labels or "")) and (labels or line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _serve(model: Path, log_dir: Path | None, workdir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    extra = ["--payload-log-sink", str(log_dir), "--payload-log-sampling", "1.0"] if log_dir else []
    cmd = [sys.executable, "-m", "onnxserve", "--model", str(model), "--port", str(port),
           "--model-name", "m", "--log-level", "warning", *extra]
    log = (workdir / f"server-{port}.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/v2/health/ready", timeout=1) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.1)
    stop(proc)
    raise RuntimeError("onnxserve did not become ready")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per measured point")
    ap.add_argument("--rounds", type=int, default=3, help="off/on pairs (the medians are reported)")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--model", default="small_mlp", help="a model of server_models.py")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = build(work)[args.model]
        body = bodies(args.model, work)["onnxserve-json"]
        lua = work / "post.lua"
        lua.write_text(LUA)
        results: dict[str, list[dict]] = {"off": [], "on": []}
        for i in range(args.rounds):
            for mode in ("off", "on"):
                logs = work / f"payloads-{i}" if mode == "on" else None
                proc, url = _serve(model, logs, work)
                try:
                    point = run_wrk(url + "/v2/models/m/infer", args.concurrency, args.duration, body, lua)
                    if logs is not None:
                        while _metric(url, "payload_log_queue_depth") > 0:
                            time.sleep(0.1)
                        point["sampled"] = _metric(url, "payload_log_sampled_total")
                        point["written"] = _metric(url, "payload_log_written_total")
                        point["dropped"] = _metric(url, "payload_log_dropped_total")
                finally:
                    stop(proc)
                results[mode].append(point)
                print(f"round {i + 1} {mode}: {point}", flush=True)
    off = statistics.median(p["rps"] for p in results["off"])
    on = statistics.median(p["rps"] for p in results["on"])
    lost = sum(p["dropped"] for p in results["on"])
    report = {"model": args.model, "concurrency": args.concurrency, "duration_s": args.duration,
              "rounds": results, "median_rps_off": off, "median_rps_on": on,
              "throughput_kept": on / off, "records_dropped": lost}
    (args.out / "payload_log_bench.json").write_text(json.dumps(report, indent=2))
    print(f"\n{args.model}, concurrency {args.concurrency}: {off:.0f} req/s off, {on:.0f} req/s with "
          f"payload logging at sampling 1.0 (file sink): {on / off:.1%} of the throughput kept; "
          f"records dropped: {lost:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
