import importlib.util

import numpy as np
import onnx
import onnxruntime as ort


def _builder(repo_root):
    spec = importlib.util.spec_from_file_location("be", repo_root / "examples" / "build_examples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_builds_are_byte_identical(repo_root, tmp_path, example_models):
    again = _builder(repo_root).build_all(tmp_path)
    for name, path in example_models.items():
        assert again[name].read_bytes() == path.read_bytes(), f"{name} is not deterministic"


def test_tabular_signature_and_softmax(tabular_model):
    model = onnx.load(str(tabular_model))
    (inp,) = model.graph.input
    assert inp.name == "features"
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and dims[1].dim_value == 16
    session = ort.InferenceSession(str(tabular_model), providers=["CPUExecutionProvider"])
    out = session.run(None, {"features": np.ones((5, 16), np.float32)})[0]
    assert out.shape == (5, 3)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


def test_cnn_takes_nchw_64(cnn_model):
    session = ort.InferenceSession(str(cnn_model), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert inp.name == "image" and inp.shape[1:] == [3, 64, 64]
    out = session.run(None, {"image": np.zeros((2, 3, 64, 64), np.float32)})[0]
    assert out.shape == (2, 10)
    # Random weights must still give an input-dependent answer, or the model is useless for tests.
    other = session.run(None, {"image": np.full((2, 3, 64, 64), 3.0, np.float32)})[0]
    assert not np.allclose(out, other)
