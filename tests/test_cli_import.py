"""`cwm --import MODULE`: a user's own environments, registered by their module, work with every --env."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

MODULE = '''
import gymnasium as gym
from gymnasium.envs.classic_control.cartpole import CartPoleEnv


class HeavyCartPole(CartPoleEnv):
    """CartPole with a pole five times heavier."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.masspole = 0.5
        self.total_mass = self.masspole + self.masscart
        self.polemass_length = self.masspole * self.length


gym.register("HeavyCartPole-v0", entry_point=HeavyCartPole, max_episode_steps=200)
'''
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _cwm(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cwm.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, check=False)


def test_a_user_environment_is_collected_and_checked(tmp_path: Path) -> None:
    (tmp_path / "my_envs.py").write_text(MODULE, encoding="utf-8")
    out = _cwm(tmp_path, "--import", "my_envs", "collect", "HeavyCartPole-v0", "--out", "heavy.npz",
               "--trajectories", "3", "--max-steps", "20")
    assert out.returncode == 0, out.stderr
    check = _cwm(tmp_path, "--import=my_envs", "check", str(EXAMPLES / "cartpole_cwm.py"), "--env",
                 "HeavyCartPole-v0", "--dataset", "heavy.npz", "--json")
    report = json.loads(check.stdout)
    # the stock CartPole model is wrong about the heavier pole: scored, and scored as wrong
    assert check.returncode == 1 and report["error"] is None and report["accuracy"] < 1.0
    without = _cwm(tmp_path, "collect", "HeavyCartPole-v0", "--out", "x.npz")
    assert without.returncode == 2 and "unknown environment" in without.stderr


def test_a_module_that_does_not_import_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "broken_envs.py").write_text("raise RuntimeError('boom')\n", encoding="utf-8")
    out = _cwm(tmp_path, "--import", "broken_envs", "envs")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().count("\n") == 0 and "RuntimeError: boom" in out.stderr
