"""The `convert` verb: a non-ONNX model to ONNX with a parity proof (model/convert).

Importing this module registers it on the app of `deploy_model.cli.base`.
"""

from __future__ import annotations

from pathlib import Path

import typer

from deploy_model.cli.base import DryRunOpt, JsonOpt, SampleOpt, app, model_argument, run_stage

CONVERT_EXIT_CODES = (
    "Exit codes: 0 converted, and the ONNX model computes the same answers as the original (parity "
    "proved); 1 refused: an unknown or unsupported format, a pickle without --trust-pickle, a "
    "converter failure, or a parity failure (the message gives the figures); 2 usage error."
)
TrustPickleOpt = typer.Option(
    False, "--trust-pickle",
    help="Allow loading a .pkl/.joblib model. Loading a pickle runs any code it holds: only for files you trust.",
)
TrustTypeOpt = typer.Option(
    [], "--trust-type",
    help="A type named in a .skops file that skops does not trust by default, reviewed by you (repeatable).",
)
OpsetOpt = typer.Option(None, "--opset", min=7, max=23, help="ONNX opset to target [default: 17; converters may lower it, noted].")
ZipMapOpt = typer.Option(False, "--zipmap", help="Classifiers: probabilities as a list of {class: probability} maps (ZipMap).")


@app.command("convert", epilog=CONVERT_EXIT_CODES)
def convert_cmd(
    model: Path = typer.Argument(..., help="Model file, SavedModel directory, or models:/NAME/VERSION or runs:/ID/PATH URI."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Deployment directory [default: deploy/<model-name>]."),
    sample: Path | None = SampleOpt,
    trust_pickle: bool = TrustPickleOpt,
    trust_type: list[str] = TrustTypeOpt,
    opset: int | None = OpsetOpt,
    zipmap: bool = ZipMapOpt,
    as_json: bool = JsonOpt,
    dry_run: bool = DryRunOpt,
) -> None:
    """Convert a model to ONNX and prove the conversion computes the same answers.

    Formats: scikit-learn .skops (pickles .pkl/.joblib only with --trust-pickle), XGBoost
    .json/.ubj, LightGBM .txt, CatBoost .cbm, and the formats whose converters are installed
    (TorchScript, torch.export, TensorFlow/Keras/TFLite, MLflow URIs). The original framework and
    onnxruntime run the same inputs (--sample, else 64 rows generated from the signature); each
    output's max abs/rel error, top-1 agreement (probabilities) and label equality are checked
    against the tolerance of its dtype. Writes <out>/converted/<name>.onnx and conversion.json
    (source format, converter and version, opset, parity figures), which inspect records in the
    profile; nothing is written when parity fails. A converter's packages install on first use.
    """
    from deploy_model.model.convert.conversion import ConvertOptions
    from deploy_model.model.convert.sources import is_uri
    from deploy_model.model.convert.stage import run_convert

    location = str(model) if is_uri(str(model)) else model_argument(model, "convert", as_json)
    options = ConvertOptions(sample=sample, trust_pickle=trust_pickle, opset=opset, zipmap=zipmap,
                             trusted_types=tuple(trust_type))
    run_stage("convert", as_json, lambda: run_convert(location, out, options, dry_run=dry_run))
