"""Resolve models:/NAME/VERSION|ALIAS and runs:/ID/PATH through an MLflow tracking server and download them.

Only mlflow-skinny's client is used (MlflowClient, mlflow.artifacts): the `registry` launcher group.
The registry's version of a models:/ URI becomes the release version (profile model.version).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from deploy_model.common.errors import StageError
from deploy_model.common.files import write_json
from deploy_model.model.convert.mlflow_flavors import MLMODEL, Flavor, choose_flavor

ENV = "MLFLOW_TRACKING_URI"
REGISTRY_DIR = "registry"  # <deployment dir>/registry/<name><suffix> and registry.json
REGISTRY_FILE = "registry.json"
STAGES = ("staging", "production", "archived", "none")
# MLflow retries an unreachable server for minutes by default; a Bash call has 120 s in all.
_CLIENT_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
                    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
_METADATA = {MLMODEL, "conda.yaml", "python_env.yaml", "requirements.txt", "registered_model_meta", "input_example.json",
             "serving_input_example.json"}


@dataclass(frozen=True)
class RegistryRef:
    """A parsed URI: models:/ (name + version, alias, stage or 'latest') or runs:/ (run id + artifact path)."""

    uri: str
    kind: str  # "models" | "runs"
    name: str  # the registered name, or the artifact path's last part for runs:/
    selector: str  # version, alias, stage, 'latest'; the run id for runs:/


def tracking_uri() -> str:
    """The tracking server to ask; a one-line StageError when none is configured."""
    uri = os.environ.get(ENV, "").strip()
    if not uri:
        raise StageError(f"models:/ and runs:/ URIs are resolved through an MLflow tracking server, and {ENV} is not "
                         f"set: set {ENV} to its address (e.g. export {ENV}=http://mlflow.example:5000) and run again")
    return uri


def parse_uri(text: str) -> RegistryRef:
    """models:/NAME/VERSION, models:/NAME/latest, models:/NAME/STAGE, models:/NAME@ALIAS or runs:/RUN_ID/PATH."""
    scheme, _, rest = text.partition(":/")
    rest = rest.strip("/")
    if scheme == "models":
        if "@" in rest and "/" not in rest:
            name, _, selector = rest.partition("@")
        else:
            name, _, selector = rest.partition("/")
        if name and selector and "/" not in selector:
            return RegistryRef(text, "models", name, selector)
    elif scheme == "runs":
        run_id, _, path = rest.partition("/")
        if run_id and path:
            return RegistryRef(text, "runs", path.rstrip("/").rsplit("/", 1)[-1], run_id)
    raise StageError(f"{text!r} is not an MLflow model URI: expected models:/NAME/VERSION (or /latest, /STAGE, "
                     "models:/NAME@ALIAS) or runs:/RUN_ID/ARTIFACT_PATH")


def uri_deployment_name(text: str) -> str:
    """The deployment name a URI gives: its registered name (or artifact path) as a DNS-1123 label."""
    try:
        name = parse_uri(text).name
    except StageError:
        name = "model"
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:63].strip("-") or "model"


def mlflow_client() -> ModuleType:
    """The mlflow package (skinny suffices), installing the registry group once when it is missing."""
    for key, value in _CLIENT_DEFAULTS.items():
        os.environ.setdefault(key, value)
    try:
        import mlflow
    except ImportError:
        from deploy_model.common.launcher_groups import install_missing

        if not install_missing({"mlflow-skinny"}):
            raise StageError("resolving MLflow URIs needs the registry packages (mlflow-skinny), not installed here: "
                             "through bin/deploy-model they install on first use; else run: pip install mlflow-skinny") from None
        import mlflow
    import mlflow.artifacts  # a submodule: not loaded by `import mlflow` alone

    return mlflow


def registry_answer(exc: Exception, where: str) -> StageError:
    """The server's own refusal, in one line."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return StageError(f"the MLflow tracking server {where} answered: {text[:400]}")


def _version_of(client: Any, ref: RegistryRef) -> Any:
    """The ModelVersion a models:/ URI names."""
    selector = ref.selector
    if selector.isdigit():
        return client.get_model_version(ref.name, selector)
    if selector.lower() == "latest":
        versions = client.search_model_versions(f"name='{ref.name}'")
        if not versions:
            raise StageError(f"the MLflow registry holds no version of a model named {ref.name!r}")
        return max(versions, key=lambda v: int(v.version))
    if selector.lower() in STAGES:
        found = client.get_latest_versions(ref.name, stages=[selector.capitalize()])
        if not found:
            raise StageError(f"the MLflow registry has no version of {ref.name!r} in stage {selector}")
        return found[0]
    return client.get_model_version_by_alias(ref.name, selector)


def _registered_names(client: Any) -> str:
    try:
        names = sorted(m.name for m in client.search_registered_models(max_results=50))
    except Exception:  # the listing only decorates the refusal; its own failure is not the news
        return ""
    return "; registered models: " + (", ".join(names) if names else "none")


