"""`deploy-model trial`: the local trial of the patterns without a request path to load-test.

- batch: the batch runner the CronJob runs (`python -m onnxserve.batch`) on a sample of the
  user's data (`--input`), else on rows made from the profile (the recorded sample or synthetic),
  into `trial/output/`; rows/s (over the runner's scoring time), rejects and the output's place go to trial.json.
- event-driven (streaming): a round trip through a local redis-server on a free loopback port:
  the worker the bundle runs (`python -m onnxserve.worker`) answers requests put on the stream;
  its start-up (launch to the answer of a warm-up message) goes to trial.json as startup_seconds,
  apart from the latency per message (each sent after the previous answer, timed from XADD to its
  answer: p50/p95 with their sample count), answered and dead-lettered. Without redis-server on
  PATH the round trip is skipped and trial.json says so (exit 0: nothing was refused).

Realtime plans use serve/smoke/loadtest and edge plans quantize; for them `trial` is a usage
error (exit 2) that names the stage to run instead.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from deploy_model.common.errors import EXIT_USAGE, StageError
from deploy_model.common.files import read_json, write_json
from deploy_model.measure.percentiles import percentile_fields
from deploy_model.model.inspection import PROFILE_FILE
from deploy_model.plan.spec import ServingPattern

TRIAL_FILE = "trial.json"
TRIAL_DIR = "trial"
SYNTHETIC_ROWS = 256
ROUND_TRIPS = 20


class UsageError(StageError):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.exit_code = EXIT_USAGE


def _model(directory: Path) -> tuple[Any, Path]:
    from deploy_model.plan.specfile import load_spec, resolve_model

    spec = load_spec(directory)
    return spec, resolve_model(spec, directory)


def _env() -> dict[str, str]:
    # The launcher put the plugin's sources on PYTHONPATH; keep them for the child processes.
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def run_trial(directory: Path, input_path: Path | None, timeout_s: float = 300.0, dry_run: bool = False) -> dict[str, Any]:
    spec, model = _model(directory)
    pattern = spec.serving.pattern
    if pattern == ServingPattern.batch:
        return _batch(directory, spec, model, input_path, timeout_s, dry_run)
    if pattern == ServingPattern.event_driven:
        return _stream(directory, spec, model, timeout_s, dry_run)
    instead = "serve --detach, smoke, loadtest, serve --stop" if pattern == ServingPattern.realtime else "quantize"
    raise UsageError(f"trial is the local run of batch and streaming plans; this plan is {pattern.value}: run {instead} instead")


def _profile(directory: Path) -> dict[str, Any]:
    profile = read_json(directory / PROFILE_FILE, "model profile (run inspect first)")
    if not isinstance(profile, dict) or "inputs" not in profile:
        raise StageError(f"{directory / PROFILE_FILE} is not a model profile (run inspect first)")
    return profile


def _rows(directory: Path, rows: int) -> tuple[dict[str, np.ndarray], str]:
    from deploy_model.model.samples import model_feed

    return model_feed(_profile(directory), directory, batch=rows)


# --- batch --------------------------------------------------------------------------------------


def _batch(directory: Path, spec: Any, model: Path, input_path: Path | None, timeout_s: float,
           dry_run: bool) -> dict[str, Any]:
    trial = directory / TRIAL_DIR
    if input_path is not None:
        input_path = input_path.expanduser()
        if not input_path.exists():
            raise StageError(f"--input {input_path} does not exist; expected a file or folder of the data to score "
                             "(.npy, .npz, .parquet, .csv, .jsonl)")
        source = f"the user's data {input_path}"
    output = trial / "output"
    if dry_run:
        return {"stage": "trial", "ok": True, "wrote": [], "dry_run": True,
                "summary": {"pattern": "batch", "input": str(input_path or "rows made from the profile")}}
    shutil.rmtree(output, ignore_errors=True)  # a trial is a fresh run, not a resume of an older one
    trial.mkdir(parents=True, exist_ok=True)
    if input_path is None:
        arrays, kind = _rows(directory, SYNTHETIC_ROWS)
        input_path = trial / "input.npz"
        np.savez(input_path, **arrays)
        source = f"{SYNTHETIC_ROWS} rows made from the profile ({kind} inputs)"
    argv = [sys.executable, "-m", "onnxserve.batch", "--model", str(model), "--input", str(input_path),
            "--output", str(output), "--output-format", "jsonl", "--json", "--no-progress",
            "--max-reject-ratio", "1"]
    started = time.perf_counter()
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, env=_env(), check=False)
    except subprocess.TimeoutExpired:
        raise StageError(f"the batch trial did not finish in {timeout_s:g} s; give a smaller sample with --input") from None
    seconds = time.perf_counter() - started
    try:
        result = json.loads(proc.stdout) if proc.stdout.strip() else {}
    except json.JSONDecodeError:
        result = {}
    record: dict[str, Any] = {
        "pattern": "batch", "ok": proc.returncode == 0, "input": str(input_path), "source": source,
        "output": str(output), "exit_code": proc.returncode, "seconds": round(seconds, 3),
        "runner": result or None, "command": shlex.join(argv[1:]),
    }
    rows = _first(result, ("rows", "rows_total", "rows_done", "scored"))
    rejects = _first(result, ("rejected", "rejects", "rows_rejected"))
    # Throughput is the runner's own (its scoring time), not the wall time that includes its start-up.
    scoring = result.get("seconds") if isinstance(result, dict) and isinstance(result.get("seconds"), (int, float)) else None
    timed = scoring if scoring else seconds
    record.update(rows=rows, rejected=rejects, scoring_seconds=scoring,
                  rows_per_second=round(rows / timed, 1) if isinstance(rows, (int, float)) and timed else None)
    if proc.returncode != 0:
        record["error"] = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
    path = write_json(directory / TRIAL_FILE, record)
    if proc.returncode != 0:
        raise StageError(f"the batch trial failed: {record['error']}", [f"wrote {path}"])
    return {"stage": "trial", "ok": True, "wrote": [str(path), str(output)],
            "summary": {"pattern": "batch", "input": source, "rows": rows, "rejected": rejects,
                        "rows_per_second": record["rows_per_second"], "output": str(output)}}


def _first(doc: Any, keys: tuple[str, ...]) -> Any:
    """The first of these keys found in the runner's summary (top level or one level down)."""
    if not isinstance(doc, dict):
        return None
    for key in keys:
        if isinstance(doc.get(key), (int, float)):
            return doc[key]
    for value in doc.values():
        if isinstance(value, dict):
            found = _first(value, keys)
            if found is not None:
                return found
    return None


