"""Typed server settings, read from command-line flags and ONNXSERVE_* environment variables.

Every option has one name: ``--max-batch-size`` on the command line is ``ONNXSERVE_MAX_BATCH_SIZE``
in the environment. A flag given on the command line wins over the environment.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .memory_limit import default_max_response_bytes

ENV_PREFIX = "ONNXSERVE_"
DEVICES = ("auto", "cpu", "cuda", "tensorrt")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class SettingsError(ValueError):
    """A setting has a value outside what it accepts."""


@dataclass(frozen=True)
class Settings:
    """Everything the server can be told: ``foo_bar`` is ``--foo-bar`` / ``ONNXSERVE_FOO_BAR``."""

    model: Path
    model_name: str = ""
    model_version: str = "1"
    host: str = "127.0.0.1"
    port: int = 8000
    grpc_port: int = 0
    device: str = "auto"
    allow_cpu_fallback: bool = False
    cuda_device_id: int = 0
    trt_cache_dir: str = ""
    trt_fp16: bool = False
    intra_op_threads: int = 0
    spin: bool = False
    max_batch_size: int = 32
    max_batch_delay_ms: float = 1.0
    # A lone request to a model this fast runs on the event loop (batching.py): the trip to the
    # batching thread and back costs more than the run.
    inline_max_ms: float = 0.2
    max_queue_size: int = 1024
    request_timeout_ms: float = 30000.0
    max_request_bytes: int = 64 * 1024 * 1024
    max_response_bytes: int = 0  # 0: derived from the container's memory limit
    body_timeout_s: float = 30.0
    # Slow or idle clients and compressed bodies (connections.py, bodies.py).
    header_timeout_s: float = 10.0
    keep_alive_timeout_s: float = 5.0
    max_connections: int = 0  # 0: derived from the file-descriptor limit
    max_header_bytes: int = 32 * 1024
    inflate_budget_bytes: int = 0  # 0: twice max_request_bytes
    allow_non_finite: bool = False
    warmup: bool = True
    warmup_sample: Path | None = None
    # Warm-up stops after this many seconds and the server becomes ready anyway (loading.py).
    warmup_budget_s: float = 60.0
    drain_timeout_s: float = 30.0
    shutdown_delay_s: float = 0.0
    shadow_model: Path | None = None
    shadow_sample_rate: float = 0.1
    shadow_queue_size: int = 64
    drift_reference: Path | None = None
    drift_window: int = 1000
    drift_bins: int = 10
    drift_max_features: int = 64
    drift_top_features: int = 20
    drift_interval_ms: float = 10.0
    # Which release this server is (stable, canary, shadow, candidate...): in payload log records.
    track: str = "stable"
    # Payload logging (payload_log.py), off while the sink is empty.
    payload_log_sink: str = ""
    payload_log_sampling: float = 1.0
    payload_log_queue_size: int = 1000
    payload_log_max_file_bytes: int = 100 * 1024 * 1024
    payload_log_backups: int = 5
    payload_log_hash_above_bytes: int = 64 * 1024
    payload_log_flush_s: float = 10.0
    payload_log_timeout_s: float = 5.0
    payload_log_seed: int = -1
    # Answers kept for ground-truth feedback (feedback.py); -1: 10000 with the payload log on.
    feedback_window: int = -1
    workers: int = 1
    # A dead worker is restarted; more than this many restarts within the window stop them all.
    worker_restart_limit: int = 5
    worker_restart_window_s: float = 60.0
    log_level: str = "info"
    access_log: bool = False

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise SettingsError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.max_batch_size < 1:
            raise SettingsError(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        if self.max_batch_delay_ms < 0:
            raise SettingsError(f"max_batch_delay_ms must be >= 0, got {self.max_batch_delay_ms}")
        if self.inline_max_ms < 0:
            raise SettingsError(f"inline_max_ms must be >= 0, got {self.inline_max_ms}")
        if self.max_queue_size < 1:
            raise SettingsError(f"max_queue_size must be >= 1, got {self.max_queue_size}")
        if self.body_timeout_s <= 0:
            raise SettingsError(f"body_timeout_s must be > 0, got {self.body_timeout_s}")
        if self.header_timeout_s <= 0:
            raise SettingsError(f"header_timeout_s must be > 0, got {self.header_timeout_s}")
        if self.keep_alive_timeout_s <= 0:
            raise SettingsError(
                f"keep_alive_timeout_s must be > 0, got {self.keep_alive_timeout_s}"
            )
        if self.max_connections < 0:
            raise SettingsError(
                f"max_connections must be >= 0 (0: derived), got {self.max_connections}"
            )
        if self.max_header_bytes < 1024:
            raise SettingsError(f"max_header_bytes must be >= 1024, got {self.max_header_bytes}")
        if self.inflate_budget_bytes and self.inflate_budget_bytes < self.max_request_bytes:
            raise SettingsError(
                f"inflate_budget_bytes must be 0 (derived) or >= max_request_bytes "
                f"({self.max_request_bytes}), so one body of the largest size can inflate; got "
                f"{self.inflate_budget_bytes}"
            )
        if self.max_request_bytes < 1:
            raise SettingsError(f"max_request_bytes must be >= 1, got {self.max_request_bytes}")
        if self.max_response_bytes < 0:
            raise SettingsError(
                f"max_response_bytes must be >= 0 (0: derived), got {self.max_response_bytes}"
            )
        if self.warmup_budget_s <= 0:
            raise SettingsError(f"warmup_budget_s must be > 0, got {self.warmup_budget_s}")
        if self.request_timeout_ms <= 0:
            raise SettingsError(f"request_timeout_ms must be > 0, got {self.request_timeout_ms}")
        if not 0.0 <= self.shadow_sample_rate <= 1.0:
            raise SettingsError(
                f"shadow_sample_rate must be in [0, 1], got {self.shadow_sample_rate}"
            )
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"port must be in 0..65535, got {self.port}")
        if not 0 <= self.grpc_port <= 65535:
            raise SettingsError(f"grpc_port must be in 0..65535 (0: off), got {self.grpc_port}")
        if self.drain_timeout_s <= 0:
            raise SettingsError(f"drain_timeout_s must be > 0, got {self.drain_timeout_s}")
        if not 0 <= self.shutdown_delay_s < self.drain_timeout_s:
            raise SettingsError(
                f"shutdown_delay_s must be >= 0 and below drain_timeout_s "
                f"({self.drain_timeout_s:g}), the whole shutdown's budget; got "
                f"{self.shutdown_delay_s:g}"
            )
        if not 1 <= self.workers <= 64:
            raise SettingsError(f"workers must be in 1..64, got {self.workers}")
        if self.worker_restart_limit < 0:
            raise SettingsError(
                f"worker_restart_limit must be >= 0, got {self.worker_restart_limit}"
            )
        if self.worker_restart_window_s <= 0:
            raise SettingsError(
                f"worker_restart_window_s must be > 0, got {self.worker_restart_window_s}"
            )
        if self.drift_top_features < 0:
            raise SettingsError(f"drift_top_features must be >= 0, got {self.drift_top_features}")
        if self.drift_bins < 2:
            raise SettingsError(f"drift_bins must be >= 2, got {self.drift_bins}")
        _check_payload_log(self)
        if not self.model_name:
            object.__setattr__(self, "model_name", Path(self.model).stem)

    @property
    def response_limit(self) -> int:
        """Most bytes one inference response may take (REST and gRPC): --max-response-bytes, or
        when that is 0 a share of the container's memory limit (see ``memory_limit``)."""
        return self.max_response_bytes or default_max_response_bytes()

    @property
    def inflate_budget(self) -> int:
        """Inflated bytes all compressed bodies in flight in one process may hold together."""
        return self.inflate_budget_bytes or 2 * self.max_request_bytes

    # -- helpers for callers (deploy-model serve, tests) ---------------------------------

    def to_argv(self) -> list[str]:
        """The command-line flags that reproduce these settings (for launching a subprocess)."""
        argv: list[str] = []
        for f in _fields():
            value = getattr(self, f.name)
            flag = "--" + f.name.replace("_", "-")
            if f.type == "bool":
                if value != f.default:
                    argv.append(flag if value else "--no-" + f.name.replace("_", "-"))
                continue
            if value is None or (value == f.default and f.name != "model"):
                continue
            argv += [flag, str(value)]
        return argv

    def as_dict(self) -> dict[str, Any]:
        return {
            f.name: (str(v) if isinstance(v := getattr(self, f.name), Path) else v)
            for f in _fields()
        }


