"""The command line as a user meets it: outputs, JSON contract, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import EXAMPLES
from cwm.cli import main
from cwm.envs.dataset import load

EXAMPLE = str(EXAMPLES / "cartpole_cwm.py")


def test_check_human_output(capsys):
    assert main(["check", EXAMPLE, "--env", "CartPole-v1"]) == 0
    out = capsys.readouterr().out
    assert "PASSED" in out and "accuracy 1.0000" in out and "402/402" in out


def test_check_json_is_one_object_with_the_contract(capsys):
    assert main(["check", EXAMPLE, "--env", "CartPole-v1", "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    data = json.loads(out)
    for key in ("accuracy", "strict_accuracy", "transitions", "passed", "error", "failures", "elapsed_s"):
        assert key in data
    assert data["accuracy"] == 1.0 and data["passed"] is True and data["error"] is None


def test_check_reports_failures_with_expected_and_predicted(capsys, tmp_path):
    prog = tmp_path / "p.py"
    prog.write_text(
        "class Environment:\n    def set_state(self, s):\n        self.s = s\n"
        "    def step(self, a):\n        return self.s, 1.0, False\n", encoding="utf-8")
    assert main(["check", str(prog), "--env", "CartPole-v1", "--json", "--max-failures", "2"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["passed"] is False and len(data["failures"]) == 2
    f = data["failures"][0]
    for key in ("index", "state", "action", "expected", "predicted", "mismatch", "traceback"):
        assert key in f
    assert f["mismatch"] == ["next_state"]
    assert main(["check", str(prog), "--env", "CartPole-v1"]) == 1
    assert "✗ transition 0" in capsys.readouterr().out


def test_check_classified_program_error(capsys, tmp_path):
    prog = tmp_path / "p.py"
    prog.write_text("def broken(:\n", encoding="utf-8")
    assert main(["check", str(prog), "--env", "CartPole-v1", "--json"]) == 1
    err = json.loads(capsys.readouterr().out)["error"]
    assert err["kind"] == "syntax" and "line 1" in err["message"]


@pytest.mark.parametrize(("argv", "needle"), [
    (["check", EXAMPLE, "--env", "CartPol-v1"], "did you mean CartPole-v1"),
    (["check", "missing.py", "--env", "CartPole-v1"], "no such file"),
    (["check", EXAMPLE, "--env", "CartPole-v1", "--dataset", "nope.npz"], "no such file"),
    (["check", EXAMPLE, "--env", "LunarLander-v3"], "cwm collect LunarLander-v3"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and "Traceback" not in err


def test_malformed_dataset_file(capsys, tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    assert main(["check", EXAMPLE, "--env", "CartPole-v1", "--dataset", str(bad)]) == 2
    assert "not a readable cwm dataset" in capsys.readouterr().err


def test_collect_then_check_a_new_dataset(capsys, tmp_path):
    out = tmp_path / "cp.npz"
    assert main(["collect", "CartPole-v1", "--out", str(out), "--trajectories", "3", "--max-steps", "30"]) == 0
    ds = load(out)
    assert ds.n_trajectories == 3 and len(ds) <= 90 and ds.state.dtype == np.float32
    capsys.readouterr()
    assert main(["check", EXAMPLE, "--env", "CartPole-v1", "--dataset", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == 1.0


def test_doctor_lists_every_layer(capsys):
    assert main(["doctor", "--json"]) == 0
    names = [layer["name"] for layer in json.loads(capsys.readouterr().out)["layers"]]
    assert names == ["fork-server", "deadline", "rlimits", "uid-drop", "network-namespace", "pid-namespace",
                     "filesystem-view", "seccomp", "import-policy"]


def test_envs_and_describe(capsys):
    assert main(["envs", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 18 and {r["name"] for r in rows} >= {"Taxi-v3", "Humanoid-v4"}
    assert main(["describe", "Taxi-v3"]) == 0
    text = capsys.readouterr().out
    assert "## Action Space" in text and "Version History" not in text


def test_describe_file_for_custom_env(capsys, tmp_path):
    desc = tmp_path / "d.md"
    desc.write_text("A ball rolls.", encoding="utf-8")
    assert main(["describe", "anything", "--description", str(desc)]) == 0
    assert capsys.readouterr().out.strip() == "A ball rolls."


def test_console_script_runs():
    done = subprocess.run([sys.executable, "-m", "cwm.cli", "check", EXAMPLE, "--env", "CartPole-v1", "--json"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["passed"] is True
