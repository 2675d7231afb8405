"""Stage `plugins`: find sibling Claude Code plugins that help with a deployment.

Claude Code keeps a plugin's manifest at `<plugin>/.claude-plugin/plugin.json` (the original
command looked for `plugins/<name>/plugin.json`, which never matches). We look in a marketplace
checkout (`plugins/*/.claude-plugin/plugin.json`), beside this plugin's own root, and in the
user's installed plugins under `~/.claude/plugins` (cache and marketplaces).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from deploy_model.common.files import write_json

SIBLINGS_FILE = "siblings.json"
SELF_NAME = "yzmir-ml-production"
MANIFEST = Path(".claude-plugin") / "plugin.json"
# How deep below ~/.claude/plugins a manifest may sit: cache/<marketplace>/<plugin>/<version>/.claude-plugin
MAX_DEPTH = 6

# Plugins we know by name, with the concern they cover and what to load from them.
KNOWN = {
    "axiom-devops-engineering": (
        ["deployment", "ci-cd"],
        "deployment strategies, CI/CD pipelines and rollout automation",
    ),
    "ordis-quality-engineering": (
        ["monitoring", "testing"],
        "observability patterns, SLOs and test strategy",
    ),
}
# Otherwise the concern is guessed from the name, description and keywords.
CONCERN_WORDS = {
    "deployment": r"devops|deploy|kubernetes|k8s|helm|release|rollout|infra|platform|ci-?cd",
    "monitoring": r"observab|monitor|metric|alert|prometheus|grafana|sre|telemetry",
    "testing": r"quality|test|qa\b",
    "security": r"secur|vuln|threat|compliance",
    "ml": r"\bml\b|machine-learning|model|training|pytorch|data-?science|llm",
}


def default_roots(plugin_root: Path, cwd: Path, home: Path) -> list[tuple[Path, str]]:
    """Where Claude Code and marketplace checkouts keep plugins, most specific first."""
    roots = [
        (cwd / "plugins", "marketplace checkout (./plugins)"),
        (plugin_root.parent, "siblings of this plugin"),
        (home / ".claude" / "plugins", "installed plugins (~/.claude/plugins)"),
    ]
    # Inside a marketplace checkout this plugin sits at <repo>/plugins/<name>: its parent is covered.
    return roots


def _manifests(root: Path) -> list[Path]:
    found: list[Path] = []
    if not root.is_dir():
        return found
    base_depth = len(root.parts)
    for dirpath, dirnames, _ in os.walk(root, followlinks=False):
        here = Path(dirpath)
        depth = len(here.parts) - base_depth
        if (here / MANIFEST).is_file():
            found.append(here / MANIFEST)
            dirnames[:] = []  # a plugin does not contain other plugins
            continue
        if depth >= MAX_DEPTH:
            dirnames[:] = []
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d not in ("node_modules", "__pycache__")]
    return sorted(found)


def _concerns(name: str, manifest: dict[str, Any]) -> tuple[list[str], str]:
    if name in KNOWN:
        return list(KNOWN[name][0]), KNOWN[name][1]
    text = " ".join(
        [name, str(manifest.get("description", "")), " ".join(map(str, manifest.get("keywords", []) or []))]
    ).lower()
    concerns = [c for c, pattern in CONCERN_WORDS.items() if re.search(pattern, text)]
    return concerns, ""


def _listing(plugin_dir: Path, manifest: dict[str, Any]) -> tuple[list[str], list[str]]:
    commands = sorted(p.stem for p in (plugin_dir / "commands").glob("*.md"))
    skills = sorted(p.parent.name for p in (plugin_dir / "skills").glob("*/SKILL.md"))
    # Manifests may point at extra command/skill paths.
    for key, bucket in (("commands", commands), ("skills", skills)):
        extra = manifest.get(key)
        paths = [extra] if isinstance(extra, str) else extra if isinstance(extra, list) else []
        for rel in paths:
            target = (plugin_dir / str(rel)).resolve()
            if target.is_file() and target.suffix == ".md":
                bucket.append(target.stem)
            elif target.is_dir():
                pattern = "*.md" if key == "commands" else "*/SKILL.md"
                for item in target.glob(pattern):
                    bucket.append(item.stem if key == "commands" else item.parent.name)
    return sorted(set(commands)), sorted(set(skills))


def read_plugin(manifest_path: Path, origin: str) -> tuple[dict[str, Any] | None, str | None]:
    plugin_dir = manifest_path.parent.parent
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"{manifest_path}: not readable JSON ({exc})"
    if not isinstance(manifest, dict):
        return None, f"{manifest_path}: expected a JSON object, got {type(manifest).__name__}"
    name = manifest.get("name")
    if not isinstance(name, str) or not name:
        return None, f"{manifest_path}: no 'name' string (every plugin.json needs one)"
    commands, skills = _listing(plugin_dir, manifest)
    concerns, load_hint = _concerns(name, manifest)
    if not load_hint and skills:
        load_hint = "skills " + ", ".join(f"{name}:{s}" for s in skills)
    return {
        "name": name,
        "version": str(manifest.get("version", "unknown")),
        "description": str(manifest.get("description", ""))[:300],
        "path": str(plugin_dir),
        "found_in": origin,
        "commands": commands,
        "skills": skills,
        "concerns": concerns,
        "load": load_hint,
    }, None


def detect(roots: list[tuple[Path, str]], self_root: Path | None = None) -> dict[str, Any]:
    plugins: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    seen: set[Path] = set()
    self_resolved = self_root.resolve() if self_root else None
    searched = []
    for root, origin in roots:
        searched.append({"path": str(root), "what": origin, "exists": root.is_dir()})
        for manifest_path in _manifests(root):
            plugin_dir = manifest_path.parent.parent.resolve()
            if plugin_dir in seen or plugin_dir == self_resolved:
                continue
            seen.add(plugin_dir)
            info, problem = read_plugin(manifest_path, origin)
            if problem:
                problems.append(problem)
                continue
            assert info is not None
            if info["name"] == SELF_NAME:
                continue
            # The same plugin may be cached in several versions: keep the first (most specific root).
            plugins.setdefault(info["name"], info)
    found = sorted(plugins.values(), key=lambda p: p["name"])
    helpful = [p for p in found if p["concerns"]]
    return {"searched": searched, "plugins": found, "helpful": [p["name"] for p in helpful], "problems": problems}


def run_plugins(
    out_dir: Path, plugin_root: Path, extra_roots: list[Path], cwd: Path | None = None,
    home: Path | None = None, dry_run: bool = False,
) -> dict[str, Any]:
    roots = [(r, "given with --root") for r in extra_roots] + default_roots(
        plugin_root, cwd or Path.cwd(), home or Path.home()
    )
    result = detect(roots, self_root=plugin_root)
    out = out_dir / SIBLINGS_FILE
    if not dry_run:
        write_json(out, result)
    return {
        "stage": "plugins",
        "ok": True,
        "wrote": [] if dry_run else [str(out)],
        "dry_run": dry_run,
        "summary": {
            "found": [f"{p['name']}@{p['version']}" for p in result["plugins"]],
            "helpful": {p["name"]: p["concerns"] for p in result["plugins"] if p["concerns"]},
            "problems": len(result["problems"]),
        },
        "problems": result["problems"],
    }
