"""Stage `render`: every artifact of the deployment bundle, from deployment.yaml and templates/bundle/.

The bundle is rendered into a temporary folder inside the deployment directory and moved into
place only when every file rendered, so a failure never leaves half a bundle. Every value that
reaches YAML goes through the `y` filter (JSON, which YAML reads as a quoted scalar or flow
collection), so an answer holding `: `, a newline or `{{` cannot change a document's structure.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import jinja2

from deploy_model import __version__
from deploy_model.bundle import drift_bundle, lockfile, ownership
from deploy_model.bundle.context import build_context
from deploy_model.bundle.image_digest import ImageDigests
from deploy_model.common.errors import StageError
from deploy_model.common.files import read_json, sha256_file
from deploy_model.plan.spec import DeploymentSpec, ServingPattern
from deploy_model.plan.specfile import SPEC_FILE, load_spec, resolve_model

ROOT = Path(__file__).resolve().parents[3]
TEMPLATES = ROOT / "templates" / "bundle"
SERVER_SOURCE = ROOT / "reference-server"
MANIFEST_FILE = "manifest.json"
# What render owns in the deployment directory; everything else belongs to other stages.
OWNED_DIRS = ("k8s", "monitoring", "batch", "ci", "server", "model")
SERVER_IGNORE = shutil.ignore_patterns("__pycache__", "*.egg-info", ".ruff_cache", ".pytest_cache", "*.pyc", "build", "dist")


def y(value: Any) -> str:
    """A value as YAML: JSON text is a double-quoted scalar or a flow collection, never structure."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return json.dumps(value, ensure_ascii=True)


def pyrepr(value: Any) -> str:
    return repr(value)


def regex_escape(value: str) -> str:
    import re

    return re.escape(value)


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters.update(y=y, tojson=y, pyrepr=pyrepr, regex_escape=regex_escape)
    return env


# --- inputs -----------------------------------------------------------------------------------


def edge_model(spec: DeploymentSpec, directory: Path, warnings: list[str]) -> Path | None:
    """The accepted INT8 model of an edge plan (quantization.json from `quantize`), if any."""
    if spec.edge is None or not spec.edge.quantize:
        return None
    record = directory / "quantization.json"
    if not record.is_file():
        warnings.append("edge plan with quantize: true but no quantization.json: run `deploy-model quantize` "
                        "(deploy does) to ship the INT8 model; the bundle holds the original model only")
        return None
    figures = json.loads(record.read_text(encoding="utf-8"))
    if figures.get("verdict") != "accepted" or not figures.get("quantized_model"):
        warnings.append(f"INT8 model refused by quantize ({figures.get('verdict')}): the bundle ships the original model")
        return None
    path = Path(figures["quantized_model"])
    if not path.is_absolute():  # quantize names it relative to the deployment directory
        path = directory / path
    if not path.is_file():
        warnings.append(f"quantization.json names {path}, which is gone: the bundle ships the original model")
        return None
    return path


def resolve_stable_model(spec: DeploymentSpec, directory: Path) -> Path:
    """The stable model file, which an in-process shadow ships beside the candidate (checked by sha256)."""
    stable = spec.stable
    assert stable is not None
    if not stable.model_path:
        raise StageError("in-process shadow ships the stable model beside the candidate, but deployment.yaml names no "
                         "stable model file: plan with --previous DIR (or answer stable_model: PATH)")
    raw = Path(stable.model_path)
    for path in ([raw] if raw.is_absolute() else [Path.cwd() / raw, directory / raw]):
        if path.is_file():
            digest = sha256_file(path)
            if len(stable.sha256) == 64 and digest != stable.sha256:
                raise StageError(f"stable model {path} has sha256 {digest[:12]}, but the stable release is {stable.sha256[:12]}: "
                                 "expected the model serving now")
            return path
    raise StageError(f"stable model {stable.model_path!r} not found: in-process shadow ships it beside the candidate")


# --- writing ----------------------------------------------------------------------------------

DESCRIPTIONS = {
    "Dockerfile": "container image (CPU)", "Dockerfile.gpu": "container image (GPU, CUDA runtime base)",
    ".dockerignore": "build context filter", "requirements.lock": "exact pins of the image's Python packages",
    "requirements-gpu.lock": "exact pins for the GPU image", "compose.yaml": "local trial: server + Prometheus",
}


def describe(path: str) -> str:
    if path in DESCRIPTIONS:
        return DESCRIPTIONS[path]
    top = path.split("/", 1)[0]
    return {"k8s": "Kubernetes manifest", "monitoring": "monitoring", "batch": "batch inference", "ci": "CI workflow",
            "server": "reference server source",
            "model": "drift reference (training data)" if path.endswith(drift_bundle.BUNDLE_FILE) else "model file"}.get(top, "")


def model_roles(spec: DeploymentSpec, context: dict[str, Any]) -> dict[str, str]:
    """The two model files of an in-process shadow release, each with its version and role."""
    stable = spec.stable
    if not context["stable_model_file"] or stable is None:
        return {}
    return {f"model/{context['stable_model_file']}": f"model file: stable {stable.version}, answers in the shadow pods",
            f"model/{context['model_file']}": f"model file: candidate {spec.model.version}, scored as the shadow"}


