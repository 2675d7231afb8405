"""Stage `report`: DEPLOYMENT.md, the standard deployment report, filled from the stage files.

Every value comes from a stage file of the deployment directory; a stage that did not run is
named as absent with the command that produces it, never left as a placeholder. The Markdown
layout lives in templates/report/; this module gathers the facts and builds the commands.
"""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import yaml

from deploy_model.common.errors import StageError
from deploy_model.common.files import atomic_write_text, read_json
from deploy_model.measure.loadtest import CHART_FILE, LOADTEST_FILE
from deploy_model.measure.serve import SERVER_FILE, not_served_reason
from deploy_model.measure.smoke import EXPECTED_METRICS, SMOKE_FILE
from deploy_model.model.inspection import PROFILE_FILE
from deploy_model.plan.plugins import SIBLINGS_FILE
from deploy_model.plan.specfile import load_spec
from deploy_model.report.examples import REQUEST_FILE, build_examples, example_arrays
from deploy_model.report.rollout_commands import rollback_steps, rollout_steps

__all__ = ["REPORT_FILE", "REQUEST_FILE", "failure_report", "find_placeholders", "run_report"]

REPORT_FILE = "DEPLOYMENT.md"
TEMPLATES = Path(__file__).resolve().parents[3] / "templates" / "report"
MANIFEST_LINES = 90
# Lines of a failed stage's problems (server log tail, failing checks) the report quotes.
FAILURE_LINES = 25
# Stage files the report reads, the stage that writes each, and whether it may be absent by design.
STAGE_FILES = [
    ("siblings.json", "plugins"),
    (PROFILE_FILE, "inspect"),
    ("deployment.yaml", "plan"),
    ("manifest.json", "render"),
    ("validation.json", "validate"),
    ("quantization.json", "quantize"),
    (SERVER_FILE, "serve"),
    (SMOKE_FILE, "smoke"),
    (LOADTEST_FILE, "loadtest"),
    (CHART_FILE, "loadtest"),
]
# Left-over template markers a finished report must never contain.
PLACEHOLDER = re.compile(r"\{\{|\{%|\[(?:Model Name|REST/gRPC/Batch|Kubernetes/Serverless/Edge|Canary/Shadow/Direct|"
                         r"ONNX/TorchServe/SavedModel|Serving code|Container/Kubernetes configuration)\]|\bTODO\b|\bTBD\b|"
                         r"\bFIXME\b|<placeholder>|\bNone\b|\bnull\b|\bnan\b")


def _optional_json(path: Path) -> Any:
    if not path.is_file():
        return None
    return read_json(path, path.name)


def _md(text: Any) -> str:
    """A value safe inside a Markdown table cell. A Python `None` quoted from a stage's message reads
    'none': the report refuses text that looks like an unfilled value."""
    return re.sub(r"\bNone\b", "none", str(text).replace("|", "\\|").replace("\n", " "))


