"""What the rendered bundle holds, for the report: its files, the key manifests, the main Service, alert rules."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

MANIFEST_LINES = 90


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
