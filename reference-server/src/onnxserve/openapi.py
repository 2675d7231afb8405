"""The OpenAPI 3.0 document of the REST API, served at ``/openapi.json`` and ``/v2/openapi.json``.

Written by hand from what the routes accept and answer (they decode bodies themselves, so
FastAPI could not infer it): the V2 inference request and response bodies, the binary tensor
extension's header, /predict, health, metadata, configuration, statistics and /metrics. Every
error is ``{"error": message}``. Fuzzers (schemathesis) and client generators read it.
"""

from __future__ import annotations

from typing import Any

from . import __version__
from .datatypes import V2_TO_NUMPY

_ERROR_CODES = {
    "400": "malformed request: the message names what was received and what was expected",
    "404": "unknown model or version",
    "408": "the request body did not arrive within --body-timeout-s",
    "413": "body (or its inflated size) larger than --max-request-bytes",
    "415": "unsupported Content-Type or Content-Encoding",
    "503": "model loading, draining, or queue full (Retry-After)",
    "504": "inference did not finish within --request-timeout-ms",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _errors(*codes: str) -> dict[str, Any]:
    return {c: {"description": _ERROR_CODES[c], **_json_body(_ref("Error"))} for c in codes}


def _get(summary: str, schema: dict[str, Any], *errors: str, ok: str = "200") -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "responses": {ok: {"description": "OK", **_json_body(schema)}, **_errors(*errors)},
        }
    }


