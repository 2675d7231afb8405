"""onnxserve against Triton Inference Server (PyTriton: one model instance, dynamic batching) on
the three benchmark models, same bodies, same load, rounds interleaved in one run.

Contestants (each its own process on 127.0.0.1, driven by ``wrk -t1``): ``onnxserve-json`` /
``onnxserve-binary`` (``python -m onnxserve``, one intra-op thread) and ``triton-json`` / ``triton-binary``
(bench/server_triton.py under bench/.venv-triton, see bench/README.md). All four serve the model
at once, idle but for the one being measured; each round measures every contestant once. A
round's ratio is onnxserve's best throughput over the concurrencies divided by Triton's, same
body encoding, so load from other work on the machine hits both sides of a ratio alike. Prints
the median ratio and its range over the rounds, the same for the server CPU time per request
(all threads and processes of each server: Triton's front end, its Python backend stub and the
PyTriton proxy count), and the median c=1 p50s.

    .venv/bin/python bench/triton_bench.py [--duration 2] [--repeat 6] [--out bench/results]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from server_bench import (  # noqa: E402
    LUA,
    TRITON_PY,
    bodies,
    check_once,
    free_port,
    run_wrk,
    start,
    stop,
)
from server_models import build  # noqa: E402

CONCURRENCY = (1, 16, 64)
PAIRS = (("onnxserve-json", "triton-json"), ("onnxserve-binary", "triton-binary"))


def measure(args: argparse.Namespace, model: str, path: Path, out: Path, lua: Path) -> list:
    """One dict per round: contestant -> concurrency -> wrk result."""
    files = bodies(model, out)
    contestants = [c for pair in PAIRS for c in pair if pair[0].split("-")[1] in args.encodings]
    rounds = []
    # All four stay up for the model's rounds (idle while the others are measured): a round is
    # only its measured points, so many rounds fit and each ratio pairs points close in time.
    servers: dict[str, tuple[str, int]] = {}
    procs = []
    try:
        for contestant in contestants:
            log = out / f"{model}.{contestant}.log"
            # One intra-op thread, as Triton's session (the server's own pick is timed at
            # start-up, which a loaded machine turns into a coin toss).
            proc, url, _ = start(contestant, path, free_port(), log, ("--intra-op-threads", "1"))
            procs.append(proc)
            check_once(url, *files[contestant])
            servers[contestant] = url, proc.pid
        for rnd in range(args.repeat):
            # Alternate who goes first, so neither side always follows the same other one.
            order = contestants if rnd % 2 == 0 else contestants[::-1]
            got: dict[str, dict[int, dict]] = {}
            for contestant in order:
                for conc in CONCURRENCY:
                    url, pid = servers[contestant]
                    r = run_wrk(url, conc, args.duration, files[contestant], lua, pid)
                    print(f"[{model}] round {rnd} {contestant} c={conc}: {r}", flush=True)
                    got.setdefault(contestant, {})[conc] = r
            rounds.append(got)
    finally:
        for proc in procs:
            stop(proc)
    return rounds


def summarise(rounds: list) -> dict:
    """Per encoding: onnxserve/Triton throughput ratio per round (best over concurrency each),
    its median and range, and the median c=1 p50 of each side."""
    out = {}
    for ours, theirs in PAIRS:
        if ours not in rounds[0]:
            continue
        ratios, cpu, p50 = [], [], {ours: [], theirs: []}
        for got in rounds:
            # Server CPU per request at c=16 (batching at work), Triton's over onnxserve's: what
            # each would serve per core on a machine of its own.
            cpu.append(got[theirs][16]["cpu_ms_per_req"] / got[ours][16]["cpu_ms_per_req"])
            top = {
                c: max(r["rps"] for r in got[c].values() if r["errors"] == 0)
                for c in (ours, theirs)
            }
            ratios.append(top[ours] / top[theirs])
            for c in (ours, theirs):
                p50[c].append(got[c][1]["p50_ms"])
        out[ours.split("-")[1]] = {
            "ratios": ratios,
            "ratio_median": statistics.median(ratios),
            "cpu_ratios_c16": cpu,
            "cpu_ratio_median": statistics.median(cpu),
            "p50_c1_ms": {c: statistics.median(v) for c, v in p50.items()},
        }
    return out


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}x ({min(values):.2f}-{max(values):.2f})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float, default=2.0, help="seconds per measured point")
    ap.add_argument("--repeat", type=int, default=6, help="interleaved rounds")
    ap.add_argument("--models", default="small_mlp,cnn,large_mlp")
    ap.add_argument("--encodings", default="json,binary")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    if not TRITON_PY.exists():
        print(
            f"no PyTriton venv at {TRITON_PY}: see bench/README.md (or set TRITON_PYTHON)",
            file=sys.stderr,
        )
        return 2
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    lua = out / "post.lua"
    lua.write_text(LUA)
    paths = build(out / "models")
    report: dict = {"duration": args.duration, "repeat": args.repeat, "models": {}}
    loads = [os.getloadavg()[0]]
    for model in args.models.split(","):
        rounds = measure(args, model, paths[model], out, lua)
        loads.append(os.getloadavg()[0])
        report["models"][model] = {"rounds": rounds, "summary": summarise(rounds)}
    report["load_average"] = loads
    (out / "triton_bench.json").write_text(json.dumps(report, indent=2))
    print(f"\nload average {[round(x, 1) for x in loads]}")
    print(
        "| model | bodies | onnxserve / Triton req/s | Triton / onnxserve server CPU per "
        "request, c=16 | c=1 p50 ms onnxserve | Triton |"
    )
    print("|---|---|---|---|---|---|")
    for model, entry in report["models"].items():
        for enc, s in entry["summary"].items():
            p50 = list(s["p50_c1_ms"].values())
            print(
                f"| {model} | {enc} | {_spread(s['ratios'])} | {_spread(s['cpu_ratios_c16'])} "
                f"| {p50[0]:.2f} | {p50[1]:.2f} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
