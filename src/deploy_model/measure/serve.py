"""Stage `serve`: run the reference ONNX server (`python -m onnxserve`) for a deployment spec.

The server is a child process on a loopback port. `ServerProcess` is the context manager the
deploy pipeline uses; it always stops the server (SIGTERM, then SIGKILL after a bound) by the
PID it started. `server.json` records pid, url, port and log path so smoke and loadtest find it.

The wait for readiness follows what `inspect` measured (model-profile.json): 15 s + 2 x load +
the server's warm-up budget + one run of the largest warm-up batch, at least 60 s and at most
900 s (`ready_wait`; the load is the profile's when recorded, else estimated from the model's
size). The same warm-up budget (`model.startup_budget`) is passed as --warmup-budget-s, so the
server becomes ready within the wait even when warming every batch size would take longer. A
wait that runs out names the figures it used and ends with the server's last log lines.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from deploy_model.common.errors import StageError
from deploy_model.common.files import read_json, write_json
from deploy_model.measure.ready_wait import ReadyWait, derived_wait, given_wait
from deploy_model.measure.trial_models import trial_models
from deploy_model.model.startup_budget import StartupFigures, read_profile, startup_figures
from deploy_model.plan.spec import DeploymentSpec, ServingPattern
from deploy_model.plan.specfile import load_spec

SERVER_FILE = "server.json"
SERVER_LOG = "server.log"
PROFILE_FILE = "model-profile.json"
LOOPBACK = "127.0.0.1"
# SIGKILL only after the server's own shutdown budget (--drain-timeout-s) plus this margin: the
# same "drain + 5 s" the server documents for terminationGracePeriodSeconds (less preStop, which
# a local process does not have).
STOP_MARGIN_S = 5.0
# The bound when the spec's drain budget is unknown (the server's default budget, 30 s, + margin).
STOP_TIMEOUT_S = 30.0 + STOP_MARGIN_S
# Patterns whose bundle has a request/response server worth smoke- and load-testing.
SERVED_PATTERNS = {ServingPattern.realtime}


def not_served_reason(spec: DeploymentSpec) -> str | None:
    """Why a pattern has no live endpoint to measure, or None when it has one."""
    if spec.serving.pattern in SERVED_PATTERNS:
        return None
    reasons = {
        ServingPattern.batch: "the batch pattern runs scheduled jobs over files; there is no request path to smoke- or load-test",
        ServingPattern.event_driven: "the event-driven pattern consumes a message queue; there is no HTTP request path to load-test",
        ServingPattern.edge: "the edge pattern runs the model on the device; there is no server in the bundle to measure",
    }
    return reasons.get(spec.serving.pattern, f"pattern {spec.serving.pattern.value} has no request path")


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _server_pythonpath() -> str:
    """Where `onnxserve` lives, so a plain checkout (scripts/ without install) can launch it."""
    found = importlib.util.find_spec("onnxserve")
    paths = []
    if found and found.submodule_search_locations:
        paths.append(str(Path(next(iter(found.submodule_search_locations))).parent))
    else:
        paths.append(str(Path(__file__).resolve().parents[3] / "reference-server" / "src"))
    if os.environ.get("PYTHONPATH"):
        paths.append(os.environ["PYTHONPATH"])
    return os.pathsep.join(paths)


def available_providers() -> list[str]:
    try:
        import onnxruntime as ort

        return list(ort.get_available_providers())
    except ImportError:
        return []


def profile_sample(directory: Path) -> Path | None:
    """The sample recorded in the directory's model-profile.json (`sample.path`, relative to the
    directory), when there is one and the file is there; the server warms up with it."""
    from deploy_model.model.samples import sample_path

    profile_file = directory / PROFILE_FILE
    if not profile_file.is_file():
        return None
    try:
        profile = read_json(profile_file, "model profile")
    except StageError:
        return None
    path = sample_path(profile, directory) if isinstance(profile, dict) else None
    return path.resolve() if path is not None and path.is_file() else None


def server_argv(
    spec: DeploymentSpec, port: int, host: str = LOOPBACK, device: str | None = None, grpc_port: int | None = None,
    warmup_sample: Path | None = None, warmup_budget_s: float | None = None,
) -> tuple[list[str], list[str]]:
    """The command line that serves this spec locally, and notes on where it differs from the bundle."""
    notes: list[str] = []
    chosen = device or spec.serving.device.value
    fallback = spec.serving.allow_cpu_fallback
    wanted = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}.get(chosen)
    if wanted and wanted not in available_providers():
        # The bundle still targets the GPU; locally we measure on CPU and say so in the report.
        fallback = True
        notes.append(f"{wanted} is not available on this machine: served locally on CPU (the bundle still targets {chosen})")
    batching = spec.batching
    served = trial_models(spec)  # an in-process shadow candidate runs as the bundle's shadow pods do
    if served.note:
        notes.append(served.note)
    argv = [
        sys.executable, "-m", "onnxserve",
        "--model", str(served.model.resolve()),
        "--model-name", spec.model.name,
        "--model-version", served.version,
        "--host", host,
        "--port", str(port),
        "--device", chosen,
        "--max-batch-size", str(batching.max_batch_size if batching.enabled else 1),
        "--max-batch-delay-ms", str(batching.max_batch_delay_ms if batching.enabled else 0),
        "--max-queue-size", str(batching.max_queue_size),
        "--request-timeout-ms", str(spec.serving.request_timeout_ms),
        # The spec's shutdown budget, as in the bundle's ONNXSERVE_DRAIN_TIMEOUT_S.
        "--drain-timeout-s", str(spec.serving.drain_seconds),
    ]
    argv.append("--allow-cpu-fallback" if fallback else "--no-allow-cpu-fallback")
    if spec.serving.workers > 1:
        # The plan's processes per pod, so smoke and loadtest measure what the bundle runs.
        argv += ["--workers", str(spec.serving.workers)]
    if grpc_port:
        argv += ["--grpc-port", str(grpc_port)]
    if warmup_sample is not None:
        argv += ["--warmup-sample", str(warmup_sample)]
    if warmup_budget_s is not None:
        # The budget the bundle gives the server (ONNXSERVE_WARMUP_BUDGET_S), so the wait covers it.
        argv += ["--warmup-budget-s", f"{warmup_budget_s:g}"]
    if served.shadow is not None:
        argv += ["--shadow-model", str(served.shadow.resolve()), "--shadow-sample-rate", str(served.shadow_rate)]
    return argv, notes


def wait_ready(
    url: str, proc: subprocess.Popen[bytes] | None, timeout_s: float, log: Path | None = None, basis: str | None = None,
) -> dict[str, Any]:
    """Poll /v2/health/ready until 200 (bounded); fail early when the process exits. `basis` says
    where the bound came from, in the message when it runs out."""
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                reason = refusal_reason(log)
                raise StageError(
                    f"the reference server exited with code {proc.returncode} before it was ready"
                    + (f": {reason}" if reason else ""),
                    log_tail(log),
                )
            try:
                response = client.get(f"{url}/v2/health/ready")
                if response.status_code == 200:
                    health = client.get(f"{url}/health")
                    return health.json() if health.status_code == 200 else {}
                last = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                last = type(exc).__name__
            time.sleep(0.2)
    tail = log_tail(log)
    raise StageError(
        f"the reference server at {url} was not ready within {timeout_s:g}s ({basis or 'the bound given'}; "
        f"last answer: {last}); the server's last log lines follow"
        + ("" if tail else " (its log is empty)"),
        tail,
    )


SUPERVISOR_LINE = re.compile(r"onnxserve: (worker \S+ exited with|\d+ workers on )")


def refusal_reason(log: Path | None) -> str | None:
    """The server's own reason for refusing to start: its `onnxserve: ...` line on stderr (start-up
    refused, a missing file), else its last ERROR line, else the last line that is not uvicorn's."""
    if log is None or not log.is_file():
        return None
    lines = [line.strip() for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    # With --workers the supervisor's own "worker ... exited with 1; stopping all" comes last:
    # the worker's refusal before it is the reason.
    own = [line for line in lines if line.startswith("onnxserve: ") and not SUPERVISOR_LINE.match(line)]
    if own:
        return own[-1][len("onnxserve: "):][:500]
    for line in reversed(lines):
        if " ERROR " in line or line.startswith("ERROR"):
            return line.split(": ", 1)[-1][:500] if "onnxserve" in line else line[:500]
    quiet = ("INFO:", "Traceback", "File ")
    for line in reversed(lines):
        if not line.startswith(quiet):
            return line[:500]
    return None


def log_tail(log: Path | None, lines: int = 15) -> list[str]:
    if log is None or not log.is_file():
        return []
    text = log.read_text(encoding="utf-8", errors="replace").splitlines()
    return [f"server log: {line}" for line in text[-lines:]]


def stop_timeout(drain_seconds: float | None) -> float:
    """How long to wait after SIGTERM before SIGKILL: the server's drain budget + the margin."""
    return STOP_TIMEOUT_S if drain_seconds is None else float(drain_seconds) + STOP_MARGIN_S


def stop_pid(pid: int, timeout_s: float = STOP_TIMEOUT_S, proc: subprocess.Popen[bytes] | None = None) -> str:
    """SIGTERM (the server drains), then SIGKILL after timeout_s. Only ever the given PID."""
    def alive() -> bool:
        if proc is not None:
            return proc.poll() is None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    if not alive():
        return "already stopped"
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return "already stopped"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive():
            return "stopped (SIGTERM)"
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return "stopped (SIGTERM)"
    if proc is not None:
        proc.wait(timeout=5)
    return f"killed (SIGKILL after {timeout_s:g}s)"


def serve_figures(spec: DeploymentSpec, directory: Path) -> StartupFigures:
    """The start-up figures of the spec's model as served locally (its --max-batch-size)."""
    batch = spec.batching.max_batch_size if spec.batching.enabled else 1
    return startup_figures(read_profile(directory), batch, spec.model.bytes)


class ServerProcess:
    """The reference server for one deployment directory, as a context manager.

    Entering starts it on a free loopback port (or `port`), waits for readiness and writes
    server.json; leaving stops it and marks server.json stopped.
    """

    def __init__(
        self, directory: Path, port: int | None = None, device: str | None = None,
        ready_timeout_s: float | None = None, write: bool = True,
    ) -> None:
        self.directory = directory
        self.spec = load_spec(directory)
        self.port = port or free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        # A gRPC plan is served on both protocols, as in the bundle.
        self.grpc_port = free_port() if self.spec.serving.protocol.value == "grpc" else None
        # The sample of `inspect --sample` (model-profile.json) warms the server up with real values.
        self.warmup_sample = profile_sample(directory)
        self.startup = serve_figures(self.spec, directory)
        self.argv, self.notes = server_argv(
            self.spec, self.port, device=device, grpc_port=self.grpc_port, warmup_sample=self.warmup_sample,
            warmup_budget_s=self.startup.warmup_budget_s,
        )
        # None: derived from the profile (see the module docstring).
        self.wait: ReadyWait = derived_wait(self.startup) if ready_timeout_s is None else given_wait(ready_timeout_s)
        self.ready_timeout_s = self.wait.seconds
        self.write = write
        self.log = directory / SERVER_LOG
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}

    def start(self) -> dict[str, Any]:
        self.directory.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONPATH=_server_pythonpath(), PYTHONUNBUFFERED="1")
        started = time.perf_counter()
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                # Own session: a Ctrl-C at the terminal reaches us, and we stop the server in order.
                start_new_session=True,
            )
        try:
            health = wait_ready(self.url, self.proc, self.ready_timeout_s, self.log, self.wait.basis)
        except BaseException:
            self.stop()
            raise
        self.info = {
            "stage": "serve",
            "pid": self.proc.pid,
            "url": self.url,
            "port": self.port,
            "grpc_target": f"{LOOPBACK}:{self.grpc_port}" if self.grpc_port else None,
            "host": LOOPBACK,
            "model_name": self.spec.model.name,
            "model_version": self.spec.model.version,
            "log": str(self.log),
            "command": self.argv[1:],
            "device_requested": self.spec.serving.device.value,
            "provider": health.get("execution_provider"),
            "health": health,
            "warmup_sample": str(self.warmup_sample) if self.warmup_sample else None,
            "warmup_budget_s": self.startup.warmup_budget_s,
            "ready_timeout_s": self.ready_timeout_s,
            "notes": self.notes,
            "drain_timeout_s": self.spec.serving.drain_seconds,
            # The cold start: process start to ready (imports, model load, warm-up); the report shows it.
            "ready_seconds": round(time.perf_counter() - started, 3),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "state": "running",
        }
        if self.write:
            write_json(self.directory / SERVER_FILE, self.info)
        return self.info

    def stop(self) -> str:
        if self.proc is None:
            return "not started"
        outcome = stop_pid(self.proc.pid, timeout_s=stop_timeout(self.spec.serving.drain_seconds), proc=self.proc)
        if self.write and self.info:
            self.info.update(state="stopped", stopped=outcome, exit_code=self.proc.returncode)
            write_json(self.directory / SERVER_FILE, self.info)
        return outcome

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def read_server(directory: Path) -> dict[str, Any] | None:
    path = directory / SERVER_FILE
    if not path.is_file():
        return None
    data = read_json(path, "server record")
    return data if isinstance(data, dict) else None


