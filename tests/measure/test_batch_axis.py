"""A batch dim that is not dim 0: a recurrent model's state [2, batch, 3] grows with x [batch, 4].

The model (onnx.helper, real onnxruntime) concatenates x with its state laid out per row, so a
state whose batch differs from x's is refused by onnxruntime itself: the same failure silero-vad's
converted network met in smoke when only dim 0 was resized.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from measure_helpers import cli
from onnx import TensorProto, helper, numpy_helper

from deploy_model.model.samples import batch_axes, resize_batch, sample_rows
from deploy_model.model.synthetic import make_inputs

REPO = Path(__file__).resolve().parents[2]


def recurrent_model(path: Path) -> Path:
    """x float [batch, 4], state float [2, batch, 3] -> y float [batch, 10], new_state [2, batch, 3]."""
    nodes = [
        helper.make_node("Transpose", ["state"], ["per_row"], perm=[1, 0, 2]),
        helper.make_node("Reshape", ["per_row", "flat"], ["state_flat"]),
        helper.make_node("Concat", ["x", "state_flat"], ["y"], axis=1),
        helper.make_node("Tanh", ["state"], ["new_state"]),
    ]
    graph = helper.make_graph(
        nodes, "recurrent",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4]),
         helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, "batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10]),
         helper.make_tensor_value_info("new_state", TensorProto.FLOAT, [2, "batch", 3])],
        [numpy_helper.from_array(np.array([-1, 6], dtype=np.int64), "flat")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="deploy-model-tests")
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


SPECS = [{"name": "x", "dtype": "float32", "shape": ["batch", 4]},
         {"name": "state", "dtype": "float32", "shape": [2, "batch", 3]},
         {"name": "sr", "dtype": "int64", "shape": []}]


def test_batch_axes_follow_the_dim_name() -> None:
    assert batch_axes(SPECS) == {"x": 0, "state": 1}
    # No symbolic name to follow: a dynamic dim 0 is the batch, as before.
    assert batch_axes([{"name": "a", "dtype": "float32", "shape": [None, 3]},
                       {"name": "b", "dtype": "float32", "shape": [2, 5]}]) == {"a": 0}


def test_resize_and_synthetic_inputs_agree_on_the_batch_axis(tmp_path: Path) -> None:
    session = ort.InferenceSession(str(recurrent_model(tmp_path / "rnn.onnx")), providers=["CPUExecutionProvider"])
    sample = {"x": np.arange(12, dtype=np.float32).reshape(3, 4),
              "state": np.arange(18, dtype=np.float32).reshape(2, 3, 3)}
    specs = SPECS[:2]
    assert sample_rows(sample, specs) == 3
    for batch in (1, 2, 5):
        feed = resize_batch(sample, specs, batch)
        assert feed["x"].shape == (batch, 4) and feed["state"].shape == (2, batch, 3)
        # Row i of the state is row i % 3 of the sample's, along axis 1.
        np.testing.assert_array_equal(feed["state"][:, -1], sample["state"][:, (batch - 1) % 3])
        y, _ = session.run(None, feed)
        assert y.shape == (batch, 10)
        synthetic = make_inputs(specs, batch=batch)
        assert synthetic["state"].shape == (2, batch, 3)
        assert session.run(None, synthetic)[0].shape == (batch, 10)
    # The same feed resized only along dim 0 (the old rule) is refused by onnxruntime: the test can fail.
    with pytest.raises(Exception, match=r"Concat|dimension"):
        session.run(None, {"x": sample["x"][:1], "state": sample["state"]})


@pytest.mark.slow  # a whole deploy: a real server, smoke and a short load test
def test_deploy_of_a_model_batched_on_axis_1_passes_smoke(tmp_path: Path) -> None:
    model = recurrent_model(tmp_path / "rnn.onnx")
    sample = tmp_path / "sample.npz"
    np.savez(sample, x=np.ones((3, 4), dtype=np.float32), state=np.zeros((2, 3, 3), dtype=np.float32))
    out = tmp_path / "dep"
    proc = cli("deploy", model, "--answers", REPO / "examples" / "answers.yaml", "--out", out, "--sample", sample,
               "--concurrency", "1", "--seconds", "1", "--json", timeout=900)
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
    smoke = json.loads((out / "smoke.json").read_text())
    assert smoke["ok"], smoke["failed"]
    # The 3-row sample cut to one row along each input's batch axis (dim 0 alone left state at 3).
    sent = next(c for c in smoke["checks"] if c["name"] == "infer_v2")["details"]["sent"]
    assert sent == {"x": [1, 4], "state": [2, 1, 3]}
    assert proc.returncode in (0, 1), proc.stderr  # GO, or an honest NO-GO with its report
    assert (out / "DEPLOYMENT.md").is_file()
