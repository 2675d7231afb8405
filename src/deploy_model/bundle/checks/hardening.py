"""A hardening catalogue after the public rule lists of kube-score, kube-linter and checkov.

Each rule names the ids it follows (e.g. `kube-linter:no-liveness-probe`, `checkov:CKV_K8S_8`) so
a finding can be looked up in those tools' documentation. A workload can waive a kube-linter
check the way kube-linter itself accepts it: the annotation
`ignore-check.kube-linter.io/<check>: <reason>`; the waiver and its reason are reported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from deploy_model.bundle.checks import FAIL, PASS, Check

WORKLOAD_KINDS = {"Deployment", "Rollout", "StatefulSet", "DaemonSet", "Job", "CronJob"}
BATCH_KINDS = {"Job", "CronJob"}
WAIVER = "ignore-check.kube-linter.io/"


@dataclass
class Workload:
    file: str
    doc: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.doc.get("kind"))

    @property
    def name(self) -> str:
        return str((self.doc.get("metadata") or {}).get("name", "?"))

    @property
    def template(self) -> dict[str, Any]:
        spec = self.doc.get("spec") or {}
        if self.kind == "CronJob":
            spec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
        return spec.get("template") or {}

    @property
    def pod(self) -> dict[str, Any]:
        return self.template.get("spec") or {}

    @property
    def pod_labels(self) -> dict[str, str]:
        return (self.template.get("metadata") or {}).get("labels") or {}

    @property
    def replicas(self) -> int:
        value = (self.doc.get("spec") or {}).get("replicas", 1)
        return value if isinstance(value, int) else 1

    @property
    def containers(self) -> list[dict[str, Any]]:
        return list(self.pod.get("containers") or []) + list(self.pod.get("initContainers") or [])

    def waived(self, check: str) -> str | None:
        annotations = (self.doc.get("metadata") or {}).get("annotations") or {}
        return annotations.get(WAIVER + check)


Finding = tuple[str, str]  # (rule ids, message)
Rule = Callable[[Workload, "Bundle"], Iterator[Finding]]


@dataclass
class Bundle:
    docs: list[tuple[str, dict[str, Any]]]

    def of_kind(self, *kinds: str) -> list[tuple[str, dict[str, Any]]]:
        return [(f, d) for f, d in self.docs if d.get("kind") in kinds]


def _sc(container: dict[str, Any], pod: dict[str, Any], key: str) -> Any:
    """A security setting as it applies: the container's, else the pod's."""
    own = (container.get("securityContext") or {}).get(key)
    return own if own is not None else (pod.get("securityContext") or {}).get(key)


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def probes(w: Workload, _: Bundle) -> Iterator[Finding]:
    if w.kind in BATCH_KINDS:
        return
    for c in w.pod.get("containers") or []:
        for probe, lint, ckv in (("livenessProbe", "no-liveness-probe", "CKV_K8S_8"),
                                 ("readinessProbe", "no-readiness-probe", "CKV_K8S_9")):
            if not c.get(probe) and not w.waived(lint):
                yield f"kube-linter:{lint} checkov:{ckv}", f"container {c.get('name')} has no {probe}"
        if c.get("livenessProbe") and c.get("livenessProbe") == c.get("readinessProbe"):
            yield "kube-score:pod-probes", f"container {c.get('name')}: liveness and readiness probes are identical"


def resources(w: Workload, _: Bundle) -> Iterator[Finding]:
    for c in w.containers:
        res = c.get("resources") or {}
        for side in ("requests", "limits"):
            for what, ids in (("cpu", "kube-linter:unset-cpu-requirements checkov:CKV_K8S_10/11"),
                              ("memory", "kube-linter:unset-memory-requirements checkov:CKV_K8S_12/13")):
                if not (res.get(side) or {}).get(what):
                    yield f"{ids} kube-score:container-resources", f"container {c.get('name')} sets no {what} {side[:-1]}"


def security(w: Workload, bundle: Bundle) -> Iterator[Finding]:
    pod = w.pod
    for flag, ids in (("hostNetwork", "checkov:CKV_K8S_19 kube-linter:host-network"),
                      ("hostPID", "checkov:CKV_K8S_17 kube-linter:host-pid"),
                      ("hostIPC", "checkov:CKV_K8S_18 kube-linter:host-ipc")):
        if pod.get(flag):
            yield ids, f"pod shares the host's {flag[4:]} namespace"
    account = [d for _, d in bundle.of_kind("ServiceAccount") if (d.get("metadata") or {}).get("name") == pod.get("serviceAccountName")]
    token = pod.get("automountServiceAccountToken", account[0].get("automountServiceAccountToken") if account else None)
    if token is not False:
        yield "checkov:CKV_K8S_38", "the service account token is mounted (set automountServiceAccountToken: false)"
    for c in w.containers:
        name = c.get("name")
        if _sc(c, pod, "runAsNonRoot") is not True:
            yield "kube-linter:run-as-non-root checkov:CKV_K8S_23", f"container {name} may run as root (runAsNonRoot is not true)"
        user = _sc(c, pod, "runAsUser")
        if user == 0:
            yield "checkov:CKV_K8S_40", f"container {name} runs as UID 0"
        elif not isinstance(user, int) or user <= 10000:
            yield "kube-score:container-security-context-user-group-id", f"container {name}: runAsUser {user} is not a UID above 10000"
        if (c.get("securityContext") or {}).get("readOnlyRootFilesystem") is not True:
            yield "kube-linter:no-read-only-root-fs checkov:CKV_K8S_22", f"container {name}: root filesystem is writable"
        if (c.get("securityContext") or {}).get("allowPrivilegeEscalation") is not False:
            yield "kube-linter:privilege-escalation-container checkov:CKV_K8S_20", f"container {name}: allowPrivilegeEscalation is not false"
        if (c.get("securityContext") or {}).get("privileged"):
            yield "kube-linter:privileged-container checkov:CKV_K8S_16", f"container {name} is privileged"
        drops = ((c.get("securityContext") or {}).get("capabilities") or {}).get("drop") or []
        if "ALL" not in drops:
            yield "checkov:CKV_K8S_37 kube-linter:drop-net-raw-capability", f"container {name} does not drop ALL capabilities"
        seccomp = (_sc(c, pod, "seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            yield "checkov:CKV_K8S_31", f"container {name}: seccompProfile is {seccomp or 'unset'} (expected RuntimeDefault)"
        image = str(c.get("image") or "")
        tag = image.rsplit("/", 1)[-1].partition(":")[2]
        if "@" not in image and tag in ("", "latest"):
            yield "kube-linter:latest-tag checkov:CKV_K8S_14 kube-score:container-image-tag", f"container {name}: image {image!r} has no fixed tag"


def planned_replicas(w: Workload, bundle: Bundle) -> int:
    """spec.replicas, else (an autoscaled workload leaves it out) the floor of the HPA or KEDA
    ScaledObject that targets it, else the API server's default of 1."""
    if "replicas" in (w.doc.get("spec") or {}):
        return w.replicas
    for _, d in bundle.of_kind("HorizontalPodAutoscaler", "ScaledObject"):
        spec = d.get("spec") or {}
        if (spec.get("scaleTargetRef") or {}).get("name") == w.name:
            floor = spec.get("minReplicas", spec.get("minReplicaCount", 1))
            return floor if isinstance(floor, int) else 1
    return 1