def _num(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


# --- sections that need logic ---------------------------------------------------------------


def cold_start_phrase(server: dict[str, Any] | None) -> str:
    """The cold start `serve` measured (server.json ready_seconds: process start to ready), or ''.
    What a request waits for when it wakes a scaled-to-zero service, before image pull and scheduling."""
    seconds = (server or {}).get("ready_seconds")
    if not isinstance(seconds, (int, float)):
        return ""
    return (f"measured cold start here: {seconds:.2f} s (process start to ready: model load and warm-up; a cluster adds "
            "scheduling and image pull)")


def configuration_rows(spec: Any, profile: dict[str, Any], server: dict[str, Any] | None,
                       quant: dict[str, Any] | None) -> list[tuple[str, str]]:
    s = spec
    pattern = {"realtime": f"Real-time {s.serving.protocol.value.upper()} (Open Inference Protocol v2 + /predict)",
               "batch": f"Batch (scheduled job, cron `{s.batch.schedule if s.batch else ''}`)",
               "event-driven": "Event-driven (message queue + workers)",
               "edge": "Edge (the model runs on the device)"}[s.serving.pattern.value]
    rollout = s.rollout.strategy.value
    if s.rollout.canary:
        rollout += f" via {s.rollout.canary.mechanism.value}, steps {', '.join(f'{w}%' for w in s.rollout.canary.steps)}"
    if s.rollout.shadow:
        rollout += f" via {s.rollout.shadow.mechanism.value}, sampling {s.rollout.shadow.sample_rate:.0%} of requests"
    rows = [
        ("Serving pattern", pattern),
        ("Target", f"{s.target.value}" + (f" {s.kubernetes.version}, namespace `{s.kubernetes.namespace}`" if s.target.value == "kubernetes" else "")),
        ("Rollout strategy", rollout),
        ("Model format", f"{s.model.format.upper()} ({_opsets(profile, s.model.opset)}, IR {profile.get('ir_version', 'n/a')})"),
        ("Model", f"`{Path(s.model.path).name}` v{s.model.version}, {_num(s.model.parameters)} parameters, "
                  f"{_num(s.model.bytes)} bytes, sha256 `{s.model.sha256[:12]}`"),
        ("Signature", "; ".join(f"in `{t.name}` {t.dtype} {_shape(t.shape)}" for t in s.model.inputs) + "; "
                      + "; ".join(f"out `{t.name}` {t.dtype} {_shape(t.shape)}" for t in s.model.outputs)),
        ("Device (planned)", s.serving.device.value + (" with CPU fallback" if s.serving.allow_cpu_fallback else "")),
    ]
    if server:
        provider = server.get("provider") or (server.get("health") or {}).get("execution_provider") or "not reported"
        note = "; ".join(server.get("notes") or [])
        rows.append(("Provider actually used (measured run)", f"{provider}" + (f" ({note})" if note else "")))
    else:
        rows.append(("Provider actually used (measured run)", "no local server ran (see Measured results)"))
    b = s.batching
    rows.append(("Batching", f"dynamic, up to {b.max_batch_size} rows per batch, waiting at most {b.max_batch_delay_ms:g} ms, "
                             f"queue of {b.max_queue_size}" if b.enabled else "off (one request per inference)"))
    r = s.resources
    rows.append(("Resources per replica", f"CPU {r.cpu_request} request / {r.cpu_limit} limit, memory {r.memory_request} / "
                                          f"{r.memory_limit}" + (f", {r.gpu} GPU" if r.gpu else "")
                                          + (f"; {s.serving.workers} server processes (ONNXSERVE_WORKERS)"
                                             if s.serving.workers > 1 else "")))
    sc = s.scaling
    if s.serving.pattern.value == "event-driven":
        scaler = f"KEDA {sc.min_replicas}-{sc.max_replicas} workers on the request stream's consumer-group lag"
    else:
        scaler = f"HPA {sc.min_replicas}-{sc.max_replicas} at {sc.target_cpu_utilization}% CPU"
    rows.append(("Replicas / autoscaling", f"{sc.replicas} replica{'s' if sc.replicas != 1 else ''}; {scaler}"
                                           + (", scale to zero" if sc.scale_to_zero else "")
                                           + (f"; {cold_start_phrase(server)}" if cold_start_phrase(server)
                                              and (sc.scale_to_zero or s.target.value == "serverless") else "")))
    rows.append(("SLO", f"p95 <= {s.slo.latency_p95_ms:g} ms at {s.slo.target_rps:g} req/s, availability "
                        f"{s.slo.availability:g}%, errors <= {s.slo.max_error_ratio:.1%}"))
    if quant:
        rows.append(("Quantization", _quant_line(quant)))
    return [(k, _md(v)) for k, v in rows]


def _opsets(profile: dict[str, Any], opset: Any) -> str:
    """'opset 17' or, per domain, 'opsets ai.onnx 17, ai.onnx.ml 3' (an ai.onnx.ml-only model has no default opset)."""
    imports = profile.get("opset_imports")
    if isinstance(imports, dict) and imports:
        if list(imports) == ["ai.onnx"]:
            return f"opset {imports['ai.onnx']}"
        return "opsets " + ", ".join(f"{domain} {version}" for domain, version in imports.items())
    return f"opset {opset}" if opset is not None else "opset not declared"


def _shape(shape: list[Any]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _quant_line(quant: dict[str, Any]) -> str:
    q = quant
    parts = [str(q.get("method") or q.get("precision") or "quantized")]
    if q.get("verdict"):
        parts[0] += f": {q['verdict']}" + (f" ({q['reason']})" if q.get("reason") else "")
    if q.get("size_bytes_before") and q.get("size_bytes_after"):
        parts.append(f"size {q['size_bytes_before']:,} -> {q['size_bytes_after']:,} bytes")
    if q.get("speedup") is not None:
        parts.append(f"batch-1 speed x{q['speedup']:g}")
    if q.get("agreement") is not None:
        parts.append(f"top-1 agreement {q['agreement']:.1%}")
    if q.get("max_abs_diff") is not None:
        parts.append(f"max abs diff {q['max_abs_diff']:g}")
    return "; ".join(parts)


def rendered_files(directory: Path, manifest: dict[str, Any] | None) -> list[dict[str, str]]:
    """Files of the bundle: from manifest.json when render ran, else what is on disk."""
    entries: list[dict[str, str]] = []
    raw = (manifest or {}).get("files")
    if isinstance(raw, dict):
        raw = [{"path": k, **(v if isinstance(v, dict) else {"sha256": v})} for k, v in raw.items()]
    if isinstance(raw, list):
        for item in raw:
            if isinstance(item, dict) and item.get("path"):
                entries.append({"path": str(item["path"]), "sha256": str(item.get("sha256", ""))[:12],
                                "what": str(item.get("description") or item.get("what") or item.get("kind") or "")})
            elif isinstance(item, str):
                entries.append({"path": item, "sha256": "", "what": ""})
    return _grouped(entries)


def _grouped(entries: list[dict[str, str]], most: int = 6) -> list[dict[str, str]]:
    """Many files of one kind under one folder (the server's source) become one row for the folder."""
    groups: dict[tuple[str, str], list[dict[str, str]]] = {}
    for entry in entries:
        top = entry["path"].split("/", 1)[0] if "/" in entry["path"] else ""
        groups.setdefault((top, entry["what"]), []).append(entry)
    out: list[dict[str, str]] = []
    done: set[tuple[str, str]] = set()
    for entry in entries:
        top = entry["path"].split("/", 1)[0] if "/" in entry["path"] else ""
        key = (top, entry["what"])
        members = groups[key]
        if top and len(members) > most:
            if key not in done:
                done.add(key)
                out.append({"path": f"{top}/", "sha256": "", "what": f"{entry['what'] or 'files'} ({len(members)} files)"})
            continue
        out.append(entry)
    return out


def key_manifests(directory: Path, limit: int = MANIFEST_LINES) -> list[dict[str, str]]:
    """The manifests a reviewer reads first: the workload and its traffic split, inlined (bounded)."""
    wanted = ("Deployment", "Rollout", "HTTPRoute", "Ingress", "HorizontalPodAutoscaler", "CronJob")
    shown: list[dict[str, str]] = []
    candidates = sorted((directory / "k8s").glob("*.yaml")) if (directory / "k8s").is_dir() else []
    for path in candidates:
        text = path.read_text(encoding="utf-8", errors="replace")
        kinds = re.findall(r"^kind:\s*(\S+)", text, flags=re.M)
        if not any(k in wanted for k in kinds):
            continue
        lines = text.rstrip().splitlines()
        body = "\n".join(lines[:limit]) + (f"\n# ... {len(lines) - limit} more lines in the file" if len(lines) > limit else "")
        shown.append({"path": str(path.relative_to(directory)), "kinds": ", ".join(sorted(set(kinds))), "text": body})
        if len(shown) >= 3:
            break
    return shown


def service_name(directory: Path, default: str) -> str:
    for path in sorted((directory / "k8s").glob("*.yaml")) if (directory / "k8s").is_dir() else []:
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8", errors="replace")):
            if isinstance(doc, dict) and doc.get("kind") == "Service":
                name = (doc.get("metadata") or {}).get("name")
                if name and "canary" not in name and "preview" not in name:
                    return str(name)
    return default


def alert_rules(directory: Path) -> list[dict[str, str]]:
    """Alert rules rendered under monitoring/ (Prometheus rule files or a PrometheusRule)."""
    rules: list[dict[str, str]] = []
    folder = directory / "monitoring"
    if not folder.is_dir():
        return rules
    seen: set[str] = set()
    for path in sorted(folder.rglob("*.y*ml")):
        try:
            docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8", errors="replace")))
        except yaml.YAMLError:
            continue
        for doc in docs:
            if not isinstance(doc, dict):
                continue
            groups = doc.get("groups") or (doc.get("spec") or {}).get("groups") or []
            for group in groups if isinstance(groups, list) else []:
                for rule in (group or {}).get("rules") or []:
                    if not isinstance(rule, dict) or "alert" not in rule or rule["alert"] in seen:
                        continue
                    seen.add(rule["alert"])
                    rules.append({
                        "alert": str(rule["alert"]),
                        "expr": " ".join(str(rule.get("expr", "")).split()),
                        "for": str(rule.get("for", "0s")),
                        "severity": str((rule.get("labels") or {}).get("severity", "")),
                        "summary": str((rule.get("annotations") or {}).get("summary", "")),
                        "file": str(path.relative_to(directory)),
                    })
    return rules


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
            "name": _md(check.get("name") or check.get("check") or check.get("validator") or "check"),
            "tool": _md(check.get("tool") or ""),
            "file": _md(check.get("file") or check.get("path") or ""),
            "verdict": _md(verdict),
            "message": _md(str(check.get("message") or "")[:200]),
        })
    overall = validation.get("verdict") or ("pass" if validation.get("ok") else "fail" if "ok" in validation else "")
    return rows, str(overall)