def resolve_url(directory: Path, url: str | None) -> str:
    """--url, else the running server recorded in server.json; refuse anything else clearly."""
    if url:
        if not url.startswith(("http://", "https://")):
            raise StageError(f"--url {url!r} is not an http(s) URL such as http://127.0.0.1:8000")
        return url.rstrip("/")
    info = read_server(directory)
    if info and info.get("state") == "running" and info.get("url"):
        return str(info["url"]).rstrip("/")
    raise StageError(
        f"no --url given and no running server recorded in {directory / SERVER_FILE}: "
        "pass --url http://HOST:PORT or start one with `deploy-model serve --detach`"
    )


def _is_our_server(pid: int) -> bool:
    """True when PID runs onnxserve: never signal a PID that was reused by something else."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"onnxserve" in cmdline


def run_serve(directory: Path, port: int | None, device: str | None, detach: bool, stop: bool,
              ready_timeout_s: float | None, dry_run: bool = False) -> dict[str, Any]:
    """The `serve` verb: foreground (until Ctrl-C), --detach (leave it running), or --stop."""
    if stop:
        info = read_server(directory)
        if not info or info.get("state") != "running":
            raise StageError(f"no running server recorded in {directory / SERVER_FILE}")
        pid = int(info["pid"])
        drain = info.get("drain_timeout_s")
        timeout_s = stop_timeout(drain if isinstance(drain, (int, float)) else None)
        outcome = stop_pid(pid, timeout_s=timeout_s) if _is_our_server(pid) else "not running (PID no longer serves onnxserve)"
        info.update(state="stopped", stopped=outcome)
        if not dry_run:
            write_json(directory / SERVER_FILE, info)
        return {"stage": "serve", "ok": True, "wrote": [] if dry_run else [str(directory / SERVER_FILE)],
                "summary": {"pid": pid, "outcome": outcome}}
    spec = load_spec(directory)
    reason = not_served_reason(spec)
    if reason:
        raise StageError(f"nothing to serve: {reason}")
    server = ServerProcess(directory, port=port, device=device, ready_timeout_s=ready_timeout_s, write=not dry_run)
    if dry_run:
        return {"stage": "serve", "ok": True, "dry_run": True, "wrote": [],
                "summary": {"command": shlex.join(server.argv), "ready_timeout_s": server.ready_timeout_s,
                            "ready_timeout": server.wait.basis}}
    info = server.start()
    summary = {"url": info["url"], "pid": info["pid"], "provider": info.get("provider"), "log": info["log"]}
    if detach:
        server.proc = None  # left running on purpose; `serve --stop` ends it by PID
        return {"stage": "serve", "ok": True, "wrote": [str(directory / SERVER_FILE)], "summary": summary}
    print(f"serve: {info['url']} (pid {info['pid']}); Ctrl-C stops it", file=sys.stderr, flush=True)

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # SIGTERM stops the server in order, like Ctrl-C

    signal.signal(signal.SIGTERM, interrupt)
    try:
        assert server.proc is not None
        server.proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        summary["stopped"] = server.stop()
    return {"stage": "serve", "ok": True, "wrote": [str(directory / SERVER_FILE)], "summary": summary}
