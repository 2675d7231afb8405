"""Stage `validate`: prove every file of the rendered bundle with its ecosystem's validator.

Which validators apply follows from the files the spec makes render write; a validator that
applies but inspects no file fails (a checker that looked at nothing proves nothing). Every
check lands in validation.json; any failure exits 1 naming the failing checks. Notes (what
passes yet deserves a look: an image pinned by tag only) land there too, never failing.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import yaml

from deploy_model.bundle.checks import (
    FAIL,
    PASS,
    SKIP,
    Check,
    hardening,
    image_pins,
    kube,
    load_docs,
    metric_names,
    rel,
    semantics,
    tools,
)
from deploy_model.bundle.render import MANIFEST_FILE, SERVER_SOURCE
from deploy_model.common.errors import StageError
from deploy_model.common.files import read_json, write_json
from deploy_model.plan import releases
from deploy_model.plan.spec import Target
from deploy_model.plan.specfile import load_spec

VALIDATION_FILE = "validation.json"


def _empty(validator: str, tool: str, what: str) -> Check:
    return Check(validator, tool, "(none)", FAIL, f"no {what} to inspect: a validator that inspects nothing proves nothing")


def collect(directory: Path, strict: bool) -> tuple[list[Check], list[str]]:
    """Every check of the bundle in `directory`, and notes: what passes but deserves a look (tag-only images)."""
    spec = load_spec(directory)
    if not (directory / MANIFEST_FILE).is_file():
        raise StageError(f"{directory / MANIFEST_FILE} not found: run `deploy-model render --out {directory}` first")
    kube_target = spec.target in (Target.kubernetes, Target.serverless)
    checks: list[Check] = []
    notes: list[str] = []

    # Kubernetes: schema (built-in kinds) or structure (custom resources), then hardening.
    docs: list[tuple[str, dict[str, Any]]] = []
    manifests = kube.manifest_files(directory)
    for path in manifests:
        name = rel(path, directory)
        try:
            file_docs = load_docs(path)
        except yaml.YAMLError as exc:
            checks.append(Check("kubernetes-schema", "yaml", name, FAIL, f"not YAML: {exc}"))
            continue
        if not file_docs:
            checks.append(Check("kubernetes-schema", "yaml", name, FAIL, "the file holds no document"))
        checks += kube.check_files({name: file_docs}, spec.kubernetes.version)
        docs += [(name, d) for d in file_docs if isinstance(d, dict)]
    if kube_target and not manifests:
        checks.append(_empty("kubernetes-schema", "kubernetes-validate", "Kubernetes manifest"))
    if kube_target:
        hard = hardening.run(docs)
        checks += semantics.run(docs)
        checks += hard or [_empty("hardening", "catalogue", "workload")]
        pins, notes = image_pins.run(docs, releases.candidate_image(spec))
        checks += pins

    dockerfiles = [p for p in (directory / "Dockerfile", directory / "Dockerfile.gpu") if p.is_file()]
    checks += tools.hadolint(directory, dockerfiles, strict) if dockerfiles else [_empty("hadolint", "hadolint", "Dockerfile")]
    locks = sorted(directory.glob("requirements*.lock"))
    checks += tools.lock_pins(directory, locks) if locks else [_empty("lockfile", "pin check", "lock file")]

    compose = [p for p in (directory / "compose.yaml",) if p.is_file()]
    checks += tools.schema_check("compose-schema", "compose-spec", directory, compose) if compose else [
        _empty("compose-schema", "check-jsonschema", "compose file")]
    workflows = sorted((directory / "ci").glob("*.yml"))
    checks += tools.schema_check("workflow-schema", "github-workflows", directory, workflows) if workflows else [
        _empty("workflow-schema", "check-jsonschema", "CI workflow")]

    monitoring = directory / "monitoring"
    configs = sorted(monitoring.glob("prometheus*.yml"))
    checks += tools.promtool_config(directory, configs, strict) if configs else [_empty("promtool-config", "promtool", "scrape config")]
    rule_files = sorted(monitoring.glob("*.rules.yml")) + [monitoring / "prometheusrule.yaml"] * (monitoring / "prometheusrule.yaml").is_file()
    board_checks, board_queries = tools.dashboard(directory, sorted(monitoring.glob("*.json")))
    checks += board_checks or [_empty("dashboard", "json", "dashboard")]
    extra: dict[str, list[str]] = {}
    if board_queries:
        extra["monitoring/grafana-dashboard.json (queries)"] = board_queries
    for name, doc in docs:
        if doc.get("kind") == "AnalysisTemplate":
            metrics = (doc.get("spec") or {}).get("metrics") or []
            extra[f"{name} (queries)"] = [str(((m.get("provider") or {}).get("prometheus") or {}).get("query", "")) for m in metrics]
    checks += tools.promtool_rules(directory, rule_files, extra, strict) if rule_files else [_empty("promtool-rules", "promtool", "rule file")]
    tests = sorted(monitoring.glob("*rules_test.yml"))
    checks += tools.promtool_test(directory, tests, strict) if tests else [_empty("promtool-test", "promtool", "rule unit test")]

    checks += metric_names.check(_queries(directory, spec, extra), _server_source(directory))
    checks += tools.manifest(directory, read_json(directory / MANIFEST_FILE, MANIFEST_FILE))
    return checks, notes


def _server_source(directory: Path) -> Path:
    """The server code the bundle ships (what its image runs), else the one beside this package."""
    bundled = directory / "server" / "src" / "onnxserve"
    return bundled if bundled.is_dir() else SERVER_SOURCE / "src" / "onnxserve"


def _queries(directory: Path, spec: Any, extra: dict[str, list[str]]) -> list[tuple[str, str, str]]:
    """Every PromQL expression of the bundle and its report: (file, where, expression)."""
    from deploy_model.report.rollout_commands import rollback_steps, rollout_steps

    found: list[tuple[str, str, str]] = []
    for path in sorted((directory / "monitoring").glob("*.y*ml")):
        try:
            documents = load_docs(path)
        except yaml.YAMLError:
            continue  # promtool reports it
        for doc in documents:
            groups = (doc.get("groups") or (doc.get("spec") or {}).get("groups") or []) if isinstance(doc, dict) else []
            for group in groups:
                for rule in (group or {}).get("rules") or []:
                    if isinstance(rule, dict) and rule.get("expr"):
                        found.append((rel(path, directory), str(rule.get("alert") or rule.get("record")), str(rule["expr"])))
    for label, exprs in extra.items():
        found += [(label.split(" ")[0], "query", e) for e in exprs if e]
    steps = rollout_steps(spec, directory.name, spec.name) + rollback_steps(spec, spec.name)
    found += [("DEPLOYMENT.md (gates)", g["name"], g["promql"]) for step in steps for g in step.get("gates", [])]
    return found


def run_validate(directory: Path, strict: bool = False, dry_run: bool = False) -> dict[str, Any]:
    directory = Path(directory)
    started = time.perf_counter()
    # Tools run with the bundle as working directory get absolute paths: a relative --out
    # would otherwise be resolved twice.
    checks, notes = collect(directory.resolve(), strict)
    seconds = round(time.perf_counter() - started, 3)
    failed = [c for c in checks if c.verdict == FAIL]
    skipped = [c for c in checks if c.verdict == SKIP]
    by_validator: dict[str, dict[str, int]] = {}
    for c in checks:
        row = by_validator.setdefault(c.validator, {PASS: 0, FAIL: 0, SKIP: 0})
        row[c.verdict] += 1
    report = {
        "ok": not failed,
        "seconds": seconds,
        "strict": strict,
        "validators": by_validator,
        "checks": [c.as_dict() for c in checks],
        "notes": notes,
    }
    out = directory / VALIDATION_FILE
    if not dry_run:
        write_json(out, report)  # also on failure: the failing checks are what to read
    for c in skipped:
        print(f"validate: skipped {c.validator} {c.file}: {c.message}", file=sys.stderr)
    for note in notes:
        print(f"validate: note: {note}", file=sys.stderr)
    if failed:
        problems = [f"{c.validator} {c.file}: {c.message}" + (f" [{c.rule}]" if c.rule else "") for c in failed]
        raise StageError(f"{len(failed)} of {len(checks)} checks failed (see {out})", problems)
    return {
        "stage": "validate",
        "ok": True,
        "dry_run": dry_run,
        "wrote": [] if dry_run else [str(out)],
        "summary": {
            "checks": len(checks),
            "passed": len(checks) - len(skipped),
            "skipped": len(skipped),
            "notes": len(notes),
            "validators": ", ".join(f"{k} {v[PASS]}" for k, v in by_validator.items()),
            "seconds": seconds,
        },
    }