def endpoint_examples(spec: Any, profile: dict[str, Any], directory: Path) -> dict[str, Any]:
    """curl, requests and tritonclient examples built from the sample (or the model's signature)."""
    return build_examples(spec, profile, directory, display_path(directory))


def worker_example(spec: Any, profile: dict[str, Any], directory: Path | None = None) -> dict[str, Any]:
    """How a producer talks to the event-driven workers: one request in, one answer out."""
    from deploy_model.plan.spec import WORKER_GROUP, WORKER_STREAM

    arrays, _ = example_arrays(profile, directory)
    inputs = {name: np.round(a.astype(np.float64), 4).tolist() if a.dtype.kind == "f" else
              (np.asarray(a).astype(str).tolist() if a.dtype.kind in ("U", "S", "O") else a.tolist())
              for name, a in arrays.items()}
    body = json.dumps({"id": "req-1", "inputs": inputs})
    lines = ["import json", "", "import redis", "",
             'r = redis.Redis.from_url("redis://127.0.0.1:6379/0", decode_responses=True)',
             f"body = {body!r}",
             f'entry = r.xadd("{WORKER_STREAM}", {{"body": body}})',
             "# Each answer names the request entry it answers; read until ours arrives (bounded).",
             "last = \"0\"",
             "for _ in range(50):",
             '    for _, items in r.xread({"inference:results": last}, count=100, block=200) or []:',
             "        for last, fields in items:",
             '            if fields["request_id"] == entry:',
             '                outputs = json.loads(fields["outputs"])',
             '                print({name: len(rows) for name, rows in outputs.items()})',
             "                raise SystemExit(0)",
             'raise SystemExit("no answer within 10 s: are the workers running?")']
    return {"stream": WORKER_STREAM, "group": WORKER_GROUP, "results": "inference:results",
            "dead_letter": "inference:dead", "body": body, "python": "\n".join(lines)}


