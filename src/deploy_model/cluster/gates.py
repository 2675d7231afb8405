"""Canary gates judged from Prometheus over a watch window: pass, fail, or hold.

Each gate is read as a range query over the step (one point every `resolution_s`), per track:

- traffic: the canary's requests/s. Below `min_request_rate` a point has no verdict ("no data"):
  silence never passes a step and never rolls one back.
- error rate: the canary's 5xx ratio may reach `max_error_rate_ratio` times the stable one, and
  at least the SLO's `max_error_ratio` (a stable track with no errors is not a zero budget).
  No 5xx series while requests flow means no errors, not no data.
- rejected requests: the canary's 4xx ratio may exceed the stable one by the same allowance: the
  same clients reach both tracks, so a candidate refusing inputs the stable version takes (a
  model that fails on some inputs answers 400) is a regression, not the callers' fault.
- p95 latency: the canary's p95 may reach `max_p95_latency_ratio` times the stable one (never
  below a fifth of the SLA, so sub-millisecond noise is not a regression) and never the SLA.

Verdict: `fail` when a gate fails at consecutive points spanning two rate windows anywhere since
the step began (a lasting failure, not one slow request seen by every point whose rate window
holds it; a resumed driver still sees what happened while it was away); `pass` when the step has
lasted the window and every point of the trailing window passed every gate with enough traffic;
`hold` otherwise (a failing point too recent or too short-lived for either), with the reason.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

FAIL_POINTS = 2  # at least this many consecutive failing points before a rollback
LATENCY_FLOOR = 0.2  # of the SLA: a canary this fast passes the latency ratio whatever the stable p95


class PrometheusError(Exception):
    """Prometheus did not answer, or refused the query."""


@dataclass
class GateConfig:
    namespace: str
    app: str
    max_error_rate_ratio: float
    max_p95_latency_ratio: float
    min_request_rate: float
    max_error_ratio: float  # the SLO
    latency_sla_s: float
    rate_window: str = "1m"
    # How a series is told to be the canary's or the stable's: the pods' track label, or (Knative
    # revisions) their version label.
    track_selectors: dict[str, str] = field(default_factory=lambda: {"canary": 'track="canary"', "stable": 'track="stable"'})

    def rate_window_s(self) -> float:
        units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
        for unit in ("ms", "s", "m", "h"):
            if self.rate_window.endswith(unit) and self.rate_window[: -len(unit)].replace(".", "", 1).isdigit():
                return float(self.rate_window[: -len(unit)]) * units[unit]
        raise ValueError(f"rate window {self.rate_window!r}: expected a PromQL duration such as 30s, 1m, 5m")


@dataclass
class GateResult:
    name: str
    verdict: str  # pass | fail | no-data
    value: float | None
    limit: float | None
    at: float | None
    detail: str


@dataclass
class Verdict:
    action: str  # pass | fail | hold
    reason: str
    gates: list[GateResult] = field(default_factory=list)
    points: int = 0
    silent: bool = False  # held for want of data or traffic (not while watching or a failure plays out)

    def as_dict(self) -> dict[str, Any]:
        return {"action": self.action, "reason": self.reason, "points": self.points, "silent": self.silent,
                "gates": [asdict(g) for g in self.gates]}


class Prometheus:
    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def range(self, query: str, start: float, end: float, step_s: float) -> dict[float, float]:
        """One series' values by timestamp (the query must aggregate to one series; absent -> {})."""
        params = {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step_s:g}"}
        try:
            resp = httpx.get(f"{self.url}/api/v1/query_range", params=params, timeout=self.timeout_s)
        except httpx.HTTPError as exc:
            raise PrometheusError(f"Prometheus at {self.url} did not answer: {exc}") from None
        try:
            body = resp.json()
        except ValueError:
            raise PrometheusError(f"Prometheus at {self.url} answered HTTP {resp.status_code} without JSON "
                                  "(is --prometheus the server's base URL?)") from None
        if body.get("status") != "success":
            raise PrometheusError(f"Prometheus refused {query!r}: {body.get('error', resp.status_code)}")
        result = body["data"]["result"]
        if not result:
            return {}
        out = {}
        for ts, raw in result[0]["values"]:
            value = float(raw)
            if not math.isnan(value):
                out[round(float(ts), 3)] = value
        return out


