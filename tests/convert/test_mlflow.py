"""MLflow URIs and plain model names against a REAL MLflow tracking server (sqlite, loopback).

The module's fixture starts `mlflow server` once and registers, through MLflow's own log_model:
churn-onnx v1 (mlflow.onnx flavor, an skl2onnx model carrying model_version 7 in its metadata, so
the registry's version visibly wins) and fraud-sk v1 + v2 (mlflow.sklearn in skops format, the
safe default: no --trust-pickle involved; v2 carries the alias `champion`).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from convert_helpers import REPO

from deploy_model.common.errors import StageError
from deploy_model.model.convert.mlflow_flavors import choose_flavor
from deploy_model.model.convert.mlflow_registry import ENV, fetch_for_stage, parse_uri
from deploy_model.model.convert.model_names import Candidate, match_name, resolve_name

STARTUP_S = 400  # a readiness deadline, not a measurement: the first start migrates the sqlite store
FILES = ["models/churn_v0.onnx", "models/iris.onnx"]

LOG_MODELS = textwrap.dedent("""
    import numpy as np, mlflow, mlflow.onnx, mlflow.sklearn
    from mlflow.tracking import MlflowClient
    from sklearn.linear_model import LogisticRegression
    from skl2onnx import to_onnx
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    y = (x[:, 0] - x[:, 2] > 0).astype(np.int64)
    clf = LogisticRegression(max_iter=300).fit(x, y)
    onx = to_onnx(clf, x[:1], options={id(clf): {"zipmap": False}}, target_opset=17)
    onx.metadata_props.add(key="model_version", value="7")
    with mlflow.start_run():
        mlflow.onnx.log_model(onx, name="onnx", registered_model_name="churn-onnx", pip_requirements=["onnxruntime"])
        for _ in range(2):
            mlflow.sklearn.log_model(clf, name="sk", registered_model_name="fraud-sk", serialization_format="skops",
                                     pip_requirements=["scikit-learn"])
    MlflowClient().set_registered_model_alias("fraud-sk", "champion", "2")
""")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=5) as answer:
            return answer.status == 200 and answer.read().strip() == b"OK"
    except (OSError, http.client.HTTPException):  # not up yet (or the port briefly someone else's)
        return False


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The tracking server's URI, the models registered; the server (its own process group) stopped after."""
    root = tmp_path_factory.mktemp("mlflow")
    url = f"http://127.0.0.1:{_free_port()}"
    log = (root / "server.log").open("w")
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--default-artifact-root", (root / "artifacts").as_uri(), "--host", "127.0.0.1", "--port", url.rsplit(":", 1)[1],
         "--workers", "1"], stdout=log, stderr=subprocess.STDOUT, cwd=root, start_new_session=True)
    try:
        deadline = time.monotonic() + STARTUP_S
        while not _up(url):
            assert server.poll() is None, f"mlflow server exited {server.returncode}: {(root / 'server.log').read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"mlflow server not up in {STARTUP_S} s: {(root / 'server.log').read_text()[-2000:]}"
            time.sleep(1)
        logged = subprocess.run([sys.executable, "-c", LOG_MODELS], cwd=root, capture_output=True, text=True, timeout=600,
                                env={**os.environ, ENV: url}, check=False)
        assert logged.returncode == 0, logged.stderr[-3000:]
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and its uvicorn worker: the group this fixture started
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def _env(url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != ENV}
    return {**env, ENV: url} if url else env


def _deploy(uri: str, out: Path, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "deploy_model", "deploy", uri, "--answers", str(REPO / "examples" / "answers.yaml"),
                           "--out", str(out), "--concurrency", "1", "--seconds", "1"], cwd=out.parent, env=_env(url),
                          capture_output=True, text=True, timeout=900, check=False)


