"""The V2 metadata bodies both front ends answer with: server metadata, model parameters, config."""

from __future__ import annotations

from typing import Any

from . import __version__
from .model import ModelSpec

# The V2 extensions both front ends implement (gRPC adds grpc_health_v1, REST the binary one).
EXTENSIONS = ["model_configuration", "statistics"]


def server_metadata(*extra_extensions: str) -> dict[str, Any]:
    return {
        "name": "onnxserve",
        "version": __version__,
        "extensions": [*extra_extensions, *EXTENSIONS],
    }


def model_extra_parameters(spec: ModelSpec) -> dict[str, Any]:
    """Metadata parameters that tell a client how to read the outputs (REST and gRPC alike)."""
    extra: dict[str, Any] = {"batch_dim": spec.batching}
    if not spec.batching and spec.unbatched_reason:
        extra["unbatched_reason"] = spec.unbatched_reason
    if spec.map_outputs:
        # BYTES outputs holding one JSON object ({class: probability}) per row.
        extra["json_map_outputs"] = ",".join(sorted(spec.map_outputs))
    return extra


def model_config(spec: ModelSpec, max_batch_delay_ms: float) -> dict[str, Any]:
    """The model configuration extension's body (REST /config and gRPC ModelConfig alike):
    dims without the batch dimension when the model batches, as max_batch_size > 0 says."""

    def dims(t: Any) -> list[int]:
        shape = t.v2_shape()
        return shape[1:] if spec.batching else shape

    def config_type(datatype: str) -> str:
        return "TYPE_STRING" if datatype == "BYTES" else "TYPE_" + datatype

    return {
        "name": spec.name,
        "platform": "onnxruntime_onnx",
        "backend": "onnxruntime",
        "max_batch_size": spec.max_batch_size if spec.batching else 0,
        "input": [
            {"name": t.name, "data_type": config_type(t.datatype), "dims": dims(t)}
            for t in spec.inputs
        ],
        "output": [
            {"name": t.name, "data_type": config_type(t.datatype), "dims": dims(t)}
            for t in spec.outputs
        ],
        "dynamic_batching": {"max_queue_delay_microseconds": int(max_batch_delay_ms * 1000)}
        if spec.dynamic_batching
        else None,
    }
