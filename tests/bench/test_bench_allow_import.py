"""`cwm bench --allow-import` reaches every run's config, and such rows never claim the paper's setting."""

from __future__ import annotations

from cwm.bench.matrix import BenchSpec
from cwm.bench.runner import _config
from cwm.cli import build_parser


def test_allow_import_reaches_the_runs() -> None:
    from cwm.bench.command import _spec

    args = build_parser().parse_args(["bench", "--llm", "local", "--envs", "CartPole-v1", "--allow-import", "mujoco"])
    spec = _spec(args)
    assert spec.allow_import == ["mujoco"]

    class Run:
        env, method, seed = "CartPole-v1", "gif-mcts-paper", 0

    assert _config(spec, Run(), None).allow_import == ["mujoco"]  # type: ignore[arg-type]
    assert _config(BenchSpec(llm="local", envs=["CartPole-v1"], methods=["gif-mcts"]), Run(),  # type: ignore[arg-type]
                   None).allow_import == []
