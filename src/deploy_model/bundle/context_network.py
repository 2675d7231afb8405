"""The NetworkPolicy's rules: what the bundle's pods may reach per pattern and rollout, and, on
Knative or KServe, the queue-proxy ports their traffic comes in on."""

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
# Knative's queue-proxy sidecar, in every Knative and KServe (serverless) pod: the ingress gateway
# and the activator send HTTP/1 to 8012 and h2c (gRPC) to 8013; the autoscaler scrapes 9090.
# It forwards to the server on localhost, which no NetworkPolicy sees. 8022 (admin) is only probed
# by the kubelet, which NetworkPolicies do not block.
QUEUE_PROXY = {"http1": 8012, "h2c": 8013, "autoscaler_metrics": 9090}
SERVERLESS_FILES = ("k8s/knative-service.yaml", "k8s/inferenceservice.yaml")


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
        # Ingress on the serverless targets: requests come through the queue-proxy, not to the server's port.
        "queue_proxy": QUEUE_PROXY if any(f in rendered for f in SERVERLESS_FILES) else None,
    }
    named = (("redis_port", "Redis"), ("object_storage", "object storage (HTTPS)"), ("istiod_port", "istiod"))
    rules["reaches"] = ["cluster DNS"] + [what for key, what in named if rules[key]]
    return rules
