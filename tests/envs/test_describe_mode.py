"""--describe on `cwm describe` and `cwm synthesize`: what the prompt holds and what the run records."""

from __future__ import annotations

import json

import pytest

from cwm.agents.llm.fake_server import FakeLLMServer
from cwm.cli import main
from cwm.envs.describe import describe
from cwm.errors import CwmError
from cwm.graph.run import load_config
from fake_llm import fenced, serve_in_thread


def _user_prompt(server: FakeLLMServer) -> str:
    body = server.requests[0]["body"]
    return next(m["content"] for m in body["messages"] if m["role"] == "user")


@pytest.mark.parametrize("mode, has_facts", [("docs", False), ("docs+facts", True), (None, True)])
def test_synthesize_prompt_and_config_follow_describe(tmp_path, mode, has_facts, capsys):
    out = tmp_path / "run"
    with serve_in_thread(FakeLLMServer(default=fenced("good"))) as server:
        argv = ["synthesize", "--env", "CartPole-v1", "--llm", f"openai:fake@{server.base_url}", "--budget", "1",
                "--out", str(out), "--json"]
        assert main(argv + (["--describe", mode] if mode else [])) == 0
        prompt = _user_prompt(server)
    assert ("## Environment facts" in prompt) == has_facts
    assert ("- tau: 0.02" in prompt) == has_facts
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert config["describe"] == (mode or "docs+facts") and config["env_kwargs"] == {}


def test_runs_from_before_describe_resume_with_docs(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"env": "CartPole-v1", "method": "gif-mcts"}), encoding="utf-8")
    assert load_config(tmp_path).describe == "docs"


def test_describe_command_modes(capsys):
    assert main(["describe", "Hopper-v4", "--describe", "docs"]) == 0
    docs_only = capsys.readouterr().out
    assert "## Environment facts" not in docs_only and "array of 11 values" in docs_only
    assert main(["describe", "Hopper-v4"]) == 0
    full = capsys.readouterr().out
    assert "## Environment facts" in full and "- timestep (s): 0.002" in full
    assert main(["describe", "Hopper-v4", "--describe", "everything"]) == 2


def test_user_file_wins_and_custom_envs_without_an_instance_keep_their_text(tmp_path):
    f = tmp_path / "d.md"
    f.write_text("My env: x doubles each step.", encoding="utf-8")
    text = describe("CartPole-v1", f)
    assert text.startswith("My env: x doubles each step.") and "## Environment facts" in text
    assert describe("my-uploaded-env", f) == "My env: x doubles each step."  # no instance: no facts
    with pytest.raises(CwmError):
        describe("my-uploaded-env")


def test_env_kwargs_are_noted_in_docs():
    text = describe("FrozenLake-v1", mode="docs", env_kwargs={"is_slippery": False})
    assert "{'is_slippery': False}" in text
