"""`releases --next` (the command's first line) on a model inspect will convert: no ONNX read, a version from its bytes."""

from __future__ import annotations

import json

import lightgbm
from convert_helpers import run_cli, training_data

from deploy_model.cli.release_target import model_identity
from deploy_model.common.files import sha256_file


def test_releases_next_names_release_1_of_a_lightgbm_model(tmp_path):
    x, binary, _, _ = training_data()
    model = tmp_path / "fraud model.txt"
    lightgbm.LGBMClassifier(n_estimators=5, verbose=-1, random_state=0).fit(x, binary).booster_.save_model(str(model))
    (tmp_path / "request.txt").write_text("fraud model.txt")
    proc = run_cli("releases", "--root", "deploy/model", "--next", "@request.txt", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["current"] is None and result["next"]["version"] == "1"
    assert model_identity(model) == {"sha256": sha256_file(model), "version": "1"}


def test_a_model_directory_is_identified_by_its_files(tmp_path):
    saved = tmp_path / "saved"
    (saved / "variables").mkdir(parents=True)
    (saved / "saved_model.pb").write_bytes(b"\x08\x01")
    (saved / "variables" / "variables.index").write_bytes(b"a")
    first = model_identity(saved)["sha256"]
    (saved / "variables" / "variables.index").write_bytes(b"b")
    assert model_identity(saved)["sha256"] != first, "a changed weight file is a new model"
    missing = run_cli("releases", "--root", "deploy/model", "--next", tmp_path / "gone.txt", cwd=tmp_path)
    assert missing.returncode == 1 and "\n" not in missing.stderr.strip()