HELP: dict[str, str] = {
    "model": "path of the .onnx model to serve (required)",
    "model_name": "name in /v2/models/{name} (default: the file name without .onnx)",
    "model_version": "version string reported and accepted in /versions/{v}",
    "host": "address to bind (use 0.0.0.0 inside a container)",
    "port": "TCP port",
    "grpc_port": "TCP port of the V2 gRPC service and grpc.health.v1 (0: no gRPC)",
    "device": "auto|cpu|cuda|tensorrt; auto picks TensorRT > CUDA > CPU from what really loads",
    "allow_cpu_fallback": "run on CPU when the requested GPU provider is not active (else exit 1)",
    "cuda_device_id": "GPU ordinal for CUDA/TensorRT",
    "trt_cache_dir": "TensorRT engine cache directory (empty: no cache)",
    "trt_fp16": "let TensorRT build FP16 engines",
    "intra_op_threads": "onnxruntime intra-op threads (0: the CPUs this process may really use)",
    "spin": "let onnxruntime threads spin while idle (only when cores are not shared)",
    "max_batch_delay_ms": "how long a batch may wait for requests that are already arriving",
    "inline_max_ms": "a request arriving while the server is idle runs on the event loop, without "
    "the hop to the batching thread, when the model's recent lone runs took at most this long "
    "(0: never)",
    "max_queue_size": "queued requests before new ones get 503 + Retry-After",
    "request_timeout_ms": "per-request deadline for queue + inference (then 504)",
    "max_request_bytes": "largest accepted request body, and the most a gzip/deflate body may "
    "inflate to (then 413)",
    "max_response_bytes": "largest inference response (REST and gRPC), estimated from the "
    "outputs before it is built (then 413 / RESOURCE_EXHAUSTED); 0: an eighth of the container's "
    "cgroup memory limit, at most 64 MiB (64 MiB without a limit)",
    "body_timeout_s": "most seconds a request body may take to arrive (then 408 and the "
    "connection is closed)",
    "header_timeout_s": "most seconds from connecting (or from the first byte of a next request) "
    "to the end of the request head; then the connection is closed (408 if part of a head came)",
    "keep_alive_timeout_s": "an idle keep-alive connection is closed after this many seconds",
    "max_connections": "open connections per server process; past it the oldest connection "
    "waiting for a request head is closed, never one with a request in flight (0: the "
    "file-descriptor limit less 64, at most 4096)",
    "max_header_bytes": "largest request head (request line and headers; then 431 and the "
    "connection is closed)",
    "inflate_budget_bytes": "inflated bytes that all gzip/deflate bodies in flight in one server "
    "process may hold together; a body that cannot get its share is 503 + Retry-After "
    "(0: twice max_request_bytes)",
    "allow_non_finite": "accept NaN/Inf in float inputs (default: 400)",
    "warmup": "run every batch size once before reporting ready (--no-warmup: no start-up "
    "inference at all)",
    "warmup_sample": "real inputs for warm-up: .npz keyed by input name, .npy (one input) or a "
    "V2 request .json (default: made-up inputs; if the model rejects them it starts cold)",
    "warmup_budget_s": "most seconds the warm-up (thread tuning and batch sizes) may take; "
    "then the server becomes ready with the warm-up cut short, cold at the skipped sizes, and "
    "/health says so (warmed false, warmup_error)",
    "max_batch_size": "most rows the batcher combines into one run (1: no dynamic batching); "
    "a larger request runs alone",
    "drain_timeout_s": "the whole shutdown's budget: SIGTERM to exit within this many seconds "
    "(delay, drain of in-flight and queued work, close); the pod's "
    "terminationGracePeriodSeconds must exceed preStop sleep + this",
    "shutdown_delay_s": "after SIGTERM, keep accepting and serving this long, inside the "
    "drain_timeout_s budget (load balancers see readiness 503)",
    "shadow_model": "second .onnx scored off the request path on a sample of requests",
    "shadow_sample_rate": "fraction of requests also sent to the shadow model",
    "shadow_queue_size": "shadow work waiting beyond this is dropped (counted), never waited for",
    "drift_reference": "JSON reference statistics for drift (deploy-model drift-reference writes "
    "one from the training data: named features, categoricals, null rates, the prediction "
    "distribution; default: the first rows served)",
    "drift_window": "rows in the recent window (and in a captured reference)",
    "drift_bins": "bins per feature for the PSI",
    "drift_max_features": "features tracked for drift at most",
    "drift_top_features": "input_feature_drift series: the features of highest PSI, at most "
    "this many (0: every tracked feature)",
    "drift_interval_ms": "at most one drift update per interval (0: every batch)",
    "track": "which release this server is (stable, canary, shadow, candidate...); written "
    "into every payload log record",
    "payload_log_sink": "payload logging, off while empty: a directory (or file://DIR) for "
    "rotated JSON Lines files, an http(s):// URL receiving CloudEvents (binary mode; "
    "ONNXSERVE_PAYLOAD_LOG_AUTHORIZATION is sent as its Authorization header), or an fsspec URL "
    "such as s3://bucket/prefix (objects of batched records; needs onnxserve[batch])",
    "payload_log_sampling": "fraction of requests logged, 0..1",
    "payload_log_queue_size": "records waiting for the sink; past it they are dropped (counted "
    "in payload_log_dropped_total), never waited for",
    "payload_log_max_file_bytes": "file sink: a file is rotated before it passes this size; "
    "object storage: an object holds at most about this many bytes",
    "payload_log_backups": "file sink: rotated files kept (payloads.jsonl.1 ..); the files never "
    "hold more than (backups + 1) * max_file_bytes",
    "payload_log_hash_above_bytes": "a tensor bigger than this is logged as its sha256 and shape",
    "payload_log_flush_s": "object storage: a batch of records is written at most this old",
    "payload_log_timeout_s": "HTTP sink: seconds to wait for each event's answer (then dropped)",
    "payload_log_seed": "seed of the sampler (-1: random)",
    "feedback_window": "recent answers kept by request id for POST /v2/models/{name}/feedback "
    "(ground truth scored into model_feedback_total and model_feedback_abs_error; the oldest "
    "answer is evicted first); -1: 10000 when the payload log is on with one worker, else off; "
    "0: off (feedback is then only written to the payload log)",
    "workers": "server processes sharing the port, each with its own session and batcher "
    "(onnxruntime threads split between them unless --intra-op-threads is set); metrics add "
    "up across them; SIGTERM drains them all; readiness is 200 only when every worker is ready",
    "worker_restart_limit": "with --workers: a worker that dies is restarted (the others keep "
    "serving, readiness stays 200); more restarts than this within worker_restart_window_s "
    "stop all workers and the supervisor exits 1 (0: never restart)",
    "worker_restart_window_s": "the window of worker_restart_limit, in seconds",
    "log_level": "debug | info | warning | error",
    "access_log": "log every request (costs throughput)",
}


