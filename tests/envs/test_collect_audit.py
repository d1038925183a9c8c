"""`cwm collect` stores each transition's audit verdict, so a new dataset is scored with a known ceiling."""

from __future__ import annotations

from cwm.envs.collect import CollectConfig, collect
from cwm.envs.dataset import CONSISTENT, UNKNOWN, load


def test_collected_transitions_carry_their_verdicts():
    cfg = CollectConfig(trajectories=2, max_steps=6, policy="random")
    ds = collect("CartPole-v1", cfg, progress=None)
    assert (ds.consistent == CONSISTENT).all() and ds.ceiling() == 1.0
    assert ds.meta["audit"]["by"] == "cwm audit"
    raw = collect("CartPole-v1", cfg, progress=None, audit=False)
    assert (raw.consistent == UNKNOWN).all() and raw.ceiling() is None


def test_hidden_state_is_unknown_not_consistent():
    ds = collect("Blackjack-v1", CollectConfig(trajectories=2, max_steps=5, policy="random"), progress=None)
    assert (ds.consistent == UNKNOWN).all()  # the deck is not in the observation


def test_cli_collect_reports_the_audit(tmp_path, capsys):
    from cwm.cli import main

    out = tmp_path / "cp.npz"
    assert main(["collect", "CartPole-v1", "--trajectories", "1", "--max-steps", "4", "--policy", "random",
                 "--out", str(out)]) == 0
    assert "audit: 4 consistent, 0 inconsistent, 0 unknown; ceiling 1.0000" in capsys.readouterr().out
    assert (load(out).consistent == CONSISTENT).all()
