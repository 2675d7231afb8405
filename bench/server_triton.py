"""Triton Inference Server as a benchmark peer: PyTriton (PyPI ``nvidia-pytriton``, which bundles
the server) binding one onnxruntime session, one model instance, Triton's dynamic batcher.

The bundled server has only the Python backend (no onnxruntime backend), so the model runs in a
Python callable: Triton's C++ front end parses HTTP and JSON, batches, and hands the batch to
this process. Runs in its own venv (bench/.venv-triton, see bench/README.md), never the
project's:

    bench/.venv-triton/bin/python bench/server_triton.py MODEL.onnx PORT [--threads 1]

Serves ``/v2/models/m/infer`` (KServe V2: JSON and the binary tensor extension) on 127.0.0.1:PORT.
"""

from __future__ import annotations

import argparse
import os
import socket
import sysconfig

import numpy as np
import onnxruntime as ort
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

MAX_BATCH = 32  # the product's default --max-batch-size
DELAY_US = 1000  # the product's default --max-batch-delay-ms (1.0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("port", type=int)
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    args = ap.parse_args()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(args.model, opts, providers=["CPUExecutionProvider"])
    (inp,) = sess.get_inputs()
    (out,) = sess.get_outputs()
    shape = tuple(int(d) for d in inp.shape[1:])

    @batch
    def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        (y,) = sess.run(None, {inp.name: inputs[inp.name]})
        return {out.name: y}

    config = TritonConfig(
        http_address="127.0.0.1",
        http_port=args.port,
        # gRPC and metrics are on by default; free ports keep them out of the others' way.
        grpc_address="127.0.0.1",
        grpc_port=_free_port(),
        metrics_port=_free_port(),
        log_verbose=0,
    )
    # The Python backend's stub links libpython3.X.so by soname; the system's copy may be an older
    # patch release than this interpreter's standard library (Debian's 3.11.2 under pyenv's
    # 3.11.7: "'_thread.RLock' object has no attribute '_recursion_count'"), so put this
    # interpreter's own library first.
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    os.environ["LD_LIBRARY_PATH"] = ":".join(
        p for p in (libdir, os.environ.get("LD_LIBRARY_PATH", "")) if p
    )
    with Triton(config=config) as triton:
        triton.bind(
            model_name="m",
            infer_func=infer,  # one callable: one model instance
            inputs=[Tensor(name=inp.name, dtype=np.float32, shape=shape)],
            outputs=[Tensor(name=out.name, dtype=np.float32, shape=(-1,))],
            config=ModelConfig(
                max_batch_size=MAX_BATCH,
                batcher=DynamicBatcher(max_queue_delay_microseconds=DELAY_US),
            ),
            strict=False,
        )
        triton.serve()


if __name__ == "__main__":
    main()
