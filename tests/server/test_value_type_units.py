"""Unit checks of the value-type rules: which signatures batch, what is unservable, how ZipMap
rows become JSON, how a warm-up sample is checked, how CSV ids are typed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from onnxserve.batch.mapping import _int_ids
from onnxserve.datatypes import is_seq_map
from onnxserve.model import MAP_ROWS, ModelSpec, TensorSpec, batching_note, map_rows_to_json
from onnxserve.warmup import SampleError, check_sample_path, load_sample

sys.path.insert(0, str(Path(__file__).resolve().parent))


def t(name: str, shape: tuple, symbols: tuple = (), datatype: str = "FP32", kind: str = "tensor"):
    return TensorSpec(name, datatype, shape, kind, symbols)


@pytest.mark.parametrize(
    ("inputs", "outputs", "words"),
    [
        ([t("x", (None, 4), ("N", None))], [t("y", (None, 3), ("N", None))], None),
        ([t("x", (None, 4))], [t("p", (None,), kind=MAP_ROWS)], None),
        ([t("a", (None, None)), t("sr", ())], [t("y", (None, 1))], "'sr' is 0-d"),
        ([t("x", (1, 3, 32, 32))], [t("y", (1, 10))], "fixed dim 0 (1)"),
        ([t("s", (2, None, 128))], [t("y", (None,))], "fixed dim 0 (2)"),
        (
            [t("ids", (None, None), ("batch", "seq"))],
            [t("per_position", (None,), ("seq",))],
            "non-batch dim",
        ),
        ([t("x", (None, 4))], [t("y", (4,))], "'y' has a fixed dim 0"),
        ([t("x", (None, 4))], [t("y", ())], "'y' is 0-d"),
    ],
)
def test_batching_note(inputs, outputs, words):
    note = batching_note(inputs, outputs)
    assert (note is None) if words is None else (words in note)


def test_seq_map_types():
    assert is_seq_map("seq(map(string,tensor(float)))")
    assert is_seq_map("seq(map(int64,tensor(double)))")
    assert not is_seq_map("seq(tensor(float))")
    assert not is_seq_map("map(string,tensor(float))")


def test_map_rows_to_json_keeps_full_precision_and_string_keys():
    rows = [{0: 0.9815794229507446, 1: 1.459569620720913e-08}, {0: 0.5, 1: 0.5}]
    out = map_rows_to_json(rows)
    assert out.dtype == object and out.shape == (2,)
    assert json.loads(out[0]) == {"0": 0.9815794229507446, "1": 1.459569620720913e-08}


def _spec(*inputs: TensorSpec) -> ModelSpec:
    return ModelSpec("m", "1", tuple(inputs), (t("y", (None, 1)),), True, 8)


def test_warmup_sample_is_checked_against_the_signature(tmp_path):
    spec = _spec(t("x", (None, 4)), t("text", (None, 1), datatype="BYTES"))
    good = tmp_path / "good.npz"
    np.savez(good, x=np.ones((3, 4), np.float64), text=np.array([["a"], ["b"], ["c"]]))
    feeds = load_sample(good, spec)
    assert feeds["x"].dtype == np.float32 and feeds["text"].dtype == object
    assert feeds["text"][1, 0] == "b"
    cases = {
        "npy.npy": (np.ones((3, 4)), "one .npy array but the model has 2 inputs"),
        "wide.npz": ({"x": np.ones((3, 5)), "text": np.array([["a"]] * 3)}, "does not match"),
        "nums.npz": ({"x": np.ones((3, 4)), "text": np.ones((3, 1))}, "expects strings"),
        "rows.npz": ({"x": np.ones((3, 4)), "text": np.array([["a"]] * 2)}, "disagree"),
    }
    for name, (data, words) in cases.items():
        path = tmp_path / name
        if name.endswith(".npy"):
            np.save(path, data)
        else:
            np.savez(path, **data)
        with pytest.raises(SampleError, match=words):
            load_sample(path, spec)
    assert "does not exist" in check_sample_path(tmp_path / "nope.npz")
    (tmp_path / "s.txt").write_text("x")
    assert ".npz" in check_sample_path(tmp_path / "s.txt")


def test_v2_json_sample_with_a_0d_input(tmp_path):
    spec = ModelSpec(
        "m", "1", (t("audio", (None, None)), t("sr", (), datatype="INT64")), (), False, 0
    )
    path = tmp_path / "s.json"
    path.write_text(
        json.dumps(
            {
                "inputs": [
                    {"name": "audio", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]},
                    {"name": "sr", "shape": [], "datatype": "INT64", "data": 16000},
                ]
            }
        )
    )
    feeds = load_sample(path, spec)
    assert feeds["sr"].shape == () and int(feeds["sr"]) == 16000


def test_csv_ids_of_whole_numbers_become_ints():
    assert _int_ids(["1", " 22", "-3", "+4"]).tolist() == [1, 22, -3, 4]
    assert _int_ids(["1", "r2"]) is None
    assert _int_ids(["1", ""]) is None
    assert _int_ids(["1.5"]) is None
