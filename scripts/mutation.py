"""Mutation testing of the modules that decide results, one module at a time (see README, "Testing").

Each module is a table under ``[tool.cwm.mutation.<name>]`` in pyproject.toml: the files to mutate, the
functions within them that count (mutmut mutant-name globs; "*" for all), the tests that cover them and
pytest arguments (e.g. deselecting a slow test). For one module this script

1. exports the committed tree (``git archive HEAD``; ``--worktree`` copies the working files instead)
   into ``$CWM_MUTATION_DIR/<name>`` (default /tmp/cwm-mutation), so mutmut's ``mutants/`` copy never
   lands in the checkout and concurrent edits by others do not leak into the measurement;
   mutmut leaves decorated functions unmutated, so with ``undecorate = true`` the exported copies of the
   module's files apply their top-level functions' decorators after the definition instead
   (``f = deco(f)``, the same function at run time) and those functions are mutated too;
2. writes a ``setup.cfg`` ``[mutmut]`` section restricted to that module and its covering tests;
3. runs ``mutmut run --max-children N`` (default 1: the machine is shared) under ``nice``, with the
   hypothesis properties at 10 examples per mutant (``CWM_HYPOTHESIS_EXAMPLES``);
4. prints killed / total over the selected mutants (timeouts count as killed, "no tests" as survived)
   and the survivors' names, and writes them to ``summary.json`` there.

Exit status: 0 when the kill rate reaches ``--min`` (default 90), 1 below it, 2 on bad input.
"""

from __future__ import annotations

import argparse
import ast
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COPIED = ("src", "tests", "examples", "pyproject.toml")
KILLED = {"killed", "timeout"}


@dataclass(frozen=True)
class Module:
    name: str
    files: list[str]
    functions: list[str]
    tests: list[str]
    pytest_args: list[str]
    undecorate: bool = False

    def mutant_globs(self) -> list[str]:
        out = []
        for f in self.files:
            dotted = f.removeprefix("src/").removesuffix(".py").replace("/", ".")
            out += [f"{dotted}.{fn}" for fn in self.functions]
        return out


def load_modules() -> dict[str, Module]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    tables = data.get("tool", {}).get("cwm", {}).get("mutation", {})
    return {name: Module(name, list(t["files"]), list(t.get("functions", ["*"])), list(t["tests"]),
                         list(t.get("pytest_args", [])), bool(t.get("undecorate", False)))
            for name, t in tables.items()}


