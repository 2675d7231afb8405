"""`deploy-model summary`: the deployment in one short JSON document, for the agent.

Reading DEPLOYMENT.md back costs an agent thousands of tokens; this reads the stage files of the
deployment directory instead (deployment.yaml, validation.json, smoke.json, loadtest.json,
quantization.json, trial.json, experiment.json, server.json) and returns the outcome, the verdict's figures, what
was skipped and why, and the paths a person opens next. Nothing is recomputed: every figure is
the one a stage wrote.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from deploy_model.common.errors import StageError
from deploy_model.plan.decide_feasibility import infeasible_reason

REPORT_FILE = "DEPLOYMENT.md"
OUTCOME = re.compile(r"^\*\*Outcome: ([^*]+?)\.?\*\*\s*(.*)$", re.M)


def _json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {"unreadable": str(path)}
    return data if isinstance(data, dict) else None


def _validation(doc: dict[str, Any]) -> dict[str, Any]:
    checks = doc.get("checks") or []
    by = {v: [c for c in checks if c.get("verdict") == v] for v in ("pass", "fail", "skip")}
    out: dict[str, Any] = {"ok": doc.get("ok"), "passed": len(by["pass"]), "failed": len(by["fail"]),
                           "skipped": len(by["skip"])}
    if by["fail"]:
        out["failures"] = [f"{c.get('validator')}: {c.get('file')}: {c.get('message')}" for c in by["fail"]][:10]
    if by["skip"]:
        out["skipped_checks"] = [f"{c.get('validator')} ({c.get('tool')}): {c.get('message')}" for c in by["skip"]][:10]
    return out


def _smoke(doc: dict[str, Any]) -> dict[str, Any]:
    failed = doc.get("failed") or []
    out: dict[str, Any] = {"ok": doc.get("ok"), "passed": len(doc.get("passed") or []) if isinstance(doc.get("passed"), list)
                           else doc.get("passed"), "failed": failed}
    if doc.get("warnings"):
        out["warnings"] = doc["warnings"][:5]
    if doc.get("protocol") or doc.get("url"):
        out["endpoint"] = doc.get("protocol") or doc.get("url")
    return out


def _loadtest(doc: dict[str, Any]) -> dict[str, Any]:
    verdict = doc.get("verdict") or {}
    levels = doc.get("levels") or []
    best = max(levels, key=lambda lv: lv.get("rps") or 0, default={})
    return {
        "go": verdict.get("go"),
        "judged": verdict.get("judged", True),
        "reason": verdict.get("reason"),
        "sla_p95_ms": verdict.get("sla_p95_ms"),
        "target_rps": verdict.get("target_rps"),
        "capacity_rps_within_sla": verdict.get("capacity_rps_within_sla"),
        "replicas_needed": verdict.get("replicas_needed"),
        "best_level": {k: best.get(k) for k in ("concurrency", "rps", "samples", "p50_ms", "p95_ms", "p95_note", "p99_ms", "errors")
                       if k in best} or None,
        "engine": doc.get("engine"),
        "endpoint": doc.get("endpoint") or doc.get("protocol"),
        "chart": doc.get("chart"),
    }


def _quantization(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: doc.get(k) for k in ("verdict", "reason", "mode", "size_bytes_before", "size_bytes_after",
                                    "speedup", "agreement", "quantized_model") if doc.get(k) is not None}


def _experiment(doc: dict[str, Any]) -> dict[str, Any]:
    """`experiment analyze|status --out`'s verdict and the figures behind it."""
    seq = doc.get("sequential") or {}
    out = {"verdict": doc.get("verdict"), "metric": doc.get("metric"), "arms": doc.get("arms"), "n": doc.get("n"),
           "effect": doc.get("effect"), "p_value": seq.get("p_value"), "ci": seq.get("ci"),
           "decision": doc.get("decision"), "canary_judgement": doc.get("canary_judgement"),
           "analyzed_at": doc.get("analyzed_at")}
    return {k: v for k, v in out.items() if v is not None}


