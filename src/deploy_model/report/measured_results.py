"""The evidence sections of DEPLOYMENT.md: validation rows, the go/no-go outcome, where deploy stopped,
and the health fields and metric names as the smoke test saw them."""

from __future__ import annotations

import time
from typing import Any

from deploy_model.report.markdown import md, one_line

# Lines of a failed stage's problems (server log tail, failing checks) the report quotes.
FAILURE_LINES = 25
# How the report names what a figure sent (smoke.json / loadtest.json `protocol` and `encoding`).
WIRES = {("grpc", "protobuf"): "gRPC (protobuf tensors)", ("rest", "binary"): "REST, binary tensor bodies",
         ("rest", "json"): "REST, JSON bodies"}


def wire(record: dict[str, Any] | None) -> str:
    """The protocol and body encoding of a smoke check, a load level or a whole record, in words."""
    if not record:
        return ""
    key = (str(record.get("protocol") or "rest"), str(record.get("encoding") or "json"))
    return WIRES.get(key, f"{key[0]}, {key[1]} bodies")


def wires(smoke: dict[str, Any] | None, loadtest: dict[str, Any] | None) -> dict[str, str]:
    """What the smoke test and the load test sent: `smoke` (each protocol its checks used) and `loadtest`."""
    protocols = sorted({wire(c) for c in (smoke or {}).get("checks", [])})
    return {"smoke": " and ".join(protocols), "loadtest": wire(loadtest)}


def validation_rows(validation: dict[str, Any] | None) -> tuple[list[dict[str, str]], str]:
    if validation is None:
        return [], ""
    checks = validation.get("checks") or validation.get("results") or []
    rows = []
    for check in checks if isinstance(checks, list) else []:
        if not isinstance(check, dict):
            continue
        verdict = check.get("verdict") or check.get("status") or ("pass" if check.get("ok") else "fail")
        rows.append({
            "name": md(check.get("name") or check.get("check") or check.get("validator") or "check"),
            "tool": md(check.get("tool") or ""),
            "file": md(check.get("file") or check.get("path") or ""),
            "verdict": md(verdict),
            "message": md(str(check.get("message") or "")[:200]),
        })
    overall = validation.get("verdict") or ("pass" if validation.get("ok") else "fail" if "ok" in validation else "")
    return rows, str(overall)


def measured(smoke: dict[str, Any] | None, loadtest: dict[str, Any] | None, skip_reason: str | None,
             validation: dict[str, Any] | None, failure: dict[str, Any] | None = None,
             infeasible: str | None = None) -> dict[str, Any]:
    """The go / no-go and why, from the plan's SLA check (`infeasible`: its line), a stage that stopped
    `deploy`, validation, smoke and load test."""
    reasons = []
    go: bool | None = True
    if infeasible:  # first: no measurement below can make a request faster than its own inference
        go = False
        reasons.append(f"plan: {md(one_line(infeasible, 600))}")
    if failure:
        go = False
        reasons.append(f"deploy stopped at `{failure['stage']}`: {md(one_line(failure['error']))}")
    if validation is not None:
        checks = [c for c in validation.get("checks") or [] if isinstance(c, dict)]
        failed = [c for c in checks if str(c.get("verdict", "")).lower() == "fail"]
        if failed:
            go = False
            reasons.append(f"validation failed {len(failed)} of {len(checks)} checks")
        else:
            reasons.append(f"validation passed ({len(checks)} checks, none failed)")
    elif not skip_reason:  # as `summary`: measurements without a validated bundle are incomplete evidence
        go = None if go else go
        reasons.append("validation did not run (`deploy-model validate`)")
    if skip_reason:
        return {"go": None if go else go, "label": "not measured" if go else "NO-GO", "reasons": [*reasons, skip_reason]}
    if smoke is None:
        go = None if go else go  # missing evidence never hides a failure already found
        reasons.append(f"smoke test did not run ({'deploy stopped before it' if failure else '`deploy-model smoke`'})")
    elif not smoke.get("ok"):
        go = False
        reasons.append(f"smoke test failed: {', '.join(smoke.get('failed', []))}")
    else:
        reasons.append(f"smoke test passed {smoke.get('passed')}/{len(smoke.get('checks', []))} checks"
                       + (" over gRPC" if smoke.get("protocol") == "grpc" else ""))
    if loadtest is None:
        go = None if go else go
        reasons.append(f"load test did not run ({'deploy stopped before it' if failure else '`deploy-model loadtest`'})")
    else:
        v = loadtest["verdict"]
        if v.get("judged", True):
            reasons.append(("load test meets the SLA" if v["go"] else "load test misses the SLA")
                           + f" ({wire(loadtest)}): " + v["reason"])
        else:  # its reason starts "not enough requests to judge"
            reasons.append("load test: " + v["reason"])
        if not v["go"]:
            go = False
    label = {True: "GO", False: "NO-GO", None: "INCOMPLETE"}[go]
    return {"go": go, "label": label, "reasons": reasons, "wires": wires(smoke, loadtest)}


def failure_facts(failure: dict[str, Any] | None) -> dict[str, Any] | None:
    """Where and why deploy stopped: the stage, its message, and its problems (quoted in a code block)."""
    if not failure:
        return None
    problems = [str(p).rstrip() for p in failure.get("problems") or []]
    shown = problems[:FAILURE_LINES]
    if len(problems) > len(shown):
        shown.append(f"... {len(problems) - len(shown)} more line(s) in the stage's JSON output")
    return {"stage": failure["stage"], "error": one_line(failure.get("error", ""), 2000), "problems": shown}


def metric_seen(smoke: dict[str, Any] | None, name: str) -> str:
    if not smoke:
        return "not checked (no smoke run)"
    for check in smoke.get("checks", []):
        if check["name"] == "metrics":
            details = check.get("details") or {}
            if name in details.get("present", []):
                return "seen on /metrics"
            if name in details.get("after_traffic", []):
                return "appears after enough traffic"
            return "missing" if check.get("ok") is False else "not seen"
    return "not checked"


def health_facts(smoke: dict[str, Any] | None) -> dict[str, str] | None:
    for check in (smoke or {}).get("checks", []):
        if check["name"] == "health" and check.get("ok"):
            return {key: _health_value(key, value) for key, value in (check.get("details") or {}).items()}
    return None


def _health_value(key: str, value: Any) -> str:
    if value is None or value == "":
        return "not set yet"
    if key.endswith("_time") and isinstance(value, (int, float)) and value > 1e9:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(value)) + " (epoch seconds in the answer)"
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
