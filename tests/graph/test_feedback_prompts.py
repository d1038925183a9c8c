"""What improve prompts show (first failure of each kind, never an inconsistent one, values in the state's
own types) and how duplicate programs are recognised (layout and comments ignored)."""

from __future__ import annotations

from types import SimpleNamespace

from cwm.agents.expand import build_messages, showable_failures
from cwm.agents.normalize import normalized, program_key
from cwm.agents.prompts import _fmt, fmt_state, improve
from cwm.envs.dataset import load_for_env
from cwm.sandbox.evaluate import ScoreReport


def failure(index: int, mismatch: list[str], **extra) -> dict:
    return {"index": index, "trajectory": 0, "step": index, "state": [0.5, 1.0], "action": 1,
            "expected": {"next_state": [0.5, 1.0], "reward": 1.0, "done": False, "truncated": False},
            "predicted": {"next_state": [0.25, 1.0], "reward": 0.0, "done": True}, "mismatch": mismatch,
            "traceback": None, "error": None, **extra}


def report(failures: list[dict]) -> ScoreReport:
    return ScoreReport("CartPole-v1", "cwm", 0.9, 0.5, 10, 5, 0, None, failures, 0.0)


def test_first_failure_of_each_kind_in_index_order():
    fs = [failure(2, ["next_state"]), failure(4, ["next_state", "reward"]), failure(5, ["reward"]),
          failure(7, ["done"]), failure(9, ["done", "reward"])]
    assert [f["index"] for f in showable_failures(report(fs))] == [2, 4, 7]
    # one failure wrong in every part is shown once
    assert [f["index"] for f in showable_failures(report([failure(1, ["next_state", "reward", "done"]),
                                                          failure(3, ["done"])]))] == [1]


def test_inconsistent_transitions_are_never_shown():
    fs = [failure(1, ["next_state"], consistent=False), failure(2, ["reward"], consistent=False),
          failure(3, ["next_state"], consistent=None), failure(6, ["reward"])]
    assert [f["index"] for f in showable_failures(report(fs))] == [3, 6]  # unknown/missing: may be shown
    assert showable_failures(report([failure(1, ["reward"], consistent=False)])) == []


def test_failures_that_raised_are_left_to_fix():
    raised = {**failure(1, ["exception"]), "predicted": None, "traceback": "Traceback ..."}
    assert [f["index"] for f in showable_failures(report([raised, failure(4, ["done"])]))] == [4]


def test_states_print_in_their_own_types():
    taxi, blackjack, cartpole = (load_for_env(e) for e in ("Taxi-v3", "Blackjack-v1", "CartPole-v1"))
    assert fmt_state(taxi, 17.0) == "17" and fmt_state(taxi, [17.0]) == "17"
    assert fmt_state(blackjack, [17.0, 3.0, 1.0]) == "(17, 3, 1)"
    assert fmt_state(blackjack, [17.5, 3.0, 1.0]) == "(17.5, 3, 1)"  # a wrong prediction shown as it was
    # a float32 state widened for the wire prints as the float32 the program receives
    assert fmt_state(cartpole, cartpole.wire_state(0)) == _fmt(cartpole.state_value(0))
    assert "e-01" in fmt_state(cartpole, [0.1, -2.0, 0.0, 1e-3])
    assert fmt_state(cartpole, None).startswith("None")


def test_improve_prompt_shows_each_failure_with_typed_values():
    ds = load_for_env("Blackjack-v1")
    fs = [{**failure(2, ["next_state"]), "state": [14, 10, 0],
           "expected": {"next_state": [17, 10, 0], "reward": 0.0, "done": False, "truncated": False},
           "predicted": {"next_state": [17.0, 10.0, 1.0], "reward": 0.0, "done": False}},
          {**failure(5, ["reward", "done"]), "state": [20, 4, 0],
           "expected": {"next_state": [20, 4, 0], "reward": 1.0, "done": True, "truncated": False},
           "predicted": {"next_state": [20.0, 4.0, 0.0], "reward": 0.0, "done": False}}]
    text = improve("Blackjack.", ds, "class Environment: ...", fs)[-1].content
    assert "## Transitions the program gets wrong" in text and "### Transition 2" in text
    assert "Next state: (17, 10, 1)" in text and "Input state: (20, 4, 0)" in text
    assert "17." not in text
    one = improve("Blackjack.", ds, "class Environment: ...", fs[0])[-1].content
    assert "## A transition the program gets wrong" in one and "### Transition" not in one


def test_programs_equal_up_to_layout_and_comments_share_a_key():
    a = "import math\n\nclass Environment:\n    def step(self, a):\n        return (a, 1.0, False)\n"
    b = ("import math  # needed\nclass Environment:\n  # two-space indent\n  def step(self,a):\n"
         "      return (a,1.0,False)\n\n\n")
    assert program_key(a) == program_key(b)
    assert program_key(a) != program_key(a.replace("1.0", "0.5"))


def test_unparsable_programs_fall_back_to_tokens_then_whitespace():
    broken = "def step(self)\n    return 1  # no colon\n"
    assert normalized(broken).startswith("tok:")
    assert program_key(broken) == program_key("def step(self)\n        return 1\n")
    unterminated = 'x = """never closed\n  y  =  2\n'
    assert normalized(unterminated).startswith("ws:")
    assert program_key(unterminated) == program_key('x = """never closed\ny = 2')
    assert program_key("(" * 200_000) != program_key("(")  # deep nesting is not an error


def test_paper_mode_shows_one_failure_and_old_nodes_still_prompt():
    ds = load_for_env("CartPole-v1")
    deps = SimpleNamespace(description="CartPole.", feedback=ds, sandbox=SimpleNamespace(
        config=SimpleNamespace(allow_import=())))
    fs = [failure(2, ["next_state"]), failure(7, ["done"])]
    parent = {"program": "class Environment: ...", "feedback": fs[0], "failures": fs}
    three = build_messages(deps, "i", parent, show_failures=3)[-1].content
    one = build_messages(deps, "i", parent, show_failures=1)[-1].content
    assert "### Transition 2" in three and "## A transition the program gets wrong" in one
    legacy = build_messages(deps, "i", {"program": "x", "feedback": fs[1]}, 3)[-1].content
    assert "Wrong: done" in legacy
    nothing = build_messages(deps, "i", {"program": "x", "feedback": None, "failures": []}, 3)[-1].content
    assert "gets wrong" not in nothing  # nothing that may be shown: a rewrite prompt instead
