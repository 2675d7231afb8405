"""Regenerate inference_pb2.py / inference_pb2_grpc.py from inference.proto (needs grpcio-tools).

The generated modules are shipped so the server needs only grpcio and protobuf at run time.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main() -> int:
    from grpc_tools import protoc

    here = Path(__file__).resolve().parent
    proto = str(here / "inference.proto")
    args = ["protoc", f"-I{here}", f"--python_out={here}", f"--grpc_python_out={here}", proto]
    code = protoc.main(args)
    if code == 0:
        # protoc emits an absolute import; make it relative so the package can live anywhere.
        stub = here / "inference_pb2_grpc.py"
        text = stub.read_text().replace("import inference_pb2 as", "from . import inference_pb2 as")
        stub.write_text(text)
    return code


if __name__ == "__main__":
    sys.exit(main())
