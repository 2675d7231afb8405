"""The source layout holds: no import circle, no circle between deploy_model's subpackages, short modules.

The import graph is read with `ast` (every `import` and `from ... import`, those inside functions
included, since a lazy import still closes a circle at run time), relative imports resolved, and
`from pkg import submodule` counted as an import of the submodule.
"""

from __future__ import annotations

import ast
import itertools
import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEPLOY_MODEL = REPO / "src" / "deploy_model"
ONNXSERVE = REPO / "reference-server" / "src" / "onnxserve"
SUBPACKAGES = {"common", "model", "plan", "bundle", "measure", "report", "cluster", "experiment", "cli"}  # README, Layout
MAX_LINES = 500
LONG_BECAUSE = re.compile(r"(?:^|[.!?:;]\s+|\n\s*)Long because\b")


@dataclass
class Graph:
    package: str
    files: dict[str, Path]  # dotted module name -> file
    edges: dict[str, set[str]]  # module -> the package's modules it imports


def module_names(root: Path, package: str) -> dict[str, Path]:
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join([package, *parts])] = path
    return names


def _known(name: str, names: dict[str, Path]) -> str | None:
    """The module itself, else its longest enclosing package of this graph (None: outside it)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in names:
            return candidate
        parts.pop()
    return None


def import_graph(root: Path, package: str) -> Graph:
    files = module_names(root, package)
    edges: dict[str, set[str]] = {}
    for name, path in files.items():
        # The package a relative import starts from: the module's own for an __init__, else its parent's.
        here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets.update(filter(None, (_known(alias.name, files) for alias in node.names)))
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here[: len(here) - (node.level - 1)]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                for alias in node.names:
                    submodule = f"{module}.{alias.name}"
                    found = submodule if submodule in files else _known(module, files)
                    if found:
                        targets.add(found)
        targets.discard(name)
        edges[name] = targets
    return Graph(package, files, edges)


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components (iterative), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def a_loop(component: list[str], edges: dict[str, set[str]]) -> list[str]:
    """One concrete loop through a component, first node repeated at the end (shortest from its first)."""
    start, members = component[0], set(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for child in sorted(edges.get(node, ())):
            if child == start:
                return [*paths[node], start]
            if child in members and child not in paths:
                paths[child] = [*paths[node], child]
                queue.append(child)
    raise AssertionError(f"no loop through {component}")


def module_circles(graph: Graph) -> list[str]:
    return [" -> ".join(a_loop(c, graph.edges)) for c in strongly_connected(graph.edges) if len(c) > 1]


def subpackage_of(module: str, package: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 and parts[0] == package else None


def subpackage_circles(graph: Graph) -> list[str]:
    """Circles between the package's top-level subpackages, each with the imports that close it."""
    subpackages = {s for s in (subpackage_of(m, graph.package) for m in graph.files) if s}
    edges: dict[str, set[str]] = {s: set() for s in subpackages}
    why: dict[tuple[str, str], list[str]] = {}
    for module, targets in graph.edges.items():
        source = subpackage_of(module, graph.package)
        for target in targets:
            dest = subpackage_of(target, graph.package)
            if source and dest and source != dest:
                edges[source].add(dest)
                why.setdefault((source, dest), []).append(f"{module} imports {target}")
    circles = []
    for component in strongly_connected(edges):
        if len(component) > 1:
            loop = a_loop(component, edges)
            steps = "; ".join(why[(a, b)][0] for a, b in itertools.pairwise(loop))
            circles.append(f"{' -> '.join(loop)} ({steps})")
    return circles


def line_count(path: Path) -> int:
    return len(path.read_text().splitlines())


def test_the_checker_catches_a_two_module_circle(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "x").mkdir(parents=True)
    (package / "y").mkdir()
    for init in (package, package / "x", package / "y"):
        (init / "__init__.py").write_text('"""A package."""\n')
    (package / "a.py").write_text("from pkg import b\n")
    (package / "b.py").write_text("def late():\n    from . import a  # lazy and relative: still a circle\n")
    # No module circle, but x and y import each other.
    (package / "x" / "m.py").write_text("import pkg.y.n\n")
    (package / "y" / "n.py").write_text("")
    (package / "y" / "o.py").write_text("from ..x.m import thing\n")
    graph = import_graph(package, "pkg")
    assert graph.edges["pkg.a"] == {"pkg.b"} and graph.edges["pkg.b"] == {"pkg.a"}
    assert graph.edges["pkg.y.o"] == {"pkg.x.m"}
    assert module_circles(graph) == ["pkg.a -> pkg.b -> pkg.a"]
    assert subpackage_circles(graph) == ["x -> y -> x (pkg.x.m imports pkg.y.n; pkg.y.o imports pkg.x.m)"]
    (package / "b.py").write_text("")
    (package / "y" / "o.py").write_text("")
    fixed = import_graph(package, "pkg")
    assert module_circles(fixed) == [] and subpackage_circles(fixed) == []


