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

from deploy_model.common.errors import StageError
from deploy_model.common.files import atomic_write_text, read_json
from deploy_model.measure.loadtest import CHART_FILE, LOADTEST_FILE
from deploy_model.measure.serve import SERVER_FILE, not_served_reason
from deploy_model.measure.smoke import SMOKE_FILE
from deploy_model.measure.smoke_metrics import EXPECTED_METRICS
from deploy_model.measure.trial import TRIAL_FILE
from deploy_model.model.inspection import PROFILE_FILE
from deploy_model.plan.decide_feasibility import infeasible_reason
from deploy_model.plan.plugins import SIBLINGS_FILE
from deploy_model.plan.specfile import load_spec
from deploy_model.report.bundle_contents import (
    alert_rules,
    key_manifests,
    rendered_files,
    service_name,
)
from deploy_model.report.configuration_rows import configuration_rows
from deploy_model.report.examples import REQUEST_FILE, build_examples
from deploy_model.report.experiment_section import experiment_section
from deploy_model.report.inline_commands import inline_commands
from deploy_model.report.markdown import code, md, num
from deploy_model.report.measured_results import (
    failure_facts,
    health_facts,
    measured,
    metric_seen,
    validation_rows,
)
from deploy_model.report.rollout_commands import rollback_steps, rollout_steps
from deploy_model.report.trial_results import trial_section, with_trial
from deploy_model.report.worker_example import worker_example

__all__ = ["REPORT_FILE", "failure_report", "find_placeholders", "run_report"]

REPORT_FILE = "DEPLOYMENT.md"
TEMPLATES = Path(__file__).resolve().parents[3] / "templates" / "report"
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


def endpoint_examples(spec: Any, profile: dict[str, Any], directory: Path) -> dict[str, Any]:
    """curl, requests and tritonclient examples built from the sample (or the model's signature)."""
    return build_examples(spec, profile, directory, display_path(directory))


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
    trial = _optional_json(directory / TRIAL_FILE)
    pattern = spec.serving.pattern.value
    skip = not_served_reason(spec)
    present = [(f, stage, (directory / f).exists()) for f, stage in STAGE_FILES]
    relevant_absent = [
        (f, stage) for f, stage, here in present if not here
        and not (stage == "quantize" and spec.serving.pattern.value != "edge")
        and not (skip and stage in ("serve", "smoke", "loadtest"))
    ]
    v_rows, v_overall = validation_rows(validation)
    service = service_name(directory, spec.name)
    shown = display_path(directory)
    return {
        "spec": spec,
        "profile": profile,
        "name": spec.name,
        "directory": shown,
        "commands": inline_commands(spec, shown, service, [stage for _, stage in STAGE_FILES]),
        "generated_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "config_rows": configuration_rows(spec, profile, server, quant),
        "decisions": [(d.decision, md(d.value if not isinstance(d.value, (dict, list)) else json.dumps(d.value)), md(d.rule))
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
        "metrics": [(name, what, metric_seen(smoke, name)) for name, what in EXPECTED_METRICS.items()],
        "alerts": alert_rules(directory),
        "dashboard": next((str(p.relative_to(directory)) for p in sorted((directory / "monitoring").glob("*dashboard*.json"))), None)
        if (directory / "monitoring").is_dir() else None,
        "health": health_facts(smoke),
        "smoke": smoke,
        "loadtest": loadtest,
        "chart": (directory / CHART_FILE).is_file(),
        "server": server,
        "skip_reason": skip,
        "outcome": with_trial(measured(smoke, loadtest, skip, validation, failure, infeasible_reason(spec.decisions)),
                              trial, pattern, validation is not None),
        "trial": trial_section(trial, pattern, shown),
        "failure": failure_facts(failure),
        "rollout": _steps(rollout_steps(spec, shown, service)),
        "experiment": experiment_section(spec, shown),  # ab plans only
        "rollback": _steps(rollback_steps(spec, service)),
        "validation_rows": v_rows,
        "validation_overall": v_overall,
        "validation_present": validation is not None,
        "siblings": (siblings or {}).get("plugins", []) if isinstance(siblings, dict) else [],
        "siblings_searched": (siblings or {}).get("searched", []) if isinstance(siblings, dict) else [],
        "absent": relevant_absent,
        "num": num,
        "md": md,
        "code": code,
    }


def _steps(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"commands": [], "gates": [], **item} for item in items]


def display_path(directory: Path) -> str:
    """The directory as the reader would type it: relative to here when below here, else absolute."""
    resolved = directory.resolve()
    try:
        return str(resolved.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(resolved)


def _render(facts: dict[str, Any], finalize: Any = None) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False, finalize=finalize,
    )
    text = env.get_template("DEPLOYMENT.md.j2").render(**facts)
    return re.sub(r"\n{3,}", "\n\n", text)


def render_report(directory: Path, failure: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    facts = gather(directory, failure)
    return _render(facts), facts


# Marks a value already masked in the skeleton (a macro's output holds masked values, not raw ones).
_MASKED = "\x00v\x00"


def _mask(value: Any) -> Any:
    """One value in the skeleton: an unfilled one (None, NaN, or only the text None/null/nan) stays
    visible as `None`; any other value is data and shows as a neutral mark, whatever words it holds."""
    if isinstance(value, str) and "\x00" in value:
        return value
    if value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() in ("None", "null", "nan"):
        return "None"
    return _MASKED


def unfilled_markers(facts: dict[str, Any]) -> list[str]:
    """Unfilled markers of the report: the template's own text and every value that is empty of meaning,
    found on a skeleton where the other values are masked (a smoke detail quoting JSON `null` is data)."""
    return find_placeholders(_render(facts, _mask).replace("\x00", ""))


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
    problems = unfilled_markers(facts)
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
    facts = failure_facts(failure) or {"stage": "?", "error": "unknown", "problems": []}
    name = directory.resolve().name
    shown = display_path(directory)
    lines = [
        f"# Model deployment: {name}",
        "",
        f"Generated by `deploy-model deploy` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} in {code(shown + '/')}.",
        "",
        f"**Outcome: NO-GO.** deploy stopped at `{facts['stage']}`: {md(facts['error'])}",
        "",
    ]
    if note:
        lines += [f"({note})", ""]
    if facts["problems"]:
        lines += ["What the stage reported:", "", "```text", *facts["problems"], "```", ""]
    lines += ["## Stages", "", "| stage | result | seconds |", "| --- | --- | ---: |"]
    for step in completed:
        result = f"skipped: {md(step['skipped'])}" if step.get("skipped") else "done"
        lines.append(f"| {step['stage']} | {result} | {num(step.get('seconds'), 2)} |")
    lines.append(f"| {facts['stage']} | **failed** | {num(failure.get('seconds'), 2)} |")
    lines += ["", "Every later stage did not run. Fix the cause above and run `deploy` again; each stage can also be "
              f"re-run alone (`deploy-model {facts['stage']} --help`).", ""]
    text = "\n".join(lines)
    atomic_write_text(directory / REPORT_FILE, text)
    return {"stage": "report", "ok": True, "wrote": [str(directory / REPORT_FILE)],
            "summary": {"outcome": "NO-GO", "reasons": [f"deploy stopped at {facts['stage']}: {facts['error']}"],
                        "lines": text.count("\n")}}
