"""The original command's serving pattern, as written: a pydantic body and a synchronous
``session.run`` inside ``async def`` (it blocks the event loop for the whole inference).

Run: python bench/server_naive.py MODEL PORT
"""

from __future__ import annotations

import sys

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel

session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
INPUT = session.get_inputs()[0]
SHAPE = [1] + [int(d) for d in INPUT.shape[1:]]
MODEL_VERSION = "1"

app = FastAPI()


class PredictRequest(BaseModel):
    inputs: list[float]


@app.post("/predict")
async def predict(data: PredictRequest) -> dict:
    input_data = np.array(data.inputs, dtype=np.float32).reshape(SHAPE)
    outputs = session.run(None, {INPUT.name: input_data})
    return {"prediction": outputs[0].tolist()}


@app.get("/health")
async def health() -> dict:
    return {"status": "healthy", "model_version": MODEL_VERSION}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False)
