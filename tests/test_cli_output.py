"""What `cwm check`, `cwm plan` and `cwm plan-report` print for people: grouped errors, progress, summaries."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import EXAMPLES
from cwm.cli import main


def test_wrong_env_prints_its_traceback_once(capsys) -> None:
    assert main(["check", str(EXAMPLES / "cartpole_cwm.py"), "--env", "Pendulum-v1"]) == 1
    out = capsys.readouterr().out
    assert out.count("Traceback (most recent call last)") == 1
    assert out.count("ValueError: not enough values to unpack") == 1
    assert "same error in 4 more transitions shown (1, 2, 3, 4)" in out
    assert "1000 transitions raised in all" in out


def test_distinct_errors_are_each_shown(capsys, tmp_path: Path) -> None:
    prog = tmp_path / "p.py"
    prog.write_text(
        "class Environment:\n    def set_state(self, s):\n        self.s = list(s)\n"
        "    def step(self, a):\n        if a == 0:\n            raise KeyError('left')\n"
        "        raise IndexError('right')\n", encoding="utf-8")
    assert main(["check", str(prog), "--env", "CartPole-v1", "--max-failures", "8"]) == 1
    out = capsys.readouterr().out
    assert out.count("Traceback (most recent call last)") == 2
    assert "KeyError: 'left'" in out and "IndexError: right" in out
    assert "raised in all" not in out  # two different errors: no claim that all were the same


def test_after_a_load_error_no_transition_is_listed(capsys, tmp_path: Path) -> None:
    prog = tmp_path / "p.py"
    prog.write_text("raise ImportError('nope')\n", encoding="utf-8")
    assert main(["check", str(prog), "--env", "CartPole-v1"]) == 1
    out = capsys.readouterr().out
    assert "error (import)" in out and "ImportError: nope" in out
    assert "wrong missing" not in out and "✗ transition" not in out
    assert "no transition was run" in out
    # the JSON contract is unchanged: the failures are still there for tools
    assert main(["check", str(prog), "--env", "CartPole-v1", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["error"]["kind"] == "import"


def test_plan_progress_off_a_terminal_is_plain_lines(capsys, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CWM_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["plan", "--env", "CartPole-v1", "--model", "random", "--episodes", "3", "--max-steps", "15"]) == 0
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    done = [ln for ln in lines if " done · " in ln]
    assert [ln.split(" done")[0] for ln in done] == ["episode 1/3", "episode 2/3", "episode 3/3"]
    assert "\r" not in captured.err
    returns = captured.out.split("returns: ")[1].split("\n")[0].split(", ")
    assert [ln.rsplit("return ", 1)[1] for ln in done] == returns  # each line carries its episode's return


def test_plan_progress_heartbeat_during_a_long_episode() -> None:
    import io

    from cwm.plan_text import PlanProgress

    now = [0.0]
    out = io.StringIO()
    progress = PlanProgress(out, tty=False, heartbeat_s=10.0, clock=lambda: now[0])
    for step in range(1, 101):
        now[0] = step * 0.5  # 50 s of one episode: a heartbeat every 10 s
        progress(0, 2, step, float(step))
    progress(1, 2, 1, 1.0)
    progress.finish()
    lines = out.getvalue().splitlines()
    heartbeats = [ln for ln in lines if "done" not in ln]
    assert [ln.split("step ")[1].split(" ")[0] for ln in heartbeats] == ["20", "40", "60", "80", "100"]  # every 10 s
    assert lines[-2:] == ["episode 1/2 done · 100 steps · return 100.0", "episode 2/2 done · 1 steps · return 1.0"]


def test_plan_report_pools_a_repeated_env_and_shows_returns(tmp_path: Path, capsys) -> None:
    results = [
        {"env": "CartPole-v1", "planner": "mcts", "returns": [10.0, 20.0], "normalized_return": 0.2},
        {"env": "CartPole-v1", "planner": "mcts", "returns": [30.0, 40.0, 50.0, 60.0], "normalized_return": 0.8},
        {"env": "Taxi-v3", "planner": "mcts", "returns": [5.0], "normalized_return": 0.1},
    ]
    files = []
    for i, r in enumerate(results):
        f = tmp_path / f"{i}.json"
        f.write_text(json.dumps(r), encoding="utf-8")
        files.append(str(f))
    assert main(["plan-report", *files, "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    cart = next(r for r in rep["envs"] if r["env"] == "CartPole-v1")
    assert cart["episodes"] == 6 and cart["files"] == 2
    assert cart["mean_return"] == 35.0 and round(cart["std_return"], 4) == 17.0783
    assert round(cart["normalized_return"], 6) == 0.6  # (0.2 * 2 + 0.8 * 4) / 6: weighted by episodes
    assert rep["split_count"]["discrete"] == 2  # CartPole once, Taxi once
    assert round(rep["split_mean"]["discrete"], 6) == 0.35
    assert main(["plan-report", *files]) == 0
    out = capsys.readouterr().out
    assert "35.00 ± 17.08" in out and "(pooled from 2 results)" in out and "discrete mean (2 envs): 0.350" in out
