"""Smoke checks of a gRPC plan: ServerLive/ServerReady/ModelReady, ModelMetadata, ModelInfer (batch 1
and batched) and bad inputs refused with INVALID_ARGUMENT, over the plan's gRPC port."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import httpx
import numpy as np

from deploy_model.measure.grpc_client import (
    channel,
    entries_request,
    infer_request,
    metadata_dict,
    output_dicts,
    stub,
)
from deploy_model.measure.smoke_inference import judge_answer
from deploy_model.measure.smoke_metadata import compare_metadata
from deploy_model.measure.smoke_metrics import request_count
from deploy_model.measure.smoke_probes import bad_requests
from deploy_model.measure.smoke_session import CheckResult, Failed, SmokeSession
from deploy_model.model.samples import describe_rejection

GRPC = "grpc"
PROTOBUF = "protobuf"


def _rpc(session: SmokeSession) -> Any:
    """The session's gRPC stub, opened on first use and closed with the session."""
    if session.rpc is None:
        assert session.grpc_target is not None
        chan = channel(session.grpc_target)
        session.closers.append(chan.close)
        session.rpc = stub(chan)
    return session.rpc


def _call(fn: Callable[[SmokeSession], CheckResult]) -> Callable[[SmokeSession], CheckResult]:
    """A gRPC failure (no answer, an unexpected status) fails the check with its code and message."""
    def run(session: SmokeSession) -> CheckResult:
        try:
            return fn(session)
        except grpc.RpcError as exc:
            raise Failed(f"gRPC {exc.code().name}: {exc.details()}") from None  # type: ignore[attr-defined]
    return run


def grpc_request_count(session: SmokeSession) -> float:
    """The server's model_requests_total{endpoint="grpc"} now (0 when /metrics does not answer)."""
    try:
        response = session.client.get(session.url + "/metrics")
    except httpx.HTTPError:  # before the checks: a missing answer fails `metrics` later
        return 0.0
    return request_count(response.text, GRPC) if response.status_code == 200 else 0.0


@_call
def check_live(session: SmokeSession) -> str:
    if not _rpc(session).ServerLive(_pb().ServerLiveRequest(), timeout=session.timeout_s).live:
        raise Failed("ServerLive answered live=false")
    return f"ServerLive on {session.grpc_target} answered live"


@_call
def check_ready(session: SmokeSession) -> str:
    rpc = _rpc(session)
    if not rpc.ServerReady(_pb().ServerReadyRequest(), timeout=session.timeout_s).ready:
        raise Failed("ServerReady answered ready=false")
    if not rpc.ModelReady(_pb().ModelReadyRequest(name=session.model_name), timeout=session.timeout_s).ready:
        raise Failed(f"ModelReady({session.model_name!r}) answered ready=false")
    return f"ServerReady and ModelReady({session.model_name!r}) answered ready"


@_call
def check_metadata(session: SmokeSession) -> CheckResult:
    reply = _rpc(session).ModelMetadata(_pb().ModelMetadataRequest(name=session.model_name), timeout=session.timeout_s)
    return compare_metadata(session, metadata_dict(reply))


def check_infer(session: SmokeSession, batch: int) -> CheckResult:
    arrays, source = session.feed(batch, seed=batch)
    try:
        reply = _rpc(session).ModelInfer(infer_request(session.model_name, arrays), timeout=session.timeout_s)
    except grpc.RpcError as exc:
        reason = f"{exc.code().name}: {exc.details()}"  # type: ignore[attr-defined]
        if source == "synthetic":
            raise Failed(f"ModelInfer answered {describe_rejection(arrays, reason)}") from None
        raise Failed(f"ModelInfer with the sample answered {reason}") from None
    session.answered = True
    message, details = judge_answer(session, arrays, source, output_dicts(reply), batch)
    sent = {name: list(np.asarray(a).shape) for name, a in arrays.items()}
    return f"ModelInfer {message}", {**details, "sent": sent}


def check_bad_input(session: SmokeSession) -> tuple[str, dict[str, Any]]:
    answered = []
    problems = []
    for what, body in bad_requests(session):
        try:
            _rpc(session).ModelInfer(entries_request(session.model_name, body["inputs"]), timeout=session.timeout_s)
            code, reason = "OK", "answered"
        except grpc.RpcError as exc:
            code, reason = exc.code().name, str(exc.details())  # type: ignore[attr-defined]
        answered.append({"probe": what, "status": code, "reason": reason[:160]})
        if code != "INVALID_ARGUMENT":
            problems.append(f"{what} got {code}; expected INVALID_ARGUMENT with a message")
    if problems:
        raise Failed("; ".join(problems))
    return f"{len(answered)} invalid requests refused with INVALID_ARGUMENT: {answered[0]['reason'][:100]}", {"probes": answered}


def _pb() -> Any:
    from deploy_model.measure.grpc_messages import messages

    return messages
