"""What the bundle's pods may reach: the egress rules of the NetworkPolicy, per pattern and rollout."""

from __future__ import annotations

from typing import Any

from deploy_model.plan.spec import DeploymentSpec, ServingPattern

REDIS_PORT = 6379
# istiod's xDS and certificate port: an Istio sidecar in the pod must reach it to start serving.
ISTIOD_PORT = 15012
# The private ranges clusters put pods, Services and nodes on (RFC 1918; IPv6 unique local): object
# storage is reached on public addresses, never inside the cluster.
PRIVATE_V4 = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
PRIVATE_V6 = ["fc00::/7"]


def object_storage(spec: DeploymentSpec) -> bool:
    """Whether the batch job reads or writes s3://, gs:// or az:// (not only the /data volume)."""
    batch = spec.batch
    return batch is not None and any("://" in uri for uri in (batch.input_uri, batch.output_uri))


def egress(spec: DeploymentSpec, rendered: list[str]) -> dict[str, Any]:
    """Which destinations beyond cluster DNS the pods need; `rendered` is the bundle's output paths so far."""
    pattern = spec.serving.pattern
    rules: dict[str, Any] = {
        "redis_port": REDIS_PORT if pattern == ServingPattern.event_driven else None,
        "object_storage": pattern == ServingPattern.batch and object_storage(spec),
        "private_v4": PRIVATE_V4,
        "private_v6": PRIVATE_V6,
        # Istio mirroring runs in a meshed namespace: the pods' sidecars fetch config from istiod.
        # In-process shadowing and the Gateway API mirror need nothing: traffic only comes in.
        "istiod_port": ISTIOD_PORT if "k8s/virtualservice.yaml" in rendered else None,
    }
    named = (("redis_port", "Redis"), ("object_storage", "object storage (HTTPS)"), ("istiod_port", "istiod"))
    rules["reaches"] = ["cluster DNS"] + [what for key, what in named if rules[key]]
    return rules
