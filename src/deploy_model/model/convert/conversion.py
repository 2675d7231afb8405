"""The converter contract: what `convert()` receives (ConvertOptions) and returns (Converted).

A converter module exposes::

    def convert(source: Path, workdir: Path, options: ConvertOptions) -> Converted

It writes one ONNX file under `workdir` (a scratch folder the caller removes on refusal) and
returns, with it, `reference`: a function that runs the ORIGINAL framework model on named input
arrays and returns arrays keyed by the ONNX output names. parity.py feeds both the same inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deploy_model.common.errors import StageError

DEFAULT_OPSET = 17  # what every converter targets unless --opset says otherwise
PARITY_ROWS = 64  # rows of generated inputs when no --sample is given

Feed = dict[str, np.ndarray]
Reference = Callable[[Feed], Feed]

# How an output is compared (parity.py): a label exactly, a probability also by its top-1 class.
LABEL, PROBABILITY, VALUE = "label", "probability", "value"


@dataclass(frozen=True)
class ConvertOptions:
    """What the user asked: a sample file, whether pickles may run, the opset, and converter extras."""

    sample: Path | None = None
    trust_pickle: bool = False
    opset: int | None = None
    zipmap: bool = False  # classifiers: probabilities as seq(map) (ZipMap) instead of a tensor
    trusted_types: tuple[str, ...] = ()  # skops: types the user reviewed and trusts
    rows: int = PARITY_ROWS
    extra: Mapping[str, Any] = field(default_factory=dict)  # converter-specific settings

    @property
    def target_opset(self) -> int:
        return self.opset or DEFAULT_OPSET

    def raw_sample(self, default_name: str = "input") -> Feed | None:
        """The sample's arrays before any signature is known (a lone .npy is named `default_name`)."""
        if self.sample is None:
            return None
        from deploy_model.model.samples import read_sample_file

        return read_sample_file(self.sample, [{"name": default_name, "dtype": "float32", "shape": []}])

    def sample_feed(self, inputs: Sequence[Mapping[str, Any]]) -> Feed | None:
        """The sample checked against and cast to the chosen input signature, or None without one."""
        if self.sample is None:
            return None
        from deploy_model.model.samples import load_sample

        return load_sample(self.sample, inputs)


@dataclass
class Converted:
    """One conversion's result. `inputs` use the profile's shape: [{name, dtype, shape}], a
    dynamic dim as a string name (e.g. 'batch'); `output_kinds` names label/probability outputs
    (others are compared as values); `reference` runs the original model."""

    onnx_path: Path
    source_format: str
    converter: str
    converter_version: str
    opset: int
    inputs: list[dict[str, Any]]
    reference: Reference
    framework: str = ""  # the original framework and its version, e.g. "scikit-learn 1.9.1"
    output_kinds: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def tensor_input(name: str, dtype: str, shape: Sequence[Any]) -> dict[str, Any]:
    """One input of a Converted signature."""
    return {"name": name, "dtype": dtype, "shape": list(shape)}


def refuse_pickle(source: Path, options: ConvertOptions) -> None:
    """Loading a pickle runs whatever code it names: only with the user's explicit --trust-pickle."""
    if not options.trust_pickle:
        raise StageError(
            f"{source} is a pickle, and loading a pickle runs any code it holds: it was not loaded. "
            "Save the model with skops (skops.io.dump) and use the .skops file, or, if you trust where "
            "this file came from, run `deploy-model convert FILE --trust-pickle --out DIR` and give "
            "inspect/deploy the DIR/converted/<name>.onnx it writes"
        )


def onnx_opsets(path: Path) -> dict[str, int]:
    """{domain: version} a written ONNX file imports (ai.onnx for the default domain)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {(entry.domain or "ai.onnx"): int(entry.version) for entry in model.opset_import}


def onnx_opset(path: Path) -> int:
    """The default-domain opset the converter actually wrote; 0 when the graph uses only ai.onnx.ml
    (tree ensembles), whose version onnx_opsets() gives."""
    return onnx_opsets(path).get("ai.onnx", 0)
