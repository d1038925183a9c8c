"""The import policy: a program cannot borrow the real environment by any route, and a tool-using model
with an allowed library (MuJoCo) works.

Each route is first shown to work where the policy is off (a trusted sandbox that preloads gymnasium), so
the refusals below are the policy's doing, not a broken program.
"""

from __future__ import annotations

import ast
import shutil
import textwrap
from pathlib import Path

import gymnasium
import pytest

from conftest import EXAMPLES
from cwm import cli
from cwm.envs.dataset import load_for_env
from cwm.errors import CwmError
from cwm.sandbox import Limits, Sandbox, SandboxConfig, evaluate
from cwm.sandbox.layers import bwrap_available
from cwm.sandbox.policy import build_policy

GYM_DIR = Path(gymnasium.__file__).resolve().parent
GYM_INIT = GYM_DIR / "__init__.py"
SITE = GYM_DIR.parent
ASSET = GYM_DIR / "envs" / "mujoco" / "assets" / "inverted_pendulum.xml"
BWRAP = bwrap_available()
needs_bwrap = pytest.mark.skipif(not BWRAP, reason="bubblewrap is not available")
LIMITS = Limits(load_s=10.0, base_s=5.0, per_transition_s=0.02, transition_s=1.0, memory_mb=2048)

WRAPPER = '''
import numpy as np
{how}

class Environment:
    def __init__(self):
        self.env = gym.make("CartPole-v1").unwrapped
        self.env.reset(seed=0)

    def set_state(self, s):
        self.env.state = np.array(s, dtype=np.float64)
        self.env.steps_beyond_terminated = None

    def step(self, a):
        obs, r, term, trunc, info = self.env.step(a)
        return obs, float(r), bool(term)
'''

ROUTES = {
    "import": "import gymnasium as gym",
    "importlib": "import importlib\ngym = importlib.import_module('gymnasium')",
    "__import__": "gym = __import__('gymnasium')",
    "sys.path": f"import sys\nsys.path.insert(0, {str(SITE)!r})\nimport gymnasium as gym",
    "spec-from-file": textwrap.dedent(f"""
        import importlib.util, sys
        spec = importlib.util.spec_from_file_location("gymnasium", {str(GYM_INIT)!r},
                                                      submodule_search_locations=[{str(GYM_DIR)!r}])
        gym = importlib.util.module_from_spec(spec)
        sys.modules["gymnasium"] = gym
        spec.loader.exec_module(gym)"""),
    "read-and-exec": textwrap.dedent(f"""
        import sys, types
        gym = types.ModuleType("gymnasium")
        gym.__path__ = [{str(GYM_DIR)!r}]
        sys.modules["gymnasium"] = gym
        exec(compile(open({str(GYM_INIT)!r}).read(), {str(GYM_INIT)!r}, "exec"), gym.__dict__)"""),
    "caught-then-fallback": "try:\n    import gymnasium as gym\nexcept ImportError:\n    gym = None",
}


@pytest.fixture(scope="module")
def cartpole_ds():
    ds = load_for_env("CartPole-v1")
    import numpy as np

    return ds.subset(np.flatnonzero(ds.trajectory < 2))


async def _score(code: str, ds, **config) -> object:
    async with Sandbox(SandboxConfig(limits=LIMITS, **config)) as sb:
        return await evaluate(sb, code, ds)


async def test_the_wrapper_works_where_the_policy_is_off(cartpole_ds):
    # the control: in a trusted sandbox (gymnasium preloaded) wrapping the environment scores ~1.0
    report = await _score(WRAPPER.format(how=ROUTES["import"]), cartpole_ds, preload=("gymnasium",))
    assert report.error is None and report.accuracy > 0.95


@pytest.mark.parametrize("route", list(ROUTES))
async def test_wrapping_the_real_environment_scores_nothing(sandbox, cartpole_ds, route):
    report = await evaluate(sandbox, WRAPPER.format(how=ROUTES[route]), cartpole_ds)
    assert report.accuracy == 0.0 and report.strict_accuracy == 0.0
    assert report.error is not None and report.error.kind == "forbidden_import", report.error
    assert "environment" in report.error.message


