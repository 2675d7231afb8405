"""Stage `convert`: a non-ONNX model to ONNX, kept only when its parity proof holds."""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from deploy_model.common.errors import StageError
from deploy_model.common.files import atomic_write_bytes
from deploy_model.model.convert.conversion import Converted, ConvertOptions
from deploy_model.model.convert.parity import prove_parity
from deploy_model.model.convert.record import (
    CONVERSION_FILE,
    CONVERTED_DIR,
    conversion_record,
    write_record,
)
from deploy_model.model.convert.registry import converter_for, load_converter
from deploy_model.model.convert.sources import Source, detect_source


def source_name(source: Source) -> str:
    """A DNS-1123 name for the model: the file stem, or the registered name of a models:/ URI."""
    if source.format == "mlflow-uri":
        parts = [p for p in source.location.split(":", 1)[1].split("/") if p]
        stem = parts[0] if source.location.startswith("models:/") and parts else (parts[-1] if parts else "model")
    else:
        path = source.path
        stem = path.stem if path.is_file() else path.name
    name = re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")[:63].strip("-")
    return name or "model"


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def convert_source(source: Source, directory: Path | None, options: ConvertOptions) -> tuple[Path | None, dict[str, Any]]:
    """Convert and prove; with a directory, write <dir>/converted/<name>.onnx and conversion.json.

    Returns (the written ONNX path or None, the record). Nothing is written unless parity holds:
    the converter works in a scratch folder removed afterwards.
    """
    entry = converter_for(source.format)
    module = load_converter(entry, source.label)
    _say(f"convert: {source.label} -> ONNX with {entry.description} ...")
    with tempfile.TemporaryDirectory(prefix="deploy-model-convert-") as scratch:
        try:
            converted: Converted = module.convert(source.path, Path(scratch), options)
        except StageError:
            raise
        except Exception as exc:  # the converter's own failure: one line naming it
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise StageError(f"converting {source.location} ({source.label}) failed in {entry.module.rsplit('.', 1)[-1]}: "
                             f"{type(exc).__name__}: {first}") from None
        parity = prove_parity(converted, options, source.label)
        if directory is None:
            return None, conversion_record(source, converted, parity, converted.onnx_path)
        target = directory / CONVERTED_DIR / f"{source_name(source)}.onnx"
        atomic_write_bytes(target, converted.onnx_path.read_bytes())
        record = conversion_record(source, converted, parity, target)
    write_record(directory, record)
    return target, record


def run_convert(model: str | Path, out_dir: Path | None, options: ConvertOptions, dry_run: bool = False) -> dict[str, Any]:
    """The `convert` verb: detect, convert, prove parity, record; a StageError for any refusal."""
    source = detect_source(model)
    if source.is_onnx:
        raise StageError(f"{model} is already ONNX ({source.evidence}): nothing to convert; run inspect on it")
    directory = out_dir or Path("deploy") / source_name(source)
    target, record = convert_source(source, None if dry_run else directory, options)
    parity = record["parity"]
    return {
        "stage": "convert",
        "ok": True,
        "wrote": [] if target is None else [str(target), str(directory / CONVERSION_FILE)],
        "dry_run": dry_run,
        "summary": {
            "source_format": source.label,
            "converter": f"{record['converter']['name']} {record['converter']['version']}",
            "framework": record["framework"],
            "opset": record["opset"],
            "inputs": [f"{i['name']} {i['dtype']} {i['shape']}" for i in record["inputs"]],
            "parity": f"max abs err {parity['max_abs_err']:.3g}, max rel err {parity['max_rel_err']:.3g} "
                      f"on {parity['rows']} rows ({parity['inputs']})",
            "onnx": str(target) if target else None,
        },
        "conversion": record,
    }



def ensure_onnx(model: Path, out_dir: Path | None, dry_run: bool = False,
                options: ConvertOptions | None = None) -> tuple[Path, dict[str, Any] | None]:
    """What inspect profiles: (an ONNX path, its conversion record or None).

    A non-ONNX model is converted first (into the deployment directory, or a scratch folder on a
    dry run); an ONNX file that `convert` wrote gets its record back from conversion.json; a path
    that does not exist is left to inspect's own refusal.
    """
    from deploy_model.model.convert.record import record_for
    from deploy_model.model.convert.sources import is_uri
    from deploy_model.model.formats import detect_format

    if not is_uri(str(model)):
        if not model.exists():
            return model, None
        detected = detect_format(model)
        if detected.is_onnx:
            onnx_file = next(model.glob("*.onnx")) if model.is_dir() else model
            return model, record_for(onnx_file, out_dir)
    source = detect_source(model)
    directory = out_dir or Path("deploy") / source_name(source)
    if dry_run:  # the profile needs the file: convert into a folder outside the deployment
        directory = Path(tempfile.mkdtemp(prefix="deploy-model-dry-convert-"))
    target, record = convert_source(source, directory, options or ConvertOptions())
    assert target is not None
    return target, record