def queries(cfg: GateConfig, track: str) -> dict[str, str]:
    sel = f'namespace="{cfg.namespace}", app="{cfg.app}", {cfg.track_selectors[track]}'
    r = cfg.rate_window
    return {
        "traffic": f"sum(rate(model_requests_total{{{sel}}}[{r}]))",
        "errors": f'sum(rate(model_requests_total{{{sel}, status=~"5.."}}[{r}]))',
        "rejects": f'sum(rate(model_requests_total{{{sel}, status=~"4.."}}[{r}]))',
        "p95": f"histogram_quantile(0.95, sum by (le) (rate(model_request_latency_seconds_bucket{{{sel}}}[{r}])))",
    }


def _grid(start: float, end: float, step_s: float) -> list[float]:
    n = int((end - start) // step_s)
    return [round(start + i * step_s, 3) for i in range(n + 1)]


def evaluate(prom: Prometheus, cfg: GateConfig, step_started: float, window_s: float, resolution_s: float = 15.0,
             now: float | None = None) -> Verdict:
    now = time.time() if now is None else now
    start = step_started
    if now - start < resolution_s:
        return Verdict("hold", f"the step began {now - start:.0f}s ago: no point to judge yet")
    data = {track: {k: prom.range(q, start, now, resolution_s) for k, q in queries(cfg, track).items()}
            for track in ("canary", "stable")}
    c, s = data["canary"], data["stable"]
    points = sorted(set(_grid(start, now, resolution_s)) | set(c["traffic"]))
    judged: list[tuple[float, dict[str, GateResult]]] = []
    for t in points:
        judged.append((t, _judge(cfg, t, c, s)))
    # Failure anywhere since the step began: FAIL_POINTS consecutive points of one gate.
    need = max(FAIL_POINTS, math.ceil(2 * cfg.rate_window_s() / resolution_s) + 1)
    for gate in ("error rate", "rejected requests", "p95 latency"):
        run = 0
        for _, results in judged:
            run = run + 1 if results[gate].verdict == "fail" else 0
            if run >= need:
                worst = results[gate]
                return Verdict("fail", f"gate {gate}: {worst.detail}", list(results.values()), len(judged))
    latest = judged[-1][1] if judged else {}
    gates = list(latest.values())
    elapsed = now - step_started
    if elapsed < window_s:
        return Verdict("hold", f"watching: {elapsed:.0f}s of the {window_s:g}s window; {brief(gates)}", gates, len(judged))
    trailing = [(t, r) for t, r in judged if t >= now - window_s]
    for t, results in reversed(trailing):
        failing = [g for g in results.values() if g.verdict == "fail"]
        if failing:  # not long enough for a rollback, too recent for a pass
            return Verdict("hold", f"gate {failing[0].name} failing {now - t:.0f}s ago ({failing[0].detail}); it rolls "
                                   f"back when it lasts {need * resolution_s:g}s, passes when the window is clean",
                           gates, len(judged))
    for t, results in trailing:
        silent = [g for g in results.values() if g.verdict == "no-data"]
        if silent:
            ago = now - t
            return Verdict("hold", f"no verdict {ago:.0f}s ago: {silent[0].detail}; the window needs {window_s:g}s "
                                   "of enough traffic (silence never passes, never fails)", gates, len(judged), True)
    if not trailing:
        return Verdict("hold", "no point in the trailing window yet", gates, len(judged))
    return Verdict("pass", f"every gate passed at each of {len(trailing)} points over {window_s:g}s", gates, len(judged))


def brief(gates: list[GateResult]) -> str:
    """The latest point in a few words: traffic, 5xx ratio, p95."""
    by = {g.name: g for g in gates}
    if not by or by["traffic"].verdict == "no-data":
        return by["traffic"].detail if by else "no point yet"
    p95 = by["p95 latency"].value
    return (f"canary {by['traffic'].value:.1f} req/s, 5xx {by['error rate'].value:.2%}, "
            f"4xx {by['rejected requests'].value:.2%}, "
            f"p95 {'-' if p95 is None else f'{p95 * 1000:.1f} ms'}")


def _nearest(series: dict[float, float], t: float) -> float | None:
    if t in series:
        return series[t]
    near = [k for k in series if abs(k - t) < 0.5]
    return series[near[0]] if near else None


def _judge(cfg: GateConfig, t: float, c: dict[str, dict[float, float]], s: dict[str, dict[float, float]]) -> dict[str, GateResult]:
    traffic = _nearest(c["traffic"], t)
    out: dict[str, GateResult] = {}
    if traffic is None or traffic < cfg.min_request_rate:
        shown = "none" if traffic is None else f"{traffic:.2f} req/s"
        why = f"canary traffic {shown} < {cfg.min_request_rate:g} req/s"
        out["traffic"] = GateResult("traffic", "no-data", traffic, cfg.min_request_rate, t, why)
        out["error rate"] = GateResult("error rate", "no-data", None, None, t, why)
        out["rejected requests"] = GateResult("rejected requests", "no-data", None, None, t, why)
        out["p95 latency"] = GateResult("p95 latency", "no-data", None, None, t, why)
        return out
    out["traffic"] = GateResult("traffic", "pass", traffic, cfg.min_request_rate, t,
                                f"canary {traffic:.2f} req/s >= {cfg.min_request_rate:g}")
    # Errors: an absent 5xx series while requests flow is zero errors.
    ratio = (_nearest(c["errors"], t) or 0.0) / traffic
    s_traffic = _nearest(s["traffic"], t)
    s_ratio = ((_nearest(s["errors"], t) or 0.0) / s_traffic) if s_traffic and s_traffic >= cfg.min_request_rate else None
    allowed = max(cfg.max_error_ratio, (s_ratio or 0.0) * cfg.max_error_rate_ratio)
    basis = f"stable {s_ratio:.3%} x {cfg.max_error_rate_ratio:g}" if s_ratio else "the SLO"
    out["error rate"] = GateResult("error rate", "fail" if ratio > allowed else "pass", ratio, allowed, t,
                                   f"canary 5xx ratio {ratio:.3%} {'>' if ratio > allowed else '<='} {allowed:.3%} ({basis})")
    rejected = (_nearest(c["rejects"], t) or 0.0) / traffic
    s_rejected = ((_nearest(s["rejects"], t) or 0.0) / s_traffic) if s_ratio is not None and s_traffic else 0.0
    r_allowed = max(s_rejected * cfg.max_error_rate_ratio, s_rejected + cfg.max_error_ratio)
    out["rejected requests"] = GateResult(
        "rejected requests", "fail" if rejected > r_allowed else "pass", rejected, r_allowed, t,
        f"canary 4xx ratio {rejected:.3%} {'>' if rejected > r_allowed else '<='} {r_allowed:.3%} "
        f"(stable {s_rejected:.3%}{' (no stable traffic)' if s_ratio is None else ''} + the SLO's error budget)")
    p95 = _nearest(c["p95"], t)
    s_p95 = _nearest(s["p95"], t) if s_ratio is not None else None
    if p95 is None:
        out["p95 latency"] = GateResult("p95 latency", "no-data", None, None, t, "no canary latency histogram")
        return out
    if s_p95:
        limit = min(cfg.latency_sla_s, max(s_p95 * cfg.max_p95_latency_ratio, cfg.latency_sla_s * LATENCY_FLOOR))
        basis = f"stable {s_p95 * 1000:.1f} ms x {cfg.max_p95_latency_ratio:g}, floor {cfg.latency_sla_s * LATENCY_FLOOR * 1000:.1f} ms, SLA {cfg.latency_sla_s * 1000:.0f} ms"
    else:
        limit, basis = cfg.latency_sla_s, "the SLA: no stable traffic to compare with"
    out["p95 latency"] = GateResult("p95 latency", "fail" if p95 > limit else "pass", p95, limit, t,
                                    f"canary p95 {p95 * 1000:.1f} ms {'>' if p95 > limit else '<='} {limit * 1000:.1f} ms ({basis})")
    return out