def measured(smoke: dict[str, Any] | None, loadtest: dict[str, Any] | None, skip_reason: str | None,
             validation: dict[str, Any] | None, failure: dict[str, Any] | None = None) -> dict[str, Any]:
    """The go / no-go and why, from a stage that stopped `deploy`, validation, smoke and load test."""
    reasons = []
    go: bool | None = True
    if failure:
        go = False
        reasons.append(f"deploy stopped at `{failure['stage']}`: {_md(_one_line(failure['error']))}")
    if validation is not None:
        checks = [c for c in validation.get("checks") or [] if isinstance(c, dict)]
        failed = [c for c in checks if str(c.get("verdict", "")).lower() == "fail"]
        if failed:
            go = False
            reasons.append(f"validation failed {len(failed)} of {len(checks)} checks")
        else:
            reasons.append(f"validation passed ({len(checks)} checks, none failed)")
    if skip_reason:
        return {"go": None if go else go, "label": "not measured" if go else "NO-GO", "reasons": [*reasons, skip_reason]}
    if smoke is None:
        go = None if go else go  # missing evidence never hides a failure already found
        reasons.append(f"smoke test did not run ({'deploy stopped before it' if failure else '`deploy-model smoke`'})")
    elif not smoke.get("ok"):
        go = False
        reasons.append(f"smoke test failed: {', '.join(smoke.get('failed', []))}")
    else:
        reasons.append(f"smoke test passed {smoke.get('passed')}/{len(smoke.get('checks', []))} checks")
    if loadtest is None:
        go = None if go else go
        reasons.append(f"load test did not run ({'deploy stopped before it' if failure else '`deploy-model loadtest`'})")
    else:
        v = loadtest["verdict"]
        reasons.append(("load test meets the SLA: " if v["go"] else "load test misses the SLA: ") + v["reason"])
        if not v["go"]:
            go = False
    label = {True: "GO", False: "NO-GO", None: "INCOMPLETE"}[go]
    return {"go": go, "label": label, "reasons": reasons}


