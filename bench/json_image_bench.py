"""V2 JSON image requests (3x64x64 float32, ~83 KB of JSON) on a tiny CNN: onnxserve against a
FastAPI endpoint that only parses the same body with orjson and answers a constant, in one run.

Contestants (each its own process on 127.0.0.1, driven by ``wrk -t1``, rounds interleaved, best
round kept): ``onnxserve-json`` (the product), ``onnxserve-general`` (the same server with the
direct JSON-to-numpy path switched off: orjson, then numpy from the Python list) and
``floor-parse`` (bench/server_floor.py --parse). The model's own batch-1 time is measured with
onnxruntime in process (one intra-op thread, as the server picks on two cores).

    .venv/bin/python bench/json_image_bench.py [--duration 4] [--repeat 3] [--out bench/results]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from server_bench import LUA, bodies, check_once, free_port, run_wrk, start, stop  # noqa: E402
from server_models import INPUT, build  # noqa: E402

CONTESTANTS = ("onnxserve-json", "onnxserve-general", "floor-parse")
CONCURRENCY = (1, 16)


def inference_ms(model: Path, seconds: float = 3.0) -> float:
    """Median batch-1 ``session.run`` time of the model alone."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    for _ in range(20):
        sess.run(None, {INPUT: x})
    times: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        sess.run(None, {INPUT: x})
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=4.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="json_image_bench."))
    model = build(work)["cnn"]
    body = bodies("cnn", work)["onnxserve-json"]
    lua = work / "post.lua"
    lua.write_text(LUA)
    best: dict[str, dict[int, dict]] = {c: {} for c in CONTESTANTS}
    loads: list[float] = [os.getloadavg()[0]]
    for rnd in range(args.repeat):
        for contestant in CONTESTANTS:
            proc, url, _ = start(contestant, model, free_port(), work / f"{contestant}.log")
            try:
                check_once(url, *body)
                for conc in CONCURRENCY:
                    r = run_wrk(url, conc, args.duration, body, lua)
                    print(f"round {rnd} {contestant} c={conc}: {r}", flush=True)
                    if r["errors"] == 0 and r["rps"] > best[contestant].get(conc, {}).get("rps", 0):
                        best[contestant][conc] = r
            finally:
                stop(proc)
        loads.append(os.getloadavg()[0])
    infer = inference_ms(model)
    ours, general, floor = (best[c] for c in CONTESTANTS)
    top = {c: max(r["rps"] for r in best[c].values()) for c in CONTESTANTS}
    report = {
        "body_bytes": body[0].stat().st_size,
        "duration_s": args.duration,
        "repeat": args.repeat,
        "load_average": loads,
        "inference_ms_b1": infer,
        "best": best,
        "throughput_ratio": top["onnxserve-json"] / top["floor-parse"],
        "throughput_ratio_general": top["onnxserve-general"] / top["floor-parse"],
        "p50_budget_ms": floor[1]["p50_ms"] + infer,
    }
    (args.out / "json_image_bench.json").write_text(json.dumps(report, indent=2))
    print(f"\nbody {report['body_bytes']} bytes; load average {loads}")
    print("| contestant | c=1 req/s (p50 ms) | c=16 req/s (p50 ms) |\n|---|---|---|")
    for c in CONTESTANTS:
        cells = [f"{best[c][k]['rps']:,.0f} ({best[c][k]['p50_ms']:.2f})" for k in CONCURRENCY]
        print(f"| {c} | " + " | ".join(cells) + " |")
    print(f"\nmodel alone, batch 1: {infer:.3f} ms")
    print(
        f"throughput vs parse floor: {report['throughput_ratio']:.2f}x "
        f"(general path {report['throughput_ratio_general']:.2f}x)"
    )
    print(
        f"c=1 p50: {ours[1]['p50_ms']:.2f} ms vs floor p50 + model = "
        f"{report['p50_budget_ms']:.2f} ms (general path {general[1]['p50_ms']:.2f} ms)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
