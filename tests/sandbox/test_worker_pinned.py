"""The worker's deadlines, limit validation and error classes pinned (no child process needed)."""

from __future__ import annotations

import signal
from types import SimpleNamespace

import pytest

from cwm.errors import CwmError
from cwm.sandbox.worker import (
    MIN_MEMORY_MB,
    Limits,
    ProgramError,
    Sandbox,
    SandboxConfig,
    SessionFailed,
    _raise_fatal,
    _str_or_none,
    classify_exit,
)


def test_step_deadline_scales_with_the_transitions():
    lim = Limits(base_s=2.0, per_transition_s=0.02)
    assert lim.deadline(0) == 2.0
    assert lim.deadline(100) == pytest.approx(4.0)
    assert Limits(base_s=1.5, per_transition_s=0.5).deadline(3) == pytest.approx(3.0)


def test_limit_defaults():
    lim = Limits()
    assert (lim.memory_mb, lim.load_s, lim.base_s, lim.per_transition_s, lim.transition_s) == \
        (2048, 10.0, 2.0, 0.02, 1.0)
    assert (lim.cpu_s, lim.file_bytes, lim.max_tasks, lim.output_chars) == (None, 1 << 20, 0, 8192)
    assert lim.drop_uid and lim.seccomp


def test_wire_fills_the_cpu_backstop():
    assert Limits(load_s=10.0).wire()["cpu_s"] == 10 + 3600
    assert Limits(load_s=2.5).wire()["cpu_s"] == 3 + 3600  # rounded up
    wired = Limits(cpu_s=7).wire()
    assert wired["cpu_s"] == 7 and wired["memory_mb"] == 2048 and wired["per_transition_s"] == 0.02


@pytest.mark.parametrize("kwargs", [
    {"memory_mb": MIN_MEMORY_MB - 1}, {"load_s": 0}, {"load_s": -1.0}, {"base_s": float("nan")},
    {"transition_s": float("inf")}, {"base_s": "2"}, {"per_transition_s": -0.01}, {"file_bytes": -1},
    {"max_tasks": -1}, {"output_chars": -1}, {"cpu_s": 0},
])
def test_invalid_limits_are_refused(kwargs):
    with pytest.raises(CwmError):
        Limits(**kwargs)


def test_boundary_limits_are_accepted():
    Limits(memory_mb=MIN_MEMORY_MB, per_transition_s=0.0, file_bytes=0, max_tasks=0, output_chars=0, cpu_s=1,
           load_s=1e-3, base_s=1e-3, transition_s=1e-3)


def test_load_timeout_message_names_the_flag():
    with pytest.raises(CwmError, match="--load-timeout must be a positive number"):
        Limits(load_s=0)
    with pytest.raises(CwmError, match="base_s must be"):
        Limits(base_s=0)
    with pytest.raises(CwmError, match=f"at least {MIN_MEMORY_MB}"):
        Limits(memory_mb=1)


@pytest.mark.parametrize("sig,kind,why", [
    (signal.SIGXCPU, "timeout", "CPU-time limit"),
    (signal.SIGKILL, "memory", "out of memory"),
    (signal.SIGSEGV, "crash", "it crashed"),
    (signal.SIGBUS, "crash", "it crashed"),
    (signal.SIGABRT, "crash", "it crashed"),
    (signal.SIGFPE, "crash", "it crashed"),
    (signal.SIGILL, "crash", "it crashed"),
    (signal.SIGTERM, "crash", "it crashed"),
])
def test_signals_are_classified(sig, kind, why):
    err = classify_exit({"signal": int(sig)}, when="while loading")
    assert err.kind == kind
    assert err.message == f"the program's process died from {sig.name} while loading: " + {
        "timeout": "it used up its CPU-time limit", "memory": "it was killed, most likely out of memory",
        "crash": "it crashed"}[kind]
    assert why in err.message


def test_unknown_signals_and_exits_are_crashes():
    err = classify_exit({"signal": 200}, when="at step 3")
    assert (err.kind, err.message) == ("crash", "the program's process died from signal 200 at step 3: it crashed")
    err = classify_exit({"exit": 4}, when="at step 3")
    assert err.kind == "crash"
    assert err.message == ("the program's process exited with status 4 at step 3 "
                           "(programs must not exit; return from step instead)")


def test_program_error_json_drops_empty_optional_fields():
    assert ProgramError("runtime", "x").to_json() == {"kind": "runtime", "message": "x"}
    assert ProgramError("runtime", "x", "tb", 0).to_json() == {"kind": "runtime", "message": "x",
                                                              "traceback": "tb", "index": 0}


def test_fatal_records_become_forbidden_import_failures():
    _raise_fatal({"ok": True}, [])
    _raise_fatal({"fatal": "not a dict"}, [])
    answered = [{"s": [1]}]
    with pytest.raises(SessionFailed) as exc:
        _raise_fatal({"fatal": {"message": "m" * 5000, "traceback": "t" * 9000}}, answered)
    err = exc.value.error
    assert err.kind == "forbidden_import" and err.message == "m" * 4000 and err.traceback == "t" * 8000
    assert exc.value.answered is answered and str(exc.value) == "m" * 4000
    with pytest.raises(SessionFailed) as exc:
        _raise_fatal({"fatal": {"traceback": 3}}, [])
    assert (exc.value.error.message, exc.value.error.traceback) == ("", None)
    assert _str_or_none("abc") == "abc" and _str_or_none(None) is None and _str_or_none(b"x") is None


def test_effective_limits_raise_threads_for_an_allowed_library_only():
    sb = Sandbox(SandboxConfig())
    lim = Limits(max_tasks=2)
    assert sb.effective_limits(lim) is lim  # not started: no policy
    sb.policy = SimpleNamespace(threads=8)  # type: ignore[assignment]
    assert sb.effective_limits(lim).max_tasks == 8
    assert sb.effective_limits(Limits(max_tasks=8)).max_tasks == 8
    assert sb.effective_limits(Limits(max_tasks=9)).max_tasks == 9
