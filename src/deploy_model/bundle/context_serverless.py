"""Realtime serving on the serverless target: one Knative Service (or KServe InferenceService), revisions split traffic."""

from __future__ import annotations

from deploy_model.bundle.context_objects import BundleObjects
from deploy_model.bundle.context_workload import ReleaseWorkloads
from deploy_model.plan import releases
from deploy_model.plan.spec import Rollout


def realtime_serverless(objs: BundleObjects, rel: ReleaseWorkloads, layout: str) -> None:
    # Knative: one Service, one revision per model version, traffic split between named
    # revisions. The template is the candidate revision; traffic keeps 100% on the stable one.
    s, name, extra = rel.spec, rel.spec.name, objs.extra
    strategy = s.rollout.strategy
    extra["workload"] = rel.candidate("stable", s.scaling.replicas)
    cand_rev = releases.revision_name(name, s.model.version)
    if rel.has_candidate and s.stable is not None:
        extra["traffic"] = [{"revisionName": releases.revision_name(name, s.stable.version), "percent": 100, "tag": "stable"},
                            {"revisionName": cand_rev, "percent": 0, "tag": "candidate"}]
        if s.rollout.experiment is not None:  # an A/B test: its split at once, held until the experiment ends
            extra["ab_split"] = split = s.rollout.experiment.split
            extra["traffic"][0]["percent"], extra["traffic"][1]["percent"] = 100 - split, split
        if strategy in (Rollout.shadow, Rollout.blue_green):
            objs.warnings.append(f"serverless target: {strategy.value} runs as a Knative revision at 0% reachable on its "
                                 "`candidate` tag URL; the switch moves the traffic percent")
    else:
        extra["traffic"] = [{"revisionName": cand_rev, "percent": 100, "tag": "stable"}]
    extra["revision"] = cand_rev
    if objs.grpc:
        # Knative (and KServe on it) routes a single container port: gRPC, named h2c.
        objs.warnings.append(
            f"protocol grpc on the serverless target ({layout}): Knative routes one port, so it routes gRPC "
            f"(h2c, port {s.serving.grpc_port}); REST (port {s.serving.port}) still listens in the pod but is not "
            f"routed; the server's {s.monitoring.metrics_path} is on it, so the bundle's PodMonitor and "
            f"prometheus.yml scrape pod port {s.serving.port} by rewriting the target's address (a scrape "
            "config of your own must do the same: the pod's named port is the gRPC one)")
    if layout == "kserve":
        # KServe (serverless mode, on Knative): the predictor is the candidate; canaryTrafficPercent
        # 0 keeps every request on the previously rolled-out revision until the steps raise it.
        extra["canary_percent"] = (extra["ab_split"] or 0) if rel.has_candidate else None
        objs.files.append(("k8s/inferenceservice.yaml.j2", "k8s/inferenceservice.yaml", {}))
    else:
        objs.files.append(("k8s/knative-service.yaml.j2", "k8s/knative-service.yaml", {}))
