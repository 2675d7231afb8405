"""python -m onnxserve.worker: score inference requests from a Redis Stream.

Request entries carry a field `body` = JSON {"id": optional, "inputs": {name: rows}}; each
answer goes to the result stream as {request_id, client_id, outputs (JSON name -> rows)}.
Exit codes: 0 stopped cleanly (SIGTERM or --max-messages reached); 1 the model or Redis could
not be used (the message says which); 2 usage error.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys

from .loop import Worker, WorkerSettings
from .scoring import Scorer


def _env(name: str, default: str) -> str:
    return os.environ.get(f"ONNXSERVE_WORKER_{name.upper()}", default)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m onnxserve.worker",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="Every option can also be set as ONNXSERVE_WORKER_<NAME> "
        "(e.g. ONNXSERVE_WORKER_REDIS_URL). "
        "Exit codes: 0 stopped cleanly; 1 model or Redis unusable; 2 usage error.",
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
    p.add_argument("--batch-size", type=int, default=int(_env("batch_size", "32")))
    p.add_argument("--block-ms", type=int, default=int(_env("block_ms", "1000")))
    p.add_argument(
        "--claim-idle-ms",
        type=int,
        default=int(_env("claim_idle_ms", "30000")),
        help="claim entries another worker has held unacknowledged this long",
    )
    p.add_argument(
        "--max-attempts",
        type=int,
        default=int(_env("max_attempts", "3")),
        help="deliveries before a failing message goes to the dead-letter stream",
    )
    p.add_argument(
        "--max-messages",
        type=int,
        default=int(_env("max_messages", "0")),
        help="stop after this many messages are settled (0: until SIGTERM)",
    )
    p.add_argument("--intra-op-threads", type=int, default=int(_env("intra_op_threads", "0")))
    p.add_argument(
        "--pause-after-read-ms",
        type=int,
        default=int(_env("pause_after_read_ms", "0")),
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
    if problems:
        for problem in problems:
            print(f"worker: {problem}", file=sys.stderr)
        return 2

    import redis

    from .streams import StreamNames, Streams

    try:
        scorer = Scorer(args.model, args.intra_op_threads)
    except Exception as exc:
        print(f"worker: cannot load model {args.model}: {exc}", file=sys.stderr)
        return 1
    client = redis.Redis.from_url(args.redis_url, decode_responses=True)
    try:
        client.ping()
    except redis.RedisError as exc:
        print(f"worker: cannot reach Redis at {args.redis_url}: {exc}", file=sys.stderr)
        return 1
    names = StreamNames(args.stream, args.results, args.dead_letter, args.group)
    worker = Worker(
        scorer,
        Streams(client, names, args.consumer),
        WorkerSettings(
            args.batch_size,
            args.block_ms,
            args.claim_idle_ms,
            args.max_attempts,
            args.max_messages,
            args.pause_after_read_ms,
        ),
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
    except redis.RedisError as exc:
        print(f"worker: Redis failed: {exc}", file=sys.stderr)
        return 1
    print(
        f"worker: answered {counters.answered}, dead-lettered {counters.dead_lettered}, "
        f"claimed {counters.claimed}, batches {counters.batches}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