def _one_line(text: Any, limit: int = 400) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def gather(directory: Path, failure: dict[str, Any] | None = None) -> dict[str, Any]:
    spec = load_spec(directory)
    profile = read_json(directory / PROFILE_FILE, "model profile (run `inspect` first)")
    siblings = _optional_json(directory / SIBLINGS_FILE)
    manifest = _optional_json(directory / "manifest.json")
    validation = _optional_json(directory / "validation.json")
    quant = _optional_json(directory / "quantization.json")
    server = _optional_json(directory / SERVER_FILE)
    smoke = _optional_json(directory / SMOKE_FILE)
    loadtest = _optional_json(directory / LOADTEST_FILE)
    skip = not_served_reason(spec)
    present = [(f, stage, (directory / f).exists()) for f, stage in STAGE_FILES]
    relevant_absent = [
        (f, stage) for f, stage, here in present if not here
        and not (stage == "quantize" and spec.serving.pattern.value != "edge")
        and not (skip and stage in ("serve", "smoke", "loadtest"))
    ]
    v_rows, v_overall = validation_rows(validation)
    service = service_name(directory, spec.name)
    return {
        "spec": spec,
        "profile": profile,
        "name": spec.name,
        "directory": display_path(directory),
        "generated_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "config_rows": configuration_rows(spec, profile, server, quant),
        "decisions": [(d.decision, _md(d.value if not isinstance(d.value, (dict, list)) else json.dumps(d.value)), _md(d.rule))
                      for d in spec.decisions],
        "files": rendered_files(directory, manifest),
        "file_count": len((manifest or {}).get("files") or []),
        "disk_files": sorted(str(p.relative_to(directory)) for p in directory.rglob("*")
                             if p.is_file() and not p.name.startswith(".") and p.name != REPORT_FILE)[:200],
        "manifests": key_manifests(directory),
        "has_dockerfile": (directory / "Dockerfile").is_file(),
        "has_compose": (directory / "compose.yaml").is_file(),
        "service": service,
        "examples": endpoint_examples(spec, profile, directory),
        "worker": worker_example(spec, profile, directory) if spec.serving.pattern.value == "event-driven" else None,
        "metrics": [(name, what, _metric_seen(smoke, name)) for name, what in EXPECTED_METRICS.items()],
        "alerts": alert_rules(directory),
        "dashboard": next((str(p.relative_to(directory)) for p in sorted((directory / "monitoring").glob("*dashboard*.json"))), None)
        if (directory / "monitoring").is_dir() else None,
        "health": _health(smoke),
        "smoke": smoke,
        "loadtest": loadtest,
        "chart": (directory / CHART_FILE).is_file(),
        "server": server,
        "skip_reason": skip,
        "outcome": measured(smoke, loadtest, skip, validation, failure),
        "failure": _failure_facts(failure),
        "rollout": _steps(rollout_steps(spec, display_path(directory), service)),
        "rollback": _steps(rollback_steps(spec, service)),
        "validation_rows": v_rows,
        "validation_overall": v_overall,
        "validation_present": validation is not None,
        "siblings": (siblings or {}).get("plugins", []) if isinstance(siblings, dict) else [],
        "siblings_searched": (siblings or {}).get("searched", []) if isinstance(siblings, dict) else [],
        "absent": relevant_absent,
        "num": _num,
        "md": _md,
    }


