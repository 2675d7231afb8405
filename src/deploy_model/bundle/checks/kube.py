"""Kubernetes manifests: kubernetes-validate (strict) for built-in kinds, structural schemas for CRDs.

kubernetes-validate ships the OpenAPI schemas of every Kubernetes release but none for custom
resources. For the custom resources the bundle renders, the schemas below state the fields their
CRDs define at the levels we write, with unknown fields refused, so a misspelled field fails
here as it would at `kubectl apply --validate=strict`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate.utils as kv

from deploy_model.bundle.checks import FAIL, PASS, Check

STR: dict[str, Any] = {"type": "string", "minLength": 1}
INT: dict[str, Any] = {"type": "integer"}
NUM: dict[str, Any] = {"type": "number"}
ANY: dict[str, Any] = {}
STRMAP: dict[str, Any] = {"type": "object", "additionalProperties": {"type": "string"}}


def obj(required: dict[str, Any], optional: dict[str, Any] | None = None, open_: bool = False) -> dict[str, Any]:
    props = {**required, **(optional or {})}
    schema: dict[str, Any] = {"type": "object", "properties": props, "required": list(required)}
    if not open_:
        schema["additionalProperties"] = False
    return schema


def arr(item: dict[str, Any], min_items: int = 1) -> dict[str, Any]:
    return {"type": "array", "items": item, "minItems": min_items}


METADATA = obj({"name": STR}, {"namespace": STR, "labels": STRMAP, "annotations": STRMAP})
BACKEND = obj({"name": STR, "port": INT}, {"weight": {"type": "integer", "minimum": 0, "maximum": 1000000},
                                           "namespace": STR, "kind": STR, "group": {"type": "string"}})
MATCH = obj({}, {"path": obj({"value": STR}, {"type": {"enum": ["Exact", "PathPrefix", "RegularExpression"]}}),
                 "headers": arr(obj({"name": STR, "value": STR}, {"type": {"enum": ["Exact", "RegularExpression"]}})),
                 "method": STR})
HTTPROUTE = obj({"parentRefs": arr(obj({"name": STR}, {"namespace": STR, "sectionName": STR, "kind": STR, "group": STR})),
                 "rules": arr(obj({}, {
                     "matches": arr(MATCH),
                     "backendRefs": arr(BACKEND),
                     "filters": arr(obj({"type": {"enum": ["RequestMirror", "RequestHeaderModifier", "ResponseHeaderModifier",
                                                            "RequestRedirect", "URLRewrite", "ExtensionRef"]}},
                                        {"requestMirror": obj({"backendRef": BACKEND},
                                                              {"percent": {"type": "integer", "minimum": 0, "maximum": 100},
                                                               "fraction": obj({"numerator": INT}, {"denominator": INT})})})),
                 }))},
                {"hostnames": arr(STR)})
MIRROR = obj({"type": {"const": "RequestMirror"}}, {"requestMirror": obj({"backendRef": BACKEND}, {
    "percent": {"type": "integer", "minimum": 0, "maximum": 100}, "fraction": obj({"numerator": INT}, {"denominator": INT})})})
GRPC_MATCH = obj({}, {"method": obj({}, {"service": STR, "method": STR, "type": {"enum": ["Exact", "RegularExpression"]}}),
                      "headers": arr(obj({"name": STR, "value": STR}, {"type": {"enum": ["Exact", "RegularExpression"]}}))})
GRPCROUTE = obj({"parentRefs": arr(obj({"name": STR}, {"namespace": STR, "sectionName": STR, "kind": STR, "group": STR})),
                 "rules": arr(obj({}, {"matches": arr(GRPC_MATCH), "backendRefs": arr(BACKEND), "filters": arr(MIRROR)}))},
                {"hostnames": arr(STR)})
DESTINATION = obj({"host": STR}, {"subset": STR, "port": obj({"number": INT})})
VIRTUALSERVICE = obj({"hosts": arr(STR), "http": arr(obj({"route": arr(obj({"destination": DESTINATION}, {"weight": INT}))}, {
    "mirror": DESTINATION,
    "mirrorPercentage": obj({"value": {"type": "number", "minimum": 0, "maximum": 100}}),
    "match": arr(ANY), "timeout": STR, "retries": ANY, "name": STR,
}))}, {"gateways": arr(STR)})
STEP = {"type": "object", "minProperties": 1, "maxProperties": 1, "additionalProperties": False, "properties": {
    "setWeight": {"type": "integer", "minimum": 0, "maximum": 100},
    "pause": obj({}, {"duration": {"type": ["string", "integer"]}}),
    "analysis": obj({"templates": arr(obj({"templateName": STR}))}),
}}
POD_TEMPLATE = obj({"spec": {"type": "object", "required": ["containers"]}}, {"metadata": ANY})
ROLLOUT = obj({"selector": obj({"matchLabels": STRMAP}), "template": POD_TEMPLATE,
               "strategy": obj({}, {"canary": obj({"steps": arr(STEP)}, {
                   "stableService": STR, "canaryService": STR, "maxUnavailable": {"type": ["integer", "string"]},
                   "maxSurge": {"type": ["integer", "string"]}, "stableMetadata": obj({"labels": STRMAP}),
                   "canaryMetadata": obj({"labels": STRMAP}), "trafficRouting": ANY,
                   "analysis": obj({"templates": arr(obj({"templateName": STR}))}, {"startingStep": INT, "args": ANY}),
               }), "blueGreen": ANY})},
              {"replicas": INT, "revisionHistoryLimit": INT, "minReadySeconds": INT})
ANALYSIS = obj({"metrics": arr(obj({"name": STR, "provider": obj({"prometheus": obj({"address": STR, "query": STR})})}, {
    "interval": STR, "count": INT, "failureLimit": INT, "inconclusiveLimit": INT, "consecutiveErrorLimit": INT,
    "successCondition": STR, "failureCondition": STR, "initialDelay": STR}))}, {"args": ANY})
SERVICEMONITOR = obj({"selector": obj({"matchLabels": STRMAP}), "endpoints": arr(obj({}, {
    "port": STR, "targetPort": {"type": ["integer", "string"]}, "path": STR, "interval": STR, "scrapeTimeout": STR,
    "scheme": STR, "relabelings": ANY, "metricRelabelings": ANY}))},
    {"namespaceSelector": obj({}, {"matchNames": arr(STR), "any": {"type": "boolean"}}), "podTargetLabels": arr(STR),
     "targetLabels": arr(STR), "jobLabel": STR})
PODMONITOR = obj({"selector": obj({"matchLabels": STRMAP}), "podMetricsEndpoints": arr(obj({}, {
    "port": STR, "targetPort": {"type": ["integer", "string"]}, "path": STR, "interval": STR, "scrapeTimeout": STR,
    "scheme": STR, "relabelings": arr(obj({}, {"sourceLabels": arr(STR), "targetLabel": STR, "regex": STR, "action": STR,
                                                "replacement": STR, "separator": STR})), "metricRelabelings": ANY}))},
    {"namespaceSelector": obj({}, {"matchNames": arr(STR), "any": {"type": "boolean"}}), "podTargetLabels": arr(STR),
     "jobLabel": STR})
PROMRULE = obj({"groups": arr(obj({"name": STR, "rules": arr(obj({"expr": STR}, {
    "alert": STR, "record": STR, "for": STR, "labels": STRMAP, "annotations": STRMAP}))}, {"interval": STR}))})
INFERENCESERVICE = obj({"predictor": obj({"containers": arr(obj({"name": STR, "image": STR}, open_=True))}, {
    "minReplicas": INT, "maxReplicas": INT, "canaryTrafficPercent": {"type": "integer", "minimum": 0, "maximum": 100},
    "serviceAccountName": STR, "timeout": INT, "labels": STRMAP, "annotations": STRMAP, "scaleTarget": INT,
    "scaleMetric": STR})}, {"transformer": ANY, "explainer": ANY})
KNATIVE = obj({"template": obj({"spec": {"type": "object", "required": ["containers"]}}, {"metadata": ANY})}, {"traffic": ANY})

SCALEDOBJECT = obj({"scaleTargetRef": obj({"name": STR}, {"kind": STR, "apiVersion": STR}),
                    "triggers": arr(obj({"type": STR, "metadata": STRMAP},
                                        {"authenticationRef": obj({"name": STR}, {"kind": STR}), "name": STR,
                                         "metricType": {"enum": ["AverageValue", "Value", "Utilization"]}}))},
                   {"minReplicaCount": INT, "maxReplicaCount": INT, "pollingInterval": INT, "cooldownPeriod": INT,
                    "idleReplicaCount": INT, "fallback": ANY, "advanced": ANY})
TRIGGERAUTH = obj({"secretTargetRef": arr(obj({"parameter": STR, "name": STR, "key": STR}))}, {"env": ANY})

CUSTOM: dict[tuple[str, str], dict[str, Any]] = {
    ("keda.sh/v1alpha1", "ScaledObject"): SCALEDOBJECT,
    ("keda.sh/v1alpha1", "TriggerAuthentication"): TRIGGERAUTH,
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): HTTPROUTE,
    ("gateway.networking.k8s.io/v1", "GRPCRoute"): GRPCROUTE,
    ("monitoring.coreos.com/v1", "PodMonitor"): PODMONITOR,
    ("networking.istio.io/v1", "VirtualService"): VIRTUALSERVICE,
    ("argoproj.io/v1alpha1", "Rollout"): ROLLOUT,
    ("argoproj.io/v1alpha1", "AnalysisTemplate"): ANALYSIS,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SERVICEMONITOR,
    ("monitoring.coreos.com/v1", "PrometheusRule"): PROMRULE,
    ("serving.knative.dev/v1", "Service"): KNATIVE,
    ("serving.kserve.io/v1beta1", "InferenceService"): INFERENCESERVICE,
}


def custom_schema(api_version: str, kind: str) -> dict[str, Any] | None:
    spec = CUSTOM.get((api_version, kind))
    if spec is None:
        return None
    return obj({"apiVersion": {"const": api_version}, "kind": {"const": kind}, "metadata": METADATA, "spec": spec})


def _where(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


def check_document(doc: Any, file: str, version: str) -> Check:
    """One document: built-in kinds against the Kubernetes schema, custom ones structurally."""
    if not isinstance(doc, dict) or "apiVersion" not in doc or "kind" not in doc:
        return Check("kubernetes-schema", "kubernetes-validate", file, FAIL, "document without apiVersion and kind")
    name = (doc.get("metadata") or {}).get("name", "?")
    label = f"{doc['kind']}/{name}"
    schema = custom_schema(str(doc["apiVersion"]), str(doc["kind"]))
    if schema is not None:
        errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(doc), key=lambda e: list(e.absolute_path))
        if errors:
            return Check("custom-resources", "structural schema", file, FAIL,
                         f"{label}: " + "; ".join(f"{_where(e)}: {e.message}" for e in errors[:5]))
        return Check("custom-resources", "structural schema", file, PASS, f"{label}: fields match the {doc['apiVersion']} CRD")
    try:
        used = kv.validate(doc, version, strict=True)
    except kv.SchemaNotFoundError as exc:
        return Check("kubernetes-schema", "kubernetes-validate", file, FAIL,
                     f"{label}: {exc.message}, and no structural check knows it")
    except kv.ValidationError as exc:
        return Check("kubernetes-schema", "kubernetes-validate", file, FAIL,
                     f"{label}: {'.'.join(str(p) for p in exc.path) or '(top level)'}: {exc.message} (Kubernetes {exc.version}, strict)")
    except kv.VersionNotSupportedError as exc:
        return Check("kubernetes-schema", "kubernetes-validate", file, FAIL, exc.message)
    return Check("kubernetes-schema", "kubernetes-validate", file, PASS, f"{label}: valid for Kubernetes {used} (strict)")


def check_files(docs_by_file: dict[str, list[Any]], version: str) -> list[Check]:
    checks: list[Check] = []
    for file, docs in docs_by_file.items():
        for doc in docs:
            checks.append(check_document(doc, file, version))
    return checks


def manifest_files(root: Path) -> list[Path]:
    """Every Kubernetes manifest of a bundle (k8s/, batch/, and the operator objects of monitoring/)."""
    files = sorted((root / "k8s").glob("*.yaml")) + sorted((root / "batch").glob("*.yaml"))
    files += [p for p in sorted((root / "monitoring").glob("*.yaml"))]
    return files
