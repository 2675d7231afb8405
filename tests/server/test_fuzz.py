"""Schemathesis against the server's own OpenAPI document (/openapi.json): every operation,
valid and invalid inputs, a fixed count of examples each (not a time budget, so a busy machine
sends the same requests, only slower). No answer may be a 5xx, the server must stay up, and every
answer must be JSON where the document says so. Prints the counts.

ONNXSERVE_FUZZ_EXAMPLES scales the run (examples per POST operation and mode; other operations
get a sixth): the default keeps it to about a minute here, a longer run is e.g. 800."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is in the dev extra")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402

# Examples per POST operation (infer, predict: they decode bodies) and generation mode.
EXAMPLES = int(os.environ.get("ONNXSERVE_FUZZ_EXAMPLES", "60"))

import sys  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import Server  # noqa: E402


@pytest.fixture(scope="module")
def fuzz_server(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    log = tmp_path_factory.mktemp("fuzz") / "server.log"
    server = Server(
        models["multi"], "--max-request-bytes", "200000", "--body-timeout-s", "5",
        "--feedback-window", "100", log=log  # feedback on: its POST is fuzzed beyond the 404
    ).wait_ready()
    yield server
    server.stop()


def _steer(body: object, data: st.DataObject) -> object:
    """Half the time, point generated inputs at the model's real names and datatypes so the
    fuzzer gets past the first check and into shapes, data and binary sizes."""
    real = {"x": "FP32", "ids": "INT64", "names": "BYTES"}
    if isinstance(body, dict) and isinstance(body.get("inputs"), list):
        for item in body["inputs"]:
            if isinstance(item, dict) and data.draw(st.booleans()):
                name = data.draw(st.sampled_from(sorted(real)))
                item["name"] = name
                if data.draw(st.booleans()):
                    item["datatype"] = real[name]
    return body


@pytest.mark.slow
def test_schemathesis_finds_no_5xx_and_no_crash(fuzz_server):
    base = fuzz_server.url
    doc = httpx.get(base + "/openapi.json").json()
    assert doc["openapi"].startswith("3.") and "/v2/models/{name}/infer" in doc["paths"]
    schema = schemathesis.openapi.from_dict(doc)
    operations = [op.ok() for op in schema.get_all_operations()]
    assert len(operations) >= 15
    counts: Counter[str] = Counter()
    failures: list[str] = []
    modes = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
    # POST operations (infer, predict) decode bodies: most of the examples go to them.
    examples = {op.label: EXAMPLES if op.method.upper() == "POST" else max(1, EXAMPLES // 6) for op in operations}

    def fuzz(op, mode) -> None:
        """One operation in one generation mode, a fixed count of examples."""

        @settings(
            max_examples=examples[op.label],
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=op.as_strategy(generation_mode=mode), data=st.data())
        def run(case, data) -> None:
            if data.draw(st.booleans()):
                # Aim at the served model and version too, not only at 404s.
                if "name" in (case.path_parameters or {}):
                    case.path_parameters["name"] = "multi"
                if "version" in (case.path_parameters or {}):
                    case.path_parameters["version"] = "1"
            case.body = _steer(case.body, data)
            try:
                response = case.call(base_url=base, timeout=30)
            except Exception as exc:  # a dropped connection is a failure, not a 4xx
                counts["transport_error"] += 1
                failures.append(f"{case.method} {case.formatted_path}: {exc!r}")
                return
            counts["requests"] += 1
            status = response.status_code
            counts[f"{status // 100}xx"] += 1
            if case.method.upper() == "POST":
                counts[f"POST {status // 100}xx"] += 1
            if status >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path} -> {status}: {response.text[:300]}"
                )
            if status >= 400 and case.path != "/metrics":
                body = json.loads(response.text)
                assert isinstance(body.get("error"), str) and body["error"], response.text

        try:
            run()
        except Unsatisfiable:
            counts["operations_without_negative_cases"] += 1  # e.g. GET /v2: nothing to break

    for op in operations:
        for mode in modes:
            fuzz(op, mode)

    print(f"\nfuzz counts: {dict(counts)}")
    # Hypothesis may stop early on a small input space (e.g. a GET without parameters): a floor.
    assert counts["requests"] >= min(300, EXAMPLES * 4), counts
    assert not failures, failures[:10]
    assert fuzz_server.proc.poll() is None, "the server died"
    assert httpx.get(base + "/v2/health/ready").status_code == 200
