"""Argument types and checks for the ``cwm`` command line, shared by every command.

Why a module of its own: every flag should be refused at parse time, in a fraction of a second and with
one line that names the flag, instead of minutes later as a traceback from deep inside a run. Each type
here is an :class:`ArgType`: the parser argparse calls, plus the bad values a test can feed it, so a new
flag declared with one of these types is covered by ``tests/test_cli_bad_input.py`` without more work.

Use them as ``p.add_argument("--budget", type=positive_int)``. Checks that relate two flags
(``--cem-elites`` at most ``--cem-samples``) are registered on the sub-parser with :func:`add_check`
and run by :func:`run_checks` right after parsing, before any heavy import.

Nothing here imports numpy, gymnasium or the LLM stack at module load: the CLI stays fast to fail.
"""

from __future__ import annotations

import argparse
import os
import re
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, NoReturn, TypeVar

from cwm.errors import CwmError

T = TypeVar("T")


class UsageError(CwmError):
    """A command line the parser refused; ``prog`` names the (sub)command it belongs to."""

    def __init__(self, prog: str, message: str) -> None:
        self.prog = prog
        super().__init__(message)


class CliParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line and an exception, never a usage dump and exit.

    Raising (instead of ``sys.exit``) lets ``cwm.cli.main`` print the line, add the JSON error object
    for ``--json``, and return 2 -- also when tests call ``main(argv)`` in-process.
    """

    def error(self, message: str) -> NoReturn:
        raise UsageError(self.prog, f"{message} (see `{self.prog} --help`)")


@dataclass(frozen=True)
class ArgType(Generic[T]):
    """An argparse ``type``: parses one string, and knows strings it must refuse.

    ``bad`` returns bad values for a test, given a scratch directory holding ``a_file.txt`` (a plain
    file) and ``a_dir`` (an empty directory) -- so path types can name an existing file or directory.
    """

    name: str
    parse: Callable[[str], T]
    bad: Callable[[Path], list[str]]

    @property
    def __name__(self) -> str:  # argparse names the type in its "invalid <type> value" message
        return self.name

    def __call__(self, text: str) -> T:
        try:
            return self.parse(text)
        except CwmError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc


def _fail(message: str) -> NoReturn:
    raise argparse.ArgumentTypeError(message)


def _number(text: str, kind: type[int] | type[float], what: str) -> float:
    try:
        value = kind(text)
    except ValueError:
        _fail(f"expected {what}, got {text!r}")
    if kind is float and value != value:  # NaN passes every comparison below; refuse it here
        _fail(f"expected {what}, got {text!r}")
    return value


def int_range(low: int | None = None, high: int | None = None) -> ArgType[int]:
    """An integer in ``[low, high]`` (either bound may be open-ended)."""
    what = _describe_range("an integer", low, high, low_open=False, high_open=False)

    def parse(text: str) -> int:
        value = int(_number(text, int, what))
        if (low is not None and value < low) or (high is not None and value > high):
            _fail(f"expected {what}, got {text}")
        return value

    bad = ["x", "1.5"] + ([str(low - 1)] if low is not None else []) + ([str(high + 1)] if high is not None else [])
    return ArgType(what, parse, lambda _scratch: bad)


def float_range(low: float | None = None, high: float | None = None, *, low_open: bool = False,
                high_open: bool = False) -> ArgType[float]:
    """A finite number between ``low`` and ``high``; ``*_open`` excludes that bound itself."""
    what = _describe_range("a number", low, high, low_open=low_open, high_open=high_open)

    def parse(text: str) -> float:
        value = _number(text, float, what)
        if value in (float("inf"), float("-inf")):
            _fail(f"expected {what}, got {text!r}")
        too_low = low is not None and (value <= low if low_open else value < low)
        too_high = high is not None and (value >= high if high_open else value > high)
        if too_low or too_high:
            _fail(f"expected {what}, got {text}")
        return value

    bad = ["x", "nan", "inf"]
    if low is not None:
        bad.append(f"{low:g}" if low_open else f"{low - 1:g}")
    if high is not None:
        bad.append(f"{high:g}" if high_open else f"{high + 1:g}")
    return ArgType(what, parse, lambda _scratch: bad)


def _describe_range(noun: str, low: float | None, high: float | None, *, low_open: bool, high_open: bool) -> str:
    if low == 1 and high is None and noun == "an integer" and not low_open:
        return "a positive integer"
    if low is not None and high is not None:
        return f"{noun} in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"{noun} {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"{noun} {'<' if high_open else '<='} {high:g}"
    return noun


positive_int = int_range(1)
non_negative_int = int_range(0)
positive_float = float_range(0, low_open=True)
non_negative_float = float_range(0)
probability = float_range(0, 1)
temperature = float_range(0, 2)


def _non_empty(text: str) -> str:
    if not text.strip():
        _fail("must not be empty")
    return text


non_empty_text = ArgType("non-empty text", _non_empty, lambda _scratch: ["", "   "])

_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def _module(text: str) -> str:
    if not _MODULE.match(text):
        _fail(f"{text!r} is not a Python module name (like gymnasium or numpy.linalg)")
    return text


module_name = ArgType("module name", _module, lambda _scratch: ["", "not a module", "os;rm", "1abc"])


def _readable_file(text: str) -> str:
    p = Path(text)
    if not text:
        _fail("expected a file path, got an empty string")
    if p.is_dir():
        _fail(f"{text!r} is a directory, not a file")
    if not p.is_file():
        _fail(f"no such file: {text!r}")
    if not os.access(p, os.R_OK):
        _fail(f"cannot read {text!r} (permission denied)")
    return text


readable_file = ArgType("existing file", _readable_file,
                        lambda s: ["", str(s / "missing.txt"), str(s / "a_dir")])


def _existing_dir(text: str) -> str:
    p = Path(text)
    if not text or not p.exists():
        _fail(f"no such directory: {text!r}")
    if not p.is_dir():
        _fail(f"{text!r} is a file, not a directory")
    return text


existing_dir = ArgType("existing directory", _existing_dir,
                       lambda s: ["", str(s / "missing"), str(s / "a_file.txt")])


def _run_dir(text: str) -> str:
    _existing_dir(text)
    if not (Path(text) / "config.json").is_file():
        _fail(f"{text!r} is not a cwm run directory (no config.json): pass the --out directory of an earlier "
              "`cwm synthesize`")
    return text


run_dir = ArgType("run directory", _run_dir,
                  lambda s: ["", str(s / "missing"), str(s / "a_file.txt"), str(s / "a_dir")])


def _parent_ok(p: Path, text: str) -> None:
    for parent in p.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                _fail(f"cannot create {text!r}: {str(parent)!r} is a file")
            if not os.access(parent, os.W_OK | os.X_OK):
                _fail(f"cannot create {text!r}: {str(parent)!r} is not writable")
            return


def _writable_dir(text: str) -> str:
    p = Path(text)
    if not text:
        _fail("expected a directory path, got an empty string")
    if p.exists() and not p.is_dir():
        _fail(f"{text!r} is a file; a directory is needed here")
    if p.is_dir() and not os.access(p, os.W_OK | os.X_OK):
        _fail(f"directory {text!r} is not writable")
    _parent_ok(p, text)
    return text


writable_dir = ArgType("directory to write", _writable_dir,
                       lambda s: ["", str(s / "a_file.txt"), str(s / "a_file.txt" / "below")])


def _writable_file(text: str) -> str:
    p = Path(text)
    if not text:
        _fail("expected a file path, got an empty string")
    if p.is_dir():
        _fail(f"{text!r} is a directory; a file path is needed here")
    if p.exists() and not os.access(p, os.W_OK):
        _fail(f"{text!r} is not writable")
    _parent_ok(p, text)
    return text


writable_file = ArgType("file to write", _writable_file,
                        lambda s: ["", str(s / "a_dir"), str(s / "a_file.txt" / "below.jsonl")])


def is_dataset_file(p: Path) -> bool:
    """Whether ``p`` looks like a cwm dataset (an .npz archive with a ``meta`` entry), without numpy."""
    try:
        with zipfile.ZipFile(p) as zf:
            return "meta.npy" in zf.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def _dataset_out(text: str) -> str:
    _writable_file(text)
    p = Path(text)
    if p.exists() and not is_dataset_file(p):
        _fail(f"{text!r} exists and is not a cwm dataset; refusing to overwrite it (choose another --out)")
    return text


dataset_out = ArgType("dataset file to write", _dataset_out,
                      lambda s: ["", str(s / "a_dir"), str(s / "a_file.txt")])


def _env_id(text: str) -> str:
    if not text.strip():
        _fail("expected an environment id, got an empty string")
    from cwm.envs.registry import resolve_gym_id  # benchmark names: no gymnasium import

    resolve_gym_id(text)
    return text


env_id = ArgType("environment id", _env_id, lambda _scratch: ["", "NoSuchEnv-v0"])


def _env_kwargs(text: str) -> dict[str, Any]:
    from cwm.envs.registry import parse_env_kwargs  # no gymnasium import: only the syntax is checked here

    return parse_env_kwargs(text)


env_kwargs = ArgType("environment arguments", _env_kwargs,
                     lambda _scratch: ["", "   ", "is_slippery", "{not json", "[1, 2]", "1x=2", '{"a-b": 1}'])
"""``--env-kwargs``: a JSON object or key=value pairs (``cwm.envs.registry.parse_env_kwargs``)."""


def _provider(text: str) -> str:
    if text == "local":  # the default: skip importing the LLM package just to confirm it
        return text
    from cwm.agents.llm.spec import parse_provider  # imported only when --llm is given

    parse_provider(text)
    return text


llm_provider = ArgType("LLM provider", _provider,
                       lambda _scratch: ["", "gpt-4o", "nosuch:model", "openai:", "openai:m@ftp://x"])


def _plan_model(text: str) -> str:
    if text in ("oracle", "random"):
        return text
    if not text or not Path(text).exists():
        _fail(f"no such program file or run directory: {text!r} (or use oracle or random)")
    return text


plan_model = ArgType("program, run directory, oracle or random", _plan_model,
                     lambda s: ["", str(s / "missing.py")])


# -- checks across flags --------------------------------------------------------------------------------

Check = Callable[[argparse.Namespace], "str | None"]
"""Returns a one-line complaint about a parsed namespace, or None when it is fine."""

_CHECKS = "_cli_checks"


def add_check(parser: argparse.ArgumentParser, check: Check) -> None:
    """Register a check that relates several flags of this (sub)command; it runs before the command."""
    checks: list[Check] = list(parser.get_default(_CHECKS) or [])
    parser.set_defaults(**{_CHECKS: [*checks, check]})


def run_checks(args: argparse.Namespace, prog: str = "cwm") -> None:
    """Run the checks registered for the parsed command; the first complaint becomes a ``UsageError``."""
    for check in getattr(args, _CHECKS, None) or []:
        complaint = check(args)
        if complaint:
            raise UsageError(f"{prog} {getattr(args, 'command', '')}".strip(), complaint)


def at_most(small: str, big: str) -> Check:
    """``--small`` must not exceed ``--big`` (both optional; unset values are not compared)."""

    def check(args: argparse.Namespace) -> str | None:
        a, b = getattr(args, small), getattr(args, big)
        if a is not None and b is not None and a > b:
            return f"--{small.replace('_', '-')} ({a}) must not exceed --{big.replace('_', '-')} ({b})"
        return None

    return check


def exclusive(*dests: str) -> Check:
    """At most one of these flags may be given."""

    def check(args: argparse.Namespace) -> str | None:
        given = [d for d in dests if getattr(args, d, None)]
        if len(given) > 1:
            return " and ".join(f"--{d.replace('_', '-')}" for d in given) + " exclude each other"
        return None

    return check


def required_unless(dest: str, other: str) -> Check:
    """``--dest`` is required unless ``--other`` is given."""

    def check(args: argparse.Namespace) -> str | None:
        if getattr(args, dest, None) is None and getattr(args, other, None) is None:
            return f"--{dest.replace('_', '-')} is required (or --{other.replace('_', '-')})"
        return None

    return check


def wants_json(argv: Sequence[str], args: Any = None) -> bool:
    """Whether the command line asked for JSON output (also when parsing it failed)."""
    if args is not None:
        return bool(getattr(args, "json", False))
    return "--json" in argv


def _allow_import(text: str) -> list[str]:
    from cwm.sandbox.policy import validate_allow

    return validate_allow(text)


allow_import = ArgType("module list", _allow_import,
                       lambda _scratch: ["", ",", "gymnasium", "not a module", "no_such_module_cwm"])
"""``--allow-import MODULE[,MODULE]``: importable, never an environment's own package."""