async def test_sys_modules_holds_no_environment(sandbox, cartpole_ds):
    code = WRAPPER.format(how="import sys\ngym = sys.modules['gymnasium']")
    report = await evaluate(sandbox, code, cartpole_ds)
    assert report.accuracy == 0.0 and report.error is not None
    assert "KeyError" in report.error.message
    probe = ("import sys\nprint(sorted({m.split('.')[0] for m in sys.modules} - set(sys.stdlib_module_names)))\n"
             "class Environment:\n    def set_state(self, s): self.s = s\n"
             "    def step(self, a): return self.s, 1.0, False\n")
    report = await evaluate(sandbox, probe, cartpole_ds)
    assert report.error is None
    assert report.output.strip() == "['__main__', 'numpy']"


@pytest.mark.parametrize(("name", "code"), [
    ("open-asset", f"data = open({str(ASSET)!r}).read()\n"),
    ("open-package", f"import io\ndata = io.open_code({str(GYM_INIT)!r}).read()\n"),
    ("ctypes", "import ctypes\nctypes.pythonapi.PyRun_SimpleString(b'import gymnasium')\n"),
    ("dlopen", "import ctypes\nctypes.CDLL(None)\n"),
    ("gc", "import gc\nmods = [o for o in gc.get_objects() if type(o).__name__ == 'module']\n"),
])
async def test_other_routes_are_refused(sandbox, cartpole_ds, name, code):
    report = await evaluate(sandbox, code, cartpole_ds)
    assert report.accuracy == 0.0
    assert report.error is not None and report.error.kind == "forbidden_import", report.error


async def test_reaching_for_the_environment_while_stepping_ends_the_session(sandbox, cartpole_ds):
    code = textwrap.dedent("""
        import numpy as np
        class Environment:
            def set_state(self, s):
                self.s = np.asarray(s)
            def step(self, a):
                try:
                    import gymnasium
                except ImportError:
                    pass
                return self.s, 1.0, False
    """)
    report = await evaluate(sandbox, code, cartpole_ds)
    assert report.error is not None and report.error.kind == "forbidden_import"
    assert report.accuracy == 0.0


async def test_other_libraries_need_the_flag(sandbox, cartpole_ds):
    report = await evaluate(sandbox, "import mujoco\n", cartpole_ds)
    assert report.error.kind == "forbidden_import"
    assert "--allow-import mujoco" in report.error.message


@needs_bwrap
async def test_the_filesystem_view_leaves_the_environment_out(sandbox, cartpole_ds):
    # os.path.exists and os.listdir raise no audit event: this sees the filesystem layer alone
    code = textwrap.dedent(f"""
        import os
        print(os.path.exists({str(GYM_DIR)!r}), os.path.exists({str(ASSET)!r}))
        print(sorted(os.listdir({str(SITE)!r})))
        class Environment:
            def set_state(self, s): self.s = s
            def step(self, a): return self.s, 1.0, False
    """)
    report = await evaluate(sandbox, code, cartpole_ds)
    assert report.error is None
    first, second = report.output.strip().splitlines()
    assert first == "False False"
    listed = set(ast.literal_eval(second))
    assert "gymnasium" not in listed and "mujoco" not in listed and "numpy" in listed
    assert listed <= {Path(p).name for p in build_policy().expose}


async def test_without_the_filesystem_layer_the_policy_says_import_level_only(cartpole_ds):
    async with Sandbox(SandboxConfig(isolation="none", limits=LIMITS)) as sb:
        assert "import-level only" in sb.policy_text()
        report = await evaluate(sb, WRAPPER.format(how=ROUTES["import"]), cartpole_ds)
    assert report.error.kind == "forbidden_import" and report.accuracy == 0.0


def test_preload_means_trusted_and_no_policy():
    policy = build_policy((), ("gymnasium",))
    assert policy.mode == "trusted" and not policy.enforced
    assert "trusted" in policy.label()


@pytest.mark.parametrize(("allow", "needle"), [(("gymnasium",), "can never be allowed"),
                                               (("no_such_module_cwm",), "no module named")])
def test_allow_import_refuses_environments_and_missing_modules(allow, needle):
    with pytest.raises(CwmError, match=needle):
        build_policy(allow)


