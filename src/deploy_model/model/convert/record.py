"""The conversion record: conversion.json in the deployment directory and the profile's `conversion`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from deploy_model.common.files import sha256_file, write_json
from deploy_model.model.convert.conversion import Converted, onnx_opsets
from deploy_model.model.convert.sources import Source

CONVERSION_FILE = "conversion.json"
CONVERTED_DIR = "converted"  # <deployment dir>/converted/<name>.onnx


def conversion_record(source: Source, converted: Converted, parity: dict[str, Any], onnx_path: Path) -> dict[str, Any]:
    """What later stages read: where the model came from, what converted it, and the parity figures."""
    origin: dict[str, Any] = {"location": source.location, "format": source.format, "label": source.label,
                              "evidence": source.evidence}
    if not source.location.startswith(("models:/", "runs:/")) and source.path.is_file():
        origin.update(bytes=source.path.stat().st_size, sha256=sha256_file(source.path))
    return {
        "record_version": 1,
        "source": origin,
        "framework": converted.framework,
        "converter": {"name": converted.converter, "version": converted.converter_version},
        "opset": converted.opset,
        "opset_imports": onnx_opsets(onnx_path),
        "inputs": converted.inputs,
        "onnx": {"path": str(onnx_path.resolve()), "file": onnx_path.name, "sha256": sha256_file(onnx_path)},
        "parity": parity,
        "notes": list(converted.notes),
    }


def write_record(directory: Path, record: dict[str, Any]) -> Path:
    out = directory / CONVERSION_FILE
    write_json(out, record)
    return out


def record_for(onnx_path: Path, directory: Path | None) -> dict[str, Any] | None:
    """The conversion record that produced this ONNX file (same sha256), from the deployment
    directory or the folder above `converted/`; None for an ONNX file the user brought."""
    candidates = [d / CONVERSION_FILE for d in (directory, onnx_path.parent.parent) if d is not None]
    digest = None
    for path in candidates:
        if not path.is_file():
            continue
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        digest = digest or sha256_file(onnx_path)
        if isinstance(record, dict) and (record.get("onnx") or {}).get("sha256") == digest:
            return record
    return None


def conversion_phrase(record: dict[str, Any]) -> str:
    """'scikit-learn (skops) -> ONNX opset 17 (skl2onnx 1.20.0), parity max abs err 2e-07 on 64 rows'."""
    parity = record.get("parity") or {}
    converter = record.get("converter") or {}
    source = (record.get("source") or {}).get("label") or (record.get("source") or {}).get("format", "?")
    labels = sum(f.get("label_mismatches", 0) == 0 for f in parity.get("outputs", []) if f.get("kind") == "label")
    opsets = record.get("opset_imports") or {}
    opset = (f"opset {record['opset']}" if record.get("opset")
             else "opsets " + ", ".join(f"{d} {v}" for d, v in opsets.items()) if opsets else "opset ?")
    text = (f"{source} -> ONNX {opset} ({converter.get('name', '?')} "
            f"{converter.get('version', '')}".rstrip() + f"), parity max abs err {parity.get('max_abs_err', 0.0):.1g} "
            f"on {parity.get('rows', '?')} {'sample ' if str(parity.get('inputs', '')).startswith('sample') else ''}rows")
    if labels:
        text += ", labels identical"
    return text
