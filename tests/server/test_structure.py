"""One core, two front ends: the REST app and the gRPC service share ``onnxserve.core`` and never
import each other; the app factory is made of small route groups."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "reference-server" / "src" / "onnxserve"


def _imports(path: Path) -> set[str]:
    """Modules imported by ``path``, resolved to dotted names inside the package."""
    tree = ast.parse(path.read_text())
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = parts[: len(parts) - node.level]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names)
    return found


def test_rest_and_grpc_front_ends_do_not_import_each_other():
    rest = _imports(PKG / "app.py")
    assert not any(m.startswith("onnxserve.grpc_api") for m in rest), rest
    for path in (PKG / "grpc_api").glob("*.py"):
        mods = _imports(path)
        assert not any(m == "onnxserve.app" or m.startswith("onnxserve.app.") for m in mods), (
            path.name,
            mods,
        )
    # Both use the core.
    assert "onnxserve.core" in rest
    assert "onnxserve.core" in _imports(PKG / "grpc_api" / "backend.py")
    core = _imports(PKG / "core.py")
    assert not any(m.startswith(("onnxserve.app", "onnxserve.grpc_api")) for m in core), core


def test_app_factory_is_small_route_groups():
    tree = ast.parse((PKG / "app.py").read_text())
    sizes = {
        node.name: node.end_lineno - node.lineno + 1
        for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    }
    assert sizes["create_app"] <= 40, sizes
    groups = [n for n in sizes if n.startswith("add_")]
    assert len(groups) >= 4, groups
    assert max(sizes.values()) <= 120, sizes
