"""Smoke check `bad_input_4xx`: requests invalid for every model are refused with a 4xx, never a 5xx."""

from __future__ import annotations

import math
from typing import Any

from deploy_model.measure.refusal import server_reason
from deploy_model.measure.smoke_session import Failed, SmokeSession
from deploy_model.model.samples import v2_infer_body

# Suffix of the input name the bad-input probe sends: no model declares it.
UNKNOWN_INPUT_SUFFIX = "__not_an_input"


def bad_requests(session: SmokeSession) -> list[tuple[str, dict[str, Any]]]:
    """Requests invalid for every model: all inputs sent, one of them wrong in name, datatype or rank.

    Never a changed dynamic dim: a model with a dynamic last dim rightly accepts any length.
    """
    arrays, _ = session.feed(1, seed=3)
    good = v2_infer_body(arrays)["inputs"]
    first = good[0]
    probes = []
    renamed = [dict(first, name=f"{first['name']}{UNKNOWN_INPUT_SUFFIX}"), *good[1:]]
    probes.append((f"unknown input name {renamed[0]['name']!r}", {"inputs": renamed}))
    if first["datatype"] == "BYTES":
        wrong_type = dict(first, datatype="FP32", data=[0.5] * max(1, math.prod(first["shape"])))
    else:
        wrong_type = dict(first, datatype="BYTES", data=["x"] * max(1, math.prod(first["shape"])))
    probes.append((f"input {first['name']!r} as {wrong_type['datatype']} (the model expects {first['datatype']})",
                   {"inputs": [wrong_type, *good[1:]]}))
    ranked = dict(first, shape=[*first["shape"], 1])
    probes.append((f"input {first['name']!r} with rank {len(ranked['shape'])} {ranked['shape']} "
                   f"(the model expects rank {len(first['shape'])})", {"inputs": [ranked, *good[1:]]}))
    return probes


def check_bad_input(session: SmokeSession) -> tuple[str, dict[str, Any]]:
    answered = []
    problems = []
    for what, body in bad_requests(session):
        response = session.client.post(f"{session.url}/v2/models/{session.model_name}/infer", json=body)
        answered.append({"probe": what, "status": response.status_code, "reason": server_reason(response)[:160]})
        if not 400 <= response.status_code < 500:
            problems.append(f"{what} got HTTP {response.status_code}; expected a 4xx with a message")
    if problems:
        raise Failed("; ".join(problems))
    return (f"{len(answered)} invalid requests refused with "
            f"{', '.join(sorted({str(a['status']) for a in answered}))}: {answered[0]['reason'][:100]}",
            {"probes": answered})