def _reached_report(proc: subprocess.CompletedProcess[str], out: Path) -> dict:
    record = json.loads((out / "deploy.json").read_text())
    assert "failed_stage" not in record, proc.stderr[-3000:]
    assert record["outcome"] in ("GO", "NO-GO") and proc.returncode == (0 if record["outcome"] == "GO" else 1)
    assert "Traceback" not in proc.stderr and (out / "DEPLOYMENT.md").is_file()
    return json.loads((out / "model-profile.json").read_text())


@pytest.mark.slow
def test_deploy_of_a_registered_onnx_model_serves_it_under_the_registry_version(tracking: str, tmp_path: Path) -> None:
    out = tmp_path / "dep"
    proc = _deploy("models:/churn-onnx/1", out, tracking)
    profile = _reached_report(proc, out)
    assert profile["registry"]["flavor"] == "onnx" and profile["registry"]["version"] == "1"
    assert "conversion" not in profile and not (out / "conversion.json").exists()  # served as logged
    assert profile["model"]["version"] == "1" and profile["model"]["name"] == "churn-onnx"  # not the metadata's 7
    assert (out / "registry" / "churn-onnx.onnx").is_file()
    assert json.loads((out / "registry" / "registry.json").read_text())["uri"] == "models:/churn-onnx/1"
    spec = yaml.safe_load((out / "deployment.yaml").read_text())
    assert spec["model"]["version"] == "1"
    reason = next(d["rule"] for d in spec["decisions"] if d["decision"] == "version")
    assert "MLflow registry" in reason and "models:/churn-onnx/1" in reason
    row = next(line for line in (out / "DEPLOYMENT.md").read_text().splitlines() if line.startswith("| Model |"))
    assert "v1" in row


@pytest.mark.slow
def test_deploy_of_a_registered_sklearn_model_converts_it_and_records_the_version(tracking: str, tmp_path: Path) -> None:
    out = tmp_path / "dep"
    proc = _deploy("models:/fraud-sk/1", out, tracking)
    profile = _reached_report(proc, out)
    conversion = json.loads((out / "conversion.json").read_text())
    assert conversion["source"]["format"] == "sklearn-skops" and conversion["parity"]["ok"]
    assert conversion["registry"]["version"] == "1" and conversion["registry"]["flavor"] == "sklearn"
    assert profile["conversion"]["registry"]["uri"] == "models:/fraud-sk/1" and profile["model"]["name"] == "fraud-sk"
    assert (out / "converted" / "fraud-sk.onnx").is_file() and (out / "registry" / "fraud-sk.skops").is_file()
    report = (out / "DEPLOYMENT.md").read_text()
    assert "scikit-learn (skops) -> ONNX" in report


@pytest.mark.slow  # the module's MLflow server takes a minute or more to start here
def test_releases_next_names_a_registry_models_release_by_its_registry_version(tracking: str, tmp_path: Path) -> None:
    """The command's first line takes the request as typed: a models:/ URI is asked of the registry
    (nothing downloaded) and its registry version names the release, as inspect will record it."""
    def releases(uri: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "deploy_model", "releases", "--root", "deploy/m", "--next", uri, "--json"],
                              cwd=tmp_path, env=_env(tracking), capture_output=True, text=True, timeout=300, check=False)

    found = releases("models:/churn-onnx/1")
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["next"]["version"] == "1"  # the registry's, not the file's metadata 7
    missing = releases("models:/churn-onnx/9")
    assert missing.returncode == 1 and "RESOURCE_DOES_NOT_EXIST" in missing.stderr and "Traceback" not in missing.stderr
    assert not (tmp_path / "deploy").exists()


@pytest.mark.slow  # the module's MLflow server takes a minute or more to start here
def test_a_missing_name_or_version_is_refused_with_the_registry_answer(tracking: str, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "deploy_model", "inspect", "models:/nope/1", "--out", "dep"], cwd=tmp_path,
                          env=_env(tracking), capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    line = next(line for line in proc.stderr.splitlines() if "error:" in line)
    assert "RESOURCE_DOES_NOT_EXIST" in line and "name=nope" in line  # MLflow's own words
    assert "registered models: churn-onnx, fraud-sk" in line
    assert not (tmp_path / "dep").exists()


