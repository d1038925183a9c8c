"""The shipped tools, bound to a run's training transitions with the real sandbox; held-out data stays out."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import structlog

from cwm.graph.run import split_heldout
from cwm.tools import ToolDeps, ToolLimitReached, bind_tools, tool_names
from cwm.tools.analysis import MAX_OUTPUT


@pytest.fixture
def split(cartpole):
    feedback, heldout = split_heldout(cartpole, 0.3, seed=0)
    assert heldout is not None and len(heldout) > 0
    return feedback, heldout


def box_for(sandbox, feedback, program=None, max_calls=50):
    return bind_tools(ToolDeps(sandbox, feedback, "CartPole: a pole on a cart.", None, program),
                      max_calls=max_calls)


def test_every_tool_has_a_usable_spec():
    assert {"check_program", "run_analysis", "show_transitions", "describe_env"} <= set(tool_names())
    box = bind_tools(ToolDeps(None, None, "d"))  # type: ignore[arg-type] - factories only store deps
    for spec in box.specs():
        assert spec.description and spec.parameters["type"] == "object"
        json.dumps(spec.parameters)


def test_tool_deps_have_no_place_for_heldout_data():
    names = {f.name for f in dataclasses.fields(ToolDeps)}
    assert names == {"sandbox", "transitions", "description", "limits", "parent_program"}


async def test_heldout_transitions_unreachable_from_every_tool(sandbox, split, cartpole_code):
    feedback, heldout = split
    box = box_for(sandbox, feedback, program=cartpole_code.replace("1.0, done", "0.5, done"))
    held_states = {tuple(np.round(s, 6)) for s in np.asarray(heldout.state, dtype=float)}
    # run_analysis sees exactly the training arrays: none of the held-out rows (given here as a literal)
    probe = ("held = np.array({h})\ntrain = np.array({t})\n"
             "def hits(rows):\n"
             "    return int(sum(bool(np.any(np.all(np.abs(state - r) < 1e-9, axis=1))) for r in rows))\n"
             "print(len(state), hits(held), hits(train))")
    code = probe.format(h=np.asarray(heldout.state, dtype=float).tolist(),
                        t=np.asarray(feedback.state[:25], dtype=float).tolist())
    assert (await box.call("run_analysis", {"code": code})).split() == [str(len(feedback)), "0", "25"]
    # describe_env counts the training transitions only
    desc = json.loads(await box.call("describe_env", {}))
    assert desc["transitions"] == len(feedback)
    # show_transitions: indices past the training set are refused, failures come from training data
    assert (await box.call("show_transitions", {"indices": [len(feedback)]})).startswith("error:")
    shown = json.loads(await box.call("show_transitions", {"kind": "reward", "limit": 5}))
    assert shown["of"] == len(feedback) and shown["wrong"] > 0
    for f in shown["failures"]:
        assert tuple(np.round(np.asarray(f["state"], dtype=float), 6)) not in held_states
    # check_program scores against the training transitions
    report = json.loads(await box.call("check_program", {"code": cartpole_code}))
    assert report["transitions"] == len(feedback) and report["accuracy"] == 1.0


async def test_run_analysis_fits_a_constant_and_finds_episode_ends(sandbox, cartpole_small):
    box = box_for(sandbox, cartpole_small)
    code = ("A = np.stack([np.ones(len(reward))], 1)\n"
            "c = np.linalg.lstsq(A, reward, rcond=None)[0][0]\nprint(round(float(c), 6))\n"
            "print(np.flatnonzero(done).tolist())")
    out = (await box.call("run_analysis", {"code": code})).split("\n")
    assert float(out[0]) == pytest.approx(float(cartpole_small.reward.mean()))
    assert json.loads(out[1]) == np.flatnonzero(cartpole_small.terminated).tolist()


async def test_run_analysis_errors_and_output_are_bounded(sandbox, cartpole_small):
    box = box_for(sandbox, cartpole_small)
    err = await box.call("run_analysis", {"code": "print('before'); 1/0"})
    assert err.startswith("before") and "ZeroDivisionError" in err and "[analysis failed]" in err
    big = await box.call("run_analysis", {"code": "print('x' * 100000)"})
    assert 100 < len(big) <= MAX_OUTPUT
    blocked = await box.call("run_analysis", {"code": "import gymnasium"})
    assert "[analysis failed]" in blocked
    assert (await box.call("run_analysis", {"code": ""})).startswith("error: ValueError")


async def test_run_analysis_time_is_bounded(sandbox, cartpole_small):
    from cwm.sandbox import Limits

    box = bind_tools(ToolDeps(sandbox, cartpole_small, "d", Limits(load_s=1.0)))
    out = await box.call("run_analysis", {"code": "while True: pass"})
    assert "[analysis failed] timeout" in out


async def test_toolbox_counts_limits_and_traces(sandbox, cartpole_small):
    box = box_for(sandbox, cartpole_small, max_calls=3)
    with structlog.testing.capture_logs() as logs:
        assert (await box.call("no_such_tool", {})).startswith("error: KeyError")
        assert (await box.call("show_transitions", {"indices": "zero"})).startswith("error: ValueError")
        ok = json.loads(await box.call("show_transitions", {"indices": [0, 1]}))
        assert [t["index"] for t in ok["transitions"]] == [0, 1]
        with pytest.raises(ToolLimitReached):
            await box.call("describe_env", {})
    calls = [e for e in logs if e["event"] == "tool.call"]
    assert [(e["tool"], e["ok"]) for e in calls] == [("no_such_tool", False), ("show_transitions", False),
                                                      ("show_transitions", True)]
    assert box.calls == 3 and box.errors == 2


async def test_show_transitions_needs_a_program_for_failures(sandbox, cartpole_small):
    box = box_for(sandbox, cartpole_small)
    assert "no current program" in await box.call("show_transitions", {"kind": "done"})
