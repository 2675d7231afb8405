"""Alert on online accuracy falling, from the server's ground-truth feedback, and its promtool tests."""

from __future__ import annotations

from typing import Any

from deploy_model.plan.spec import DeploymentSpec

WINDOW = "1h"  # accuracy over the last hour of labelled rows
SUSTAINED = "15m"
MIN_ROWS = 20  # labelled rows in the window; fewer and one wrong answer would page


def feedback_rules(spec: DeploymentSpec) -> list[dict[str, Any]]:
    """ModelOnlineAccuracyLow: per track, correct / (correct + wrong) over the hour below
    monitoring.min_online_accuracy with at least MIN_ROWS labelled rows. The series exist only
    once feedback arrives (POST /v2/models/{name}/feedback), so a deployment without it never fires."""
    floor = spec.monitoring.min_online_accuracy
    sel = f'namespace="{spec.kubernetes.namespace}", app="{spec.name}"'
    by = "sum by (namespace, app, track)"
    scored = f'{by} (increase(model_feedback_total{{{sel}, outcome=~"correct|wrong"}}[{WINDOW}]))'
    correct = f'{by} (increase(model_feedback_total{{{sel}, outcome="correct"}}[{WINDOW}]))'
    who = f"{spec.name} in {spec.kubernetes.namespace}"
    return [{
        "alert": "ModelOnlineAccuracyLow",
        "expr": f"({correct} / {scored} < {floor:g}) and {scored} >= {MIN_ROWS}",
        "for": SUSTAINED,
        "labels": {"severity": "warning"},
        "annotations": {
            "summary": f"{who}: online accuracy of track {{{{ $labels.track }}}} below {floor:.0%}",
            "description": f"Over the last {WINDOW}, the answers of {who} (track {{{{ $labels.track }}}}) that "
                           f"ground-truth feedback scored were right less than {floor:.0%} of the time (at least "
                           f"{MIN_ROWS} labelled rows). Compare the tracks on the dashboard's online accuracy panel; "
                           "a canary's drop is a reason to roll it back, stable's to retrain.",
        },
    }]


def feedback_tests(spec: DeploymentSpec) -> list[dict[str, Any]]:
    """70% right fires after the window and `for:`; 95% right does not; 70% on too few rows does not."""
    rule = feedback_rules(spec)[0]
    labels = {"namespace": spec.kubernetes.namespace, "app": spec.name, "track": "canary"}
    pod = ", ".join(f'{k}="{v}"' for k, v in {**labels, "pod": f"{spec.name}-0"}.items())

    def case(right_per_min: float, wrong_per_min: float, fires: bool) -> dict[str, Any]:
        series = [{"series": f'model_feedback_total{{{pod}, outcome="{o}"}}', "values": f"0+{n:g}x120"}
                  for o, n in (("correct", right_per_min), ("wrong", wrong_per_min))]
        expected = [{"exp_labels": {**rule["labels"], **labels},
                     "exp_annotations": {k: v.replace("{{ $labels.track }}", "canary")
                                         for k, v in rule["annotations"].items()}}]
        return {"interval": "1m", "input_series": series,
                "alert_rule_test": [{"eval_time": "90m", "alertname": rule["alert"],
                                     "exp_alerts": expected if fires else []}]}

    floor = spec.monitoring.min_online_accuracy
    low, high = max(floor - 0.2, 0.0), min(floor + (1 - floor) / 2, 1.0)
    return [case(10 * low, 10 * (1 - low), True), case(10 * high, 10 * (1 - high), False),
            case(0.1 * low, 0.1 * (1 - low), False)]