@pytest.mark.slow  # the module's MLflow server takes a minute or more to start here
def test_versions_aliases_latest_and_missing_versions_resolve_through_the_client(
        tracking: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from deploy_model.model.convert.mlflow_registry import mlflow_client, resolve

    monkeypatch.setenv(ENV, tracking)
    mlflow = mlflow_client()
    assert resolve(parse_uri("models:/fraud-sk@champion"), mlflow, tracking)["version"] == "2"
    assert resolve(parse_uri("models:/fraud-sk/latest"), mlflow, tracking)["version"] == "2"
    with pytest.raises(StageError, match=r"version=9\) not found"):
        resolve(parse_uri("models:/fraud-sk/9"), mlflow, tracking)
    with pytest.raises(StageError, match="alias gold not found"):
        resolve(parse_uri("models:/fraud-sk@gold"), mlflow, tracking)
    path, record = fetch_for_stage("models:/fraud-sk@champion", tmp_path / "dep", dry_run=False)
    assert path == tmp_path / "dep" / "registry" / "fraud-sk.skops" and record["version"] == "2"
    assert path.read_bytes()[:2] == b"PK"  # the skops archive itself
    run_id = record["run_id"]
    by_run, run_record = fetch_for_stage(f"runs:/{run_id}/onnx", tmp_path / "run", dry_run=False)
    assert by_run == tmp_path / "run" / "registry" / "onnx.onnx" and run_record["version"] is None
    assert run_record["run_id"] == run_id and run_record["flavor"] == "onnx"


@pytest.mark.slow  # the module's MLflow server takes a minute or more to start here
def test_the_convert_verb_converts_a_registry_flavor_and_refuses_to_convert_onnx(
        tracking: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from deploy_model.model.convert.conversion import ConvertOptions
    from deploy_model.model.convert.stage import run_convert

    monkeypatch.setenv(ENV, tracking)
    result = run_convert("models:/fraud-sk/1", tmp_path / "out", ConvertOptions(), dry_run=True)
    assert result["conversion"]["parity"]["ok"] and not (tmp_path / "out").exists()
    assert any("from MLflow models:/fraud-sk/1 (version 1), flavor sklearn" in n for n in result["conversion"]["notes"])
    with pytest.raises(StageError, match=r"holds an ONNX model .*nothing to convert"):
        run_convert("models:/churn-onnx/1", tmp_path / "out", ConvertOptions(), dry_run=True)


@pytest.mark.slow  # the module's MLflow server takes a minute or more to start here
def test_plain_names_find_one_several_or_no_models(tracking: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, tracking)
    assert resolve_name("iris rps 30", FILES) == ("models/iris.onnx", "rps 30")
    assert resolve_name("the fraud model", FILES) == ("models:/fraud-sk/2", "")  # the registry's latest version
    with pytest.raises(StageError) as several:
        resolve_name("the churn model", FILES)
    assert "matches 2 models: models/churn_v0.onnx, models:/churn-onnx/1; ask the user which" in several.value.message
    with pytest.raises(StageError) as none:
        resolve_name("zebra", FILES)
    assert "no model file or registered model matches the name 'zebra'" in none.value.message
    assert "models/churn_v0.onnx, models/iris.onnx" in none.value.message
    assert "churn-onnx (v1), fraud-sk (v2)" in none.value.message


@pytest.mark.slow  # the module's MLflow server takes a minute or more to start here
def test_inspect_of_a_name_that_matches_several_models_lists_them(tracking: str, tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    for name in FILES:
        (tmp_path / name).write_bytes(b"not read: the name matches more than one")
    (tmp_path / "request.txt").write_text("the churn model latency 50 ms\n")
    proc = subprocess.run([sys.executable, "-m", "deploy_model", "inspect", "@request.txt", "--out", "dep"], cwd=tmp_path,
                          env=_env(tracking), capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "'churn' matches 2 models: models/churn_v0.onnx, models:/churn-onnx/1" in proc.stderr
    assert "model file not found" not in proc.stderr and not (tmp_path / "dep").exists()


def test_without_a_tracking_uri_names_search_files_only_and_uris_say_to_set_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    assert resolve_name("the iris model", FILES)[0] == "models/iris.onnx"
    with pytest.raises(StageError) as none:
        resolve_name("the", FILES)
    assert f"no MLflow registry searched ({ENV} is not set)" in none.value.message
    with pytest.raises(StageError, match=f"set {ENV} to its address"):
        fetch_for_stage("models:/churn-onnx/1", tmp_path / "dep", dry_run=False)
    assert not (tmp_path / "dep").exists()


def test_a_recorded_tracking_uri_never_holds_credentials() -> None:
    from deploy_model.model.convert.mlflow_registry import _without_credentials

    assert _without_credentials("https://ann:s3cret@mlflow.example:5000/x") == "https://mlflow.example:5000/x"
    assert _without_credentials("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


def test_the_name_is_the_longest_leading_run_that_still_matches() -> None:
    candidates = [Candidate("a/churn_eu.onnx", "a churn eu onnx"), Candidate("a/churn_us.onnx", "a churn us onnx")]
    assert match_name("the churn eu model rps 20", candidates) == ([candidates[0]], "churn eu", "rps 20")
    assert match_name("churn", candidates) == (candidates, "churn", "")
    assert match_name("the zebra", candidates)[0] == []


def test_mlmodel_flavors_choose_onnx_first_and_refuse_paths_outside(tmp_path: Path) -> None:
    def model_dir(flavors: dict, files: dict[str, bytes]) -> Path:
        folder = tmp_path / str(len(list(tmp_path.iterdir())))
        folder.mkdir()
        (folder / "MLmodel").write_text(yaml.safe_dump({"flavors": flavors}))
        for name, data in files.items():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
        return folder

    both = model_dir({"sklearn": {"pickled_model": "m.skops"}, "onnx": {"data": "m.onnx"}}, {"m.onnx": b"x", "m.skops": b"PK"})
    assert choose_flavor(both).name == "onnx"
    pickled = model_dir({"sklearn": {"pickled_model": "model.pkl", "serialization_format": "cloudpickle"}}, {"model.pkl": b"\x80"})
    assert choose_flavor(pickled).suffix == ".pkl"  # then refused unless --trust-pickle, like any pickle
    trees = model_dir({"lightgbm": {"data": "model.lgb"}, "xgboost": {"data": "model.xgb"}},
                      {"model.xgb": b'{"learner": {}}', "model.lgb": b"tree\n"})
    assert (choose_flavor(trees).name, choose_flavor(trees).suffix) == ("xgboost", ".json")
    torch_dir = model_dir({"pytorch": {"model_data": "data"}}, {"data/model.pth": b"x", "data/pickle_module_info.txt": b"y"})
    assert choose_flavor(torch_dir).native.name == "model.pth"  # MLflow's note beside it is no model
    two = model_dir({"keras": {"data": "data"}}, {"data/a.keras": b"x", "data/b.h5": b"y"})
    with pytest.raises(StageError, match=r"holds a\.keras, b\.h5: expected one model file"):
        choose_flavor(two)
    saved = model_dir({"tensorflow": {"data": "data"}}, {"data/model/saved_model.pb": b"x", "data/save_format.txt": b"tf"})
    assert choose_flavor(saved).native == (saved / "data" / "model").resolve()  # the SavedModel folder itself
    hostile = model_dir({"onnx": {"data": "../../outside.onnx"}}, {})
    with pytest.raises(StageError, match="outside the model directory"):
        choose_flavor(hostile)
    custom = model_dir({"python_function": {"loader_module": "my.loader"}}, {})
    with pytest.raises(StageError, match="has the flavors python_function"):
        choose_flavor(custom)