def _failure_facts(failure: dict[str, Any] | None) -> dict[str, Any] | None:
    """Where and why deploy stopped: the stage, its message, and its problems (quoted in a code block)."""
    if not failure:
        return None
    problems = [str(p).rstrip() for p in failure.get("problems") or []]
    shown = problems[:FAILURE_LINES]
    if len(problems) > len(shown):
        shown.append(f"... {len(problems) - len(shown)} more line(s) in the stage's JSON output")
    return {"stage": failure["stage"], "error": _one_line(failure.get("error", ""), 2000), "problems": shown}


def _steps(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"commands": [], "gates": [], **item} for item in items]


def display_path(directory: Path) -> str:
    """The directory as the reader would type it: relative to here when below here, else absolute."""
    resolved = directory.resolve()
    try:
        return str(resolved.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(resolved)


def _metric_seen(smoke: dict[str, Any] | None, name: str) -> str:
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


def _health(smoke: dict[str, Any] | None) -> dict[str, str] | None:
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


def render_report(directory: Path, failure: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    facts = gather(directory, failure)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False,
    )
    text = env.get_template("DEPLOYMENT.md.j2").render(**facts)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text, facts


def find_placeholders(text: str) -> list[str]:
    """Unfilled markers left in a report (the report refuses to write one that has any)."""
    found = []
    in_code = False
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("```"):
            in_code = not in_code
        # Inside code blocks only template markers count: YAML may legitimately say `null`.
        pattern = re.compile(r"\{\{|\{%") if in_code else PLACEHOLDER
        match = pattern.search(line)
        if match:
            found.append(f"line {number}: {match.group(0)!r} in {line.strip()[:100]!r}")
    return found


def run_report(directory: Path, dry_run: bool = False, failure: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write DEPLOYMENT.md; `failure` (from `deploy`) says at which stage and why the run stopped."""
    text, facts = render_report(directory, failure)
    problems = find_placeholders(text)
    if problems:
        raise StageError("the report still has unfilled markers; this is a bug in deploy-model", problems[:20])
    wrote = []
    if not dry_run:
        if not facts["examples"]["inline"]:
            wrote.append(str(atomic_write_text(directory / REQUEST_FILE, json.dumps(facts["examples"]["body"]) + "\n")))
        wrote.insert(0, str(atomic_write_text(directory / REPORT_FILE, text)))
    return {
        "stage": "report", "ok": True, "wrote": wrote, "dry_run": dry_run or None,
        "summary": {"outcome": facts["outcome"]["label"], "reasons": facts["outcome"]["reasons"],
                    "absent_stage_files": [f for f, _ in facts["absent"]], "lines": text.count("\n")},
    }


def failure_report(directory: Path, failure: dict[str, Any], completed: list[dict[str, Any]],
                   note: str | None = None) -> dict[str, Any]:
    """The short DEPLOYMENT.md of a `deploy` that stopped before it had a spec to report from."""
    facts = _failure_facts(failure) or {"stage": "?", "error": "unknown", "problems": []}
    name = directory.resolve().name
    shown = display_path(directory)
    lines = [
        f"# Model deployment: {name}",
        "",
        f"Generated by `deploy-model deploy` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} in `{shown}/`.",
        "",
        f"**Outcome: NO-GO.** deploy stopped at `{facts['stage']}`: {_md(facts['error'])}",
        "",
    ]
    if note:
        lines += [f"({note})", ""]
    if facts["problems"]:
        lines += ["What the stage reported:", "", "```text", *facts["problems"], "```", ""]
    lines += ["## Stages", "", "| stage | result | seconds |", "| --- | --- | ---: |"]
    for step in completed:
        result = f"skipped: {_md(step['skipped'])}" if step.get("skipped") else "done"
        lines.append(f"| {step['stage']} | {result} | {_num(step.get('seconds'), 2)} |")
    lines.append(f"| {facts['stage']} | **failed** | {_num(failure.get('seconds'), 2)} |")
    lines += ["", "Every later stage did not run. Fix the cause above and run `deploy` again; each stage can also be "
              f"re-run alone (`deploy-model {facts['stage']} --help`).", ""]
    text = "\n".join(lines)
    atomic_write_text(directory / REPORT_FILE, text)
    return {"stage": "report", "ok": True, "wrote": [str(directory / REPORT_FILE)],
            "summary": {"outcome": "NO-GO", "reasons": [f"deploy stopped at {facts['stage']}: {facts['error']}"],
                        "lines": text.count("\n")}}
