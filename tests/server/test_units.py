"""In-process checks of the pieces that need no server: settings, datatypes, providers, metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnxserve.datatypes import decode_bytes_tensor, encode_bytes_tensor, numpy_to_v2
from onnxserve.metrics import NumpyHistogram
from onnxserve.providers import (
    CPU,
    CUDA,
    TENSORRT,
    ProviderError,
    create_session,
    effective_cpu_count,
    provider_chain,
)
from onnxserve.settings import Settings, SettingsError, load_settings


def test_flags_beat_env_and_env_beats_defaults():
    env = {
        "ONNXSERVE_MODEL": "m.onnx",
        "ONNXSERVE_MAX_BATCH_SIZE": "8",
        "ONNXSERVE_WARMUP": "off",
        "ONNXSERVE_PORT": "9000",
    }
    s = load_settings(["--port", "9100"], env)
    assert s.model == Path("m.onnx") and s.model_name == "m"
    assert s.max_batch_size == 8 and s.warmup is False and s.port == 9100
    assert s.max_batch_delay_ms == 1.0  # default


def test_settings_refuse_bad_values():
    with pytest.raises(SettingsError, match="boolean"):
        load_settings([], {"ONNXSERVE_MODEL": "m.onnx", "ONNXSERVE_SPIN": "maybe"})
    with pytest.raises(SettingsError, match="required"):
        load_settings([], {})
    with pytest.raises(SettingsError, match="device"):
        Settings(model=Path("m.onnx"), device="gpu")


def test_to_argv_round_trips():
    s = Settings(
        model=Path("m.onnx"), device="cuda", allow_cpu_fallback=True, max_batch_size=4, warmup=False
    )
    again = load_settings(s.to_argv(), {})
    assert again == s


def test_datatype_mapping_both_ways():
    for v2, dtype in (
        ("FP32", np.float32),
        ("FP16", np.float16),
        ("INT64", np.int64),
        ("INT32", np.int32),
        ("BOOL", np.bool_),
        ("UINT8", np.uint8),
    ):
        assert numpy_to_v2(np.dtype(dtype)) == v2
    assert numpy_to_v2(np.dtype(object)) == "BYTES"
    raw = encode_bytes_tensor(np.array(["a", "bé", ""], dtype=object))
    assert list(decode_bytes_tensor(raw, 3)) == ["a", "bé", ""]
    with pytest.raises(ValueError, match="ends after 2 of 3"):
        decode_bytes_tensor(raw[:-2], 3)
    with pytest.raises(ValueError, match="past the end"):
        decode_bytes_tensor(b"\x09\x00\x00\x00abc", 1)
    # Fewer bytes than 4 per declared element: refused before anything is allocated.
    with pytest.raises(ValueError, match="cannot hold 3 elements"):
        decode_bytes_tensor(raw[:10], 3)


def test_effective_cpu_count_is_within_affinity():
    import os

    n = effective_cpu_count()
    assert 1 <= n <= len(os.sched_getaffinity(0))


def test_provider_chain_follows_the_request():
    s = Settings(model=Path("m.onnx"), device="tensorrt")
    chain = provider_chain(s, [CPU])
    assert [c[0] if isinstance(c, tuple) else c for c in chain] == [TENSORRT, CUDA, CPU]
    auto = Settings(model=Path("m.onnx"), device="auto")
    assert provider_chain(auto, [CPU]) == [CPU]
    names = [c[0] if isinstance(c, tuple) else c for c in provider_chain(auto, [CUDA, CPU])]
    assert names == [CUDA, CPU]


@pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider':UserWarning")
def test_session_refuses_silent_gpu_fallback(models):
    with pytest.raises(ProviderError, match="CUDAExecutionProvider"):
        create_session(models["mlp"], Settings(model=models["mlp"], device="cuda"))
    _, report = create_session(
        models["mlp"], Settings(model=models["mlp"], device="cuda", allow_cpu_fallback=True)
    )
    assert report.actual == CPU and report.fallback and report.requested == "cuda"


def test_numpy_histogram_le_semantics():
    h = NumpyHistogram("x", "doc", [1.0, 2.0])
    h.observe_many(np.array([0.5, 1.0, 1.5, 3.0, np.nan]))
    counts, total = h.snapshot()
    assert counts.tolist() == [2, 1, 1] and total == 6.0
