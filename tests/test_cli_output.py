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
