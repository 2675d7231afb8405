import json
from pathlib import Path

from deploy_model.plan.plugins import detect, run_plugins


def _plugin(root: Path, name: str, *, manifest: str | None = None, commands=(), skills=(), **fields) -> Path:
    directory = root / name
    (directory / ".claude-plugin").mkdir(parents=True)
    body = manifest if manifest is not None else json.dumps({"name": name, "version": "1.2.0", **fields})
    (directory / ".claude-plugin" / "plugin.json").write_text(body)
    for command in commands:
        (directory / "commands").mkdir(exist_ok=True)
        (directory / "commands" / f"{command}.md").write_text("---\ndescription: x\n---\n")
    for skill in skills:
        (directory / "skills" / skill).mkdir(parents=True)
        (directory / "skills" / skill / "SKILL.md").write_text("---\nname: x\n---\n")
    return directory


def test_marketplace_checkout_and_installed_cache(tmp_path):
    repo = tmp_path / "repo"
    market = repo / "plugins"
    me = _plugin(market, "yzmir-ml-production")
    _plugin(market, "axiom-devops-engineering", commands=["ship"], skills=["deploying"])
    _plugin(market, "broken", manifest="{not json")
    # The original command's wrong location: a manifest at plugins/<name>/plugin.json is not a plugin.
    (market / "old-layout").mkdir()
    (market / "old-layout" / "plugin.json").write_text(json.dumps({"name": "old-layout"}))
    home = tmp_path / "home"
    cache = home / ".claude" / "plugins" / "cache" / "some-market"
    _plugin(cache / "ordis-quality-engineering", "2.0.0", manifest=json.dumps({"name": "ordis-quality-engineering", "version": "2.0.0"}))
    _plugin(cache, "sre-observability-pack", description="Prometheus alerting and SLO dashboards")
    out = tmp_path / "deploy"

    result = run_plugins(out, me, [], cwd=repo, home=home)
    data = json.loads((out / "siblings.json").read_text())
    names = [p["name"] for p in data["plugins"]]
    assert names == ["axiom-devops-engineering", "ordis-quality-engineering", "sre-observability-pack"]
    devops = data["plugins"][0]
    assert devops["commands"] == ["ship"] and devops["skills"] == ["deploying"]
    assert devops["concerns"] == ["deployment", "ci-cd"] and devops["version"] == "1.2.0"
    assert "deployment strategies" in devops["load"]
    assert data["plugins"][1]["concerns"] == ["monitoring", "testing"]
    assert "monitoring" in data["plugins"][2]["concerns"]
    assert len(data["problems"]) == 1 and "broken" in data["problems"][0]
    assert result["summary"]["problems"] == 1


def test_nothing_found_is_not_an_error(tmp_path):
    result = detect([(tmp_path / "absent", "nowhere")])
    assert result["plugins"] == [] and result["searched"][0]["exists"] is False


def test_manifest_without_name_is_reported(tmp_path):
    _plugin(tmp_path, "nameless", manifest=json.dumps({"version": "1"}))
    result = detect([(tmp_path, "test")])
    assert result["plugins"] == [] and "no 'name'" in result["problems"][0]
