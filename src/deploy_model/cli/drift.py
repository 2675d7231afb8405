"""Verb `drift-reference`: the training data's distributions as the server's drift reference.

Registered on the typer app of cli.base (cli.main imports this module).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from deploy_model.cli.base import EXIT_CODES, JsonOpt, app, run_stage


@app.command("drift-reference", epilog=EXIT_CODES)
def drift_reference_cmd(
    data: Path = typer.Argument(..., help="The training or validation set: .parquet, .csv or .npz "
                                "(arrays keyed by the model's input names)."),
    model: Path | None = typer.Option(None, "--model", help="The .onnx model: maps the columns to its inputs "
                                      "and records its prediction distribution on the rows."),
    out: Path = typer.Option(Path("."), "--out", "-o", help="Directory to write drift-reference.json into."),
    bins: int = typer.Option(10, "--bins", help="Quantile bins per numeric feature (2-100)."),
    columns: str | None = typer.Option(None, "--columns", help="Comma-separated columns in the order of the "
                                       "model's [N, F] input (default: every column, in file order)."),
    output: str | None = typer.Option(None, "--output", help="The model output whose distribution is recorded "
                                      "[default: the label output, else the first numeric output; argmax when a "
                                      "row has several scores]."),
    as_json: bool = JsonOpt,
) -> None:
    """Write drift-reference.json (format onnxserve-drift-reference/2) from a data set.

    Per feature: quantile bin edges and fractions, or category frequencies for integer codes
    with at most 20 values, and the null rate; with --model, the prediction distribution on up
    to 2000 rows (onnxruntime). The server reads it with --drift-reference
    (ONNXSERVE_DRIFT_REFERENCE); answer `drift_reference: PATH` and render ships it. Bad data
    (missing columns, text columns, no rows, a column count that does not fit) is refused and
    nothing is written. Takes seconds on a 100 MB table.
    """
    from deploy_model.model.drift_reference import run_drift_reference

    picked = [c.strip() for c in columns.split(",") if c.strip()] if columns is not None else None

    def work() -> dict[str, Any]:
        return run_drift_reference(data, out, model=model, bins=bins, columns=picked, output=output)

    run_stage("drift-reference", as_json, work)
