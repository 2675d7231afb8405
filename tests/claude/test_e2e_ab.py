"""An A/B test planned through /deploy-model in the real Claude Code CLI, the user answering the agent's questions.

Release 1 of the example model goes through the body's lines (no local trial: the bundle is what
counts here). The model is then retrained in place and /deploy-model runs again as an interactive
session: the CLI is hosted over stdio as the Agent SDK hosts it (user_host.py), because `claude -p`
alone switches AskUserQuestion off. The scripted agent (scripted_api.py: a FAKE Anthropic API, no
model answers here) does what the body says for a later release: the releases line, one question
for the strategy (the user picks the A/B test), then the metric, the minimum detectable effect and
the baseline (the user types two of them), answers.yaml written from what the user answered, plan
with --previous, the duration estimate told to the user, render, validate, report. Asserted: 0
permission denials and no permission prompt beyond the questions, each Bash call inside the Bash
tool's 2 minutes, the plan's experiment decision equal to sample_size.estimate on the user's
answers, its figures in the plan output the agent got, and the same n per arm in DEPLOYMENT.md.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from release_script import (
    BASH_TOOL_TIMEOUT_S,
    FAST,
    Release,
    play,
    result_text,
    tool_calls,
    tool_results,
)
from release_two import _last_tool_result, _retarget, documented, first_json, retrain, tree_digest
from scripted_api import Block, ScriptedAPI, Turn, text, tool
from surface import (
    COMMAND_FILE,
    DEPLOY_DIR,
    REPO,
    REQUEST,
    claude_env,
    split_frontmatter,
    substitute,
)
from test_e2e_releases import _first_release, _print
from user_host import Hosted, answered, host

from deploy_model.experiment.sample_size import estimate

# Two sessions (release 1, then the A/B release): about two minutes here, more on a busy machine.
pytestmark = [pytest.mark.slow, pytest.mark.e2e, pytest.mark.timeout(1200)]
MODEL = "models/tabular_classifier.onnx"
# Release 1's answers; 5 req/s is the traffic the A/B test is sized for (ab_test.traffic_rps defaults to it).
ANSWERS = {"target": "kubernetes", "traffic": "realtime", "requests_per_second": 5, "latency_sla_ms": 500,
           "namespace": "ml-serving", "host": "tabular.example.com", "rollout": "canary", "canary_weight": 10}
# The strategy question of the body's step 1 (AskUserQuestion takes 2 to 4 options; direct is the user's to type).
STRATEGIES = {"canary (Recommended)": ("canary", "10% of traffic first"),
              "shadow": ("shadow", "the serving model keeps answering, the new one is scored beside it"),
              "blue-green": ("blue-green", "the new version beside the old, traffic switched at once"),
              "A/B test (ab)": ("ab", "a fixed split for the experiment's length, judged on a metric")}
# What the user answers, by question header: two options picked, two values typed in ("Other").
USER = {"Release": "A/B test (ab)", "Metric": "accuracy (Recommended)", "MDE": "0.01", "Baseline": "0.91"}
AB = {"metric": "accuracy", "mde": 0.01, "baseline": 0.91}  # the same answers as answers.yaml takes them
AB_QUESTIONS = [
    {"question": "Which metric decides the A/B test?", "header": "Metric", "multiSelect": False, "options": [
        {"label": "accuracy (Recommended)", "description": "share of right answers, once labels arrive"},
        {"label": "error", "description": "mean error of a regressor"},
        {"label": "latency", "description": "mean latency in ms, no labels needed"}]},
    {"question": "What is the minimum detectable effect, in the metric's units?", "header": "MDE", "multiSelect": False,
     "options": [{"label": "0.02 (Recommended)", "description": "two points of accuracy"},
                 {"label": "0.05", "description": "five points: a shorter test"}]},
    {"question": "What accuracy does the serving version have now (the baseline)?", "header": "Baseline",
     "multiSelect": False, "options": [{"label": "0.90", "description": "90% right"},
                                       {"label": "0.95", "description": "95% right"}]},
]


class Agent:
    """The scripted agent of the A/B release: what it learnt from the tool results so far."""

    def __init__(self, project: Path) -> None:
        self.project = project
        self.release = Release()
        self.user: dict[str, str] = {}  # question header -> the user's answer
        self.told: list[str] = []  # what it told the user

    def out(self) -> str:
        return self.release.out

    def line(self, verb: str) -> Turn:
        def turn(requests: list[dict[str, Any]]) -> Sequence[Block]:
            command = _retarget(documented(verb), self.out())
            if verb == "plan":
                command += f" --previous {self.release.releases[0]['next']['previous']}"
            return [tool("Bash", command=f"{command} {FAST.get(verb, '')}".strip(), description=f"Run the {verb} stage")]
        return turn

    def ask(self, questions: list[dict[str, Any]], before: str | None = None) -> Turn:
        def turn(requests: list[dict[str, Any]]) -> Sequence[Block]:
            blocks: list[Block] = []
            if before == "releases":  # the releases line just ran: tell the user where this release goes
                doc = first_json(_last_tool_result(requests))
                self.release.releases.append(doc)
                nxt = doc["next"]
                blocks.append(self.say(f"`{DEPLOY_DIR}` holds release {doc['current']}; the new model becomes release "
                                       f"{nxt['version']} in {nxt['out']}, planned against it."))
            return [*blocks, tool("AskUserQuestion", questions=questions)]
        return turn

    def heard(self, then: Turn) -> Turn:
        """Take in what the user just answered (the last tool result), then play `then`."""
        def turn(requests: list[dict[str, Any]]) -> Sequence[Block]:
            by_question = answered(_last_tool_result(requests))
            asked = {q["question"]: q["header"] for q in [_strategy_question(), *AB_QUESTIONS]}
            self.user.update({asked[q]: a for q, a in by_question.items()})
            return then(requests) if callable(then) else then
        return turn

    def write_answers(self, requests: list[dict[str, Any]]) -> Sequence[Block]:
        rollout = STRATEGIES[self.user["Release"]][0]
        ab_test = {"metric": self.user["Metric"].split(" (")[0], "mde": float(self.user["MDE"].split(" (")[0]),
                   "baseline": float(self.user["Baseline"].split(" (")[0])}
        answers = {k: v for k, v in ANSWERS.items() if k != "canary_weight"} | {"rollout": rollout, "ab_test": ab_test}
        return [tool("Write", file_path=str(self.project / self.out() / "answers.yaml"),
                     content=yaml.safe_dump(answers, sort_keys=False))]

    def tell_estimate(self, requests: list[dict[str, Any]]) -> Sequence[Block]:
        """The body: plan prints the duration estimate (`experiment`): tell the user."""
        printed = _last_tool_result(requests)
        estimate_line = next(line.strip() for line in printed.splitlines() if line.strip().startswith("experiment: A "))
        return [self.say(f"The A/B test's {estimate_line}."), *self.line("render")(requests)]  # type: ignore[operator]

    def say(self, words: str) -> Block:
        self.told.append(words)
        return text(words)


def _strategy_question() -> dict[str, Any]:
    return {"question": "How should the new model be released?", "header": "Release", "multiSelect": False,
            "options": [{"label": label, "description": why} for label, (_, why) in STRATEGIES.items()]}


def _ab_script(agent: Agent) -> list[Turn]:
    """Steps 1-3 and 5 of the body for a later release whose user picks an A/B test."""
    return [[tool("Write", file_path=str(agent.project / REQUEST), content=MODEL)],
            [tool("Bash", command=documented("releases"), description="Run the releases stage")],
            agent.ask([_strategy_question()], before="releases"),
            agent.heard(agent.line("plugins")), agent.line("inspect"),
            agent.ask(AB_QUESTIONS), agent.heard(agent.line("answers")), agent.write_answers, agent.line("plan"),
            agent.tell_estimate, agent.line("validate"), agent.line("report")]


def _user(question: dict[str, Any]) -> str:
    return USER[question["header"]]


@pytest.fixture(scope="module")
def ab(claude: Path, tmp_path_factory: pytest.TempPathFactory, example_models: dict[str, Path],
       stage_python: str) -> dict[str, Any]:
    project = tmp_path_factory.mktemp("project")
    (project / "models").mkdir()
    shutil.copy(example_models["tabular_classifier"], project / MODEL)
    home = tmp_path_factory.mktemp("home")
    root = project / DEPLOY_DIR
    play(claude, project, home, MODEL, _first_release(project, yaml.safe_dump(ANSWERS, sort_keys=False), False),
         stage_python)
    before = tree_digest(root)
    retrain(example_models["tabular_classifier"], project / MODEL)
    agent = Agent(project)
    with ScriptedAPI(_ab_script(agent), final_text="The A/B release is planned and validated.") as api:
        hosted = host(claude, project, claude_env(home, api.base_url, stage_python), f"/deploy-model {MODEL}",
                      _user, REPO, tmp_path_factory.mktemp("cli") / "stderr.txt", timeout_s=900)
        turns_left, requests, times = api.turns_left, list(api.requests), list(api.times)
    results = tool_results(hosted.events)
    transcript = [(c["input"]["command"], result_text(results[c["id"]])) for c in tool_calls(hosted.events, "Bash")
                  if c["id"] in results]
    _print("A/B release", transcript)
    return {"project": project, "root": root, "before": before, "agent": agent, "hosted": hosted,
            "turns_left": turns_left, "requests": requests, "times": times, "transcript": transcript}


def _output_of(ab: dict[str, Any], verb: str) -> str:
    return next(output for command, output in ab["transcript"] if f" {verb} " in command)


def _want() -> Any:
    """The sample size for the user's answers at the plan's traffic, from the library the plan uses."""
    return estimate(traffic_rps=ANSWERS["requests_per_second"], mde=AB["mde"], alpha=0.05, power=0.8, split=0.5,
                    baseline=AB["baseline"], labelled_fraction=1.0)


def test_the_session_asked_the_user_and_ran_without_a_permission_prompt(ab: dict[str, Any]) -> None:
    hosted: Hosted = ab["hosted"]
    assert hosted.returncode == 0, hosted.stderr[-2000:]
    assert ab["turns_left"] == 0, "the CLI stopped before the scripted agent finished"
    result = next(e for e in hosted.events if e.get("type") == "result")
    assert result["subtype"] == "success" and result["permission_denials"] == [], result
    assert hosted.prompts == [] and hosted.unhandled == [], (hosted.prompts, hosted.unhandled)
    assert [q["header"] for q in hosted.asked] == ["Release", "Metric", "MDE", "Baseline"]
    assert ab["agent"].user == USER, "the user's answers did not come back to the agent"
    results = tool_results(hosted.events)
    calls = [*tool_calls(hosted.events, "Bash"), *tool_calls(hosted.events, "Write"),
             *tool_calls(hosted.events, "AskUserQuestion")]
    assert len(calls) == len(_ab_script(Agent(ab["project"])))  # one call a turn (tell_estimate's: render)
    for call in calls:
        assert call["id"] in results, f"no result for {call['input']}"
        output = result_text(results[call["id"]])
        assert not results[call["id"]].get("is_error") and "requires approval" not in output, output[-3000:]
    # Main request i+1 arrives when tool call i has finished: the gaps are the tool calls' durations.
    gaps = [later - earlier for earlier, later in itertools.pairwise(ab["times"])]
    print(f"\nslowest tool call of the A/B session: {max(gaps):.1f}s")
    assert max(gaps) < BASH_TOOL_TIMEOUT_S, gaps


def test_the_command_tells_the_agent_to_ask_the_metric_and_the_mde() -> None:
    _, body = split_frontmatter(COMMAND_FILE)
    prose = " ".join(substitute(body, MODEL, REPO).split())
    assert "A/B test (`rollout: ab`): ask the metric, the minimum detectable effect and the baseline" in prose
    assert "plan prints the duration estimate (`experiment`): tell the user" in prose
    # The later release's strategy question, as the body words it, fits AskUserQuestion (2 to 4 options).
    offered = prose.split("how to release it: ", 1)[1].split(" Then, in every line", 1)[0]
    assert "the user can type direct (4 options at most)" in offered
    assert all(f"{label.split(' (Rec')[0]}" in offered for label in STRATEGIES) and len(STRATEGIES) <= 4


def test_the_body_reached_the_agent(ab: dict[str, Any]) -> None:
    first = json.dumps(ab["requests"][0]["messages"])
    assert "ask the metric, the minimum detectable effect and the baseline" in first


def test_the_plan_sizes_the_experiment_from_the_users_answers(ab: dict[str, Any]) -> None:
    project, agent = ab["project"], ab["agent"]
    out = project / agent.out()
    assert agent.release.releases[0]["next"]["previous"] == DEPLOY_DIR and agent.out() != DEPLOY_DIR
    answers = yaml.safe_load((out / "answers.yaml").read_text())
    assert answers["rollout"] == "ab" and answers["ab_test"] == AB
    spec = yaml.safe_load((out / "deployment.yaml").read_text())
    want = _want()
    hours = round(want.duration_seconds / 3600, 2)
    decision = next(d for d in spec["decisions"] if d["decision"] == "experiment")
    assert decision["value"] == {"n_per_arm": {"A": want.n_a, "B": want.n_b}, "duration_hours": hours}
    assert spec["rollout"]["strategy"] == "ab" and spec["stable"]["version"] == "1.0.0"
    assert spec["model"]["version"] != "1.0.0", "the retrained model shares the serving version"
    assert tree_digest(ab["root"]) == ab["before"], "release 1's directory changed"


def test_the_duration_estimate_is_in_what_the_agent_saw(ab: dict[str, Any]) -> None:
    want = _want()
    figure = f"experiment: A {want.n_a} and B {want.n_b} requests, about {round(want.duration_seconds / 3600, 2):g} h " \
             f"at {ANSWERS['requests_per_second']:g} req/s"
    assert figure in _output_of(ab, "plan")
    plan_call = next(c for c in tool_calls(ab["hosted"].events, "Bash") if " plan " in c["input"]["command"])
    sent = [r for r in ab["requests"] if plan_call["id"] in json.dumps(r["messages"][-1])]
    assert sent and figure in json.dumps(sent[0]["messages"][-1]), "the plan's output never reached the model"
    assert any(figure in words for words in ab["agent"].told), ab["agent"].told


def test_the_ab_bundle_validates_and_the_report_holds_the_same_n(ab: dict[str, Any]) -> None:
    out = ab["project"] / ab["agent"].out()
    validation = json.loads((out / "validation.json").read_text())
    summary = first_json(_output_of(ab, "report"))
    assert summary["validation"]["failed"] == 0 and summary["rollout"] == "ab", summary
    assert validation["ok"] is True, [c for c in validation["checks"] if not c.get("ok", True)]
    want = _want()
    report = (out / "DEPLOYMENT.md").read_text()
    section = report.split("## Experiment\n", 1)[1].split("\n## ", 1)[0]
    assert re.search(rf"\| requests per arm \| A {want.n_a}, B {want.n_b} \(", section), section
    assert f"about {round(want.duration_seconds / 3600, 2):g} h" in section
