"""The Open Inference Protocol gRPC messages and stub, built from the reference server's service
definition in a descriptor pool of their own.

Why not import onnxserve's generated modules: they register the package `inference` in
protobuf's default pool, which holds a package once per process, so a process that already loaded
another client of the protocol (tritonclient registers the same package) could not load them. The
serialized definition is read out of the generated file (never executed), and nothing of the
server is imported.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pool, message_factory

GENERATED = Path(__file__).resolve().parents[3] / "reference-server" / "src" / "onnxserve" / "grpc_api" / "inference_pb2.py"
PACKAGE = "inference"
SERVICE = f"{PACKAGE}.GRPCInferenceService"


@functools.cache
def _pool() -> descriptor_pool.DescriptorPool:
    tree = ast.parse(GENERATED.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "AddSerializedFile" and node.args
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, bytes)):
            pool = descriptor_pool.DescriptorPool()
            pool.AddSerializedFile(node.args[0].value)
            return pool
    raise RuntimeError(f"{GENERATED} holds no serialized service definition (regenerate the gRPC code)")


class _Messages:
    """`messages.ModelInferRequest(...)`: each message class of the package, by name."""

    def __getattr__(self, name: str) -> Any:
        return message_factory.GetMessageClass(_pool().FindMessageTypeByName(f"{PACKAGE}.{name}"))


messages = _Messages()


class Stub:
    """The service's unary methods on a channel (sync or asyncio), as the generated stub has them."""

    def __init__(self, channel: Any) -> None:
        for method in _pool().FindServiceByName(SERVICE).methods:
            request = message_factory.GetMessageClass(method.input_type)
            response = message_factory.GetMessageClass(method.output_type)
            setattr(self, method.name, channel.unary_unary(
                f"/{SERVICE}/{method.name}",
                request_serializer=request.SerializeToString,
                response_deserializer=response.FromString,
            ))
