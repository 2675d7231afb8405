"""python -m onnxserve.worker: score inference requests from a Redis Stream.

Request entries carry a field `body` = JSON {"id": optional, "inputs": {name: rows}}; each
answer goes to the result stream as {request_id, client_id, outputs (JSON name -> rows)}.
A message that cannot be decoded or scored never stops the worker: after --max-attempts
deliveries it goes to the dead-letter stream as {request_id, reason, attempts, body}.
With --metrics-port, Prometheus metrics (worker_messages_processed_total, ..._failed_total,
..._dead_lettered_total, worker_stream_lag, worker_message_latency_seconds,
worker_redis_connected, worker_redis_reconnects_total, ...) are served there.
Redis must answer at start-up (a wrong --redis-url is refused at once). Once running, a Redis
failure (unreachable, refused, restarting) is waited out in the same process: reconnection
attempts after 0.5 s, 1 s, 2 s, ... at most --reconnect-max-s apart, one log line each, metrics
kept; entries in hand stay pending and are claimed again after --claim-idle-ms.
Exit codes: 0 stopped cleanly (SIGTERM or --max-messages reached); 1 the model or Redis could
not be used: the model does not load, Redis does not answer at start-up, refuses a command, or
stays unusable past --reconnect-give-up-s (the message says which); 2 usage error.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys

from .loop import Worker, WorkerSettings
from .scoring import Scorer
from .streams import TRIM_POLICY


def _env(name: str, default: str) -> str:
    return os.environ.get(f"ONNXSERVE_WORKER_{name.upper()}", default)


def _env_int(name: str, default: int) -> int:
    raw = _env(name, str(default))
    try:
        return int(raw)
    except ValueError:
        # A usage error like a bad flag value: exit 2 naming the variable, no traceback.
        print(
            f"worker: ONNXSERVE_WORKER_{name.upper()}={raw[:80]!r} is not an integer",
            file=sys.stderr,
        )
        raise SystemExit(2) from None


def _env_float(name: str, default: float) -> float:
    raw = _env(name, str(default))
    try:
        return float(raw)
    except ValueError:
        print(
            f"worker: ONNXSERVE_WORKER_{name.upper()}={raw[:80]!r} is not a number",
            file=sys.stderr,
        )
        raise SystemExit(2) from None


def _env_bool(name: str, default: bool) -> bool:
    return _env(name, "true" if default else "false").strip().lower() in ("1", "true", "yes", "on")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m onnxserve.worker",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Every option can also be set as ONNXSERVE_WORKER_<NAME> "
        "(e.g. ONNXSERVE_WORKER_REDIS_URL). "
        "Exit codes: 0 stopped cleanly; 1 model or Redis unusable (at start-up, or for longer "
        "than --reconnect-give-up-s once running); 2 usage error.\n\n" + TRIM_POLICY,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", default=_env("model", ""), help="path of the .onnx model")
    p.add_argument("--redis-url", default=_env("redis_url", "redis://127.0.0.1:6379/0"))
    p.add_argument("--stream", default=_env("stream", "inference:requests"), help="request stream")
    p.add_argument("--results", default=_env("results", "inference:results"), help="result stream")
    p.add_argument(
        "--dead-letter", default=_env("dead_letter", "inference:dead"), help="dead-letter stream"
    )
    p.add_argument("--group", default=_env("group", "onnx-workers"), help="consumer group")
    p.add_argument("--consumer", default=_env("consumer", f"{socket.gethostname()}-{os.getpid()}"))
    p.add_argument("--batch-size", type=int, default=_env_int("batch_size", 32))
    p.add_argument("--block-ms", type=int, default=_env_int("block_ms", 1000))
    p.add_argument(
        "--claim-idle-ms",
        type=int,
        default=_env_int("claim_idle_ms", 30000),
        help="claim entries another worker has held unacknowledged this long",
    )
    p.add_argument(
        "--max-attempts",
        type=int,
        default=_env_int("max_attempts", 3),
        help="deliveries before a failing message goes to the dead-letter stream",
    )
    p.add_argument(
        "--max-messages",
        type=int,
        default=_env_int("max_messages", 0),
        help="stop after this many messages are settled (0: until SIGTERM)",
    )
    p.add_argument(
        "--results-maxlen",
        type=int,
        default=_env_int("results_maxlen", 100_000),
        help="cap the result stream at about this many entries (XADD MAXLEN ~; 0: uncapped)",
    )
    p.add_argument(
        "--dead-letter-maxlen",
        type=int,
        default=_env_int("dead_letter_maxlen", 10_000),
        help="cap the dead-letter stream at about this many entries (0: uncapped)",
    )
    p.add_argument(
        "--trim-requests",
        action=argparse.BooleanOptionalAction,
        default=_env_bool("trim_requests", True),
        help="delete request entries every consumer group has acknowledged (XTRIM MINID)",
    )
    p.add_argument(
        "--housekeeping-s",
        type=float,
        default=float(_env_int("housekeeping_s", 5)),
        help="seconds between trimming the request stream and reading the group's lag",
    )
    p.add_argument(
        "--reconnect-max-s",
        type=float,
        default=_env_float("reconnect_max_s", 30.0),
        help="after a Redis failure, the longest wait between two reconnection attempts "
        "(waits double from 0.5 s up to this) [default: 30]",
    )
    p.add_argument(
        "--reconnect-give-up-s",
        type=float,
        default=_env_float("reconnect_give_up_s", 600.0),
        help="exit 1 once Redis has been unusable this long (0: never give up) [default: 600]",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        default=_env_int("metrics_port", 0),
        help="serve Prometheus metrics on this port (0: no metrics endpoint)",
    )
    p.add_argument(
        "--metrics-host",
        default=_env("metrics_host", "127.0.0.1"),
        help="address the metrics endpoint binds (0.0.0.0 in a container)",
    )
    p.add_argument("--intra-op-threads", type=int, default=_env_int("intra_op_threads", 0))
    p.add_argument(
        "--pause-after-read-ms",
        type=int,
        default=_env_int("pause_after_read_ms", 0),
        help=argparse.SUPPRESS,
    )  # fault injection for the kill-mid-batch test
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    problems = []
    if not args.model or not os.path.isfile(args.model):
        problems.append(
            f"--model {args.model!r} is not a file (expected the path of an .onnx model)"
        )
    for name in ("batch_size", "max_attempts"):
        if getattr(args, name) < 1:
            problems.append(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    for name in (
        "results_maxlen",
        "dead_letter_maxlen",
        "max_messages",
        "block_ms",
        "claim_idle_ms",
    ):
        if getattr(args, name) < 0:
            problems.append(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    if not 0 <= args.metrics_port <= 65535:
        problems.append(f"--metrics-port must be 0-65535, got {args.metrics_port}")
    if not args.housekeeping_s > 0:
        problems.append(f"--housekeeping-s must be > 0, got {args.housekeeping_s}")
    if not args.reconnect_max_s > 0:
        problems.append(f"--reconnect-max-s must be > 0, got {args.reconnect_max_s}")
    if not args.reconnect_give_up_s >= 0:
        problems.append(f"--reconnect-give-up-s must be >= 0, got {args.reconnect_give_up_s}")
    if problems:
        for problem in problems:
            print(f"worker: {problem}", file=sys.stderr)
        return 2

    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from .metrics import WorkerMetrics
    from .reconnect import ReconnectPolicy, RedisGaveUp
    from .streams import Caps, StreamNames, Streams

    try:
        scorer = Scorer(args.model, args.intra_op_threads)
    except Exception as exc:
        print(f"worker: cannot load model {args.model}: {exc}", file=sys.stderr)
        return 1
    # surrogateescape: a body that is not UTF-8 decodes (and is dead-lettered byte for byte)
    # instead of failing the read of the whole batch.
    client = redis.Redis.from_url(
        args.redis_url,
        decode_responses=True,
        encoding_errors="surrogateescape",
        # One immediate retry on a fresh connection hides a pooled connection that went stale;
        # anything longer is the worker's own backoff (reconnect.py), logged and counted.
        retry=Retry(NoBackoff(), 1),
        # A host that drops packets must fail an attempt, not hang it; XREADGROUP blocks
        # --block-ms on the server (0: for ever), so a reply may take that long before it is
        # overdue.
        socket_connect_timeout=5,
        socket_timeout=args.block_ms / 1000 + 30 if args.block_ms else None,
    )
    try:
        client.ping()
    except redis.RedisError as exc:
        print(f"worker: cannot reach Redis at {args.redis_url}: {exc}", file=sys.stderr)
        return 1
    names = StreamNames(args.stream, args.results, args.dead_letter, args.group)
    metrics = None
    if args.metrics_port:
        metrics = WorkerMetrics(args.stream, args.group)
        try:
            metrics.serve(args.metrics_port, args.metrics_host)
        except OSError as exc:
            print(
                f"worker: cannot serve metrics on {args.metrics_host}:{args.metrics_port}: {exc}",
                file=sys.stderr,
            )
            return 1
    worker = Worker(
        scorer,
        Streams(client, names, args.consumer, Caps(args.results_maxlen, args.dead_letter_maxlen)),
        WorkerSettings(
            args.batch_size,
            args.block_ms,
            args.claim_idle_ms,
            args.max_attempts,
            args.max_messages,
            args.pause_after_read_ms,
            args.trim_requests,
            args.housekeeping_s,
            ReconnectPolicy(args.reconnect_max_s, args.reconnect_give_up_s),
        ),
        metrics,
    )
    worker.install_signal_handlers()
    logging.getLogger("onnxserve.worker").info(
        "consumer %s of group %s on %s: model %s",
        args.consumer,
        args.group,
        args.stream,
        args.model,
    )
    try:
        counters = worker.run()
    except RedisGaveUp as exc:
        print(f"worker: {exc}", file=sys.stderr)
        return 1
    except redis.RedisError as exc:
        print(f"worker: Redis failed: {exc}", file=sys.stderr)
        return 1
    print(
        f"worker: answered {counters.answered}, dead-lettered {counters.dead_lettered}, "
        f"claimed {counters.claimed}, batches {counters.batches}, trimmed {counters.trimmed}, "
        f"reconnected {counters.reconnects}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