# ------------------------------------------------------------------------------- tool-using models
MUJOCO_MODEL = (EXAMPLES / "inverted_pendulum_mujoco_cwm.py").read_text(encoding="utf-8")


async def test_a_mujoco_model_with_its_own_mjcf_scores_with_the_flag():
    ds = load_for_env("InvertedPendulum-v4")
    report = await _score(MUJOCO_MODEL, ds, allow_import=("mujoco",))
    assert report.error is None
    assert report.accuracy >= 0.97


async def test_the_same_model_fails_cleanly_without_the_flag():
    ds = load_for_env("InvertedPendulum-v4")
    report = await _score(MUJOCO_MODEL, ds)
    assert report.accuracy == 0.0
    assert report.error.kind == "forbidden_import" and "--allow-import mujoco" in report.error.message


@pytest.mark.parametrize("code", [
    "import mujoco\nimport gymnasium\n",
    f"import mujoco\nopen({str(ASSET)!r}).read()\n",
    *([f"import mujoco\nmujoco.MjModel.from_xml_path({str(ASSET)!r})\n"] if BWRAP else []),
], ids=["import-gymnasium", "open-asset", *(["mujoco-loads-the-asset"] if BWRAP else [])])
async def test_the_environment_stays_out_with_mujoco_allowed(code):
    ds = load_for_env("InvertedPendulum-v4")
    report = await _score(code, ds, allow_import=("mujoco",))
    assert report.accuracy == 0.0 and report.error is not None
    # MuJoCo's C loader reads files without an audit event: there the filesystem view answers alone
    assert report.error.kind in ("forbidden_import", "runtime")
    assert "forbidden" in report.error.message or "error opening file" in report.error.message.lower()


# ----------------------------------------------------------------------------------- command line
def test_check_labels_the_policy(capsys):
    code = cli.main(["check", str(EXAMPLES / "inverted_pendulum_mujoco_cwm.py"), "--env", "InvertedPendulum-v4",
                     "--allow-import", "mujoco", "--json"])
    import json

    data = json.loads(capsys.readouterr().out)
    assert code == (0 if data["passed"] else 1) and data["accuracy"] >= 0.97
    assert "mujoco (--allow-import)" in data["import_policy"]


def test_bad_sandbox_flags_are_refused(capsys):
    ex = str(EXAMPLES / "cartpole_cwm.py")
    assert cli.main(["check", ex, "--env", "CartPole-v1", "--preload", "nonexistent_mod"]) == 2
    err = capsys.readouterr().err
    assert "nonexistent_mod" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert cli.main(["check", ex, "--env", "CartPole-v1", "--memory-mb", "-5"]) == 2
    with pytest.raises(CwmError, match="--memory-mb"):
        Limits(memory_mb=-5)


def test_doctor_completes_when_the_fork_server_cannot_start(capsys):
    code = cli.main(["doctor", "--preload", "nonexistent_mod"])
    out = capsys.readouterr().out
    assert code == 1
    assert "did not start" in out and "nonexistent_mod" in out and "import-policy" in out


