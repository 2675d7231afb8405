"""Small real models for the conversion tests, trained here with the real libraries (seconds)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
FEATURES = 5


def training_data(rows: int = 300) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(X float32, a binary label, a three-class label, a regression target), fixed seed."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(rows, FEATURES)).astype(np.float32)
    binary = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64)
    three = (x[:, 0] > 0.4).astype(np.int64) + (x[:, 2] > 0).astype(np.int64)
    target = (2.0 * x[:, 0] - x[:, 3] + 0.1 * x[:, 4]).astype(np.float32)
    return x, binary, three, target


def sklearn_pipeline(path: Path) -> Path:
    """A skops pipeline: StandardScaler + LogisticRegression on string class labels."""
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, _, three, _ = training_data()
    labels = np.array(["low", "mid", "high"])[three]
    sio.dump(make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, labels), path)
    return path


def run_cli(*args: Any, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "deploy_model", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd or REPO, timeout=timeout, check=False)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
