"""Every metric a gate, alert, dashboard or AnalysisTemplate queries must be one the server exports.

The exported names are read from the reference server's own code (the copy the bundle ships under
server/), not from a second hand-kept list: every prometheus_client constructor (Counter, Gauge,
Histogram, Summary, the *MetricFamily classes), the server's NumpyHistogram and its `gauge(...)`
helper, called with a literal name. A Counter `x` is exported as `x_total`; a histogram as
`x_bucket`, `x_sum` and `x_count`.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from pathlib import Path

from deploy_model.bundle.checks import FAIL, PASS, Check

COUNTERS = {"Counter", "CounterMetricFamily"}
HISTOGRAMS = {"Histogram", "HistogramMetricFamily", "NumpyHistogram"}
SUMMARIES = {"Summary", "SummaryMetricFamily"}
GAUGES = {"Gauge", "GaugeMetricFamily", "gauge", "Info", "InfoMetricFamily"}
# Series that come from elsewhere than the server, by who exports them.
OTHER_SOURCES = {
    "up": "Prometheus (scrape health)",
    "scrape_": "Prometheus (scrape metadata)",
    "process_": "prometheus_client's ProcessCollector in the server",
    "python_": "prometheus_client's platform collector",
    "kube_": "kube-state-metrics",
}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset",
            "inf", "nan", "atan2", "le", "start", "end"}


def _called(node: ast.Call) -> str:
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def _literal_name(node: ast.Call) -> str | None:
    if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
        return node.args[0].value
    for kw in node.keywords:
        if kw.arg == "name" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
            return kw.value.value
    return None


def exported(server_src: Path) -> dict[str, str]:
    """Series name -> the source file that exports it, for every metric in the server's code."""
    names: dict[str, str] = {}
    for path in sorted(server_src.rglob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            kind, name = _called(node), _literal_name(node)
            if not name or not re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", name):
                continue
            where = str(path.relative_to(server_src.parent))
            if kind in COUNTERS:
                base = name.removesuffix("_total")
                series = [base + "_total"]
            elif kind in HISTOGRAMS or (kind == "Metric" and _histogram_metric(node)):
                series = [name, name + "_bucket", name + "_sum", name + "_count"]
            elif kind in SUMMARIES:
                series = [name, name + "_sum", name + "_count"]
            elif kind in GAUGES:
                series = [name + "_info"] if kind.startswith("Info") else [name]
            else:
                continue
            for s in series:
                names.setdefault(s, where)
    return names


def _histogram_metric(node: ast.Call) -> bool:
    return len(node.args) >= 3 and isinstance(node.args[2], ast.Constant) and node.args[2].value == "histogram"


def queried(expr: str) -> set[str]:
    """Metric names in a PromQL expression (selectors and bare names; not functions, labels or keywords)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range selectors
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)  # label lists
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(\s*\()?", text):
        word, call = match.group(1), match.group(2)
        if call or word.lower() in KEYWORDS or re.fullmatch(r"\d+[smhdwy]", word):
            continue
        names.add(word)
    return names


def other_source(name: str) -> str | None:
    for prefix, who in OTHER_SOURCES.items():
        if name == prefix or (prefix.endswith("_") and name.startswith(prefix)):
            return who
    return None


def check(queries: Iterable[tuple[str, str, str]], server_src: Path) -> list[Check]:
    """One Check per file: every queried metric exported by the server (or a named other source)."""
    names = exported(server_src)
    if not names:
        return [Check("metric-names", "server source", str(server_src), FAIL,
                      "no metric found in the server's code: cannot prove any query")]
    by_file: dict[str, list[tuple[str, str]]] = {}
    for file, where, expr in queries:
        by_file.setdefault(file, []).append((where, expr))
    checks = []
    for file, items in by_file.items():
        unknown = sorted({(n, where) for where, expr in items for n in queried(expr) if n not in names and not other_source(n)})
        if unknown:
            detail = "; ".join(f"{n} (in {where})" for n, where in unknown[:6])
            checks.append(Check("metric-names", "server source", file, FAIL,
                                f"{len(unknown)} queried metric(s) the reference server does not export: {detail}"))
        else:
            count = len({n for _, expr in items for n in queried(expr)})
            checks.append(Check("metric-names", "server source", file, PASS,
                                f"{len(items)} queries, {count} metric names, all exported by the server (or Prometheus / "
                                "kube-state-metrics)"))
    return checks