def test_an_interpreter_under_tmp_runs_sandboxed(tmp_path):
    """A virtual environment under /tmp (hidden by bubblewrap's private /tmp) still runs the sandbox."""
    import subprocess
    import sys
    import sysconfig

    base = getattr(sys, "_base_executable", sys.executable)
    venv = Path("/tmp") / f"cwm-venv-{tmp_path.name}"
    try:
        subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True)
        site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig;"
                                    "print(sysconfig.get_paths()['purelib'])"], check=True, capture_output=True,
                                   text=True).stdout.strip())
        ours = Path(sysconfig.get_paths()["purelib"])
        # numpy and pyseccomp "installed" into the new environment (links), the rest reachable for the evaluator
        for entry in ours.iterdir():
            if entry.name.startswith(("numpy", "pyseccomp")):
                (site / entry.name).symlink_to(entry)
        (site / "zz-evaluator.pth").write_text(f"{Path(cli.__file__).parents[1]}\n{ours}\n", encoding="utf-8")
        python = venv / "bin" / "python"
        assert str(python).startswith("/tmp/")
        done = subprocess.run([str(python), "-m", "cwm.cli", "check", str(EXAMPLES / "cartpole_cwm.py"),
                               "--env", "CartPole-v1", "--json"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert '"passed": true' in done.stdout
        doctor = subprocess.run([str(python), "-m", "cwm.cli", "doctor", "--json"], capture_output=True,
                                text=True, timeout=120)
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        import json

        layers = {lyr["name"]: lyr["active"] for lyr in json.loads(doctor.stdout)["layers"]}
        assert layers["fork-server"] and layers["import-policy"]
        if BWRAP:
            assert layers["filesystem-view"]
    finally:
        shutil.rmtree(venv, ignore_errors=True)


def test_the_prompt_contract_lists_exactly_what_is_allowed():
    from cwm.agents import prompts

    ds = load_for_env("InvertedPendulum-v4")
    paper = prompts.contract(ds)
    assert "Only the Python standard library and numpy are available." in paper and "mujoco" not in paper
    tool = prompts.contract(ds, ("mujoco",))
    assert "numpy and mujoco" in tool and "MjModel.from_xml_string" in tool and "nstep=FRAME_SKIP" in tool
    assert "<mujoco" not in tool  # the shape of a program, never the environment's model file
    user = prompts.generate("An environment.", ds, "", ("mujoco",))[1].content
    assert "### Using mujoco" in user


async def test_a_tool_using_search_is_recorded_and_prompted(tmp_path):
    """synthesize --allow-import mujoco: the prompt carries the tool note, the config and summary record it."""
    import json

    from cwm.agents.llm.fake_server import FakeLLMServer, Reply
    from cwm.graph.run import RunConfig, synthesize

    description = tmp_path / "description.md"
    description.write_text("A cart on a rail with a hinged pole; observation [x, angle, x_dot, angle_dot].\n",
                           encoding="utf-8")
    async with FakeLLMServer([Reply(f"```python\n{MUJOCO_MODEL}```")]) as server:
        summary = await synthesize(RunConfig(env="InvertedPendulum-v4", llm=f"openai:fake@{server.base_url}",
                                             budget=1, description=str(description), allow_import=["mujoco"]),
                                   tmp_path / "run")
        prompt = server.requests[0]["body"]["messages"][-1]["content"]
    assert "### Using mujoco" in prompt and "numpy and mujoco" in prompt
    assert summary["accuracy"] >= 0.97 and summary["allow_import"] == ["mujoco"]
    assert "mujoco (--allow-import)" in summary["import_policy"]
    assert json.loads((tmp_path / "run" / "config.json").read_text(encoding="utf-8"))["allow_import"] == ["mujoco"]


async def test_synthesize_never_preloads(tmp_path):
    from cwm.graph.run import RunConfig, synthesize

    with pytest.raises(CwmError, match="trusted reference models"):
        await synthesize(RunConfig(env="CartPole-v1", llm="openai:fake@http://127.0.0.1:9/v1", budget=1,
                                   preload=["gymnasium"]), tmp_path / "run")


def test_a_tool_using_model_plans(capsys):
    """cwm plan with the MuJoCo model: it acts in the real environment, batched through mujoco.rollout."""
    import json

    code = cli.main(["plan", "--env", "InvertedPendulum-v4", "--model",
                     str(EXAMPLES / "inverted_pendulum_mujoco_cwm.py"), "--allow-import", "mujoco",
                     "--episodes", "1", "--max-steps", "3", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result.get("error") is None
    assert result["returns"] == [3.0] and result["step_batch"] is True
    assert "mujoco (--allow-import)" in result["import_policy"]


def test_threads_only_for_a_library_that_registers_them():
    from cwm.sandbox.policy import ImportPolicy

    sb = Sandbox(SandboxConfig())
    assert sb.effective_limits(Limits()).max_tasks == 0  # not started: no library, no threads
    sb.policy = ImportPolicy("allow", allowed=("threadedlib",), threads=4)
    assert sb.effective_limits(Limits()).max_tasks == 4
    assert sb.effective_limits(Limits(max_tasks=8)).max_tasks == 8  # never fewer than asked
    assert build_policy(("mujoco",)).threads == 0 and build_policy(("mujoco",)).ctypes
