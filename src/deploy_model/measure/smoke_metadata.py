"""Smoke check `model_metadata`: the server's V2 model metadata against model-profile.json."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from deploy_model.measure.smoke_session import Failed, SmokeSession
from deploy_model.model.samples import V2_TO_NUMPY, v2_datatype


def expected_v2_shape(shape: Sequence[Any]) -> list[int]:
    return [d if isinstance(d, int) and d > 0 else -1 for d in shape]


def is_tensor_dtype(dtype: str) -> bool:
    """Profile dtypes that map to one V2 tensor datatype (seq/map outputs do not: the server chooses)."""
    return v2_datatype(dtype) in V2_TO_NUMPY


def expected_datatype(session: SmokeSession, tensor: Mapping[str, Any]) -> str | None:
    """The V2 datatype an output must come back as: the profile's, or the server's for seq/map outputs."""
    if is_tensor_dtype(tensor["dtype"]):
        return v2_datatype(tensor["dtype"])
    served = session.served.get(tensor["name"])
    return str(served["datatype"]) if served and served.get("datatype") else None


def check_metadata(session: SmokeSession) -> tuple[str, dict[str, Any]]:
    return compare_metadata(session, session.get(f"/v2/models/{session.model_name}").json())


def compare_metadata(session: SmokeSession, meta: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The served metadata (REST body, or gRPC reply as one) against the profile; fails on what clients send."""
    problems = []
    session.served = {t.get("name"): t for t in meta.get("outputs", []) if isinstance(t, dict)}
    for kind in ("inputs", "outputs"):
        served = {t.get("name"): t for t in meta.get(kind, []) if isinstance(t, dict)}
        declared = session.profile.get(kind, [])
        if set(served) != {t["name"] for t in declared}:
            problems.append(f"{kind}: server has {sorted(map(str, served))}, profile has {[t['name'] for t in declared]}")
            continue
        for tensor in declared:
            got = served[tensor["name"]]
            want_type = v2_datatype(tensor["dtype"])
            if is_tensor_dtype(tensor["dtype"]) and got.get("datatype") != want_type:
                problems.append(f"{kind} {tensor['name']!r}: datatype {got.get('datatype') or 'missing'}, profile says {want_type}")
            want_shape = expected_v2_shape(tensor["shape"])
            have_shape = list(got.get("shape", []))
            if have_shape == want_shape or not tensor["shape"]:
                continue
            if kind == "inputs":
                # What clients must send: a disagreement here is a different model or a broken server.
                problems.append(f"{kind} {tensor['name']!r}: shape {have_shape}, profile says {want_shape}")
            else:
                # onnxruntime corrects a wrong declared output shape with its own inference (and warns).
                session.warn(f"output {tensor['name']!r}: the server reports shape {have_shape}, the graph declares {want_shape}")
    if problems:
        raise Failed("model metadata differs from model-profile.json: " + "; ".join(problems))
    return (
        f"{len(meta.get('inputs', []))} input(s) and {len(meta.get('outputs', []))} output(s) match model-profile.json",
        {"name": meta.get("name"), "versions": meta.get("versions"), "platform": meta.get("platform")},
    )
