"""Every argument of every command, fed bad values: exit 2, one line on stderr, never a traceback.

The arguments are read from the real parser (``cwm.cli.build_parser``), so a flag added tomorrow is
covered without editing this file when it uses a ``cwm.cli_args`` type or ``choices``; any other flag
makes ``test_every_argument_has_bad_values`` fail until it gets a case in ``EXTRA_BAD`` (or a reason in
``NO_BAD_VALUE``). The commands themselves are replaced by a stub that fails the test if reached: these
checks must all happen while parsing, before anything slow runs.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import EXAMPLES
from cwm import cli
from cwm.cli_args import ArgType

EXAMPLE = str(EXAMPLES / "cartpole_cwm.py")

# A valid command line per command, as {dest: value} ({scratch} is the test's scratch directory).
BASE: dict[str, dict[str, str]] = {
    "check": {"program": EXAMPLE, "env": "CartPole-v1"},
    "doctor": {},
    "envs": {},
    "nodes": {},
    "describe": {"env": "CartPole-v1"},
    "synthesize": {"env": "CartPole-v1"},
    "plan": {"env": "CartPole-v1", "model": "random"},
    "plan-report": {"results": "{scratch}/a_file.txt"},
    "ask": {"prompt": "hello"},
    "collect": {"env": "CartPole-v1"},
    "serve": {},
    "show": {"run_dir": "{scratch}/a_dir"},
    "audit": {"env": "CartPole-v1"},
    "bench": {},
}

# Bad values for arguments whose type carries none (plain callables from other modules).
EXTRA_BAD: dict[tuple[str, str], list[str]] = {
}

# Arguments for which no string is wrong, and why.
NO_BAD_VALUE: dict[tuple[str, str], str] = {
    ("ask", "system"): "any text is a system message; empty means none",
    ("serve", "host"): "resolved when binding; a wrong host is an error of the server, not of parsing",
    ("serve", "data"): "created on start; checked by the server",
    ("serve", "allow_llm"): "free-form provider names or URL prefixes",
}


class Reached(Exception):
    """The command ran although its arguments should have been refused."""


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("cwm has no sub-commands")


def _valued(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    """The arguments of a parser that take a value (not --help, --version or on/off flags)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) or action.nargs == 0:
            continue
        yield action


COMMANDS = _subparsers(cli.build_parser())
CASES = [(cmd, a.dest) for cmd, sp in COMMANDS.items() for a in _valued(sp)]
GLOBAL = [a.dest for a in _valued(cli.build_parser())]


def _bad_values(cmd: str, action: argparse.Action, scratch: Path) -> list[str] | None:
    if isinstance(action.type, ArgType):
        return action.type.bad(scratch)
    if action.choices:
        return ["no-such-choice"]
    return EXTRA_BAD.get((cmd, action.dest))


def _argv(cmd: str, parser: argparse.ArgumentParser, values: dict[str, str], scratch: Path,
          bad: tuple[str, str] | None = None) -> list[str]:
    """The command line of ``values`` (``{scratch}`` filled in), with ``bad = (dest, value)`` put in as is."""
    values = {dest: v.format(scratch=scratch) for dest, v in values.items()}
    if bad is not None:
        values[bad[0]] = bad[1]
    argv = [cmd]
    for action in _valued(parser):
        if action.dest not in values:
            continue
        value = values[action.dest]
        argv += [value] if not action.option_strings else [action.option_strings[-1], value]
    return argv


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    (tmp_path / "a_file.txt").write_text("not a dataset, not JSON\n", encoding="utf-8")
    (tmp_path / "a_dir").mkdir()
    return tmp_path


@pytest.fixture
def stubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every command replaced by a stub that raises ``Reached``: only parsing and checks run."""
    real = cli.build_parser

    def build() -> argparse.ArgumentParser:
        parser = real()

        def reached(args: argparse.Namespace) -> int:
            raise Reached(f"`cwm {args.command}` ran with arguments that should have been refused")

        for sp in _subparsers(parser).values():
            sp.set_defaults(func=reached)
        return parser

    monkeypatch.setattr(cli, "build_parser", build)


def _assert_refused(argv: list[str], capsys: pytest.CaptureFixture[str], mention: str | None = None) -> None:
    code = cli.main(argv)
    captured = capsys.readouterr()
    assert code == 2, f"{argv} exited {code}"
    assert captured.err.count("\n") == 1 and captured.err.endswith("\n"), f"{argv}: {captured.err!r}"
    assert "Traceback" not in captured.err
    if mention is not None:
        assert mention in captured.err, f"{argv}: the error does not name {mention}: {captured.err!r}"


def test_every_argument_has_bad_values(scratch: Path) -> None:
    missing = [f"{cmd} {a.dest}" for cmd, sp in COMMANDS.items() for a in _valued(sp)
               if (cmd, a.dest) not in NO_BAD_VALUE and not _bad_values(cmd, a, scratch)]
    assert not missing, ("arguments with no bad-value case: use a cwm.cli_args type, or add them to EXTRA_BAD "
                         f"or NO_BAD_VALUE in this file: {missing}")
    assert set(COMMANDS) <= set(BASE), f"add a valid command line to BASE for {set(COMMANDS) - set(BASE)}"


@pytest.mark.parametrize("cmd", sorted(COMMANDS))
def test_base_command_lines_are_valid(cmd: str, scratch: Path, stubbed: None) -> None:
    """The control: without a bad value the command is reached, so refusals below are the bad value's."""
    with pytest.raises(Reached):
        cli.main(_argv(cmd, COMMANDS[cmd], BASE[cmd], scratch))


