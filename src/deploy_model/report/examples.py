"""The example requests of DEPLOYMENT.md: curl (V2 and /predict), Python `requests`, and the
tritonclient HTTP and gRPC clients, all built from ONE set of input values so every snippet sends
the same shapes.

The values are the user's sample (its first row) when the profile has one, else the synthetic
inputs the other stages use. Small inputs are written inline; larger ones go to request-v2.json in
the deployment directory, which every snippet then reads by its path (so the snippets work from
any directory). 0-d inputs are `np.array(value, dtype=...)` (shape []), strings are BYTES.

Inputs above binary_body.BINARY_ABOVE_BYTES of tensor data are sent as clients send them, with the
V2 binary tensor extension: the curl example posts a binary file a short Python step builds from
request-v2.json (`--data-binary`), and the `requests` example builds the same body in memory.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from deploy_model.common.errors import StageError
from deploy_model.measure.binary_body import BINARY_TYPE, HEADER_LENGTH, rest_encoding
from deploy_model.model.samples import model_feed, v2_datatype
from deploy_model.model.synthetic import make_inputs
from deploy_model.report.shell import q, sh

REQUEST_FILE = "request-v2.json"
BINARY_FILE = "request-v2.bin"  # written by the curl example's Python step, not by the report
# struct codes of the V2 datatypes (little-endian), so the binary step needs no numpy.
STRUCT_CODES = {"BOOL": "?", "UINT8": "B", "UINT16": "H", "UINT32": "I", "UINT64": "Q", "INT8": "b", "INT16": "h",
                "INT32": "i", "INT64": "q", "FP16": "e", "FP32": "f", "FP64": "d"}
# Inline example data only when it stays readable; bigger inputs go to request-v2.json.
INLINE_VALUES = 64
EXAMPLE_HOST = "127.0.0.1"


def example_arrays(profile: dict[str, Any], directory: Path | None) -> tuple[dict[str, np.ndarray], str]:
    """One row of inputs, floats rounded to 4 decimals (readable, and the same in every snippet)."""
    try:
        arrays, source = model_feed(profile, directory, batch=1, seed=42)
    except StageError:  # a recorded sample that no longer fits: the report still needs an example
        arrays, source = make_inputs(profile["inputs"], batch=1, seed=42), "synthetic"
    out = {}
    for name, array in arrays.items():
        array = np.asarray(array)
        if array.dtype.kind == "f":
            array = np.round(array.astype(np.float64), 4).astype(array.dtype)
        out[name] = array
    return out, source


def _plain(array: np.ndarray) -> Any:
    """Python values of an array, nested like it (a scalar for 0-d); floats without float32 noise."""
    if array.dtype.kind == "f":
        return np.round(array.astype(np.float64), 4).tolist()
    if array.dtype.kind in ("U", "S", "O"):
        return np.vectorize(str, otypes=[object])(array).tolist() if array.ndim else str(array.item())
    return array.tolist()


def _numpy_dtype(array: np.ndarray) -> str:
    """How the snippet names the dtype: `object` for strings, np.<name> otherwise."""
    if array.dtype.kind in ("U", "S", "O"):
        return "object"
    return f"np.{array.dtype.name}"


def _datatype(array: np.ndarray) -> str:
    return "BYTES" if array.dtype.kind in ("U", "S", "O") else v2_datatype(array.dtype.name)


def v2_body(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    return {"inputs": [{"name": name, "shape": list(a.shape), "datatype": _datatype(a),
                        "data": np.asarray(_plain(a), dtype=object).ravel().tolist() if a.ndim else [_plain(a)]}
                       for name, a in arrays.items()]}


def _identifier(name: str) -> str:
    return re.sub(r"\W", "_", name)


def _inputs_literal(arrays: dict[str, np.ndarray], request_path: str | None) -> list[str]:
    """Python lines defining `inputs` (name -> numpy array) and `DATATYPES` (name -> V2 datatype)."""
    datatypes = {name: _datatype(a) for name, a in arrays.items()}
    lines = [f"DATATYPES = {json.dumps(datatypes)}"]
    if request_path is None:
        lines.append("inputs = {")
        for name, a in arrays.items():
            lines.append(f"    {json.dumps(name)}: np.array({_plain(a)!r}, dtype={_numpy_dtype(a)}),  # shape {list(a.shape)}")
        lines.append("}")
    else:
        dtypes = {name: ("object" if _numpy_dtype(a) == "object" else a.dtype.name) for name, a in arrays.items()}
        lines += [
            f"# the values ({', '.join(f'{n} {list(a.shape)}' for n, a in arrays.items())}) are in {request_path}",
            f"with open({request_path!r}) as handle:",
            "    body = json.load(handle)",
            f"DTYPES = {json.dumps(dtypes)}",
            "inputs = {t[\"name\"]: np.array(t[\"data\"], dtype=DTYPES[t[\"name\"]]).reshape(t[\"shape\"]) for t in body[\"inputs\"]}",
        ]
    return lines


def python_requests(arrays: dict[str, np.ndarray], infer_path: str, request_path: str | None, port: int) -> str:
    lines = (["import json"] if request_path else []) + [
        "import numpy as np", "import requests", "", f'URL = "http://{EXAMPLE_HOST}:{port}{infer_path}"']
    lines += _inputs_literal(arrays, request_path)
    lines += [
        "request = {\"inputs\": [",
        "    {\"name\": name, \"shape\": list(a.shape), \"datatype\": DATATYPES[name], \"data\": a.ravel().tolist()}",
        "    for name, a in inputs.items()",
        "]}",
        "answer = requests.post(URL, json=request, timeout=10)",
        "answer.raise_for_status()",
        "for output in answer.json()[\"outputs\"]:",
        "    print(output[\"name\"], tuple(output[\"shape\"]), output[\"data\"][:5])",
    ]
    return "\n".join(lines)


def binary_curl(url: str, request_path: str, total: int) -> str:
    """curl posting the binary tensor body: a Python step (standard library only) writes it from the JSON file."""
    binary_path = request_path.rsplit("/", 1)[0] + "/" + BINARY_FILE
    step = [
        "import json, struct",
        f"CODES = {json.dumps(STRUCT_CODES)}",
        f"body = json.load(open({request_path!r}))",
        "header, blobs = {\"inputs\": []}, []",
        "for t in body[\"inputs\"]:",
        "    if t[\"datatype\"] == \"BYTES\":",
        "        raw = b\"\".join(struct.pack(\"<I\", len(v)) + v for v in (str(x).encode() for x in t[\"data\"]))",
        "    else:",
        "        raw = struct.pack(f\"<{len(t['data'])}{CODES[t['datatype']]}\", *t[\"data\"])",
        "    header[\"inputs\"].append({\"name\": t[\"name\"], \"shape\": t[\"shape\"], \"datatype\": t[\"datatype\"],",
        "                              \"parameters\": {\"binary_data_size\": len(raw)}})",
        "    blobs.append(raw)",
        "head = json.dumps(header).encode()",
        f"open({binary_path!r}, \"wb\").write(head + b\"\".join(blobs))",
        "print(len(head))",
    ]
    return (f"# {total:,} values: sent as V2 binary tensors (JSON text would be several times the bytes);\n"
            f"# this step writes {q(binary_path)} from {q(request_path)} and prints its JSON header's length\n"
            "LENGTH=$(python3 - <<'EOF'\n" + "\n".join(step) + "\nEOF\n)\n"
            f"{sh('curl', '-s', '-X', 'POST', url)} \\\n  {sh('-H', f'Content-Type: {BINARY_TYPE}')} \\\n"
            f"  -H \"{HEADER_LENGTH}: $LENGTH\" \\\n  {sh('--data-binary', f'@{binary_path}')}")


def python_binary(arrays: dict[str, np.ndarray], infer_path: str, request_path: str, port: int) -> str:
    """The `requests` example sending the V2 binary tensor extension (a JSON header, then the raw bytes)."""
    lines = ["import json", "import struct", "import numpy as np", "import requests", "",
             f'URL = "http://{EXAMPLE_HOST}:{port}{infer_path}"']
    lines += _inputs_literal(arrays, request_path)
    lines += [
        "header, blobs = {\"inputs\": []}, []",
        "for name, a in inputs.items():",
        "    if DATATYPES[name] == \"BYTES\":",
        "        raw = b\"\".join(struct.pack(\"<I\", len(v)) + v for v in (str(x).encode() for x in a.ravel().tolist()))",
        "    else:",
        "        raw = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder(\"<\")).tobytes()",
        "    header[\"inputs\"].append({\"name\": name, \"shape\": list(a.shape), \"datatype\": DATATYPES[name],",
        "                              \"parameters\": {\"binary_data_size\": len(raw)}})",
        "    blobs.append(raw)",
        "head = json.dumps(header).encode()",
        f"headers = {{\"Content-Type\": \"{BINARY_TYPE}\", \"{HEADER_LENGTH}\": str(len(head))}}",
        "answer = requests.post(URL, data=head + b\"\".join(blobs), headers=headers, timeout=10)",
        "answer.raise_for_status()",
        "for output in answer.json()[\"outputs\"]:",
        "    print(output[\"name\"], tuple(output[\"shape\"]), output[\"data\"][:5])",
    ]
    return "\n".join(lines)


def python_triton(arrays: dict[str, np.ndarray], model_name: str, outputs: list[str], request_path: str | None,
                  target: str, protocol: str) -> str:
    module = "tritonclient.http" if protocol == "http" else "tritonclient.grpc"
    alias = "httpclient" if protocol == "http" else "grpcclient"
    lines = (["import json"] if request_path else []) + [
        "import numpy as np",
        f'import {module} as {alias}  # pip install "tritonclient[{protocol}]"',
        "",
        f'client = {alias}.InferenceServerClient("{target}")',
    ]
    lines += _inputs_literal(arrays, request_path)
    lines += [
        "tensors = []",
        "for name, a in inputs.items():",
        f"    tensor = {alias}.InferInput(name, list(a.shape), DATATYPES[name])",
        "    tensor.set_data_from_numpy(a)",
        "    tensors.append(tensor)",
        f"result = client.infer({json.dumps(model_name)}, tensors)",
        f"for name in {json.dumps(outputs)}:",
        "    print(name, result.as_numpy(name).shape)",
    ]
    return "\n".join(lines)


def build_examples(spec: Any, profile: dict[str, Any], directory: Path, shown_directory: str) -> dict[str, Any]:
    """Every example of the report's endpoint section, from one set of values."""
    arrays, source = example_arrays(profile, directory)
    body = v2_body(arrays)
    total = sum(int(a.size) for a in arrays.values())
    inline = total <= INLINE_VALUES
    name = spec.model.name
    path = f"/v2/models/{name}/infer"
    request_path = None if inline else f"{shown_directory}/{REQUEST_FILE}"
    binary = request_path is not None and rest_encoding(arrays) == "binary"
    url = f"http://{EXAMPLE_HOST}:8000"
    # Each line is built from its words (sh): a directory holding `$(...)`, backticks or `;` stays one inert argument.
    post, header = sh("curl", "-s", "-X", "POST", f"{url}{path}"), sh("-H", "Content-Type: application/json")
    if inline:
        curl = f"{post} \\\n  {header} \\\n  {sh('-d', json.dumps(body))}"
        predict = {n: _plain(a) for n, a in arrays.items()}
        predict_curl = (f"{sh('curl', '-s', '-X', 'POST', f'{url}/predict')} {header} \\\n"
                        f"  {sh('-d', json.dumps(predict))}")
    elif binary:
        curl = binary_curl(f"{url}{path}", request_path, total)
        predict_curl = None
    else:
        curl = (f"# the request body ({total:,} values) is in {q(request_path)}\n"
                f"{post} \\\n  {header} \\\n  {sh('-d', f'@{request_path}')}")
        predict_curl = None
    outputs = [str(t["name"]) for t in profile["outputs"]]
    feedback = {"id": "<the answer's X-Request-Id>", "label": 1}  # ground truth (onnxserve feedback.py)
    feedback_curl = (f"{sh('curl', '-s', '-X', 'POST', f'{url}/v2/models/{name}/feedback')} {header} \\\n"
                     f"  {sh('-d', json.dumps(feedback))}")
    # The examples go through `kubectl port-forward ... 8000:<port>`, so 8000 whatever the container port.
    return {
        "source": source,
        "shapes": {n: list(a.shape) for n, a in arrays.items()},
        "curl": curl,
        "predict_curl": predict_curl,
        "python": (python_binary(arrays, path, request_path, 8000) if binary and request_path
                   else python_requests(arrays, path, request_path, 8000)),
        "encoding": "binary" if binary else "json",
        "python_http": python_triton(arrays, name, outputs, request_path, f"{EXAMPLE_HOST}:8000", "http"),
        "python_grpc": python_triton(arrays, name, outputs, request_path, f"{EXAMPLE_HOST}:{spec.serving.grpc_port}", "grpc"),
        "body": body,
        "inline": inline,
        "infer_path": path,
        "feedback_curl": feedback_curl,
    }
