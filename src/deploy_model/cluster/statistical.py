"""The statistical canary judgement beside the fixed-ratio gates: canary against stable with p-values.

Kayenta's idea: judge the canary on evidence, not on a ratio of two noisy numbers. Two checks
(experiment.canary_judge), each at alpha / 2: latency by Mann-Whitney U, errors (any status not
2xx) by the two-proportion z-test. The samples are what the step saw:

- from Prometheus (default): the increase since the step began of each series of
  `model_request_latency_seconds_bucket` and `model_requests_total` per track, as the counters'
  values now less their values at the step's start (exact request counts: no rate()
  extrapolation; a series that went down restarted and counts from zero). Latency is then
  grouped data: the requests of one bucket are ties (stats.mann_whitney_grouped);
- from payload logs (`--payloads`): each request's own latency and status, records received
  since the step began, track stable against track canary.

Report-only by default. With `--statistical-gate` a failed judgement rolls the canary back like
a failed gate, but only where the fixed gates would let the step pass (the end of its window):
the judgement then counts once per step, so checks repeated under --watch do not inflate its
false-fail rate.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx

from deploy_model.cluster.gates import GateConfig, PrometheusError, Verdict
from deploy_model.experiment.canary_judge import judge, judge_counts
from deploy_model.experiment.payloads import read_payloads

TRACKS = ("stable", "canary")


def instant(url: str, query: str, at: float, timeout_s: float = 10.0) -> list[tuple[dict[str, str], float]]:
    """Every series of an instant query at `at`: (labels, value)."""
    params = {"query": query, "time": f"{at:.3f}"}
    try:
        resp = httpx.get(f"{url.rstrip('/')}/api/v1/query", params=params, timeout=timeout_s)
        body = resp.json()
    except httpx.HTTPError as exc:
        raise PrometheusError(f"Prometheus at {url} did not answer: {exc}") from None
    except ValueError:
        raise PrometheusError(f"Prometheus at {url} answered HTTP {resp.status_code} without JSON") from None
    if body.get("status") != "success":
        raise PrometheusError(f"Prometheus refused {query!r}: {body.get('error', resp.status_code)}")
    out = []
    for series in body["data"]["result"]:
        value = float(series["value"][1])
        if not math.isnan(value):
            out.append((series["metric"], value))
    return out


def increase_by(url: str, query: str, since: float, now: float, label: str) -> dict[str, float]:
    """Sum by `label` of each series' increase from `since` to `now` (a reset counts from zero)."""
    def key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
        return tuple(sorted((k, v) for k, v in labels.items() if k != "__name__"))

    before = {key(m): v for m, v in instant(url, query, since)}
    sums: dict[str, float] = defaultdict(float)
    for labels, value in instant(url, query, now):
        start = before.get(key(labels), 0.0)
        sums[labels.get(label, "")] += value - start if value >= start else value
    return dict(sums)


def _le(text: str) -> float:
    return math.inf if text in ("+Inf", "Inf", "inf") else float(text)


def prometheus_samples(url: str, cfg: GateConfig, since: float, now: float) -> dict[str, Any]:
    """Per track: the latency histogram's per-bucket counts and the requests by status, since `since`."""
    edges: list[float] | None = None
    buckets: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    totals: dict[str, int] = {}
    for track in TRACKS:
        sel = f'namespace="{cfg.namespace}", app="{cfg.app}", {cfg.track_selectors[track]}'
        cumulative = increase_by(url, f"model_request_latency_seconds_bucket{{{sel}}}", since, now, "le")
        by_status = increase_by(url, f"model_requests_total{{{sel}}}", since, now, "status")
        les = sorted(cumulative, key=_le)
        if les and edges is not None and [_le(x) for x in les] != edges:
            raise PrometheusError("the stable and canary latency histograms have different buckets")
        if les:
            edges = [_le(x) for x in les]
        values = [cumulative[x] for x in les]
        buckets[track] = [round(max(v - w, 0.0)) for v, w in zip(values, [0.0, *values[:-1]], strict=True)]
        totals[track] = round(sum(by_status.values()))
        errors[track] = round(sum(v for s, v in by_status.items() if not s.startswith("2")))
    return {"upper_edges": edges or [], "buckets": buckets, "errors": errors, "totals": totals}