def _check_payload_log(s: Settings) -> None:
    if not 0.0 <= s.payload_log_sampling <= 1.0:
        raise SettingsError(
            f"payload_log_sampling must be in [0, 1], got {s.payload_log_sampling}"
        )
    if s.payload_log_queue_size < 1:
        raise SettingsError(f"payload_log_queue_size must be >= 1, got {s.payload_log_queue_size}")
    if s.payload_log_max_file_bytes < 1024:
        raise SettingsError(
            f"payload_log_max_file_bytes must be >= 1024, got {s.payload_log_max_file_bytes}"
        )
    if s.payload_log_backups < 0:
        raise SettingsError(f"payload_log_backups must be >= 0, got {s.payload_log_backups}")
    if s.payload_log_hash_above_bytes < 0:
        raise SettingsError(
            f"payload_log_hash_above_bytes must be >= 0, got {s.payload_log_hash_above_bytes}"
        )
    if s.payload_log_flush_s <= 0 or s.payload_log_timeout_s <= 0:
        raise SettingsError("payload_log_flush_s and payload_log_timeout_s must be > 0")
    if s.feedback_window < -1:
        raise SettingsError(f"feedback_window must be >= -1 (-1: auto), got {s.feedback_window}")
    if s.feedback_window > 0 and s.workers > 1:
        raise SettingsError(
            "feedback_window is kept per server process: with workers > 1 a feedback mostly "
            "reaches another worker than the one that answered; use one worker, or score "
            "from the payload log (deploy-model experiment analyze)"
        )
    if not s.track or not s.track.isprintable():
        raise SettingsError(f"track must be a non-empty name such as stable, got {s.track!r}")
    sink = s.payload_log_sink
    scheme = sink.split("://", 1)[0].lower() if "://" in sink else ""
    if scheme not in ("", "file", "http", "https") and scheme not in _OBJECT_SCHEMES:
        raise SettingsError(
            f"payload_log_sink {sink!r}: expected a directory, file://, http(s):// or one of "
            f"{', '.join(x + '://' for x in _OBJECT_SCHEMES)}"
        )


