"""LitServe with its dynamic batching, serving the same ONNX model on CPU.

Run: python bench/server_litserve.py MODEL PORT
"""

from __future__ import annotations

import sys

import litserve as ls
import numpy as np
import onnxruntime as ort

MODEL = sys.argv[1]


class OnnxAPI(ls.LitAPI):
    def setup(self, device: str) -> None:
        self.session = ort.InferenceSession(MODEL, providers=["CPUExecutionProvider"])
        inp = self.session.get_inputs()[0]
        self.name = inp.name
        self.shape = [int(d) for d in inp.shape[1:]]

    def decode_request(self, request: dict) -> np.ndarray:
        return np.asarray(request["inputs"], dtype=np.float32).reshape(self.shape)

    def batch(self, inputs: list[np.ndarray]) -> np.ndarray:
        return np.stack(inputs)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.name: x})[0]

    def unbatch(self, output: np.ndarray) -> list[np.ndarray]:
        return list(output)

    def encode_response(self, output: np.ndarray) -> dict:
        return {"prediction": output.tolist()}


if __name__ == "__main__":
    api = OnnxAPI(max_batch_size=32, batch_timeout=0.002)
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=1)
    server.run(
        host="127.0.0.1",
        port=int(sys.argv[2]),
        log_level="warning",
        generate_client_file=False,
        num_api_servers=1,
    )
