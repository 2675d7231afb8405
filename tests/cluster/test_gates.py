"""The gate rules on given series (the Prometheus answers are written here; test_rollout_gates.py
runs the same rules against a real Prometheus): 5xx against stable and the SLO, 4xx rejections,
p95 with its floor, silence, and failure only when it lasts two rate windows."""

from __future__ import annotations

from typing import Any

from deploy_model.cluster.gates import GateConfig, evaluate

T0 = 1_000_000.0
CFG = GateConfig(namespace="ns", app="m", max_error_rate_ratio=2.0, max_p95_latency_ratio=1.5, min_request_rate=0.5,
                 max_error_ratio=0.01, latency_sla_s=0.1, rate_window="2s")


class Series:
    """Answers query_range per (track, metric) from functions of time (None: no series)."""

    def __init__(self, **funcs: Any) -> None:
        self.funcs = funcs

    def range(self, query: str, start: float, end: float, step_s: float) -> dict[float, float]:
        track = "canary" if 'track="canary"' in query else "stable"
        metric = ("errors" if '"5.."' in query else "rejects" if '"4.."' in query
                  else "p95" if "histogram_quantile" in query else "traffic")
        fn = self.funcs.get(f"{track}_{metric}")
        out = {}
        t = start
        while t <= end + 1e-9:
            v = fn(t) if fn else None
            if v is not None:
                out[round(t, 3)] = v
            t += step_s
        return out


def healthy(**over: Any) -> Series:
    base = {"canary_traffic": lambda t: 5.0, "stable_traffic": lambda t: 45.0, "canary_p95": lambda t: 0.004,
            "stable_p95": lambda t: 0.003}
    return Series(**{**base, **over})


def test_pass_after_the_window_and_hold_before() -> None:
    assert evaluate(healthy(), CFG, T0, 10, 1, now=T0 + 5).action == "hold"
    v = evaluate(healthy(), CFG, T0, 10, 1, now=T0 + 12)
    assert v.action == "pass", v.reason
    # A stable error rate of 3% lets the canary reach 6%; the absent 5xx series of a healthy canary is 0.
    v = evaluate(healthy(stable_errors=lambda t: 45 * 0.03, canary_errors=lambda t: 5 * 0.05), CFG, T0, 10, 1, now=T0 + 12)
    assert v.action == "pass", v.reason


def test_5xx_fails_only_when_it_lasts() -> None:
    spike = healthy(canary_errors=lambda t: 2.0 if T0 + 3 <= t < T0 + 5 else None)  # 2 s of errors: < 2 rate windows
    held = evaluate(spike, CFG, T0, 10, 1, now=T0 + 12)
    assert held.action == "hold" and "gate error rate failing" in held.reason  # not clean: no pass either
    assert evaluate(spike, CFG, T0, 10, 1, now=T0 + 16).action == "pass"  # the window is clean again
    lasting = healthy(canary_errors=lambda t: 1.0 if t >= T0 + 3 else None)  # 20%, from 3 s on
    v = evaluate(lasting, CFG, T0, 10, 1, now=T0 + 9)
    assert v.action == "fail" and v.reason.startswith("gate error rate: canary 5xx ratio 20.000% > 1.000% (the SLO)")


def test_rejections_fail_against_stable() -> None:
    v = evaluate(healthy(canary_rejects=lambda t: 1.5, stable_rejects=lambda t: 45 * 0.02), CFG, T0, 10, 1, now=T0 + 8)
    assert v.action == "fail" and "canary 4xx ratio 30.000% > 4.000%" in v.reason
    same = healthy(canary_rejects=lambda t: 5 * 0.02, stable_rejects=lambda t: 45 * 0.02)
    assert evaluate(same, CFG, T0, 10, 1, now=T0 + 12).action == "pass"


def test_p95_ratio_floor_and_sla() -> None:
    # 3x the stable p95 but under a fifth of the SLA: noise on fast models is no regression.
    assert evaluate(healthy(canary_p95=lambda t: 0.009), CFG, T0, 10, 1, now=T0 + 12).action == "pass"
    v = evaluate(healthy(canary_p95=lambda t: 0.05, stable_p95=lambda t: 0.02), CFG, T0, 10, 1, now=T0 + 12)
    assert v.action == "fail" and "canary p95 50.0 ms > 30.0 ms" in v.reason
    # No stable traffic (the canary at 100%): the SLA alone.
    alone = healthy(stable_traffic=lambda t: None, stable_p95=lambda t: None, canary_p95=lambda t: 0.09)
    assert evaluate(alone, CFG, T0, 10, 1, now=T0 + 12).action == "pass"
    assert evaluate(healthy(stable_traffic=lambda t: None, canary_p95=lambda t: 0.2), CFG, T0, 10, 1,
                    now=T0 + 12).action == "fail"


def test_silence_holds_never_passes_never_fails() -> None:
    quiet = healthy(canary_traffic=lambda t: 0.2, canary_errors=lambda t: 0.2)  # 100% errors, but 0.2 req/s
    v = evaluate(quiet, CFG, T0, 10, 1, now=T0 + 30)
    assert v.action == "hold" and "canary traffic 0.20 req/s < 0.5 req/s" in v.reason
    nothing = Series()  # no series at all: Prometheus has no data
    v = evaluate(nothing, CFG, T0, 10, 1, now=T0 + 30)
    assert v.action == "hold" and "canary traffic none" in v.reason
    # Traffic stopped 3 s ago: the trailing window is not whole, so no pass.
    stopped = healthy(canary_traffic=lambda t: 5.0 if t < T0 + 27 else None)
    assert evaluate(stopped, CFG, T0, 10, 1, now=T0 + 30).action == "hold"