def openapi_document(model_name: str, model_version: str) -> dict[str, Any]:
    name_param = {
        "name": "name",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "example": model_name,
    }
    version_param = {
        "name": "version",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "example": model_version,
    }
    infer_errors = _errors("400", "404", "408", "413", "415", "503", "504")
    infer = {
        "post": {
            "summary": "V2 inference (JSON, or the binary tensor extension)",
            "parameters": [
                {
                    "name": "Inference-Header-Content-Length",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 0},
                    "description": "binary extension: bytes of the JSON header before the data",
                }
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": _ref("InferenceRequest")},
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                },
            },
            "responses": {
                "200": {
                    "description": "outputs (binary ones after the JSON header when asked for)",
                    "content": {
                        "application/json": {"schema": _ref("InferenceResponse")},
                        "application/octet-stream": {
                            "schema": {"type": "string", "format": "binary"}
                        },
                    },
                },
                **infer_errors,
            },
        }
    }
    tensor_data = {
        "description": "values, flat or nested, row-major; strings for BYTES",
        "oneOf": [
            {"type": "array", "items": {}},
            {"type": "number"},
            {"type": "string"},
            {"type": "boolean"},
        ],
    }
    parameters = {"type": "object", "additionalProperties": True}
    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {"type": "string"}},
        },
        "RequestInput": {
            "type": "object",
            "required": ["name", "shape", "datatype"],
            "properties": {
                "name": {"type": "string"},
                "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                "datatype": {"type": "string", "enum": sorted(V2_TO_NUMPY)},
                "parameters": {
                    "type": "object",
                    "properties": {"binary_data_size": {"type": "integer", "minimum": 0}},
                    "additionalProperties": True,
                },
                "data": tensor_data,
            },
        },
        "RequestOutput": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string"},
                "parameters": {
                    "type": "object",
                    "properties": {"binary_data": {"type": "boolean"}},
                    "additionalProperties": True,
                },
            },
        },
        "InferenceRequest": {
            "type": "object",
            "required": ["inputs"],
            "properties": {
                "id": {"type": "string"},
                "parameters": {
                    "type": "object",
                    "properties": {"binary_data_output": {"type": "boolean"}},
                    "additionalProperties": True,
                },
                "inputs": {"type": "array", "minItems": 1, "items": _ref("RequestInput")},
                "outputs": {"type": "array", "items": _ref("RequestOutput")},
            },
        },
        "ResponseOutput": {
            "type": "object",
            "required": ["name", "shape", "datatype"],
            "properties": {
                "name": {"type": "string"},
                "shape": {"type": "array", "items": {"type": "integer"}},
                "datatype": {"type": "string"},
                "parameters": parameters,
                "data": tensor_data,
            },
        },
        "InferenceResponse": {
            "type": "object",
            "required": ["model_name", "outputs"],
            "properties": {
                "model_name": {"type": "string"},
                "model_version": {"type": "string"},
                "id": {"type": "string"},
                "outputs": {"type": "array", "items": _ref("ResponseOutput")},
            },
        },
        "PredictRequest": {
            "description": "{input name: values} (one sample or a batch); a one-input model also "
            "takes {inputs: values}, {instances: values} or a bare list",
            "oneOf": [{"type": "object", "additionalProperties": True}, {"type": "array"}],
        },
        "PredictResponse": {
            "type": "object",
            "required": ["prediction", "model_version"],
            "properties": {
                "prediction": {},
                "model_version": {"type": "string"},
                "outputs": {"type": "object", "additionalProperties": True},
            },
        },
        "ServerMetadata": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "version": {"type": "string"},
                "extensions": {"type": "array", "items": {"type": "string"}},
            },
        },
        "ModelMetadata": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "versions": {"type": "array", "items": {"type": "string"}},
                "platform": {"type": "string"},
                "inputs": {"type": "array", "items": {"type": "object"}},
                "outputs": {"type": "array", "items": {"type": "object"}},
                "parameters": parameters,
            },
        },
        "Ready": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
        "Live": {"type": "object", "properties": {"live": {"type": "boolean"}}},
        "ModelConfig": {"type": "object", "additionalProperties": True},
        "Statistics": {
            "type": "object",
            "properties": {"model_stats": {"type": "array", "items": {"type": "object"}}},
        },
        "Health": {"type": "object", "additionalProperties": True},
        "FeedbackItem": {
            "type": "object",
            "required": ["id", "label"],
            "properties": {
                "id": {"type": "string", "description": "the answered request's id"},
                "label": {"description": "the true value (a list, one per row, for a batch)"},
            },
        },
        "FeedbackResult": {
            "type": "object",
            "properties": {
                "model_name": {"type": "string"},
                "model_version": {"type": "string"},
                "track": {"type": "string"},
                "received": {"type": "integer"},
                "outcomes": {"type": "object", "additionalProperties": {"type": "integer"}},
            },
        },
    }
    feedback = {
        "post": {
            "summary": "ground truth for earlier answers, by request id (404 when feedback is off)",
            "requestBody": {
                "required": True,
                **_json_body(
                    {
                        "oneOf": [
                            _ref("FeedbackItem"),
                            {"type": "array", "items": _ref("FeedbackItem")},
                        ]
                    }
                ),
            },
            "responses": {
                "200": {"description": "OK", **_json_body(_ref("FeedbackResult"))},
                **_errors("400", "404", "408", "413"),
            },
        }
    }
    model = "/v2/models/{name}"
    versioned = "/v2/models/{name}/versions/{version}"
    paths: dict[str, Any] = {
        "/v2": _get("server metadata", _ref("ServerMetadata")),
        "/v2/health/live": _get("liveness", _ref("Live")),
        "/v2/health/ready": _get("readiness (503 while loading or draining)", _ref("Ready")),
        "/v2/models/stats": _get("statistics of every model", _ref("Statistics")),
        "/health": _get(
            "the original command's health document (503 unless healthy)", _ref("Health")
        ),
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {
                        "description": "text",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/predict": {
            "post": {
                "summary": "simple prediction",
                "requestBody": {"required": True, **_json_body(_ref("PredictRequest"))},
                "responses": {
                    "200": {"description": "OK", **_json_body(_ref("PredictResponse"))},
                    **_errors("400", "408", "413", "415", "503", "504"),
                },
            }
        },
    }
    for base, params in ((model, [name_param]), (versioned, [name_param, version_param])):
        paths[base] = {
            "parameters": params,
            **_get("model metadata", _ref("ModelMetadata"), "404", "503"),
        }
        paths[base + "/ready"] = {
            "parameters": params,
            **_get("model readiness", _ref("Ready"), "404"),
        }
        paths[base + "/config"] = {
            "parameters": params,
            **_get("model configuration", _ref("ModelConfig"), "404", "503"),
        }
        paths[base + "/stats"] = {
            "parameters": params,
            **_get("model statistics", _ref("Statistics"), "404"),
        }
        paths[base + "/infer"] = {"parameters": params, **infer}
        paths[base + "/feedback"] = {"parameters": params, **feedback}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "onnxserve (Open Inference Protocol V2 REST)",
            "version": __version__,
            "description": f"Serves model {model_name!r} version {model_version!r}.",
        },
        "paths": paths,
        "components": {"schemas": schemas},
    }
