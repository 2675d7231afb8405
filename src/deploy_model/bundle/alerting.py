"""Alert rules of a deployment and the promtool unit tests that prove each one fires (and stays quiet).

The rules and their tests come from the same data, so a threshold changed in the spec changes
both. Annotations carry no Prometheus templating: their text is known at render time, which lets
the unit tests state the exact annotations promtool must see.
"""

from __future__ import annotations

from typing import Any

from deploy_model.bundle.alert_parts import fired, rule, selector, series, unit_case, who
from deploy_model.bundle.drift_alerts import drift_rules, drift_tests
from deploy_model.bundle.feedback_alerts import feedback_rules, feedback_tests
from deploy_model.bundle.payload_alerts import payload_rules, payload_tests
from deploy_model.bundle.worker_alerts import worker_rules, worker_tests
from deploy_model.plan.spec import DeploymentSpec, ServingPattern

WINDOW = "5m"


def realtime_rules(spec: DeploymentSpec) -> list[dict[str, Any]]:
    s = spec
    by = "namespace, app, track"
    sla_s = s.slo.latency_p95_ms / 1000
    whom = who(s)
    errors = selector(s, 'status=~"5.."')
    rules = [
        rule(
            "ModelHighErrorRatio",
            f"sum by ({by}) (rate(model_requests_total{errors}[{WINDOW}]))\n"
            f"  / sum by ({by}) (rate(model_requests_total{selector(s)}[{WINDOW}]))\n  > {s.slo.max_error_ratio:g}",
            "5m", "critical",
            f"{whom}: more than {s.slo.max_error_ratio:.1%} of requests fail",
            f"The 5xx ratio of {whom} stayed above {s.slo.max_error_ratio:.1%} for 5 minutes. Check the server logs; roll back if a rollout is in progress.",
        ),
        rule(
            "ModelLatencyP95OverSLA",
            f"histogram_quantile(0.95, sum by ({by}, le) (rate(model_request_latency_seconds_bucket{selector(s)}[{WINDOW}])))\n  > {sla_s:g}",
            "10m", "warning",
            f"{whom}: p95 latency above the {s.slo.latency_p95_ms:g} ms SLA",
            f"The p95 request latency of {whom} stayed above {s.slo.latency_p95_ms:g} ms for 10 minutes. Check saturation (CPU, queue depth) and scale out.",
        ),
        rule(
            "ModelInputDriftHigh",
            f"max by (namespace, app, feature) (input_feature_drift{selector(s)}) > {s.monitoring.drift_psi_act:g}",
            "30m", "warning",
            f"{whom}: input drift (PSI) above {s.monitoring.drift_psi_act:g}",
            f"A feature's population stability index stayed above {s.monitoring.drift_psi_act:g} for 30 minutes: the inputs no longer look like the reference. Investigate and plan retraining.",
        ),
        rule(
            "ModelInputDriftWatch",
            f"max by (namespace, app, feature) (input_feature_drift{selector(s)}) > {s.monitoring.drift_psi_watch:g}",
            "1h", "info",
            f"{whom}: input drift (PSI) above {s.monitoring.drift_psi_watch:g}",
            f"A feature's population stability index stayed above {s.monitoring.drift_psi_watch:g} for an hour: watch it.",
        ),
        rule(
            "ModelNoTraffic",
            f"(sum by (namespace, app) (rate(model_requests_total{selector(s)}[15m])) == 0)\n"
            f"  or absent(model_requests_total{selector(s)})",
            "30m", "warning",
            f"{whom}: no requests for 30 minutes",
            f"{whom} answered no inference request for 30 minutes (or is not scraped). Check the route, the Service and the scrape target.",
        ),
        rule(
            "ModelNotReady",
            f"(max by (namespace, app, track, pod) (model_ready{selector(s)}) == 0)\n"
            f"  or (max by (namespace, app, track, pod) (up{selector(s)}) == 0)",
            "5m", "critical",
            f"{whom}: a replica is not ready or not scraped",
            f"A replica of {whom} reported model_ready 0 (or its scrape failed) for 5 minutes. Check its events and logs.",
        ),
    ]
    if s.scaling.scale_to_zero:
        # Scaled to zero, no pod exports anything: silence is the idle state, not an outage.
        rules = [r for r in rules if r["alert"] != "ModelNoTraffic"]
    return rules + payload_rules(s) + drift_rules(s) + feedback_rules(s)


def job_rules(spec: DeploymentSpec) -> list[dict[str, Any]]:
    """Batch and worker deployments have no request path: alert on the workload itself (kube-state-metrics)."""
    s = spec
    ns = s.kubernetes.namespace
    whom = who(s)
    if s.serving.pattern == ServingPattern.batch:
        return [rule(
            "ModelBatchJobFailed",
            f'max by (namespace, job_name) (kube_job_status_failed{{namespace="{ns}", job_name=~"{s.name}-.*"}}) > 0',
            "0m", "critical",
            f"{whom}: a batch inference job failed",
            f"A Job of {whom} failed. Read its pod logs: kubectl -n {ns} logs job/<job_name>.",
        )]
    return [rule(
        "ModelWorkersUnavailable",
        f'max by (namespace, deployment) (kube_deployment_status_replicas_available{{namespace="{ns}", deployment="{s.name}-worker"}}) < 1',
        "5m", "critical",
        f"{whom}: no worker is available",
        f"No worker of {whom} has been available for 5 minutes: messages queue up unanswered.",
    ), *worker_rules(spec)]  # the workers' own metrics: dead letters, failures, lag, latency, stalls


