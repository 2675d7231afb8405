"""Shadow scoring off the request path, and input drift (PSI)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
from onnxserve.drift import build_reference, psi


def _send(server, rows: np.ndarray, name: str = "mlp", batch: int = 1) -> None:
    client = httpx.Client(base_url=server.url, timeout=30)

    def one(i: int) -> int:
        chunk = rows[i : i + batch]
        body = {
            "inputs": [
                {
                    "name": "features",
                    "shape": list(chunk.shape),
                    "datatype": "FP32",
                    "data": chunk.ravel().tolist(),
                }
            ]
        }
        return client.post(f"/v2/models/{name}/infer", json=body).status_code

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(one, range(0, len(rows), batch)))
    client.close()
    assert codes == [200] * len(codes)


def _flush_drift(server, rows: np.ndarray) -> None:
    """The drift update of the last batch runs on the batching thread after its answers went out;
    one more request (a row of the same set) is batched only after it, so once this is answered
    every earlier row is in the window. An order of events, where a sleep was a race."""
    _send(server, rows[-1:])


def _wait_for(server, metric, name, at_least, labels=None):
    deadline = time.monotonic() + 60  # a hang guard: the shadow thread may lag on a busy machine
    while time.monotonic() < deadline:
        value = metric(server.metrics(), name, labels)
        if value is not None and value >= at_least:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{name} never reached {at_least}")


def _shadow_settled(server, metric, at_least: int) -> str:
    """A scrape where the shadow thread has caught up: at least `at_least` scored, each figure of
    the scrape from the same comparisons (none caught half-counted), and no change for a second.
    Conditions, not a sleep: the shadow thread scores off the request path, as late as it likes."""
    deadline = time.monotonic() + 60
    last, steady = None, 0
    while time.monotonic() < deadline:
        text = server.metrics()
        scored = metric(text, "model_shadow_samples_total", {"outcome": "scored"}) or 0
        agreed = metric(text, "model_shadow_agreed_samples_total") or 0
        ratio = metric(text, "model_shadow_agreement_ratio") or 0
        consistent = (
            scored >= at_least
            and metric(text, "model_shadow_abs_diff_count") == scored
            and abs(ratio - agreed / scored) < 1e-9
        )
        steady = steady + 1 if consistent and scored == last else 0
        if steady >= 4:
            return text
        last = scored
        time.sleep(0.25)
    raise AssertionError(f"the shadow figures never settled at >= {at_least} scored:\n{text[:3000]}")


def test_identical_shadow_agrees_fully(start_server, models, metric):
    server = start_server(
        models["mlp"], "--shadow-model", str(models["mlp_shadow"]), "--shadow-sample-rate", "1"
    )
    rows = np.random.default_rng(0).standard_normal((40, 16)).astype(np.float32)
    _send(server, rows)
    _wait_for(server, metric, "model_shadow_samples_total", 40, {"outcome": "scored"})
    text = server.metrics()
    assert metric(text, "model_shadow_agreed_samples_total") == 40
    assert metric(text, "model_shadow_agreement_ratio") == 1.0
    assert metric(text, "model_shadow_latency_seconds_count") >= 1
    assert metric(text, "model_shadow_abs_diff_bucket", {"le": "0.0001"}) == 40


def test_different_shadow_is_measured_and_sampled(start_server, models, metric):
    server = start_server(
        models["mlp"],
        "--shadow-model",
        str(models["mlp_other"]),
        "--shadow-sample-rate",
        "0.5",
    )
    rows = np.random.default_rng(1).standard_normal((400, 16)).astype(np.float32)
    _send(server, rows)
    text = _shadow_settled(server, metric, at_least=120)
    compared = metric(text, "model_shadow_samples_total", {"outcome": "scored"})
    agreed = metric(text, "model_shadow_agreed_samples_total")
    ratio = metric(text, "model_shadow_agreement_ratio")
    assert 120 <= compared <= 280, compared  # about half of 400, sampled per request
    assert 0 < agreed < compared  # a different model: agrees sometimes, not always
    assert abs(ratio - agreed / compared) < 1e-9
    assert metric(text, "model_shadow_abs_diff_count") == compared


def test_shadow_errors_never_touch_the_primary(start_server, models, metric):
    # A shadow whose inputs differ from the primary's is refused at start-up.
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "onnxserve",
            "--model",
            str(models["mlp"]),
            "--port",
            "0",
            "--shadow-model",
            str(models["static"]),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and "shadow model inputs" in proc.stderr
    # A shadow with the same inputs but an output of another size fails every comparison.
    server = start_server(
        models["mlp"], "--shadow-model", str(models["mlp_wide"]), "--shadow-sample-rate", "1"
    )
    rows = np.random.default_rng(2).standard_normal((30, 16)).astype(np.float32)
    _send(server, rows)
    _wait_for(server, metric, "model_shadow_samples_total", 30, {"outcome": "error"})
    text = server.metrics()
    assert metric(text, "model_requests_total", {"endpoint": "infer", "status": "200"}) == 30
    assert metric(text, "model_shadow_samples_total", {"outcome": "scored"}) is None


def test_drift_against_a_reference_file(start_server, models, metric, tmp_path):
    rng = np.random.default_rng(5)
    train = rng.standard_normal((5000, 16)).astype(np.float32)
    ref = tmp_path / "drift.json"
    ref.write_text(json.dumps(build_reference({"features": train})))
    server = start_server(
        models["mlp"],
        "--drift-reference",
        str(ref),
        "--drift-window",
        "300",
        "--drift-interval-ms",
        "0",
    )
    same = rng.standard_normal((300, 16)).astype(np.float32)
    _send(server, same, batch=10)
    _flush_drift(server, same)
    text = server.metrics()
    stable = [metric(text, "input_feature_drift", {"feature": f"features[{j}]"}) for j in range(16)]
    assert all(v is not None and v < 0.1 for v in stable), stable
    shifted = same.copy()
    shifted[:, 3] += 2.0  # one feature moves
    _send(server, shifted, batch=10)
    _flush_drift(server, shifted)
    text = server.metrics()
    moved = metric(text, "input_feature_drift", {"feature": "features[3]"})
    still = metric(text, "input_feature_drift", {"feature": "features[0]"})
    assert moved > 0.25 and still < 0.1, (moved, still)


def test_drift_captures_its_reference_from_first_rows(start_server, models, metric):
    server = start_server(models["mlp"], "--drift-window", "200", "--drift-interval-ms", "0")
    rng = np.random.default_rng(6)
    _send(server, rng.standard_normal((200, 16)).astype(np.float32), batch=10)
    assert "input_feature_drift{" not in server.metrics()  # reference taken, window empty
    later = rng.standard_normal((200, 16)).astype(np.float32) * 3.0
    _send(server, later, batch=10)
    _flush_drift(server, later)
    assert metric(server.metrics(), "input_feature_drift", {"feature": "features[0]"}) > 0.25


def test_psi_basics():
    even = np.full(10, 0.1)
    assert psi(even, even) == 0.0
    skew = np.array([0.5] + [0.5 / 9] * 9)
    assert psi(even, skew) > 0.25
