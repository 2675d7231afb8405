"""The Kubernetes objects a bundle's workloads come with: Services, autoscalers, disruption budgets, routes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from deploy_model.bundle.context_network import egress
from deploy_model.bundle.context_workload import Workload
from deploy_model.plan.spec import DeploymentSpec

# (template, output path, extra context for that file)
FileEntry = tuple[str, str, dict[str, Any]]


def default_extra() -> dict[str, Any]:
    """The context keys a rollout may fill, at their values when it does not."""
    return {"route": None, "mirror_percent": 0, "canary_steps": [], "analysis_metrics": [],
            "ingress_canary": False, "argo_router": None, "traffic": [], "stable_model_file": None,
            "ab_split": None}  # ab_split: an A/B test's fixed candidate percent


@dataclass
class BundleObjects:
    """What the context builders collect: workloads, their objects, the files to render, extra context, warnings."""

    spec: DeploymentSpec
    grpc: bool
    rollout_note: str
    warnings: list[str]
    workloads: list[Workload] = field(default_factory=list)
    services: list[dict[str, Any]] = field(default_factory=list)
    autoscaled: list[dict[str, Any]] = field(default_factory=list)
    budgets: list[dict[str, Any]] = field(default_factory=list)
    files: list[FileEntry] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=default_extra)

    def serve(self, w: Workload, selector: dict[str, str] | None = None, scaled: tuple[int, int] | None = None,
              service: str | None = None) -> None:
        """A workload with its Service, autoscaler and disruption budget, all on constant selectors."""
        s = self.spec
        sel = selector or {"app": s.name, "track": w.track}
        self.services.append({"name": service or w.name, "selector": sel, "workload": w})
        low, high = scaled or (s.scaling.min_replicas, s.scaling.max_replicas)
        self.autoscaled.append({"name": w.name, "kind": w.kind, "api_version": w.api_version, "min": max(1, low),
                                "max": max(1, low, high), "workload": w})
        if w.replicas >= 2:
            self.budgets.append({"name": w.name, "selector": sel})

    def route(self, backends: list[tuple[str, int | None]], mirror: str | None = None, percent: float = 0,
              header: str | None = None, kind: str = "plain") -> None:
        self.extra["route"] = {"kind": kind, "backends": [{"name": b, "weight": wgt} for b, wgt in backends],
                               "mirror": mirror, "percent": percent, "header": header}
        self.files.append(("k8s/httproute.yaml.j2", "k8s/httproute.yaml", {}))
        if self.grpc:
            # gRPC callers split (or mirrored) with the same weights as REST.
            self.files.append(("k8s/grpcroute.yaml.j2", "k8s/grpcroute.yaml", {}))

    def cluster_files(self) -> None:
        """The objects every Kubernetes bundle gets beside its workloads (the autoscalers only when used)."""
        s = self.spec
        self.files.append(("k8s/serviceaccount.yaml.j2", "k8s/serviceaccount.yaml", {}))
        if self.autoscaled and not s.scaling.scale_to_zero:
            self.files.append(("k8s/hpa.yaml.j2", "k8s/hpa.yaml", {}))
            for h in self.autoscaled:
                h["workload"].autoscaled = True
        if self.budgets:
            self.files.append(("k8s/pdb.yaml.j2", "k8s/pdb.yaml", {}))
        if s.kubernetes.network_policy:
            rendered = [out for _, out, _ in self.files]
            self.files.append(("k8s/networkpolicy.yaml.j2", "k8s/networkpolicy.yaml", {"egress": egress(s, rendered)}))
