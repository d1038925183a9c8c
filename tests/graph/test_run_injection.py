"""What a host gives a run: a sandbox it scores in and leaves open; the deadline of the planning after it."""

from __future__ import annotations

from cwm.agents.llm.fake_server import FakeLLMServer
from cwm.envs.dataset import load_for_env
from cwm.graph.run import RunConfig, sandbox_config, synthesize
from cwm.sandbox import Sandbox, evaluate
from fake_llm import CARTPOLE, fenced


async def test_synthesize_scores_in_an_injected_sandbox_and_leaves_it_open(tmp_path):
    run_dir = tmp_path / "run"
    async with FakeLLMServer([fenced("weak_force"), fenced("good", improve=True)]) as server:
        cfg = RunConfig(env="CartPole-v1", llm=f"openai:fake@{server.base_url}", budget=3)
        async with Sandbox(sandbox_config(cfg, run_dir)) as sandbox:
            summary = await synthesize(cfg, run_dir, sandbox=sandbox)
            assert summary["accuracy"] == 1.0 and summary["llm_calls"] == 2
            again = await evaluate(sandbox, CARTPOLE, load_for_env("CartPole-v1"))  # still the host's to use
            assert again.accuracy == 1.0


def test_the_run_sandbox_hides_the_run_directory_and_the_dataset(tmp_path):
    data = tmp_path / "data" / "d.npz"
    cfg = RunConfig(env="CartPole-v1", llm="openai:fake@http://127.0.0.1:9/v1", dataset=str(data),
                    allow_import=["scipy"])
    box = sandbox_config(cfg, tmp_path / "run")
    assert str((tmp_path / "run").resolve()) in box.hide and str((tmp_path / "data").resolve()) in box.hide
    assert box.allow_import == ("scipy",)


async def test_the_planning_after_a_search_has_a_deadline(tmp_path):
    """A planning that overruns its deadline ends the run with a timeout error in ``plan``, not a hang."""
    async with FakeLLMServer(default=fenced("good")) as server:
        cfg = RunConfig(env="CartPole-v1", llm=f"openai:fake@{server.base_url}", budget=1, plan_episodes=1,
                        plan_timeout_s=0.001)
        summary = await synthesize(cfg, tmp_path / "run")
    assert summary["accuracy"] == 1.0
    assert summary["plan"]["error"]["kind"] == "timeout" and summary["plan"]["returns"] == []