def _trial(doc: dict[str, Any]) -> dict[str, Any]:
    keep = ("pattern", "ok", "skipped", "source", "rows", "rejected", "rows_per_second", "scoring_seconds", "output",
            "sent", "answered", "dead_lettered", "startup_seconds", "samples", "p50_ms", "p50_note", "p95_ms", "p95_note",
            "messages_per_second", "error")
    return {k: doc.get(k) for k in keep if doc.get(k) is not None}


def build_summary(directory: Path) -> dict[str, Any]:
    spec_file = directory / "deployment.yaml"
    if not spec_file.is_file():
        raise StageError(f"{spec_file} not found: run plan first (summary reads the deployment directory's stage files)")
    try:
        spec = yaml.safe_load(spec_file.read_text()) or {}
    except yaml.YAMLError as exc:
        raise StageError(f"{spec_file} is not YAML: {exc}") from None
    serving = spec.get("serving") or {}
    rollout = spec.get("rollout") or {}
    pattern = serving.get("pattern")
    summary: dict[str, Any] = {
        "stage": "summary",
        "name": spec.get("name"),
        "pattern": pattern,
        "protocol": serving.get("protocol"),
        "target": spec.get("target"),
        "device": serving.get("device"),
        "rollout": rollout.get("strategy"),
        "slo": spec.get("slo"),
        "decisions": {d.get("decision"): d.get("value") for d in spec.get("decisions") or [] if isinstance(d, dict)},
    }
    problems: list[str] = []
    missing: list[str] = []
    infeasible = infeasible_reason([d for d in spec.get("decisions") or [] if isinstance(d, dict)])
    if infeasible:  # the plan's own finding: no replica meets the SLA, whatever was measured
        problems.append(f"plan: {infeasible}")
    files = {
        "validation": ("validation.json", _validation),
        "smoke": ("smoke.json", _smoke),
        "loadtest": ("loadtest.json", _loadtest),
        "quantization": ("quantization.json", _quantization),
        "trial": ("trial.json", _trial),
        "experiment": ("experiment.json", _experiment),
    }
    for key, (name, reader) in files.items():
        doc = _json(directory / name)
        if doc is None:
            continue
        if "unreadable" in doc:
            problems.append(f"{name} is not JSON")
            continue
        summary[key] = reader(doc)
    run = _json(directory / "deploy.json")  # the last `deploy` run, when one wrote here (it says when)
    if run and "unreadable" not in run:
        summary["deploy_run"] = {k: run.get(k) for k in ("outcome", "failed_stage", "error", "finished_at")
                                 if run.get(k) is not None}
    server = _json(directory / "server.json")
    if server and "unreadable" not in server:
        summary["server"] = {k: server.get(k) for k in ("state", "provider", "url", "grpc_target") if server.get(k)}
    # What each pattern is expected to have measured locally.
    expected = ["validation"]
    if pattern == "realtime":
        expected += ["smoke", "loadtest"]
    elif pattern in ("batch", "event-driven"):
        expected += ["trial"]
    elif pattern == "edge" and (spec.get("edge") or {}).get("quantize"):
        expected += ["quantization"]
    trial = summary.get("trial") or {}
    # A skipped trial, or one of another plan's pattern, measured nothing for this plan (as DEPLOYMENT.md reads it).
    unmeasured = "trial" if trial and (trial.get("skipped") or trial.get("pattern") != pattern) else None
    missing = [k for k in expected if k not in summary or k == unmeasured]
    if summary.get("validation", {}).get("ok") is False:
        problems.append(f"validation failed ({summary['validation']['failed']} checks)")
    if summary.get("smoke", {}).get("ok") is False:
        problems.append(f"smoke failed: {', '.join(map(str, summary['smoke']['failed']))}")
    if summary.get("loadtest", {}).get("go") is False:
        load = summary["loadtest"]
        problems.append(f"load test no-go: {load['reason']}" if load["judged"] else f"load test: {load['reason']}")
    if trial.get("ok") is False and not unmeasured:
        problems.append(f"local trial failed: {summary['trial'].get('error', 'see trial.json')}")
    if summary.get("quantization", {}).get("verdict") == "refused":
        summary.setdefault("notes", []).append("INT8 model refused: the bundle ships the original model")
    skipped = summary.get("validation", {}).get("skipped", 0)
    if skipped:
        summary.setdefault("notes", []).append(f"{skipped} validation check(s) skipped: a tool was absent (see skipped_checks)")
    if summary.get("trial", {}).get("skipped"):
        summary.setdefault("notes", []).append(f"local trial skipped: {summary['trial']['skipped']}")
    summary["outcome"] = "no-go" if problems else ("incomplete" if missing else "go")
    summary["problems"] = problems or None
    summary["not_run"] = missing or None
    report = directory / REPORT_FILE
    if report.is_file():
        match = OUTCOME.search(report.read_text(errors="replace"))
        if match:
            summary["report_outcome"] = match.group(1).strip()
    summary["paths"] = {
        "directory": str(directory),
        "report": str(report) if report.is_file() else None,
        "spec": str(spec_file),
        "manifests": str(directory / "k8s") if (directory / "k8s").is_dir() else None,
        "dockerfile": str(directory / "Dockerfile") if (directory / "Dockerfile").is_file() else None,
        "chart": str(directory / "loadtest.png") if (directory / "loadtest.png").is_file() else None,
        "validation": str(directory / "validation.json") if (directory / "validation.json").is_file() else None,
    }
    summary["paths"] = {k: v for k, v in summary["paths"].items() if v}
    return {k: v for k, v in summary.items() if v is not None}


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The summary for a person: outcome, each check's count, and every skipped check by name."""
    lines = [f"outcome: {summary['outcome'].upper()} ({summary.get('pattern')}, {summary.get('protocol')}, "
             f"rollout {summary.get('rollout')})"]
    for problem in summary.get("problems") or []:
        lines.append(f"  problem: {problem}")
    validation = summary.get("validation")
    if validation:
        lines.append(f"validation: {validation['passed']} passed, {validation['failed']} failed, "
                     f"{validation['skipped']} skipped")
        for skipped in validation.get("skipped_checks", []):
            lines.append(f"  skipped: {skipped}")
        for failure in validation.get("failures", []):
            lines.append(f"  failed: {failure}")
    if "smoke" in summary:
        smoke = summary["smoke"]
        lines.append(f"smoke: {'passed' if smoke.get('ok') else 'FAILED'} ({smoke.get('passed')} checks passed"
                     + (f"; failed: {', '.join(map(str, smoke['failed']))}" if smoke.get("failed") else "") + ")")
    if "loadtest" in summary:
        load = summary["loadtest"]
        word = ("go" if load.get("go") else "NO-GO") if load.get("judged", True) else "not judged"
        lines.append(f"load test: {word}: {load.get('reason')}")
    if "quantization" in summary:
        lines.append(f"quantize: {summary['quantization'].get('verdict')}: {summary['quantization'].get('reason', '')}".rstrip(": "))
    if "trial" in summary:
        trial = summary["trial"]
        state = "skipped: " + trial["skipped"] if trial.get("skipped") else ("passed" if trial.get("ok") else "FAILED")
        lines.append(f"local trial: {state}")
    if "experiment" in summary:
        exp = summary["experiment"]
        lines.append(f"experiment ({exp.get('metric')}): {exp.get('verdict')}"
                     + (f", always-valid p={exp['p_value']:.3g}" if isinstance(exp.get("p_value"), float) else ""))
    for missing in summary.get("not_run") or []:
        lines.append(f"not run: {missing}")
    if summary["paths"].get("report"):
        lines.append(f"report: {summary['paths']['report']}")
    return lines
