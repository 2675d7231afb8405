"""Reference-server benchmark: onnxserve against the naive pattern, LitServe, an HTTP floor and the
raw in-process onnxruntime ceiling, on three models, at concurrency 1, 16 and 64, in one run.

Not a test: it measures. Needs ``wrk`` (Debian package) and the bench venv:

    python3 -m venv bench/.venv
    bench/.venv/bin/pip install -r bench/server_requirements.txt -e reference-server
    bench/.venv/bin/python bench/server_bench.py [--duration 5] [--out bench/results]

Writes ``server_bench.json`` and ``server_bench.md`` under --out and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import onnxruntime as ort
import orjson

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from server_models import INPUT, SHAPES, build  # noqa: E402

CONCURRENCY = (1, 16, 64)
# PyTriton (nvidia-pytriton) lives in a venv of its own: see bench/README.md.
TRITON_PY = Path(os.environ.get("TRITON_PYTHON", HERE / ".venv-triton" / "bin" / "python"))
CONTESTANTS = ("onnxserve-json", "onnxserve-binary", "naive", "litserve", "floor")

LUA = """
wrk.method = "POST"
local f = io.open(os.getenv("BENCH_BODY"), "rb")
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = os.getenv("BENCH_CTYPE")
local h = os.getenv("BENCH_HLEN")
if h ~= nil and h ~= "" then
  wrk.headers["Inference-Header-Content-Length"] = h
end
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bodies(model: str, out: Path) -> dict[str, tuple[Path, str, str]]:
    """contestant -> (body file, content type, Inference-Header-Content-Length or '')."""
    shape = SHAPES[model]
    x = np.random.default_rng(0).standard_normal((1, *shape)).astype(np.float32)
    # Three decimals: about 80 KiB of JSON for the CNN's 12288 values, as in the issue.
    flat = [round(float(v), 3) for v in x.ravel()]
    v2 = orjson.dumps(
        {"inputs": [{"name": INPUT, "shape": [1, *shape], "datatype": "FP32", "data": flat}]}
    )
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": INPUT,
                    "shape": [1, *shape],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ],
            "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
        }
    )
    simple = orjson.dumps({"inputs": flat})
    files = {}
    for name, payload in (("v2", v2), ("bin", header + x.tobytes()), ("simple", simple)):
        path = out / f"{model}.{name}.body"
        path.write_bytes(payload)
        files[name] = path
    return {
        "onnxserve-json": (files["v2"], "application/json", ""),
        "onnxserve-binary": (files["bin"], "application/octet-stream", str(len(header))),
        "naive": (files["simple"], "application/json", ""),
        "litserve": (files["simple"], "application/json", ""),
        "floor": (files["v2"], "application/json", ""),
        "triton-json": (files["v2"], "application/json", ""),
        "triton-binary": (files["bin"], "application/octet-stream", str(len(header))),
    }


