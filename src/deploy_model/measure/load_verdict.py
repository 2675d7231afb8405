"""The load test's verdict: one replica against the p95 SLA and its share of the target (see loadtest),
never judged on a level with too few answers for a p95; and the re-measure rule near a threshold."""

from __future__ import annotations

import math
from typing import Any

from deploy_model.measure.percentiles import samples_needed

NOT_JUDGED = "not enough requests to judge"


def verdict(levels: list[dict[str, Any]], slo: dict[str, Any], replicas: int = 1) -> dict[str, Any]:
    """Go when one replica meets the latency SLA and error budget at or above its share of the target.

    The share is target_rps / replicas (the replicas the plan runs); `replicas_needed` is what the
    measured capacity implies for the whole target (ceil(target / capacity)).
    """
    sla = float(slo["latency_p95_ms"])
    target_rps = float(slo["target_rps"])
    max_err = float(slo.get("max_error_ratio", 0.01))
    replicas = max(1, int(replicas))
    share = target_rps / replicas
    base = {"sla_p95_ms": sla, "target_rps": target_rps, "replicas_planned": replicas, "share_rps": round(share, 2)}
    # A level counts only when something was answered: a level with no answer has no latency at all.
    answered = [lv for lv in levels if lv["p95_ms"] is not None and lv.get("ok", lv.get("requests", 0)) > 0 and lv["rps"] > 0]
    within = [lv for lv in answered if lv["p95_ms"] <= sla and (lv["error_ratio"] or 0) <= max_err]
    best = max(within, key=lambda lv: lv["rps"], default=None)
    # Answered, but too few answers for a p95: such a level is never judged, neither way.
    short = [lv for lv in levels if lv["p95_ms"] is None and lv.get("p95_note") and lv.get("ok", 0) > 0]
    if not answered and short:
        counts = ", ".join(f"{lv.get('samples', lv.get('ok'))} at {_label(lv)}" for lv in short)
        why = (f"{NOT_JUDGED}: a p95 needs at least {samples_needed(95)} answered requests per level and the levels had {counts} "
               f"(each level ran its --seconds, then on to --min-requests within its time cap); "
               f"run longer (--seconds) or on a faster device")
        return {"go": False, "judged": False, "reason": why, **base, "capacity_rps_within_sla": 0.0,
                "replicas_needed": None}
    if best is None:
        worst = min(answered, key=lambda lv: lv["p95_ms"], default=None)
        why = (f"no level met p95 <= {sla:g} ms with errors <= {max_err:.1%}"
               + (f"; the best p95 was {worst['p95_ms']} ms at {_label(worst)}" if worst
                  else f"; no request was answered within a level ({max(lv.get('seconds', 0) for lv in levels):g} s)" if levels
                  else "; no request succeeded"))
        return {"go": False, "judged": True, "reason": why + _unjudged(short), **base, "capacity_rps_within_sla": 0.0,
                "replicas_needed": None}
    capacity = float(best["rps"])
    needed = math.ceil(target_rps / capacity) if capacity > 0 else None
    meets = capacity >= share
    of = f"the target {_n(target_rps)} req/s" + (f" over {replicas} planned replicas" if replicas > 1 else "")
    reason = (f"one replica held {_n(capacity)} req/s at {_label(best)} with p95 {best['p95_ms']} ms <= {sla:g} ms and "
              f"{best['errors']} error(s)")
    reason += (f"; {'at or above' if meets else 'below'} its share {_n(share)} req/s of {of}")
    if needed is not None:
        reason += f"; the measured figure implies {needed} replica{'s' if needed != 1 else ''} for the target at full load"
    reason += _unjudged(short)
    return {"go": meets, "judged": True, "reason": reason, **base, "capacity_rps_within_sla": capacity, "best_level": _label(best),
            "replicas_needed": needed}


# A verdict this close to its threshold (the SLA p95, or the replica's share of the target) is
# re-measured once: within the timing noise of a shared machine.
BORDERLINE = 0.25


def borderline(levels: list[dict[str, Any]], decision: dict[str, Any], slo: dict[str, Any]) -> bool:
    sla = float(slo["latency_p95_ms"])
    share = float(decision.get("share_rps") or slo["target_rps"])
    if decision["go"]:
        return decision["capacity_rps_within_sla"] < share * (1 + BORDERLINE)
    p95s = [lv["p95_ms"] for lv in levels if lv["p95_ms"] is not None]
    near_sla = bool(p95s) and min(p95s) <= sla * (1 + BORDERLINE)
    near_share = decision["capacity_rps_within_sla"] >= share * (1 - BORDERLINE)
    return near_sla or near_share


def better(a: dict[str, Any], b: dict[str, Any], sla: float, max_error_ratio: float = 0.01) -> dict[str, Any]:
    """Of two runs of one level: the one within the SLA, else the lower p95; the faster when both are within."""
    def key(lv: dict[str, Any]) -> tuple[int, float]:
        within = lv["p95_ms"] is not None and lv["p95_ms"] <= sla and (lv["error_ratio"] or 0) <= max_error_ratio
        return (1, lv["rps"]) if within else (0, -(lv["p95_ms"] if lv["p95_ms"] is not None else float("inf")))
    return a if key(a) >= key(b) else b


def _unjudged(short: list[dict[str, Any]]) -> str:
    """The levels left out of a verdict for too few answers, named so no one reads them as judged."""
    if not short:
        return ""
    return "; not judged for too few requests: " + ", ".join(f"{_label(lv)} ({lv['p95_note']})" for lv in short)


def _n(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() or value >= 100 else f"{value:,.1f}"


def _label(level: dict[str, Any]) -> str:
    if level["mode"] == "open":
        return f"target rate {level['target_rps']:g} req/s"
    return f"concurrency {level['concurrency']}"
