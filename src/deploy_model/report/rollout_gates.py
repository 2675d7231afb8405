"""The PromQL gates of the rollout checklist (shared with the Argo Rollouts AnalysisTemplate).

They compare the candidate with the stable version by the `track` label the pods carry (Knative
revisions: by `version`), and never pass on silence: every ratio is empty unless the candidate
served enough requests, and the traffic gate says so.
"""

from __future__ import annotations

from typing import Any

TRACK_LABEL = "track"
WINDOW = "5m"


def _sel(spec: Any, track: str, extra: str = "") -> str:
    """Pods of one side: `track="canary"`, or `version="2.0.0"` for a side given as version=..."""
    key, _, value = track.partition("=") if track.startswith("version=") else (TRACK_LABEL, "", track)
    parts = [f'namespace="{spec.kubernetes.namespace}"', f'app="{spec.name}"', f'{key}="{value}"']
    if extra:
        parts.append(extra)
    return "{" + ", ".join(parts) + "}"


def request_rate(spec: Any, track: str, extra: str = "") -> str:
    return f"sum(rate(model_requests_total{_sel(spec, track, extra)}[{WINDOW}]))"


def error_ratio(spec: Any, track: str) -> str:
    """5xx / all; no 5xx series yet (all healthy) reads 0, not "no data"."""
    return f"(({request_rate(spec, track, 'status=~' + chr(34) + '5..' + chr(34))} or vector(0)) / clamp_min({request_rate(spec, track)}, 1e-9))"


def p95(spec: Any, track: str) -> str:
    return (f"histogram_quantile(0.95, sum by (le) (rate(model_request_latency_seconds_bucket"
            f"{_sel(spec, track)}[{WINDOW}])))")


def enough(spec: Any, track: str) -> str:
    """Appended to a gate: the result is empty (no data: wait) below the minimum request rate."""
    return f"and on() ({request_rate(spec, track)} >= {spec.rollout.gates.min_request_rate:g})"


def traffic_gate(spec: Any, track: str) -> dict[str, str]:
    g = spec.rollout.gates
    return {"name": "traffic", "promql": f"{request_rate(spec, track)} or vector(0)",
            "passes": f">= {g.min_request_rate:g} req/s; below it the other gates are empty (no data): wait, never promote"}


def absolute_gates(spec: Any, track: str) -> list[dict[str, str]]:
    """After a switch there is nothing left to compare with: the SLO itself is the gate."""
    return [
        traffic_gate(spec, track),
        {"name": "error rate", "promql": f"{error_ratio(spec, track)} {enough(spec, track)}",
         "passes": f"<= {spec.slo.max_error_ratio:g}"},
        {"name": "p95 latency", "promql": f"({p95(spec, track)}) {enough(spec, track)}",
         "passes": f"<= {spec.slo.latency_p95_ms / 1000:g} s (the SLA)"},
    ]


def gates(spec: Any, new_track: str = "canary", base_track: str = "stable") -> list[dict[str, str]]:
    g = spec.rollout.gates
    floor = spec.slo.max_error_ratio / g.max_error_rate_ratio
    return [
        traffic_gate(spec, new_track),
        {"name": "error rate", "promql": f"({error_ratio(spec, new_track)} / clamp_min({error_ratio(spec, base_track)}, "
                                          f"{floor:g})) {enough(spec, new_track)}",
         "passes": f"<= {g.max_error_rate_ratio:g} (the candidate fails at most {g.max_error_rate_ratio:g}x as often as stable; "
                   f"a stable error rate under {floor:.2%} counts as that floor)"},
        {"name": "p95 latency", "promql": f"(({p95(spec, new_track)}) / ({p95(spec, base_track)})) {enough(spec, new_track)}",
         "passes": f"<= {g.max_p95_latency_ratio:g}, and the candidate's p95 alone <= {spec.slo.latency_p95_ms / 1000:g} s (the SLA)"},
    ]


def shadow_gates(spec: Any) -> list[dict[str, str]]:
    """Mirrored shadows are compared like a canary; in-process ones on the server's shadow metrics."""
    g = spec.rollout.gates
    if spec.rollout.shadow and spec.rollout.shadow.mechanism.value != "in-process":
        # Mirrored traffic: the shadow track's answers are discarded, its errors and latency are not.
        return gates(spec, "shadow")
    sel = _sel(spec, "shadow")
    scored = _sel(spec, "shadow", 'outcome="scored"')
    scored_rate = f"sum(rate(model_shadow_samples_total{scored}[{WINDOW}]))"
    guard = f"and on() ({scored_rate} >= {g.min_request_rate:g})"
    return [
        {"name": "shadow samples", "promql": f"{scored_rate} or vector(0)",
         "passes": f">= {g.min_request_rate:g} scored rows/s; below it the other gates are empty (no data): wait"},
        {"name": "shadow agreement",
         "promql": f"(sum(rate(model_shadow_agreed_samples_total{sel}[{WINDOW}])) / clamp_min({scored_rate}, 1e-9)) {guard}",
         "passes": f">= {g.min_shadow_agreement:g}"},
        {"name": "shadow errors",
         "promql": f'sum(rate(model_shadow_samples_total{_sel(spec, "shadow", chr(111) + "utcome=" + chr(34) + "error" + chr(34))}[{WINDOW}])) or vector(0)',
         "passes": "= 0"},
        {"name": "shadow latency p95",
         "promql": (f"(histogram_quantile(0.95, sum by (le) (rate(model_shadow_latency_seconds_bucket{sel}[{WINDOW}]))) / "
                    f"histogram_quantile(0.95, sum by (le) (rate(model_inference_time_seconds_bucket{sel}[{WINDOW}])))) {guard}"),
         "passes": f"<= {g.max_p95_latency_ratio:g}x the stable model's inference p95 in the same pods"},
    ]