@pytest.mark.parametrize(("cmd", "dest"), CASES, ids=[f"{c}-{d}" for c, d in CASES])
def test_bad_value_is_refused_in_one_line(cmd: str, dest: str, scratch: Path, stubbed: None,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    if (cmd, dest) in NO_BAD_VALUE:
        pytest.skip(NO_BAD_VALUE[(cmd, dest)])
    parser = COMMANDS[cmd]
    action = next(a for a in _valued(parser) if a.dest == dest)
    bad = _bad_values(cmd, action, scratch)
    assert bad, f"no bad values for {cmd} {dest}"
    name = action.option_strings[-1] if action.option_strings else action.dest
    for value in bad:
        argv = _argv(cmd, parser, BASE[cmd], scratch, bad=(dest, value))
        if dest not in BASE[cmd] and not action.option_strings:
            raise AssertionError(f"positional {dest} of {cmd} needs a value in BASE")
        _assert_refused(argv, capsys, mention=name)


@pytest.mark.parametrize("dest", GLOBAL)
def test_bad_global_option(dest: str, stubbed: None, scratch: Path, capsys: pytest.CaptureFixture[str]) -> None:
    action = next(a for a in _valued(cli.build_parser()) if a.dest == dest)
    bad = ["no-such-choice"] if action.choices else _bad_values("(global)", action, scratch)
    assert bad, f"global option {dest} needs bad values here"
    for value in bad:
        _assert_refused([action.option_strings[-1], value, "envs"], capsys, mention=action.option_strings[-1])


@pytest.mark.parametrize("cmd", sorted(c for c in COMMANDS if any(a.required for a in _valued(COMMANDS[c]))))
def test_missing_required_argument(cmd: str, stubbed: None, capsys: pytest.CaptureFixture[str]) -> None:
    _assert_refused([cmd], capsys)


@pytest.mark.parametrize(("argv", "mention"), [
    (["collect", "CartPole-v1", "--cem-samples", "10", "--cem-elites", "20"], "--cem-elites"),
    (["ask", "hi", "--record", "{scratch}/new.jsonl", "--replay", "{scratch}/a_file.txt"], "exclude"),
    (["synthesize", "--budget", "3"], "--env"),
    (["no-such-command"], "invalid choice"),
    (["check", EXAMPLE, "--env", "CartPole-v1", "--no-such-flag"], "--no-such-flag"),
])
def test_flags_that_contradict_each_other(argv: list[str], mention: str, scratch: Path, stubbed: None,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    _assert_refused([a.format(scratch=scratch) for a in argv], capsys, mention=mention)


def test_collect_may_overwrite_a_dataset_but_not_another_file(scratch: Path, stubbed: None,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from cwm.envs.dataset import bundled_path

    dataset = bundled_path("CartPole-v1")
    assert dataset is not None
    target = scratch / "old.npz"
    target.write_bytes(dataset.read_bytes())
    with pytest.raises(Reached):
        cli.main(["collect", "CartPole-v1", "--out", str(target)])
    _assert_refused(["collect", "CartPole-v1", "--out", str(scratch / "a_file.txt")], capsys,
                    mention="not a cwm dataset")


@pytest.mark.parametrize("argv", [
    ["check", "missing.py", "--env", "CartPole-v1", "--json"],
    ["check", EXAMPLE, "--env", "NoSuchEnv-v0", "--json"],
    ["check", EXAMPLE, "--env", "CartPole-v1", "--max-failures", "-1", "--json"],
])
def test_check_json_bad_input_prints_one_error_object(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out.count("\n") == 1
    error = json.loads(captured.out)["error"]
    assert error["kind"] == "bad-input" and error["message"]
    assert captured.err.count("\n") == 1


def test_check_json_error_from_the_command_itself(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A refusal raised inside the command (no bundled dataset) also reaches stdout as one JSON object."""
    assert cli.main(["check", EXAMPLE, "--env", "LunarLander-v3", "--json"]) == 2
    captured = capsys.readouterr()
    assert json.loads(captured.out)["error"]["kind"] == "bad-input"
