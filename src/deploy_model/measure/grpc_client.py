"""Open Inference Protocol V2 over gRPC for smoke and loadtest: requests from arrays, answers as V2 dicts.

The messages come from the server's service definition in a pool of their own (grpc_messages);
the callers import this module lazily: it is only loaded for a plan whose protocol is grpc.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

import grpc
import numpy as np

from deploy_model.measure.binary_body import raw_tensor
from deploy_model.measure.grpc_messages import Stub
from deploy_model.measure.grpc_messages import messages as pb
from deploy_model.model.samples import V2_TO_NUMPY

# Big images and batches fit; the server's own limit is --max-request-bytes.
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
CHANNEL_OPTIONS = [("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                   ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)]


def channel(target: str) -> grpc.Channel:
    return grpc.insecure_channel(target, options=CHANNEL_OPTIONS)


def aio_channel(target: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)


def stub(chan: grpc.Channel | grpc.aio.Channel) -> Any:
    return Stub(chan)


def infer_request(model_name: str, arrays: Mapping[str, np.ndarray]) -> Any:
    """A ModelInferRequest carrying each input as raw_input_contents (as tritonclient sends them)."""
    request = pb.ModelInferRequest(model_name=model_name)
    for name, array in arrays.items():
        datatype, raw = raw_tensor(array)
        request.inputs.add(name=name, datatype=datatype, shape=list(np.asarray(array).shape))
        request.raw_input_contents.append(raw)
    return request


def entries_request(model_name: str, entries: list[dict[str, Any]]) -> Any:
    """A ModelInferRequest from V2 JSON input entries (name, shape, datatype, data), even ill-typed ones."""
    request = pb.ModelInferRequest(model_name=model_name)
    for entry in entries:
        request.inputs.add(name=entry["name"], datatype=entry["datatype"], shape=list(entry["shape"]))
        if entry["datatype"] == "BYTES":
            parts = [str(v).encode() for v in entry["data"]]
            raw = b"".join(struct.pack("<I", len(p)) + p for p in parts)
        else:
            raw = np.asarray(entry["data"], dtype=V2_TO_NUMPY[entry["datatype"]]).tobytes()
        request.raw_input_contents.append(raw)
    return request


def tensor_dicts(tensors: Any) -> dict[str, dict[str, Any]]:
    """Metadata tensors (name, datatype, shape) as the V2 REST dicts."""
    return {t.name: {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in tensors}


def metadata_dict(reply: Any) -> dict[str, Any]:
    """A ModelMetadataResponse as the REST metadata body."""
    return {"name": reply.name, "versions": list(reply.versions), "platform": reply.platform,
            "inputs": list(tensor_dicts(reply.inputs).values()), "outputs": list(tensor_dicts(reply.outputs).values())}


def output_dicts(reply: Any) -> dict[str, dict[str, Any]]:
    """A ModelInferResponse's outputs as V2 JSON dicts (data as a flat list), raw or typed contents."""
    out = {}
    for index, tensor in enumerate(reply.outputs):
        shape = [int(d) for d in tensor.shape]
        if index < len(reply.raw_output_contents):
            raw = reply.raw_output_contents[index]
            if tensor.datatype == "BYTES":
                data, at = [], 0
                while at + 4 <= len(raw):
                    (size,) = struct.unpack_from("<I", raw, at)
                    data.append(raw[at + 4:at + 4 + size].decode(errors="replace"))
                    at += 4 + size
            else:
                dtype = V2_TO_NUMPY.get(tensor.datatype)
                data = np.frombuffer(raw, dtype=dtype).tolist() if dtype is not None else []
        else:
            contents = tensor.contents
            field = next((f.name for f, _ in contents.ListFields()), None)
            data = list(getattr(contents, field)) if field else []
        out[tensor.name] = {"name": tensor.name, "datatype": tensor.datatype, "shape": shape, "data": data}
    return out