def render_into(spec: DeploymentSpec, directory: Path, target: Path,
                digests: ImageDigests | None = None) -> tuple[list[str], list[str]]:
    """Render the whole bundle into `target` (an empty folder); returns (files, warnings)."""
    model_path = resolve_model(spec, directory)
    context, plan = build_context(spec, directory, SERVER_SOURCE, digests)
    gpu = context["gpu"]
    # The image carries what its entry point needs: Redis for workers, pyarrow for parquet batches.
    extras = {ServingPattern.event_driven: ("worker",), ServingPattern.batch: ("batch",)}.get(
        spec.serving.pattern, ()
    )
    pins = lockfile.closure(lockfile.server_requirements(SERVER_SOURCE, extras))
    context["ort_version"] = pins.get("onnxruntime", "")
    header = (f"# Exact pins of the {spec.name} image, from the environment deploy-model {__version__} measured with.\n"
              "# Installed with pip --no-deps: this file is the whole dependency closure.\n")
    (target / "requirements.lock").write_text(lockfile.lock_text(pins, False, header), encoding="utf-8")
    if gpu:
        (target / "requirements-gpu.lock").write_text(lockfile.lock_text(pins, True, header), encoding="utf-8")
    env = environment()
    for template, out, local in plan.files:
        try:
            text = env.get_template(template).render(**{**context, **local})
        except jinja2.TemplateError as exc:
            raise StageError(f"template {template} failed to render {out}: {exc}") from None
        path = target / out
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.lstrip("\n"), encoding="utf-8")
    shutil.copytree(SERVER_SOURCE, target / "server", ignore=SERVER_IGNORE)
    (target / "model").mkdir()
    shutil.copyfile(model_path, target / "model" / context["model_file"])
    if context["stable_model_file"]:
        shutil.copyfile(resolve_stable_model(spec, directory), target / "model" / context["stable_model_file"])
    drift_reference = drift_bundle.reference_path(spec, directory)
    if drift_reference is not None:
        shutil.copyfile(drift_reference, target / "model" / drift_bundle.BUNDLE_FILE)
    int8 = edge_model(spec, directory, plan.warnings)
    if int8 is not None:
        # Edge quantizes first: the device gets the INT8 model that passed the agreement check.
        shutil.copyfile(int8, target / "model" / f"{spec.name}.int8.onnx")
    files = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    manifest = {
        "generator": f"deploy-model {__version__}",
        "spec_sha256": sha256_file(directory / SPEC_FILE),
        "name": spec.name,
        "version": spec.model.version,
        "image": context["pulled_image"],  # as the manifests pull it: with its digest when render had one
        "warnings": plan.warnings,
        "files": [{"path": f, "sha256": sha256_file(target / f), "bytes": (target / f).stat().st_size,
                   "what": model_roles(spec, context).get(f) or describe(f)} for f in files],
    }
    (target / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return [*files, MANIFEST_FILE], plan.warnings


def _previous_files(directory: Path) -> list[str]:
    path = directory / MANIFEST_FILE
    if not path.is_file():
        return []
    try:
        data = read_json(path, MANIFEST_FILE)
        return [str(f["path"]) for f in data.get("files", []) if isinstance(f, dict) and "path" in f]
    except (StageError, AttributeError):
        return []


def move_into_place(staging: Path, directory: Path, files: list[str]) -> None:
    """Replace the previous bundle by the new one: owned folders whole, top-level files one by one."""
    for stale in _previous_files(directory):
        if "/" not in stale and stale not in files:
            (directory / stale).unlink(missing_ok=True)
    for folder in OWNED_DIRS:
        old = directory / folder
        if old.exists():
            shutil.rmtree(old)
    for entry in sorted(staging.iterdir(), key=lambda p: p.name == MANIFEST_FILE):
        entry.replace(directory / entry.name)  # manifest.json last: it vouches for the rest


def run_render(directory: Path, dry_run: bool = False, force: bool = False, image_digest: str | None = None,
               stable_image_digest: str | None = None) -> dict[str, Any]:
    """Render the bundle of `directory`; the digests (sha256:...) pin the candidate's and the stable release's images."""
    directory = Path(directory)
    digests = ImageDigests(candidate=image_digest, stable=stable_image_digest).check()
    spec = load_spec(directory)
    if dry_run:
        with tempfile.TemporaryDirectory(prefix="deploy-model-render-") as tmp:
            files, warnings = render_into(spec, directory, Path(tmp), digests)
    else:
        staging = Path(tempfile.mkdtemp(prefix=".render-", dir=directory))
        try:
            files, warnings = render_into(spec, directory, staging, digests)
            # Files of the user's (not in manifest.json) are replaced only with --force.
            ownership.refuse_foreign(directory, OWNED_DIRS, files, force)
            move_into_place(staging, directory, files)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    for warning in warnings:
        print(f"render: warning: {warning}", flush=True, file=__import__("sys").stderr)
    shown = [f for f in files if not f.startswith(("server/",))]
    return {
        "stage": "render",
        "ok": True,
        "dry_run": dry_run,
        "wrote": [] if dry_run else [str(directory / f) for f in shown],
        "files": files,
        "warnings": warnings,
        "summary": {
            "files": len(files),
            "server_files": len(files) - len(shown),
            "image": f"{spec.kubernetes.image}:{spec.model.version}",
            # The candidate's workloads pull repo:tag@digest with --image-digest, else the tag alone.
            "pinned_by": f"digest {image_digest}" if image_digest else "tag (no --image-digest yet)",
            "warnings": len(warnings),
        },
    }