def rules(spec: DeploymentSpec) -> list[dict[str, Any]]:
    if spec.serving.pattern in (ServingPattern.batch, ServingPattern.event_driven):
        return job_rules(spec)
    return realtime_rules(spec)


def tests(spec: DeploymentSpec) -> list[dict[str, Any]]:
    """promtool unit tests: for every rule, a case where it fires and one where it stays quiet."""
    by_name = {r["alert"]: r for r in rules(spec)}
    ns, app = spec.kubernetes.namespace, spec.name
    base = {"namespace": ns, "app": app}
    cases: list[dict[str, Any]] = []

    def case(name: str, input_series: list[dict[str, str]], at: str, labels: dict[str, str] | None) -> None:
        cases.append(unit_case(input_series, [(at, name, [] if labels is None else [fired(by_name[name], labels)])]))

    if "ModelHighErrorRatio" in by_name:
        track = {**base, "track": "stable"}
        ok = series("model_requests_total", {**track, "endpoint": "infer", "status": "200"}, "0+600x40")
        bad = series("model_requests_total", {**track, "endpoint": "infer", "status": "500"}, "0+60x40")
        few = series("model_requests_total", {**track, "endpoint": "infer", "status": "500"}, "0+1x40")
        case("ModelHighErrorRatio", [ok, bad], "20m", track)
        case("ModelHighErrorRatio", [ok, few], "20m", None)
        # Latency: every request lands in the bucket just above the SLA, or well below it.
        sla = spec.slo.latency_p95_ms / 1000
        edges = [f"{sla / 2:g}", f"{sla * 2:g}", "+Inf"]

        def buckets(slow: bool) -> list[dict[str, str]]:
            counts = ["0+0x40" if slow else "0+100x40", "0+100x40", "0+100x40"]
            return [series("model_request_latency_seconds_bucket", {**track, "endpoint": "infer", "le": le}, c)
                    for le, c in zip(edges, counts, strict=False)]

        case("ModelLatencyP95OverSLA", buckets(True), "20m", track)
        case("ModelLatencyP95OverSLA", buckets(False), "20m", None)
        act, watch = spec.monitoring.drift_psi_act, spec.monitoring.drift_psi_watch
        feature = {**base, "track": "stable", "feature": "f0"}
        case("ModelInputDriftHigh", [series("input_feature_drift", feature, f"{act * 2:g}x50")], "40m",
             {**base, "feature": "f0"})
        case("ModelInputDriftHigh", [series("input_feature_drift", feature, f"{watch / 2:g}x50")], "40m", None)
        case("ModelInputDriftWatch", [series("input_feature_drift", feature, f"{(watch + act) / 2:g}x90")], "75m",
             {**base, "feature": "f0"})
        if "ModelNoTraffic" in by_name:
            case("ModelNoTraffic", [series("model_requests_total", {**track, "endpoint": "infer", "status": "200"}, "5x60")],
                 "50m", base)
            case("ModelNoTraffic", [ok], "20m", None)
        pod = {**base, "track": "stable", "pod": f"{app}-0"}
        case("ModelNotReady", [series("model_ready", pod, "0x20"), series("up", pod, "1x20")], "10m", pod)
        case("ModelNotReady", [series("model_ready", pod, "1x20"), series("up", pod, "1x20")], "10m", None)
    if "ModelBatchJobFailed" in by_name:
        job = {"namespace": ns, "job_name": f"{app}-28000000"}
        case("ModelBatchJobFailed", [series("kube_job_status_failed", job, "1x5")], "2m", job)
        case("ModelBatchJobFailed", [series("kube_job_status_failed", job, "0x5")], "2m", None)
    if "ModelWorkersUnavailable" in by_name:
        dep = {"namespace": ns, "deployment": f"{app}-worker"}
        case("ModelWorkersUnavailable", [series("kube_deployment_status_replicas_available", dep, "0x10")], "8m", dep)
        case("ModelWorkersUnavailable", [series("kube_deployment_status_replicas_available", dep, "2x10")], "8m", None)
    if "ModelWorkerDeadLetters" in by_name:
        cases += worker_tests(spec)
    if "ModelPayloadLogDropping" in by_name:
        cases += payload_tests(spec)
    if "ModelPredictionDriftHigh" in by_name:
        cases += drift_tests(spec)
    if "ModelOnlineAccuracyLow" in by_name:
        cases += feedback_tests(spec)
    return cases
