"""Stage `smoke`: prove a running server answers as the profiled model should.

Checks, each timed and recorded with pass/fail and a message: liveness, readiness, the V2 model
metadata against model-profile.json, a V2 inference with the user's sample (synthetic inputs when
there is none), a batched inference when the batch dim is dynamic, /predict, malformed requests
answered with 4xx (never 5xx), /health fields, and the metric names on /metrics.

What is a failure and what is a warning: the inputs a client must send (names, datatypes, ranks,
fixed dims) and the outputs' names, datatypes and value counts must agree, or the check fails. A
declared output shape the model does not honour (onnxruntime only warns about it) is a warning
that names the dims that differ: the model still answers, and clients read the shape from the
answer. No output is assumed to carry the batch on dim 0 unless the graph says so (its dim 0 is
the same symbolic dim as the inputs' batch dim).

This module runs the checks in order and writes smoke.json; each check lives in a smoke_* module
(health, metadata, inference, probes, metrics) and shares one SmokeSession (smoke_session).

A plan whose protocol is grpc is tested on the protocol its clients use: liveness, readiness,
metadata, inference and the bad-input probes go over gRPC (smoke_grpc) and `metrics` also needs the
server's gRPC request counter to move; /health and /metrics stay REST (the server has no other).
Every check records its `protocol` and body `encoding`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from deploy_model.common.errors import StageError
from deploy_model.common.files import read_json, write_json
from deploy_model.measure.plan_wire import plan_protocol
from deploy_model.measure.smoke_health import check_health, check_live, check_ready
from deploy_model.measure.smoke_inference import check_infer, check_predict
from deploy_model.measure.smoke_metadata import check_metadata
from deploy_model.measure.smoke_metrics import check_metrics
from deploy_model.measure.smoke_probes import check_bad_input
from deploy_model.measure.smoke_session import Check, SmokeSession
from deploy_model.model.inspection import PROFILE_FILE

__all__ = ["SMOKE_FILE", "run_checks", "run_smoke"]

SMOKE_FILE = "smoke.json"
SMOKE_BATCH = 4


def run_checks(session: SmokeSession) -> list[Check]:
    """Every check in order; later ones use what earlier ones learned (served outputs, an answered inference)."""
    if session.grpc_target:
        return run_grpc_checks(session)
    try:
        if not session.run_check("live", check_live):
            return session.checks  # nothing else can pass when the server does not answer
        session.run_check("ready", check_ready)
        session.run_check("model_metadata", check_metadata)
        session.run_check("infer_v2", lambda s: check_infer(s, 1))
        if session.profile.get("dynamic_batch"):
            session.run_check(f"infer_v2_batch_{SMOKE_BATCH}", lambda s: check_infer(s, SMOKE_BATCH))
        session.run_check("predict", check_predict)
        session.run_check("bad_input_4xx", check_bad_input)
        session.run_check("health", check_health)
        session.run_check("metrics", check_metrics)
    finally:
        session.close()
    return session.checks


def run_grpc_checks(session: SmokeSession) -> list[Check]:
    """A gRPC plan's checks: the calls over gRPC, /health and /metrics over REST."""
    from deploy_model.measure import smoke_grpc as g

    session.grpc_before = g.grpc_request_count(session)
    over = {"protocol": g.GRPC, "encoding": g.PROTOBUF}
    try:
        if not session.run_check("live", g.check_live, **over):
            return session.checks
        session.run_check("ready", g.check_ready, **over)
        session.run_check("model_metadata", g.check_metadata, **over)
        session.run_check("infer_grpc", lambda s: g.check_infer(s, 1), **over)
        if session.profile.get("dynamic_batch"):
            session.run_check(f"infer_grpc_batch_{SMOKE_BATCH}", lambda s: g.check_infer(s, SMOKE_BATCH), **over)
        session.run_check("bad_input_invalid_argument", g.check_bad_input, **over)
        session.run_check("health", check_health)
        session.run_check("metrics", check_metrics)
    finally:
        session.close()
    return session.checks


def run_smoke(directory: Path, url: str | None, model_name: str | None = None, timeout_s: float = 10.0,
              dry_run: bool = False) -> dict[str, Any]:
    from deploy_model.measure.serve import read_server, resolve_url

    profile = read_json(directory / PROFILE_FILE, "model profile (run `inspect` first)")
    target = resolve_url(directory, url)
    server = read_server(directory) or {}
    name = model_name or server.get("model_name") or profile["model"]["name"]
    protocol, grpc_target, note = plan_protocol(directory, url, server)
    started = time.perf_counter()
    smoke = SmokeSession(target, profile, name, timeout_s, directory=directory, grpc_target=grpc_target)
    checks = run_checks(smoke)
    failed = [c.name for c in checks if not c.ok]
    warnings = [f"{c.name}: {w}" for c in checks for w in c.warnings]
    result = {
        "stage": "smoke",
        "ok": not failed,
        "url": target,
        "protocol": protocol,
        "grpc_target": grpc_target,
        "protocol_note": note,
        "model_name": name,
        "inputs": "sample" if smoke.sources == {"sample"} else "synthetic" if smoke.sources else None,
        "checks": [c.as_dict() for c in checks],
        "passed": sum(c.ok for c in checks),
        "failed": failed,
        "warnings": warnings,
        "seconds": round(time.perf_counter() - started, 3),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    wrote = []
    if not dry_run:
        # Written on failure too: the report and the agent need to see which check failed.
        wrote.append(str(write_json(directory / SMOKE_FILE, result)))
    if failed:
        problems = [f"{c.name}: {c.message}" for c in checks if not c.ok]
        raise StageError(f"smoke test failed {len(failed)} of {len(checks)} check(s) against {target}: {', '.join(failed)}", problems)
    summary: dict[str, Any] = {"url": target, "protocol": protocol, "passed": f"{len(checks)}/{len(checks)}", "seconds": result["seconds"]}
    if warnings:
        summary["warnings"] = warnings
    return {"stage": "smoke", "ok": True, "wrote": wrote, "dry_run": dry_run or None, "summary": summary, "result": result}