def undecorate(path: Path) -> int:
    """Rewrite ``@deco def f`` (module level or in a module-level class; not static or class methods,
    which mutmut handles) as ``def f`` followed by ``f = deco(f)``: mutmut skips decorated functions,
    and applying the decorator after the definition is the same at run time.
    Returns how many functions were rewritten."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    tree = ast.parse(text)
    scopes = [tree.body, *(c.body for c in tree.body if isinstance(c, ast.ClassDef))]  # module and its classes
    funcs = sorted((n for body in scopes for n in body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                    and n.decorator_list and not any(isinstance(d, ast.Name) and d.id in
                                                     ("staticmethod", "classmethod") for d in n.decorator_list)),
                   key=lambda n: n.lineno)
    for fn in reversed(funcs):  # bottom-up, so earlier line numbers stay valid
        assert fn.end_lineno is not None
        decos = [ast.get_source_segment(text, d) for d in fn.decorator_list]
        wrapped = fn.name
        for d in reversed(decos):
            wrapped = f"({d})({wrapped})"
        lines.insert(fn.end_lineno, " " * fn.col_offset + f"{fn.name} = {wrapped}\n")
        del lines[fn.decorator_list[0].lineno - 1:fn.lineno - 1]
    path.write_text("".join(lines), encoding="utf-8")
    return len(funcs)


def export_tree(dest: Path, worktree: bool) -> str:
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    if worktree:
        for name in COPIED:
            src = ROOT / name
            if src.is_dir():
                shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy2(src, dest / name)
        return "worktree"
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, check=True, capture_output=True,
                            text=True).stdout.strip()
    archive = subprocess.run(["git", "archive", "HEAD", *COPIED], cwd=ROOT, check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return commit


def write_config(dest: Path, mod: Module) -> None:
    def block(key: str, values: list[str]) -> str:
        return f"{key} =\n" + "".join(f"    {v}\n" for v in values)

    # setup.cfg: mutmut reads it when pyproject.toml has no [tool.mutmut] table (ours has none on purpose)
    text = "[mutmut]\n" + block("source_paths", ["src"]) + block("only_mutate", mod.files) + \
        block("also_copy", ["examples/"]) + \
        block("pytest_add_cli_args_test_selection", mod.tests) + \
        block("pytest_add_cli_args", ["-p", "no:cacheprovider", "-q", *mod.pytest_args]) + \
        "use_git_change_detection = false\n"
    (dest / "setup.cfg").write_text(text, encoding="utf-8")


def results(dest: Path, mutmut: str) -> dict[str, str]:
    out = subprocess.run([mutmut, "results", "--all", "true"], cwd=dest, capture_output=True, text=True,
                         check=True).stdout
    status = {}
    for line in out.splitlines():
        name, sep, st = line.strip().rpartition(": ")
        if sep:
            status[name] = st
    return status


def main(argv: list[str] | None = None) -> int:
    modules = load_modules()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("module", nargs="?", help=f"one of: {', '.join(modules)} (default: all, one after another)")
    ap.add_argument("--max-children", type=int, default=1, help="parallel mutant runs (default 1)")
    ap.add_argument("--worktree", action="store_true", help="measure the working files, not the HEAD commit")
    ap.add_argument("--min", type=float, default=90.0, help="kill rate (%%) needed for exit status 0")
    ap.add_argument("--list", action="store_true", help="list the configured modules and exit")
    args = ap.parse_args(argv)
    if args.list:
        for m in modules.values():
            print(f"{m.name}: {' '.join(m.files)} [{' '.join(m.functions)}] <- {' '.join(m.tests)}")
        return 0
    if args.module is not None and args.module not in modules:
        print(f"mutation: unknown module {args.module!r}; choose one of {', '.join(modules)}", file=sys.stderr)
        return 2
    mutmut = shutil.which("mutmut", path=str(Path(sys.executable).parent)) or shutil.which("mutmut")
    if mutmut is None:
        print("mutation: mutmut is not installed; pip install -e '.[dev]'", file=sys.stderr)
        return 2
    base = Path(os.environ.get("CWM_MUTATION_DIR", "/tmp/cwm-mutation"))
    worst = 100.0
    for mod in [modules[args.module]] if args.module else list(modules.values()):
        dest = base / mod.name
        source = export_tree(dest, args.worktree)
        write_config(dest, mod)
        if mod.undecorate:
            for f in mod.files:
                print(f"   {f}: {undecorate(dest / f)} decorated function(s) made mutable", flush=True)
        globs = mod.mutant_globs()
        print(f"== {mod.name} ({source}) in {dest}", flush=True)
        # property tests run 10 examples per mutant instead of their 40-60 (the full count runs in the suite)
        env = {**os.environ, "CWM_HYPOTHESIS_EXAMPLES": os.environ.get("CWM_HYPOTHESIS_EXAMPLES", "10")}
        subprocess.run(["nice", "-n", "15", mutmut, "run", "--max-children", str(args.max_children), *globs],
                       cwd=dest, check=False, env=env)
        status = {k: v for k, v in results(dest, mutmut).items() if any(fnmatch.fnmatch(k, g) for g in globs)}
        killed = sum(v in KILLED for v in status.values())
        rate = 100.0 * killed / len(status) if status else 0.0
        survivors = sorted(k for k, v in status.items() if v not in KILLED)
        summary = {"module": mod.name, "source": source, "killed": killed, "total": len(status),
                   "kill_rate": round(rate, 1), "survivors": {k: status[k] for k in survivors}}
        (dest / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
        for k in survivors:
            print(f"  {status[k]}: {k}")
        print(f"{mod.name}: {killed}/{len(status)} killed = {rate:.1f}% (source {source})", flush=True)
        worst = min(worst, rate)
    return 0 if worst >= args.min else 1


if __name__ == "__main__":
    sys.exit(main())