_OBJECT_SCHEMES = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss")


def _fields() -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(Settings) if not f.name.startswith("_")]


def _parse_bool(name: str, raw: str) -> bool:
    low = raw.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise SettingsError(
        f"{ENV_PREFIX}{name.upper()} must be a boolean (1/0/true/false), got {raw!r}"
    )


def _convert(name: str, type_name: str, raw: str) -> Any:
    try:
        if type_name == "bool":
            return _parse_bool(name, raw)
        if type_name == "int":
            return int(raw)
        if type_name == "float":
            return float(raw)
        if type_name == "Path":
            return Path(raw)
        if type_name == "Path | None":
            return Path(raw) if raw else None
        return raw
    except SettingsError:
        raise
    except ValueError as exc:
        raise SettingsError(f"{name}: cannot read {raw!r} as {type_name}") from exc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m onnxserve",
        description=(
            "Serve one ONNX model over Open Inference Protocol V2 REST, /predict, /health and "
            "/metrics. Every option can also be set as ONNXSERVE_<OPTION> (e.g. "
            "ONNXSERVE_MAX_BATCH_SIZE=16); flags win. Exit codes: 0 clean shutdown, 1 the model "
            "or device was refused at start-up, 2 usage error."
        ),
    )
    for f in _fields():
        flag = "--" + f.name.replace("_", "-")
        help_text = HELP.get(f.name, "")
        if f.type == "bool":
            parser.add_argument(
                flag,
                dest=f.name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=f"{help_text} (default: {f.default})",
            )
        else:
            default = None if f.default is dataclasses.MISSING else f.default
            parser.add_argument(
                flag,
                dest=f.name,
                default=None,
                metavar=f.name.upper(),
                help=f"{help_text} (default: {default})",
            )
    return parser


def load_settings(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Settings from flags, then ONNXSERVE_* variables, then defaults. Raises SettingsError."""
    environ = os.environ if environ is None else environ
    args = vars(build_parser().parse_args(argv))
    values: dict[str, Any] = {}
    for f in _fields():
        arg = args.get(f.name)
        if arg is not None:
            values[f.name] = arg if f.type == "bool" else _convert(f.name, str(f.type), arg)
            continue
        env = environ.get(ENV_PREFIX + f.name.upper())
        if env is not None:
            values[f.name] = _convert(f.name, str(f.type), env)
    if "model" not in values:
        raise SettingsError(f"--model (or {ENV_PREFIX}MODEL) is required: the .onnx file to serve")
    return Settings(**values)