def resolve(ref: RegistryRef, mlflow: ModuleType, where: str) -> dict[str, Any]:
    """{uri, name, version, run_id, source, download_uri} for the URI; the registry's answer when it refuses."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=where)
    if ref.kind == "runs":
        return {"uri": ref.uri, "name": ref.name, "version": None, "run_id": ref.selector, "source": ref.uri,
                "download_uri": ref.uri}
    try:
        version = _version_of(client, ref)
    except StageError:
        raise
    except Exception as exc:  # MlflowException: the registry's refusal; else the server unreachable
        error = registry_answer(exc, where)
        raise StageError(error.message + _registered_names(client)) from None
    return {"uri": ref.uri, "name": ref.name, "version": str(version.version), "run_id": version.run_id,
            "source": version.source, "download_uri": f"models:/{ref.name}/{version.version}"}


def _copy_out(flavor: Flavor, target: Path) -> None:
    """The native file (and, for ONNX, the external data beside it) into `target`, named for the model."""
    if flavor.native.is_dir():
        shutil.copytree(flavor.native, target)
        return
    shutil.copy2(flavor.native, target)
    if flavor.is_onnx:  # external data files are named inside the graph, relative to the model file
        for extra in flavor.native.parent.iterdir():
            if extra.is_file() and extra != flavor.native and extra.name not in _METADATA:
                shutil.copy2(extra, target.parent / extra.name)


def _without_credentials(uri: str) -> str:
    """The server's address as recorded in the deployment: a user:password@ part never written to disk."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=host)) if "@" in parts.netloc else uri


def copy_flavor(model_dir: Path, folder: Path, name: str) -> tuple[Path, Flavor]:
    """The chosen flavor's native file copied to <folder>/<name><suffix> (the folder replaced, never mixed)."""
    flavor = choose_flavor(model_dir)
    target = folder / f"{name}{flavor.suffix}"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    _copy_out(flavor, target)
    return target, flavor


def fetch(location: str, directory: Path) -> tuple[Path, dict[str, Any]]:
    """Download the URI's model and copy its deployable file to <directory>/registry/<name><suffix>.

    Returns (that path, the registry record). The download goes to a scratch folder first, so a
    refusal (no such version, no usable flavor) leaves the deployment directory untouched.
    """
    ref = parse_uri(location)
    where = tracking_uri()
    mlflow = mlflow_client()
    print(f"registry: resolving {location} at {where} ...", file=sys.stderr, flush=True)
    record = resolve(ref, mlflow, where)
    with tempfile.TemporaryDirectory(prefix="deploy-model-mlflow-") as scratch:
        try:
            model_dir = Path(mlflow.artifacts.download_artifacts(artifact_uri=record["download_uri"], dst_path=scratch,
                                                                 tracking_uri=where))
        except Exception as exc:  # the server's or the artifact store's own refusal
            raise registry_answer(exc, where) from None
        folder = directory / REGISTRY_DIR
        target, flavor = copy_flavor(model_dir, folder, uri_deployment_name(location))
    record.update(flavor=flavor.name, tracking_uri=_without_credentials(where), file=target.name,
                  flavor_settings={k: v for k, v in flavor.settings.items() if isinstance(v, (str, int, float, bool))})
    record.pop("download_uri", None)
    write_json(folder / REGISTRY_FILE, record)
    said = f"version {record['version']}" if record["version"] else f"run {record['run_id']}"
    print(f"registry: {location} is {said}, flavor {flavor.name}" + (" (served as it is)" if flavor.is_onnx
          else " (converted to ONNX next)") + f"; copied to {target}", file=sys.stderr, flush=True)
    return target, record


def registered_models() -> list[tuple[str, str]]:
    """(name, latest version) of every registered model at the configured server (up to 200)."""
    where = tracking_uri()
    mlflow_client()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=where)
    found: list[tuple[str, str]] = []
    for model in client.search_registered_models(max_results=200):
        versions = [int(v.version) for v in (model.latest_versions or [])]
        if not versions:
            versions = [int(v.version) for v in client.search_model_versions(f"name='{model.name}'")]
        if versions:
            found.append((model.name, str(max(versions))))
    return found


def fetch_for_stage(model: Path | str, out_dir: Path | None, dry_run: bool) -> tuple[Path, dict[str, Any] | None]:
    """inspect's MODEL when it is a models:/ or runs:/ URI: downloaded into the deployment directory
    (a scratch one on a dry run), the path of its deployable file and the registry record; else as given."""
    text = str(model)
    if not text.startswith(("models:/", "runs:/")):
        return Path(model), None
    directory = out_dir or Path("deploy") / uri_deployment_name(text)
    if dry_run:
        directory = Path(tempfile.mkdtemp(prefix="deploy-model-dry-registry-"))
    return fetch(text, directory)


def record_registry(profile: dict[str, Any], conversion: dict[str, Any] | None, registry: dict[str, Any],
                    dry_run: bool) -> None:
    """The registry record in the profile (and the conversion record); its version is the model's version,
    which plan takes as the release version unless `version` is answered."""
    profile["registry"] = registry
    if registry.get("version"):
        profile["model"]["version"] = registry["version"]
        profile["model"]["version_from"] = f"the MLflow registry ({registry['uri']} is version {registry['version']})"
    if conversion is not None:
        from deploy_model.model.convert.record import write_record

        conversion["registry"] = registry
        if not dry_run:  # conversion.json sits above converted/<name>.onnx
            write_record(Path(conversion["onnx"]["path"]).parent.parent, conversion)
