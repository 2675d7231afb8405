import json
import subprocess
import sys

from foundation_helpers import REPO, run_json, run_script


def test_unknown_verb_is_usage_error():
    proc = subprocess.run([sys.executable, "-m", "deploy_model", "teleport"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2 and "teleport" in proc.stderr


def test_detect_plugins_script(tmp_path):
    result = run_json("detect_plugins.py", "--out", tmp_path, "--root", tmp_path / "nothing")
    assert result["stage"] == "plugins" and (tmp_path / "siblings.json").is_file()


def test_deploy_runs_available_stages(tabular_model, tmp_path):
    out = tmp_path / "dep"
    proc = subprocess.run(
        [sys.executable, "-m", "deploy_model", "deploy", str(tabular_model), "--answers",
         str(REPO / "examples" / "answers.yaml"), "--out", str(out), "--json"],
        capture_output=True, text=True, cwd=REPO, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert [s["stage"] for s in summary["stages"]][:3] == ["plugins", "inspect", "plan"]
    for name in ("siblings.json", "model-profile.json", "deployment.yaml"):
        assert (out / name).is_file(), name
    assert "[1/" in proc.stderr  # one progress line per stage


def test_deploy_stops_at_failing_stage_and_keeps_earlier_files(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    out = tmp_path / "dep"
    proc = subprocess.run(
        [sys.executable, "-m", "deploy_model", "deploy", str(bad), "--out", str(out)],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert proc.returncode == 1
    assert "inspect failed" in proc.stderr and "bad.onnx" in proc.stderr
    assert (out / "siblings.json").is_file() and not (out / "model-profile.json").exists()


def test_internal_errors_never_show_a_traceback(tmp_path):
    # A directory where a file is expected makes the atomic writer fail inside the stage.
    (tmp_path / "siblings.json").mkdir()
    proc = run_script("detect_plugins.py", "--out", tmp_path)
    # An OSError of a stage is a refusal naming the path (not "internal error: OSError").
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    assert "siblings.json: Is a directory" in proc.stderr
