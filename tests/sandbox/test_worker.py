"""Loading, stepping and classifying programs in the real sandbox."""

import textwrap

import numpy as np
import pytest

from cwm.sandbox import IOSpec, evaluate

HEADER = "import numpy as np\n"


def prog(body: str) -> str:
    return HEADER + textwrap.dedent(body)


GOOD_STEP = """
class Environment:
    def __init__(self):
        self.s = None
    def set_state(self, s):
        self.s = s
    def step(self, a):
        return self.s, 1.0, False
"""


async def test_reference_example_passes(sandbox, cartpole, cartpole_code):
    report = await evaluate(sandbox, cartpole_code, cartpole)
    assert report.passed and report.accuracy == 1.0 and report.transitions == 402
    assert report.error is None and report.failures == []


@pytest.mark.parametrize(("code", "kind", "needle"), [
    ("class Environment(:\n    pass\n", "syntax", "line 1"),
    ("import torch_does_not_exist\n", "forbidden_import", "--allow-import torch_does_not_exist"),
    ("from numpy import does_not_exist\n", "import", "does_not_exist"),
    ("import numpy.does_not_exist\n", "import", "numpy.does_not_exist"),
    ("x = 1\n", "interface", "no class named Environment"),
    ("class Environment:\n    def set_state(self, s): pass\n", "interface", "no method step"),
    ("class Environment:\n    def __init__(self):\n        raise ValueError('bad init')\n"
     "    def set_state(self, s): pass\n    def step(self, a): pass\n", "runtime", "bad init"),
])
async def test_load_failures_are_classified(sandbox, cartpole_small, code, kind, needle):
    report = await evaluate(sandbox, code, cartpole_small)
    assert report.error is not None
    assert report.error.kind == kind
    assert needle in report.error.message + (report.error.traceback or "")
    assert report.accuracy == 0.0 and not report.passed


async def test_per_transition_exceptions_keep_their_line_numbers(sandbox, cartpole_small):
    code = prog("""
    class Environment:
        def set_state(self, s):
            self.s = np.array(s)
        def step(self, a):
            if a == 1:
                raise KeyError('right is not modelled')  # line 8 of the program
            return self.s, 1.0, False
    """)
    report = await evaluate(sandbox, code, cartpole_small, max_failures=50)
    assert report.error is None
    raised = [f for f in report.failures if f["traceback"]]
    assert raised and report.exceptions == len(raised)
    tb = raised[0]["traceback"]
    assert 'File "program.py", line 8, in step' in tb and "KeyError" in tb
    assert "_zygote" not in tb  # the sandbox's own frames are not shown to the LLM
    assert 0.0 < report.accuracy < 1.0


async def test_wrong_return_shapes_are_explained(sandbox, cartpole_small):
    code = prog("""
    class Environment:
        def set_state(self, s): self.s = s
        def step(self, a): return self.s, 1.0
    """)
    report = await evaluate(sandbox, code, cartpole_small)
    assert "step must return (next_state, reward, done)" in report.failures[0]["traceback"]


async def test_persistent_session_steps_many_times(sandbox):
    code = prog("""
    class Environment:
        def set_state(self, s): self.s = np.asarray(s)
        def step(self, a): return self.s + a, float(a), bool(a > 5)
        def step_batch(self, S, A): return S + A[:, None], A.astype(float), A > 5
    """)
    session, loaded = await sandbox.load(code, IOSpec("array", "float64", "int", "int64"))
    assert loaded.ok and loaded.has_step_batch
    for _k in range(3):
        answers = await session.step_many([([0.0, 1.0], a) for a in range(10)], timeout=5)
        assert [a["r"] for a in answers] == [float(a) for a in range(10)]
        assert answers[7]["s"] == [7.0, 8.0] and answers[7]["d"] is True
    status = await session.close()
    assert "signal" in status or "exit" in status


async def test_program_output_is_captured_and_bounded(sandbox, cartpole_small):
    code = prog("""
    print("hello from the program")
    class Environment:
        def __init__(self):
            print("y" * 10**6)
        def set_state(self, s): self.s = s
        def step(self, a): return self.s, 1.0, False
    """)
    report = await evaluate(sandbox, code, cartpole_small)
    assert report.output.startswith("hello from the program")
    assert len(report.output) < 10_000 and "characters dropped" in report.output


async def test_states_arrive_in_the_environments_own_types(sandbox):
    from cwm.envs.dataset import load_for_env

    code = prog("""
    class Environment:
        def set_state(self, s):
            assert type(s) is tuple and all(type(v) is int for v in s), repr(s)
            self.s = s
        def step(self, a):
            assert type(a) is int
            return self.s, 0.0, True
    """)
    report = await evaluate(sandbox, code, load_for_env("Blackjack-v1"))
    assert report.exceptions == 0


async def test_sandbox_survives_many_programs(sandbox, cartpole_small):
    bad = "raise SystemExit(3)\n"
    for _ in range(5):
        assert (await evaluate(sandbox, bad, cartpole_small)).error.kind == "crash"
    good = prog(GOOD_STEP)
    report = await evaluate(sandbox, good, cartpole_small)
    assert report.error is None and np.isclose(report.accuracy, report.accuracy)
