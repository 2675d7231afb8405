"""Alert rules on the server's payload log (payload_log_dropped_total), and their promtool tests."""

from __future__ import annotations

from typing import Any

from deploy_model.plan.spec import DeploymentSpec

# Share of sampled records that may be lost before the log is no longer a faithful sample.
MAX_DROPPED_RATIO = 0.01


def _sel(spec: DeploymentSpec) -> str:
    return f'{{namespace="{spec.kubernetes.namespace}", app="{spec.name}"}}'


def payload_rules(spec: DeploymentSpec) -> list[dict[str, Any]]:
    """ModelPayloadLogDropping when the payload log is on; no rules when it is off."""
    if not spec.payload_logging.enabled:
        return []
    sel, who = _sel(spec), f"{spec.name} in {spec.kubernetes.namespace}"
    by = "namespace, app, track"
    return [{
        "alert": "ModelPayloadLogDropping",
        "expr": f"sum by ({by}) (rate(payload_log_dropped_total{sel}[5m]))\n"
                f"  / clamp_min(sum by ({by}) (rate(payload_log_sampled_total{sel}[5m])), 1e-9)\n"
                f"  > {MAX_DROPPED_RATIO:g}",
        "for": "10m",
        "labels": {"severity": "warning"},
        "annotations": {
            "summary": f"{who}: the payload log drops records",
            "description": f"More than {MAX_DROPPED_RATIO:.0%} of the sampled payload records of {who} were "
                           "dropped for 10 minutes (payload_log_dropped_total by reason: queue_full = the sink "
                           "is slower than the traffic, sink_error = it fails or the volume is full). Requests "
                           "are still served; the log is no longer complete. Fix the sink or lower the sampling.",
        },
    }]


def payload_tests(spec: DeploymentSpec) -> list[dict[str, Any]]:
    """The rule fires on a sink losing 10% of records and stays quiet on one losing none."""
    rules = payload_rules(spec)
    if not rules:
        return []
    rule = rules[0]
    labels = {"namespace": spec.kubernetes.namespace, "app": spec.name, "track": "stable"}
    pod = {**labels, "pod": f"{spec.name}-0"}

    def series(metric: str, extra: dict[str, str], values: str) -> dict[str, str]:
        body = ", ".join(f'{k}="{v}"' for k, v in {**pod, **extra}.items())
        return {"series": f"{metric}{{{body}}}", "values": values}

    sampled = series("payload_log_sampled_total", {}, "0+600x40")

    def case(dropped_per_min: int, fires: bool) -> dict[str, Any]:
        dropped = series("payload_log_dropped_total", {"reason": "queue_full"}, f"0+{dropped_per_min}x40")
        expected = [{"exp_labels": {**rule["labels"], **labels}, "exp_annotations": rule["annotations"]}]
        return {"interval": "1m", "input_series": [sampled, dropped],
                "alert_rule_test": [{"eval_time": "25m", "alertname": rule["alert"],
                                     "exp_alerts": expected if fires else []}]}

    return [case(60, True), case(0, False)]