def test_deploy_model_has_no_import_circle() -> None:
    graph = import_graph(DEPLOY_MODEL, "deploy_model")
    assert len(graph.files) >= 50, f"only {len(graph.files)} modules found under {DEPLOY_MODEL}: the graph misses the package"
    assert sum(map(len, graph.edges.values())) >= 100, "too few imports found: the graph misreads them"
    circles = module_circles(graph)
    assert not circles, "import circles in deploy_model:\n" + "\n".join(circles)


def test_deploy_model_subpackages_import_each_other_without_a_circle() -> None:
    graph = import_graph(DEPLOY_MODEL, "deploy_model")
    found = {s for s in (subpackage_of(m, "deploy_model") for m in graph.files) if s}
    assert SUBPACKAGES <= found, f"subpackages missing from {DEPLOY_MODEL}: {sorted(SUBPACKAGES - found)}"
    circles = subpackage_circles(graph)
    assert not circles, "circles between deploy_model's subpackages:\n" + "\n".join(circles)


def test_onnxserve_has_no_import_circle() -> None:
    graph = import_graph(ONNXSERVE, "onnxserve")
    assert len(graph.files) >= 25, f"only {len(graph.files)} modules found under {ONNXSERVE}: the graph misses the package"
    circles = module_circles(graph)
    assert not circles, "import circles in onnxserve:\n" + "\n".join(circles)


def test_deploy_model_modules_are_short_or_say_why() -> None:
    paths = sorted(DEPLOY_MODEL.rglob("*.py"))
    assert len(paths) >= 50, f"only {len(paths)} modules found under {DEPLOY_MODEL}"
    too_long = []
    for path in paths:
        lines = line_count(path)
        docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
        if lines > MAX_LINES and not LONG_BECAUSE.search(docstring):
            too_long.append(f"{path.relative_to(REPO)}: {lines} lines")
    assert not too_long, (
        f"rule 'at most {MAX_LINES} lines per module, unless its docstring says why in a sentence starting with "
        f"\"Long because\"' broken by:\n" + "\n".join(too_long)
    )


def test_every_deploy_model_subpackage_has_a_one_line_docstring() -> None:
    folders = sorted({p.parent for p in DEPLOY_MODEL.rglob("*.py")} - {DEPLOY_MODEL})
    assert len(folders) >= len(SUBPACKAGES), f"only {len(folders)} subpackages found under {DEPLOY_MODEL}"
    problems = []
    for folder in folders:
        init = folder / "__init__.py"
        name = str(folder.relative_to(DEPLOY_MODEL))
        if not init.exists():
            problems.append(f"{name}: no __init__.py")
            continue
        docstring = ast.get_docstring(ast.parse(init.read_text()))
        if not docstring:
            problems.append(f"{name}/__init__.py: no docstring")
        elif len(docstring.strip().splitlines()) != 1:
            problems.append(f"{name}/__init__.py: a docstring of {len(docstring.strip().splitlines())} lines, not one")
    assert not problems, "every subpackage of deploy_model needs an __init__.py with a one-line docstring:\n" + "\n".join(problems)


def test_the_slow_tier_names_files_and_tests_that_exist() -> None:
    """tests/conftest.py marks tests slow by folder, file and name: a renamed one would slip into `make check`."""
    conftest = REPO / "tests" / "conftest.py"
    values = {}
    for node in ast.parse(conftest.read_text()).body:
        target = node.target if isinstance(node, ast.AnnAssign) else node.targets[0] if isinstance(node, ast.Assign) else None
        if isinstance(target, ast.Name) and target.id in ("SLOW", "QUICK"):
            values[target.id] = ast.literal_eval(node.value)
    slow, quick = values["SLOW"], values["QUICK"]
    assert len(slow) >= 10, f"SLOW in {conftest} names only {len(slow)} files"
    stale = [f"QUICK {path}: no such file" for path in quick if not (REPO / "tests" / path).is_file()]
    for path, names in slow.items():
        target = REPO / "tests" / path
        if path.endswith("/"):
            stale.extend([] if target.is_dir() else [f"{path}: no such folder"])
            continue
        if not target.is_file():
            stale.append(f"{path}: no such file")
            continue
        defined = {n.name for n in ast.walk(ast.parse(target.read_text())) if isinstance(n, ast.FunctionDef)}
        stale.extend(f"{path}::{name}: no such test" for name in names if name not in defined)
    assert not stale, "tests/conftest.py SLOW and QUICK name what does not exist:\n" + "\n".join(stale)