# --- streaming: a round trip through redis-server and the worker ---------------------------------


def _free_port() -> int:
    from deploy_model.measure.serve import free_port

    return free_port()


def _stream(directory: Path, spec: Any, model: Path, timeout_s: float, dry_run: bool) -> dict[str, Any]:
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        reason = ("redis-server is not installed here, so the local worker round trip was not run "
                  "(Debian/Ubuntu: apt-get install redis-server; then run trial again)")
        print(f"trial: skipped: {reason}", file=sys.stderr, flush=True)
        if dry_run:
            return {"stage": "trial", "ok": True, "wrote": [], "dry_run": True, "skipped": reason}
        path = write_json(directory / TRIAL_FILE, {"pattern": "event-driven", "ok": None, "skipped": reason})
        return {"stage": "trial", "ok": True, "wrote": [str(path)], "skipped": reason}
    if dry_run:
        return {"stage": "trial", "ok": True, "wrote": [], "dry_run": True,
                "summary": {"pattern": "event-driven", "redis_server": redis_server}}
    import redis

    from deploy_model.plan.spec import WORKER_GROUP, WORKER_STREAM

    results_stream, dead_stream = "inference:results", "inference:dead-letter"
    arrays, kind = _rows(directory, ROUND_TRIPS)
    port = _free_port()
    url = f"redis://127.0.0.1:{port}/0"
    startup: float | None = None
    latencies: list[float] = []
    timed = 0.0
    with tempfile.TemporaryDirectory(prefix="deploy-model-redis-") as scratch:
        server = subprocess.Popen([redis_server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                   "--appendonly", "no", "--dir", scratch], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        worker: subprocess.Popen[str] | None = None
        try:
            client = redis.Redis.from_url(url, decode_responses=True)
            _wait(lambda: _pings(client), 10, "redis-server to answer PING")
            launched = time.perf_counter()
            worker = subprocess.Popen(
                [sys.executable, "-m", "onnxserve.worker", "--model", str(model), "--redis-url", url,
                 "--stream", WORKER_STREAM, "--group", WORKER_GROUP, "--results", results_stream,
                 "--dead-letter", dead_stream, "--block-ms", "100", "--max-messages", str(ROUND_TRIPS + 1)],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env())
            answers = _Answers(client, results_stream, dead_stream, worker, launched + timeout_s)

            def send(name: str, row: int) -> str:
                body = {"id": name, "inputs": {key: a[row:row + 1].tolist() for key, a in arrays.items()}}
                # The worker answers with the request's stream entry id (and the client's "id" in the body).
                return str(client.xadd(WORKER_STREAM, {"body": json.dumps(body)}))

            # Start-up is launch to the warm-up's answer (model load, consumer group, first inference);
            # only then is each message timed, one at a time, from its XADD to its answer.
            if answers.wait(send("trial-warmup", 0)) == "answered":
                startup = time.perf_counter() - launched
                began = time.perf_counter()
                for row in range(ROUND_TRIPS):
                    at = time.perf_counter()
                    outcome = answers.wait(send(f"trial-{row}", row))
                    if outcome is None:
                        break
                    if outcome == "answered":
                        latencies.append((time.perf_counter() - at) * 1000)
                timed = time.perf_counter() - began
            dead = int(client.xlen(dead_stream))
        finally:
            if worker is not None:
                _stop(worker)
            _stop(server)
        worker_log = worker.stderr.read() if worker is not None and worker.stderr else ""
    answered = len(latencies)
    ok = startup is not None and answered == ROUND_TRIPS and dead == 0
    lat = np.asarray(latencies)
    figures = percentile_fields(answered, lambda q: round(float(np.percentile(lat, q)), 2))
    record: dict[str, Any] = {
        "pattern": "event-driven", "ok": ok,
        "redis_server": redis_server, "stream": WORKER_STREAM, "group": WORKER_GROUP, "inputs": kind,
        "sent": ROUND_TRIPS, "answered": answered, "dead_lettered": dead,
        "startup_seconds": round(startup, 3) if startup is not None else None,
        "latency": "per message after start-up, one at a time, from XADD to its answer on the result stream",
        **{k: v for k, v in figures.items() if k.startswith(("samples", "p50_", "p95_"))},
        "messages_per_second": round(answered / timed, 1) if answered and timed else None,
        "seconds": round(time.perf_counter() - launched, 3),
    }
    if not ok:
        record["error"] = (f"the worker answered {answered} of {ROUND_TRIPS} requests ({dead} dead-lettered)"
                           if startup is not None else
                           f"the worker did not answer its warm-up message within {timeout_s:g} s of its start")
        record["worker_log_tail"] = worker_log.strip().splitlines()[-10:]
    path = write_json(directory / TRIAL_FILE, record)
    if not ok:
        raise StageError(record["error"], [*record["worker_log_tail"], f"wrote {path}"])
    return {"stage": "trial", "ok": True, "wrote": [str(path)],
            "summary": {k: record[k] for k in ("pattern", "sent", "answered", "dead_lettered", "startup_seconds",
                                               "samples", "p50_ms", "p95_ms", "messages_per_second")}}


class _Answers:
    """Reads the result and dead-letter streams until a request's answer shows up, or the time runs out."""

    def __init__(self, client: Any, results: str, dead: str, worker: subprocess.Popen[str], deadline: float) -> None:
        self.client, self.worker, self.deadline = client, worker, deadline
        self.last = {results: "0-0", dead: "0-0"}
        self.kind = {results: "answered", dead: "dead-lettered"}
        self.seen: dict[str, str] = {}

    def wait(self, request_id: str) -> str | None:
        """'answered' or 'dead-lettered', or None when the worker failed or the deadline passed first."""
        while request_id not in self.seen:
            if time.perf_counter() > self.deadline or (self.worker.poll() is not None and self.worker.returncode != 0):
                return None
            for stream, entries in self.client.xread(dict(self.last), block=100) or []:
                for entry_id, fields in entries:
                    self.last[stream] = entry_id
                    self.seen.setdefault(fields.get("request_id", ""), self.kind[stream])
        return self.seen[request_id]


def _pings(client: Any) -> bool:
    try:
        return bool(client.ping())
    except Exception:  # connection refused until the server listens
        return False


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise StageError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


def _stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
