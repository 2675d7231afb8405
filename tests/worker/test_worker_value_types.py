"""The Redis Streams worker on the value types real models use: a ZipMap classifier answers like
onnxruntime in-process row for row (labels as strings, {class: probability} objects), string
inputs, and a stateful model with a 0-d input run one message at a time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from worker_helpers import start_worker

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))

import value_models as vm

redis = pytest.importorskip("redis", reason="the redis client is part of the worker extra")
pytest.importorskip("skl2onnx", reason="skl2onnx is in the dev extra")


@pytest.fixture(scope="module")
def vmodels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return vm.build_all(tmp_path_factory.mktemp("value-models"))


def _send(client, bodies: list[dict]) -> list[str]:
    return [client.xadd("inference:requests", {"body": json.dumps(b)}).decode() for b in bodies]


def _answers(client) -> dict[str, dict]:
    return {
        f[b"request_id"].decode(): json.loads(f[b"outputs"])
        for _, f in client.xrange("inference:results")
    }


def _run_worker(model: Path, url: str, count: int) -> None:
    proc = start_worker(model, url, "--max-messages", str(count), "--batch-size", "8")
    try:
        assert proc.wait(timeout=90) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("model", ["zipmap", "zipmap_int"])
def test_zipmap_classifier_answers_equal_onnxruntime(vmodels, redis_url, model):
    x, _ = vm.iris()
    label, probs = ort.InferenceSession(str(vmodels[model]), providers=["CPUExecutionProvider"]).run(
        None, {"X": x}
    )
    client = redis.Redis.from_url(redis_url)
    chunks = [(i, x[i : i + 5]) for i in range(0, len(x), 5)]
    ids = _send(client, [{"inputs": {"X": c.tolist()}} for _, c in chunks])
    _run_worker(vmodels[model], redis_url, len(ids))
    answers = _answers(client)
    got_labels, got_probs = [], []
    for entry_id in ids:
        got_labels += answers[entry_id]["output_label"]
        got_probs += answers[entry_id]["output_probability"]
    assert got_labels == label.tolist()
    assert got_probs == [{str(k): v for k, v in p.items()} for p in probs]


def test_string_input_and_a_stateful_0d_model(vmodels, redis_url):
    client = redis.Redis.from_url(redis_url)
    texts = [["a kitten on the mat"], ["the bank shares fell"]]
    want = ort.InferenceSession(str(vmodels["text"]), providers=["CPUExecutionProvider"]).run(
        None, {"text": np.array(texts, dtype=object)}
    )
    ids = _send(client, [{"inputs": {"text": [t]}} for t in texts])
    _run_worker(vmodels["text"], redis_url, len(ids))
    answers = _answers(client)
    assert [answers[i]["output_label"][0] for i in ids] == want[0].tolist()

    vad = ort.InferenceSession(str(vmodels["vad"]), providers=["CPUExecutionProvider"])
    feeds = [vm.vad_feeds(rows, sr=sr) for rows, sr in ((1, 8000), (2, 16000), (1, 16000))]
    client.delete("inference:results")
    bodies = [
        {"inputs": {k: (v.tolist() if v.ndim else int(v)) for k, v in f.items()}} for f in feeds
    ]
    ids = _send(client, bodies)
    _run_worker(vmodels["vad"], redis_url, len(ids))
    answers = _answers(client)
    for entry_id, f in zip(ids, feeds, strict=True):
        speech, state = vad.run(None, f)
        assert np.allclose(answers[entry_id]["speech"], speech)
        assert np.allclose(answers[entry_id]["state_out"], state)


def test_unservable_model_is_refused_at_start(vmodels, redis_url):
    done = subprocess.run(
        [sys.executable, "-m", "onnxserve.worker", "--model", str(vmodels["seq_of_tensors"]),
         "--redis-url", redis_url],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 1 and "seq(tensor(float))" in done.stderr
