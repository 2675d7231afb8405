"""The pieces every alert module builds from: a rule, its selector, and a promtool test case."""

from __future__ import annotations

from typing import Any

from deploy_model.plan.spec import DeploymentSpec


def selector(spec: DeploymentSpec, extra: str = "") -> str:
    """'{namespace="ns", app="name"}' (plus an extra matcher) selecting the deployment's series."""
    parts = [f'namespace="{spec.kubernetes.namespace}"', f'app="{spec.name}"']
    if extra:
        parts.append(extra)
    return "{" + ", ".join(parts) + "}"


def who(spec: DeploymentSpec) -> str:
    """How annotations name the deployment: 'name in namespace'."""
    return f"{spec.name} in {spec.kubernetes.namespace}"


def rule(name: str, expr: str, for_: str, severity: str, summary: str, description: str) -> dict[str, Any]:
    """One Prometheus alerting rule with a severity label and static annotations."""
    return {
        "alert": name,
        "expr": expr,
        "for": for_,
        "labels": {"severity": severity},
        "annotations": {"summary": summary, "description": description},
    }


def series(metric: str, labels: dict[str, str], values: str) -> dict[str, str]:
    """A promtool input series: metric{labels} with its expanding values notation."""
    body = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{metric}{{{body}}}", "values": values}


def fired(alert: dict[str, Any], labels: dict[str, str], annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """The alert promtool must see: the rule's labels plus the series', and its annotations."""
    return {"exp_labels": {**alert["labels"], **labels},
            "exp_annotations": alert["annotations"] if annotations is None else annotations}


def unit_case(input_series: list[dict[str, str]], checks: list[tuple[str, str, list[dict[str, Any]]]]) -> dict[str, Any]:
    """A promtool test group at a 1m interval: (eval_time, alertname, expected alerts) per check."""
    return {"interval": "1m", "input_series": input_series,
            "alert_rule_test": [{"eval_time": at, "alertname": name, "exp_alerts": expected}
                                for at, name, expected in checks]}
