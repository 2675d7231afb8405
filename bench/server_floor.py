"""The HTTP floor: the same web stack (FastAPI + uvicorn with uvloop/httptools) reading the
request body and answering a constant. No model, no parsing: the most any server on this stack
can do per request. With --parse it also parses the body with orjson (the JSON floor).

Run: python bench/server_floor.py PORT [--parse]
"""

from __future__ import annotations

import sys

import orjson
import uvicorn
from fastapi import FastAPI, Request, Response

app = FastAPI()
ANSWER = b'{"prediction":[0.0]}'
PARSE = "--parse" in sys.argv[2:]


@app.post("/{path:path}")
async def answer(request: Request) -> Response:
    body = await request.body()
    if PARSE:
        orjson.loads(body)
    return Response(ANSWER, media_type="application/json")


@app.get("/health")
async def health() -> dict:
    return {"status": "healthy"}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