def start(
    contestant: str, model: Path, port: int, log: Path, extra: tuple[str, ...] = ()
) -> tuple[subprocess.Popen, str, str]:
    """Start one contestant; ``extra`` goes on onnxserve's command line."""
    py = sys.executable
    if contestant.startswith("onnxserve"):
        # onnxserve-general: the same server with the direct JSON-to-numpy path switched off.
        general = "import sys, onnxserve.data_spans as d; d.simdjson = None; "
        general += "from onnxserve.__main__ import main; sys.exit(main(sys.argv[1:]))"
        runner = ["-c", general] if contestant == "onnxserve-general" else ["-m", "onnxserve"]
        cmd = [
            py,
            *runner,
            "--model",
            str(model),
            "--port",
            str(port),
            "--model-name",
            "m",
            "--log-level",
            "warning",
            *extra,
        ]
        path, ready = "/v2/models/m/infer", "/v2/health/ready"
    elif contestant.startswith("triton"):
        # Triton through PyTriton, in its own venv (bench/triton_bench.py, bench/README.md).
        cmd = [str(TRITON_PY), str(HERE / "server_triton.py"), str(model), str(port)]
        # The server answers /v2/health/ready before PyTriton has bound the model.
        path, ready = "/v2/models/m/infer", "/v2/models/m/ready"
    elif contestant == "naive":
        cmd = [py, str(HERE / "server_naive.py"), str(model), str(port)]
        path, ready = "/predict", "/health"
    elif contestant == "litserve":
        cmd = [py, str(HERE / "server_litserve.py"), str(model), str(port)]
        path, ready = "/predict", "/health"
    else:
        parse = ["--parse"] if contestant == "floor-parse" else []
        cmd = [py, str(HERE / "server_floor.py"), str(port), *parse]
        path, ready = "/v2/models/m/infer", "/health"
    proc = subprocess.Popen(
        cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{contestant} exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url + ready, timeout=1) as r:
                if r.status == 200:
                    return proc, url + path, url
        except OSError:
            time.sleep(0.1)
    stop(proc)
    raise RuntimeError(f"{contestant} not ready: {log.read_text()[-2000:]}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        # LitServe forks workers: signal the whole session we started, by its id.
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def check_once(url: str, body: Path, ctype: str, hlen: str) -> None:
    headers = {"Content-Type": ctype}
    if hlen:
        headers["Inference-Header-Content-Length"] = hlen
    req = urllib.request.Request(url, data=body.read_bytes(), headers=headers, method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        if r.status != 200:
            raise RuntimeError(f"{url}: HTTP {r.status}")
        r.read()


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * _UNITS[m.group(2)]


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) of ``pid`` and every process below it."""
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        child = int(stat.parent.name)
        parents[child] = int(fields[1])
        ticks[child] = int(fields[11]) + int(fields[12])  # utime, stime
    tree, todo = set(), [pid]
    while todo:
        at = todo.pop()
        tree.add(at)
        todo += [c for c, parent in parents.items() if parent == at and c not in tree]
    return sum(ticks.get(p, 0) for p in tree) / os.sysconf("SC_CLK_TCK")


def run_wrk(
    url: str,
    conc: int,
    duration: float,
    body: tuple[Path, str, str],
    lua: Path,
    pid: int | None = None,
) -> dict:
    """One measured point after 1 s of warm-up. With ``pid``, also the CPU time the server's
    process tree spent per request (``cpu_ms_per_req``): unlike req/s, it hardly moves with
    other work on a shared machine, and a multi-threaded server gains nothing from it."""
    env = dict(os.environ, BENCH_BODY=str(body[0]), BENCH_CTYPE=body[1], BENCH_HLEN=body[2])
    base = ["wrk", "-t1", f"-c{conc}", "--latency", "--timeout", "10s", "-s", str(lua)]
    subprocess.run([*base, "-d1s", url], env=env, capture_output=True, check=True)  # warm-up
    cpu = tree_cpu_s(pid) if pid is not None else 0.0
    out = subprocess.run(
        [*base, f"-d{duration:g}s", url], env=env, capture_output=True, text=True, check=True
    ).stdout
    cpu = tree_cpu_s(pid) - cpu if pid is not None else 0.0
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = {p: _ms(v) for p, v in re.findall(r"^\s+(50|90|99)%\s+(\S+)", out, re.M)}
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non2xx.group(1)) if non2xx else 0) + (
        sum(int(g) for g in sock.groups()) if sock else 0
    )
    done = int(re.search(r"(\d+) requests in", out).group(1))
    point = {
        "rps": rps,
        "p50_ms": lat.get("50"),
        "p90_ms": lat.get("90"),
        "p99_ms": lat.get("99"),
        "errors": errors,
    }
    if pid is not None and done:
        point["cpu_ms_per_req"] = cpu * 1000 / done
    return point


def raw_ceiling(model: Path, shape: tuple[int, ...], seconds: float = 1.5) -> list[dict]:
    rows = []
    for threads in (1, 2):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
        for batch in (1, 32):
            x = np.random.default_rng(0).standard_normal((batch, *shape)).astype(np.float32)
            for _ in range(3):
                sess.run(None, {INPUT: x})
            n, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                sess.run(None, {INPUT: x})
                n += 1
            took = time.perf_counter() - start
            rows.append(
                {
                    "threads": threads,
                    "batch": batch,
                    "samples_per_s": n * batch / took,
                    "batch_ms": took / n * 1000,
                }
            )
    return rows


def evaluate(model: str, res: dict, raw: list[dict]) -> list[tuple[str, float, float, bool]]:
    """(target, measured, wanted, met) using each contestant's best throughput over concurrency."""
    best = {c: max(r["rps"] for r in res[c].values()) for c in res}
    raw_best = max(r["samples_per_s"] for r in raw)
    raw_b1 = min(r["batch_ms"] for r in raw if r["batch"] == 1)
    out = []

    def ratio(name: str, a: str, b: str, want: float) -> None:
        value = best[a] / best[b]
        out.append((name, value, want, value >= want))

    if model == "small_mlp":
        ratio("onnxserve-json / naive", "onnxserve-json", "naive", 2.0)
        ratio("onnxserve-json / floor", "onnxserve-json", "floor", 0.9)
    elif model == "cnn":
        ratio("onnxserve-json / naive", "onnxserve-json", "naive", 3.0)
        ratio("onnxserve-binary / naive", "onnxserve-binary", "naive", 6.0)
    else:
        ratio("onnxserve-json / naive", "onnxserve-json", "naive", 5.0)
        ratio("onnxserve-json / litserve", "onnxserve-json", "litserve", 3.0)
        value = max(best["onnxserve-json"], best["onnxserve-binary"]) / raw_best
        out.append(("onnxserve (best) / raw onnxruntime best", value, 0.4, value >= 0.4))
    budget = res["floor"][1]["p50_ms"] + raw_b1 + 0.3
    for kind in ("json", "binary"):
        ours = res[f"onnxserve-{kind}"][1]["p50_ms"]
        out.append(
            (f"c=1 p50 ms ({kind}) <= floor p50 + raw b1 + 0.3", ours, budget, ours <= budget)
        )
    return out


def markdown(report: dict) -> str:
    lines = [
        f"Machine: {report['machine']}; onnxruntime {report['ort']}; {report['duration']:g} s "
        f"per point after 1 s warm-up, best of {report['repeat']} rounds; wrk -t1; "
        "requests/s (p50 ms) per concurrency. 1-minute load average before/after: "
        f"{report['load_before']:.1f}/{report['load_after']:.1f} (the machine is shared).",
        "",
    ]
    for model, data in report["models"].items():
        lines += [
            f"#### {model}",
            "",
            "| contestant | " + " | ".join(f"c={c}" for c in CONCURRENCY) + " | errors |",
            "|---" * (len(CONCURRENCY) + 2) + "|",
        ]
        for name, per in data["results"].items():
            cells = [
                f"{per[str(c)]['rps']:,.0f} ({per[str(c)]['p50_ms']:.2f})" for c in CONCURRENCY
            ]
            errors = sum(per[str(c)]["errors"] for c in CONCURRENCY)
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {errors} |")
        raw = ", ".join(
            f"b{r['batch']}/t{r['threads']}: {r['samples_per_s']:,.0f}/s ({r['batch_ms']:.3f} ms)"
            for r in data["raw"]
        )
        lines += [
            "",
            f"Raw onnxruntime in-process (samples/s, ms per batch): {raw}",
            "",
            "| target | measured | wanted | met |",
            "|---|---|---|---|",
        ]
        for name, value, want, met in data["targets"]:
            lines.append(f"| {name} | {value:.2f} | {want:.2f} | {'yes' if met else 'NO'} |")
        lines.append("")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per measured point")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument(
        "--repeat", type=int, default=2, help="rounds; the best run of each point is kept"
    )
    ap.add_argument("--models", default="small_mlp,cnn,large_mlp")
    ap.add_argument("--render", type=Path, help="only re-render the tables of a saved JSON report")
    ap.add_argument("--contestants", default=",".join(CONTESTANTS))
    args = ap.parse_args()
    if args.render:
        print(markdown(json.loads(args.render.read_text())))
        return 0
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    lua = out / "post.lua"
    lua.write_text(LUA)
    paths = build(out / "models")
    report: dict = {
        "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} CPUs, "
        f"{platform.python_implementation()} {platform.python_version()}",
        "ort": ort.__version__,
        "duration": args.duration,
        "repeat": args.repeat,
        "load_before": os.getloadavg()[0],
        "models": {},
    }
    for model in args.models.split(","):
        raw = raw_ceiling(paths[model], SHAPES[model])
        print(f"[{model}] raw: {raw}", flush=True)
        files = bodies(model, out)
        results: dict = {}
        # Rounds: each point is measured `repeat` times, contestants interleaved, and the best
        # run kept, so a burst of unrelated load on the machine does not decide a ratio.
        for rnd in range(args.repeat):
            for contestant in args.contestants.split(","):
                port = free_port()
                log = out / f"{model}.{contestant}.log"
                proc, url, _ = start(contestant, paths[model], port, log)
                try:
                    check_once(url, *files[contestant])
                    per = results.setdefault(contestant, {})
                    for conc in CONCURRENCY:
                        r = run_wrk(url, conc, args.duration, files[contestant], lua)
                        print(f"[{model}] round {rnd} {contestant} c={conc}: {r}", flush=True)
                        if str(conc) not in per or r["rps"] > per[str(conc)]["rps"]:
                            per[str(conc)] = r
                finally:
                    stop(proc)
        entry = {"results": results, "raw": raw}
        if set(CONTESTANTS) <= set(results):
            entry["targets"] = evaluate(
                model, {c: {int(k): v for k, v in per.items()} for c, per in results.items()}, raw
            )
        else:
            entry["targets"] = []
        report["models"][model] = entry
    report["load_after"] = os.getloadavg()[0]
    (out / "server_bench.json").write_text(json.dumps(report, indent=2))
    text = markdown(report)
    (out / "server_bench.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