def judge_prometheus(url: str, cfg: GateConfig, since: float, now: float, alpha: float) -> dict[str, Any]:
    samples = prometheus_samples(url, cfg, since, now)
    if not samples["upper_edges"]:
        samples["buckets"] = {t: [] for t in TRACKS}
    result = judge_counts(samples["upper_edges"] or [math.inf], {t: samples["buckets"][t] or [0.0] for t in TRACKS},
                          samples["errors"], samples["totals"], alpha)
    return {**result, "source": "prometheus", "since": since, "until": now,
            "method": "latency: Mann-Whitney U on the histogram's buckets (ties within a bucket, tie-corrected "
                      "normal approximation with continuity); errors (status not 2xx): pooled two-proportion z-test; "
                      "each at alpha/2 (Bonferroni)",
            "buckets": samples["buckets"]}


def judge_payloads(paths: list[Path], since: float, alpha: float) -> dict[str, Any]:
    log = read_payloads(paths)
    arm_of = {i: "A" if r.track == "stable" else "B" for i, r in enumerate(log.records)
              if r.track in TRACKS and (r.received is None or r.received >= since)}
    result = judge(log.records, arm_of, alpha)
    return {**result, "source": "payload log", "since": since, "files": log.files,
            "method": "latency: Mann-Whitney U on each request's latency (tie-corrected normal approximation); "
                      "errors (status not 200): pooled two-proportion z-test; each at alpha/2 (Bonferroni)"}


def line(result: dict[str, Any]) -> str:
    """The judgement in one line: verdict and each check's p-value."""
    if "error" in result:
        return f"not judged: {result['error']}"
    parts = [f"{name} p={c['p_value']:.3g} ({c['verdict']})" for name, c in result["checks"].items()]
    reasons = f": {'; '.join(result['reasons'])}" if result["reasons"] else ""
    return f"{result['verdict']} ({result['source']}; {', '.join(parts) or 'no check had enough data'}){reasons}"


class StatisticalJudge:
    """Judges each step for `rollout advance` / `status`; a gate only when asked (see the module)."""

    def __init__(self, prometheus: str | None, cfg: GateConfig, payloads: list[Path] | None = None,
                 gate: bool = False, alpha: float = 0.05) -> None:
        self.prometheus, self.cfg, self.payloads = prometheus, cfg, payloads or []
        self.gate, self.alpha = gate, alpha
        self.last: dict[str, Any] | None = None

    def judge(self, since: float, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        try:
            if self.payloads:
                result = judge_payloads(self.payloads, since, self.alpha)
            elif self.prometheus:
                result = judge_prometheus(self.prometheus, self.cfg, since, now, self.alpha)
            else:
                result = {"verdict": "inconclusive", "error": "no Prometheus and no payload log to judge from"}
        except (PrometheusError, ValueError) as exc:
            if self.gate:  # a gate that cannot judge must not let the step pass unjudged
                raise PrometheusError(f"statistical gate: {exc}") from None
            result = {"verdict": "inconclusive", "error": str(exc)}  # report-only: the verb goes on
        result["gate"] = self.gate
        self.last = result
        return result

    def __call__(self, verdict: Verdict, step_started: float) -> Verdict:
        """The fixed gates' verdict, turned into a fail when the gate is on and the judgement fails
        where the step would pass."""
        result = self.judge(step_started)
        if self.gate and verdict.action == "pass" and result["verdict"] == "fail":
            return Verdict("fail", f"statistical judgement: {'; '.join(result['reasons'])}", verdict.gates,
                           verdict.points)
        return verdict