def availability(w: Workload, bundle: Bundle) -> Iterator[Finding]:
    replicas = planned_replicas(w, bundle)
    if w.kind in BATCH_KINDS or replicas < 2:
        return
    if not any(_matches(((d.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}, w.pod_labels)
               for _, d in bundle.of_kind("PodDisruptionBudget")):
        yield "kube-score:deployment-has-poddisruptionbudget", f"{replicas} replicas but no PodDisruptionBudget selects the pods"
    affinity = (w.pod.get("affinity") or {}).get("podAntiAffinity")
    if not affinity and not w.pod.get("topologySpreadConstraints"):
        yield "kube-linter:no-anti-affinity kube-score:deployment-has-host-podantiaffinity", \
            f"{replicas} replicas may land on one node (no podAntiAffinity or topologySpreadConstraints)"


def shutdown(w: Workload, _: Bundle) -> Iterator[Finding]:
    if w.kind in BATCH_KINDS:
        return
    grace = w.pod.get("terminationGracePeriodSeconds", 30)
    for c in w.pod.get("containers") or []:
        command = (((c.get("lifecycle") or {}).get("preStop") or {}).get("exec") or {}).get("command") or []
        if len(command) == 2 and command[0] == "sleep" and str(command[1]).isdigit() and int(command[1]) >= grace:
            yield "deploy-model:graceful-shutdown", f"container {c.get('name')}: preStop sleep {command[1]}s leaves no drain time within {grace}s"


def references(w: Workload, bundle: Bundle) -> Iterator[Finding]:
    account = w.pod.get("serviceAccountName")
    if account and not any((d.get("metadata") or {}).get("name") == account for _, d in bundle.of_kind("ServiceAccount")):
        yield "kube-linter:non-existent-service-account", f"serviceAccountName {account!r} is not in the bundle"


RULES: list[Rule] = [probes, resources, security, availability, shutdown, references]


def bundle_rules(bundle: Bundle, workloads: list[Workload]) -> list[Check]:
    """Rules over objects that point at pods: Services, HPAs, NetworkPolicies."""
    checks: list[Check] = []
    labels = [w.pod_labels for w in workloads]
    names = {(w.kind, w.name) for w in workloads}
    for file, svc in bundle.of_kind("Service"):
        if svc.get("apiVersion") != "v1":
            continue
        selector = (svc.get("spec") or {}).get("selector") or {}
        ok = any(_matches(selector, lab) for lab in labels)
        checks.append(Check("hardening", "catalogue", file, PASS if ok else FAIL,
                            f"Service/{svc['metadata']['name']}: " + ("selects pods of the bundle" if ok else f"selector {selector} matches no pod template"),
                            "kube-score:service-targets-pod kube-linter:dangling-service"))
    for file, hpa in bundle.of_kind("HorizontalPodAutoscaler"):
        ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
        ok = (ref.get("kind"), ref.get("name")) in names
        checks.append(Check("hardening", "catalogue", file, PASS if ok else FAIL,
                            f"HorizontalPodAutoscaler/{hpa['metadata']['name']}: " + ("targets a workload of the bundle" if ok else f"target {ref.get('kind')}/{ref.get('name')} is not in the bundle"),
                            "kube-score:horizontalpodautoscaler-has-target"))
    for file, policy in bundle.of_kind("NetworkPolicy"):
        selector = ((policy.get("spec") or {}).get("podSelector") or {}).get("matchLabels") or {}
        ok = any(_matches(selector, lab) for lab in labels)
        checks.append(Check("hardening", "catalogue", file, PASS if ok else FAIL,
                            f"NetworkPolicy/{policy['metadata']['name']}: " + ("selects pods of the bundle" if ok else f"podSelector {selector} matches no pod"),
                            "kube-score:networkpolicy-targets-pod"))
        # Ingress alone leaves a compromised pod free to call anywhere: both directions are restricted.
        types = set((policy.get("spec") or {}).get("policyTypes") or [])
        both = {"Ingress", "Egress"} <= types
        checks.append(Check("hardening", "catalogue", file, PASS if both else FAIL,
                            f"NetworkPolicy/{policy['metadata']['name']}: " + ("restricts ingress and egress" if both
                                                                              else f"policyTypes {sorted(types)} leave egress open"),
                            "kube-score:pod-networkpolicy"))
    return checks


def _predictor_as_workload(doc: dict[str, Any]) -> dict[str, Any]:
    """A KServe predictor is a pod spec inline: present it as a pod template for the same rules."""
    predictor = dict((doc.get("spec") or {}).get("predictor") or {})
    labels = predictor.pop("labels", {})
    pod = {k: v for k, v in predictor.items() if k not in ("minReplicas", "maxReplicas", "canaryTrafficPercent", "timeout",
                                                                "annotations", "scaleTarget", "scaleMetric")}
    return {**doc, "kind": "InferenceService", "spec": {"template": {"metadata": {"labels": labels}, "spec": pod}}}


def workloads_of(docs: list[tuple[str, dict[str, Any]]]) -> list[Workload]:
    """Every object of the bundle that runs pods, Knative Services and KServe predictors included."""
    workloads = [Workload(f, d) for f, d in docs if d.get("kind") in WORKLOAD_KINDS and d.get("apiVersion") != "serving.knative.dev/v1"]
    workloads += [Workload(f, {**d, "kind": "KnativeService"}) for f, d in docs
                  if d.get("kind") == "Service" and d.get("apiVersion") == "serving.knative.dev/v1"]
    workloads += [Workload(f, _predictor_as_workload(d)) for f, d in docs if d.get("kind") == "InferenceService"]
    return workloads


def run(docs: list[tuple[str, dict[str, Any]]]) -> list[Check]:
    bundle = Bundle(docs)
    workloads = workloads_of(docs)
    checks: list[Check] = []
    for w in workloads:
        findings = [f for rule in RULES for f in rule(w, bundle)]
        for ids, message in findings:
            checks.append(Check("hardening", "catalogue", w.file, FAIL, f"{w.kind}/{w.name}: {message}", ids))
        waivers = [f"{k.removeprefix(WAIVER)} ({v})" for k, v in ((w.doc.get("metadata") or {}).get("annotations") or {}).items()
                   if k.startswith(WAIVER)]
        if not findings:
            note = f"; waived: {', '.join(waivers)}" if waivers else ""
            checks.append(Check("hardening", "catalogue", w.file, PASS,
                                f"{w.kind}/{w.name}: probes, resources, non-root, read-only root, no privilege escalation, "
                                f"capabilities, seccomp, fixed image tag, availability{note}"))
    checks += bundle_rules(bundle, workloads)
    return checks
