"""``POST /v2/models/{name}[/versions/{v}]/feedback``: ground truth for earlier answers (REST only).

The body is ``{"id": REQUEST_ID, "label": LABEL}`` or a list of such objects; a batch request's
label is a list, one value per row. The answer counts the outcomes (``feedback.OUTCOMES``); an
unknown or expired id is counted, never an error. Only a malformed body is refused (400), one
line naming what was wrong and what is expected. There is no gRPC twin: the V2 gRPC protocol has
no such method, and feedback is rare next to inference.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from .bodies import read_body
from .codec import ApiError, shown
from .core import ServerState
from .request_ids import MAX_CHARS

MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_ITEMS = 10000
EXPECTED = '{"id": REQUEST_ID, "label": LABEL} or a list of them (a list label for a batch request)'


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool))


def parse_items(body: bytes) -> list[tuple[str, Any]]:
    """(request id, label) pairs of a feedback body; ApiError(400) naming what is wrong."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ApiError(400, f"feedback body is not JSON; send {EXPECTED}") from None
    items = doc if isinstance(doc, list) else [doc]
    if not items or len(items) > MAX_ITEMS:
        raise ApiError(400, f"feedback holds {len(items)} items; send 1..{MAX_ITEMS}: {EXPECTED}")
    out = []
    for n, item in enumerate(items):
        where = f"feedback item {n}" if isinstance(doc, list) else "feedback"
        if not isinstance(item, dict):
            raise ApiError(400, f"{where} is a {type(item).__name__}; send {EXPECTED}")
        rid, label = item.get("id"), item.get("label")
        if not isinstance(rid, str) or not 0 < len(rid) <= MAX_CHARS:
            raise ApiError(400, f"{where}: id {shown(str(rid))} is not a request id (a string of "
                           f"1..{MAX_CHARS} characters, as X-Request-Id / the V2 id)")
        ok = _scalar(label) or (isinstance(label, list) and label and all(map(_scalar, label)))
        if not ok:
            raise ApiError(400, f"{where}: label {shown(orjson.dumps(label).decode())} is not a "
                           "number, string or boolean, or a non-empty list of them (one per row)")
        out.append((rid, label))
    return out


def add_feedback_routes(app: FastAPI, state: ServerState) -> None:
    """The feedback route, with and without a version."""
    settings = state.settings

    def answer(body: Any, status: int = 200) -> Response:
        return Response(orjson.dumps(body), status_code=status, media_type="application/json")

    async def feedback(request: Request) -> Response:
        params = request.path_params
        try:
            state.check_model(params["name"], params.get("version"))
            if state.feedback is None:
                raise ApiError(404, "feedback is off on this server: start it with "
                               "--feedback-window N (or --payload-log-sink)")
            headers = {k.lower(): v for k, v in request.headers.items()}
            limit = min(MAX_BODY_BYTES, settings.max_request_bytes)
            body = await read_body(request.receive, headers, limit, settings.body_timeout_s)
            items = parse_items(body)
        except ApiError as exc:
            return Response(orjson.dumps({"error": exc.message}), status_code=exc.status,
                            media_type="application/json", headers=exc.headers)
        outcomes = state.feedback.receive(items, time.time())
        return answer({"model_name": settings.model_name, "model_version": settings.model_version,
                       "track": settings.track, "received": len(items), "outcomes": outcomes})

    for base in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        app.add_route(base + "/feedback", feedback, methods=["POST"])
