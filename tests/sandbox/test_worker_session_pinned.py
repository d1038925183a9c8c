"""The parent's side of a program session pinned without a child: what each reply, silence, death or
protocol break becomes (kind, message, answers kept), which deadline applies, and that every failure
closes the session. The child is replaced by an in-memory stream and the fork-server by a recorder of
kill requests, so these run in milliseconds and under mutation testing (scripts/mutation.sh worker).
"""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import pytest

from cwm.errors import CwmError
from cwm.sandbox.worker import Limits, ProgramError, ProgramSession, Sandbox, SandboxConfig, SessionFailed

TINY = 0.05  # a deadline no silent stream meets; nothing here asserts how long anything took


class FakeSandbox:
    """Records kill requests and answers them with the exit status a real fork-server would reap."""

    def __init__(self, status: dict[str, Any]) -> None:
        self.status = status
        self.killed: list[str] = []

    async def _kill(self, sid: str) -> dict[str, Any]:
        self.killed.append(sid)
        return self.status


class FakeWriter:
    def __init__(self, fail: BaseException | None = None) -> None:
        self.data = b""
        self.closed = False
        self.fail = fail

    def write(self, data: bytes) -> None:
        if self.fail is not None:
            raise self.fail
        self.data += data

    async def drain(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True


def _session(lines: list[Any], *, eof: bool = True, status: dict[str, Any] | None = None,
             limits: Limits | None = None, limit: int = 1 << 16, fail: BaseException | None = None
             ) -> tuple[ProgramSession, FakeSandbox, FakeWriter]:
    reader = asyncio.StreamReader(limit=limit)
    for line in lines:
        reader.feed_data(line if isinstance(line, bytes) else json.dumps(line).encode() + b"\n")
    if eof:
        reader.feed_eof()
    sb = FakeSandbox(status if status is not None else {"exit": 0})
    writer = FakeWriter(fail)
    session = ProgramSession(sb, "7", reader, writer, limits or Limits())  # type: ignore[arg-type]
    return session, sb, writer


def _assert_closed(session: ProgramSession, sb: FakeSandbox, writer: FakeWriter) -> None:
    assert session.closed is True and writer.closed and sb.killed == ["7"]


# --- load ------------------------------------------------------------------------------------------------


async def test_a_successful_load_keeps_the_session_and_caps_the_output():
    session, sb, writer = _session([{"ok": True, "output": "abcdefgh", "step_batch": True}],
                                   limits=Limits(output_chars=3))
    res = await session.load()
    assert (res.ok, res.error, res.output, res.has_step_batch) == (True, None, "abcdef", True)
    assert 0.0 < res.elapsed_s < 60.0
    assert session.closed is False and sb.killed == [] and not writer.closed


async def test_a_load_without_output_or_step_batch_has_neither():
    session, _, _ = _session([{"ok": True}])
    res = await session.load()
    assert (res.ok, res.output, res.has_step_batch) == (True, "", False)


async def test_only_ok_true_is_a_successful_load():
    session, sb, writer = _session([{"ok": 1, "output": "o"}])
    res = await session.load()
    assert not res.ok and res.error == ProgramError("protocol", "", None) and res.output == "o"
    _assert_closed(session, sb, writer)


@pytest.mark.parametrize("kind", ["syntax", "import", "interface", "runtime", "memory", "crash",
                                  "forbidden_import"])
async def test_a_failed_load_keeps_the_childs_error_class(kind):
    session, sb, writer = _session([{"ok": False, "output": "printed",
                                     "error": {"kind": kind, "message": "m" * 5000, "traceback": "t" * 9000}}])
    res = await session.load()
    assert (res.ok, res.output) == (False, "printed")
    assert res.error == ProgramError(kind, "m" * 4000, "t" * 8000)
    assert 0.0 < res.elapsed_s < 60.0
    _assert_closed(session, sb, writer)


@pytest.mark.parametrize("error", [{"kind": "timeout", "message": "x"}, {"kind": "bogus"}, "not a dict", None])
async def test_an_unknown_load_error_class_is_a_protocol_error(error):
    session, sb, writer = _session([{"ok": False, "error": error}])
    res = await session.load()
    expected_message = "x" if isinstance(error, dict) and "message" in error else ""
    assert res.error == ProgramError("protocol", expected_message, None)
    _assert_closed(session, sb, writer)


async def test_a_silent_load_times_out_at_the_load_deadline():
    session, sb, writer = _session([], eof=False, limits=Limits(load_s=TINY, base_s=100.0))
    res = await session.load()
    assert res.ok is False and res.error == ProgramError(
        "timeout", "loading the program (module body and Environment()) took longer than 0.05 s")
    assert 0.0 < res.elapsed_s < 60.0
    _assert_closed(session, sb, writer)


async def test_the_load_deadline_is_load_s_not_the_step_deadline():
    reader_line = {"ok": True}
    session, _, _ = _session([], eof=False, limits=Limits(load_s=30.0, base_s=TINY, transition_s=TINY))

    async def answer_late() -> None:
        await asyncio.sleep(0.2)
        session._reader.feed_data(json.dumps(reader_line).encode() + b"\n")

    task = asyncio.create_task(answer_late())
    res = await session.load()
    await task
    assert res.ok


@pytest.mark.parametrize("status,kind", [({"signal": 9}, "memory"), ({"signal": 24}, "timeout"),
                                         ({"exit": 3}, "crash")])
async def test_a_child_that_dies_while_loading_is_classified_by_its_exit(status, kind):
    session, sb, writer = _session([], status=status)
    res = await session.load()
    assert res.ok is False
    assert res.error is not None and res.error.kind == kind and "while loading" in res.error.message
    assert res.error.message.endswith(("limit", "memory", "return from step instead)"))
    assert 0.0 < res.elapsed_s < 60.0 and session.exit_status == status
    _assert_closed(session, sb, writer)


async def test_a_broken_connection_while_loading_counts_as_death():
    session, sb, writer = _session([], eof=False, status={"exit": 1})
    session._reader.set_exception(ConnectionResetError("reset"))
    res = await session.load()
    assert res.error is not None and res.error.kind == "crash" and "with status 1 while loading" in res.error.message
    _assert_closed(session, sb, writer)


@pytest.mark.parametrize("line,what", [
    (b"not json\n", "garbage"), (b"[1, 2]\n", "a non-object"), (b"x" * 300 + b"\n", "an oversized message"),
])
async def test_protocol_breaks_while_loading(line, what):
    session, sb, writer = _session([line], limit=128)
    res = await session.load()
    assert res.ok is False
    assert res.error == ProgramError("protocol", f"the program wrote {what} to the sandbox's result channel")
    assert 0.0 < res.elapsed_s < 60.0
    _assert_closed(session, sb, writer)


# --- step_many ---------------------------------------------------------------------------------------------


async def test_step_many_sends_one_request_and_returns_the_answers_in_order():
    session, sb, writer = _session([{"s": [1]}, {"s": [2]}, {"s": [3]}], eof=False)
    out = await session.step_many([([0.5], 1), ([0.25], 0)], timeout=30.0)
    assert out == [{"s": [1]}, {"s": [2]}]
    assert writer.data == b'{"items": [[[0.5], 1], [[0.25], 0]]}\n'
    assert not session.closed and sb.killed == []
    assert await session.step_many([([1.0], 1)], timeout=30.0) == [{"s": [3]}]


async def test_step_many_on_a_closed_session_fails_without_a_request():
    session, sb, writer = _session([])
    await session.close()
    with pytest.raises(SessionFailed) as exc:
        await session.step_many([([0], 0)], timeout=30.0)
    assert exc.value.error == ProgramError("crash", "the session is closed") and exc.value.answered == []
    assert writer.data == b"" and sb.killed == ["7"]


async def test_step_many_times_out_with_the_answers_so_far():
    session, sb, writer = _session([{"s": [1]}], eof=False, limits=Limits(base_s=100.0, load_s=100.0))
    with pytest.raises(SessionFailed) as exc:
        await session.step_many([([0], 0), ([1], 1), ([2], 0)], timeout=TINY)
    assert exc.value.error == ProgramError(
        "timeout", "the program did not answer within 0.05 s (stuck on item 1 of the request)")
    assert exc.value.answered == [{"s": [1]}]
    _assert_closed(session, sb, writer)


async def test_step_many_waits_for_a_late_answer_within_its_timeout():
    session, _, _ = _session([], eof=False, limits=Limits(base_s=TINY, load_s=TINY, transition_s=TINY))

    async def answer_late() -> None:
        await asyncio.sleep(0.2)
        session._reader.feed_data(b'{"s": [1]}\n')

    task = asyncio.create_task(answer_late())
    assert await session.step_many([([0], 0)], timeout=30.0) == [{"s": [1]}]
    await task


async def test_a_child_that_dies_mid_request_is_classified_with_the_answers_so_far():
    session, sb, writer = _session([{"s": [1]}], status={"signal": 11})
    with pytest.raises(SessionFailed) as exc:
        await session.step_many([([0], 0), ([1], 1)], timeout=30.0)
    assert exc.value.error == ProgramError(
        "crash", "the program's process died from SIGSEGV while computing item 1 of the request: it crashed")
    assert exc.value.answered == [{"s": [1]}]
    _assert_closed(session, sb, writer)


async def test_a_fatal_record_mid_request_ends_the_session_with_the_answers_so_far():
    session, sb, writer = _session([{"s": [1]}, {"fatal": {"message": "reached for gymnasium"}}, {"s": [3]}],
                                   eof=False)
    with pytest.raises(SessionFailed) as exc:
        await session.step_many([([0], 0), ([1], 1), ([2], 2)], timeout=30.0)
    assert exc.value.error == ProgramError("forbidden_import", "reached for gymnasium")
    assert exc.value.answered == [{"s": [1]}]
    _assert_closed(session, sb, writer)


async def test_garbage_mid_request_is_a_protocol_error_with_the_answers_so_far():
    session, sb, writer = _session([{"s": [1]}, b"{broken\n"], eof=False)
    with pytest.raises(SessionFailed) as exc:
        await session.step_many([([0], 0), ([1], 1)], timeout=30.0)
    assert exc.value.error.kind == "protocol" and exc.value.answered == [{"s": [1]}]
    _assert_closed(session, sb, writer)


async def test_a_request_that_cannot_be_sent_is_classified_by_the_exit():
    session, sb, writer = _session([], status={"exit": 0}, fail=BrokenPipeError("pipe"))
    with pytest.raises(SessionFailed) as exc:
        await session.step_many([([0], 0)], timeout=30.0)
    assert exc.value.error == ProgramError(
        "crash", "the program's process exited with status 0 while receiving a request "
        "(programs must not exit; return from step instead)")
    assert exc.value.answered == []
    _assert_closed(session, sb, writer)


# --- step_many_raw (planner requests) ----------------------------------------------------------------------


async def test_a_planning_request_returns_its_single_reply():
    session, sb, writer = _session([{"values": [1.5]}, {"values": [2.5]}], eof=False)
    assert await session.step_many_raw({"op": "rollouts", "n": 1}, timeout=30.0) == {"values": [1.5]}
    assert writer.data == b'{"op": "rollouts", "n": 1}\n'
    assert not session.closed and sb.killed == []


async def test_a_planning_request_on_a_closed_session_fails_without_a_request():
    session, _, writer = _session([])
    await session.close()
    with pytest.raises(SessionFailed) as exc:
        await session.step_many_raw({"op": "rollouts"}, timeout=30.0)
    assert exc.value.error == ProgramError("crash", "the session is closed") and writer.data == b""
    assert exc.value.answered == []


async def test_a_silent_planning_request_times_out():
    session, sb, writer = _session([], eof=False)
    with pytest.raises(SessionFailed) as exc:
        await session.step_many_raw({"op": "rollouts"}, timeout=TINY)
    assert exc.value.error == ProgramError("timeout", "the program did not answer a planning request within 0.05 s")
    assert exc.value.answered == []
    _assert_closed(session, sb, writer)


async def test_a_planning_request_waits_for_a_late_reply_within_its_timeout():
    session, _, _ = _session([], eof=False, limits=Limits(base_s=TINY, load_s=TINY, transition_s=TINY))

    async def answer_late() -> None:
        await asyncio.sleep(0.2)
        session._reader.feed_data(b'{"values": [1]}\n')

    task = asyncio.create_task(answer_late())
    assert await session.step_many_raw({"op": "rollouts"}, timeout=30.0) == {"values": [1]}
    await task


@pytest.mark.parametrize("fail", [None, BrokenPipeError("pipe")])
async def test_a_planning_request_to_a_dead_child_is_classified_by_its_exit(fail):
    session, sb, writer = _session([], status={"signal": 9}, fail=fail)
    with pytest.raises(SessionFailed) as exc:
        await session.step_many_raw({"op": "rollouts"}, timeout=30.0)
    assert exc.value.error == ProgramError(
        "memory", "the program's process died from SIGKILL during a planning request: "
        "it was killed, most likely out of memory")
    assert exc.value.answered == []
    _assert_closed(session, sb, writer)


async def test_a_fatal_reply_to_a_planning_request_closes_the_session():
    session, sb, writer = _session([{"fatal": {"message": "no", "traceback": "tb"}}], eof=False)
    with pytest.raises(SessionFailed) as exc:
        await session.step_many_raw({"op": "rollouts"}, timeout=30.0)
    assert exc.value.error == ProgramError("forbidden_import", "no", "tb") and exc.value.answered == []
    _assert_closed(session, sb, writer)


@pytest.mark.parametrize("line", [b"[3]\n", b"{broken\n", b"x" * 300 + b"\n"])
async def test_garbage_in_reply_to_a_planning_request_closes_the_session(line):
    session, sb, writer = _session([line], eof=False, limit=128)
    with pytest.raises(SessionFailed) as exc:
        await session.step_many_raw({"op": "rollouts"}, timeout=30.0)
    assert exc.value.error.kind == "protocol" and exc.value.answered == []
    _assert_closed(session, sb, writer)


# --- close -------------------------------------------------------------------------------------------------


async def test_close_kills_once_and_remembers_the_exit_status():
    session, sb, writer = _session([], status={"signal": 9})
    assert not session.closed and session.exit_status is None
    assert await session.close() == {"signal": 9}
    assert await session.close() == {"signal": 9}
    assert session.exit_status == {"signal": 9}
    _assert_closed(session, sb, writer)


async def test_close_without_a_reaped_status_returns_an_empty_one():
    session, sb, _ = _session([])
    session.closed = True
    assert await session.close() == {} and sb.killed == []


async def test_close_kills_the_child_even_when_the_stream_will_not_close():
    session, sb, writer = _session([], status={"exit": 0})

    def refuse() -> None:
        writer.closed = True
        raise OSError("already gone")

    writer.close = refuse  # type: ignore[method-assign]
    assert await session.close() == {"exit": 0}
    _assert_closed(session, sb, writer)


# --- limits: the messages a user sees ------------------------------------------------------------------------


def test_limit_errors_say_what_to_change():
    with pytest.raises(CwmError) as exc:
        Limits(memory_mb=8)
    assert exc.value.hint == "the limit is the address space of one program, numpy included"
    for bad in ({"file_bytes": -1}, {"output_chars": -2}):
        with pytest.raises(CwmError) as exc:
            Limits(**bad)
        assert exc.value.message == "sandbox limits must not be negative"
    with pytest.raises(CwmError) as exc:
        Limits(cpu_s=0)
    assert exc.value.message == "the CPU-time limit must be at least 1 s (got 0)"


def test_threads_equal_to_the_limit_keep_the_limits_as_given():
    sb = Sandbox(SandboxConfig())
    sb.policy = SimpleNamespace(threads=4)  # type: ignore[assignment]
    lim = Limits(max_tasks=4)
    assert sb.effective_limits(lim) is lim
