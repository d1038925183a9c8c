"""The import policy: what a candidate program may import and read, worked out in the evaluator.

The paper's setting is a model written from scratch with the standard library and numpy. A program that
wraps the real environment (``gym.make(...).unwrapped``) would "model" anything, so the environment's
implementation -- gymnasium, any package that registers environments, and their asset files -- is kept
out of reach twice: the filesystem view of the sandbox leaves it out (bubblewrap mounts an empty tmpfs
over the site-packages directories and re-exposes only the allowed packages), and the child process
refuses the import or the file read itself (a meta-path finder, an audit hook that cannot be removed,
and a purge of ``sys.modules``). Where the filesystem layer is missing only the second holds, and every
report says so.

``--allow-import mujoco`` opts a library in, with its own dependencies (from the installed package
metadata). The environment's packages stay forbidden whatever is allowed. Libraries that need threads or
ctypes to work register that need here (``register_library``); nothing else is loosened.
"""

from __future__ import annotations

import functools
import glob
import importlib.metadata as md
import importlib.util
import os
import re
import site
import sys
import sysconfig
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from cwm.errors import CwmError

PolicyMode = Literal["paper", "allow", "trusted"]
ALWAYS_ALLOWED = ("numpy",)
SANDBOX_RUNTIME = ("pyseccomp",)
"""Imported by the fork-server itself before any program runs; visible in the view, not importable."""

ENVIRONMENT_PACKAGES: dict[str, str] = {
    "gymnasium": "the Gymnasium environments and their MuJoCo assets",
    "gym": "the old Gym environments",
}
"""Packages that implement environments: never importable, never readable, whatever is allowed.
Packages registering environments through the ``gymnasium.envs`` entry point join them at run time."""


@dataclass(frozen=True)
class LibraryNeeds:
    """What a library needs beyond the default limits to work at all."""

    threads: int = 0
    """RLIMIT_NPROC for the child: worker threads the library starts (fork and exec stay denied)."""
    ctypes: bool = False
    """The library loads shared objects with ctypes (plugins): allow ctypes calls in the child."""


_LIBRARY_NEEDS: dict[str, LibraryNeeds] = {}


def register_library(name: str, needs: LibraryNeeds) -> None:
    """Declare what an allowed library needs; the policy grants it only when the library is allowed."""
    _LIBRARY_NEEDS[name] = needs


# MuJoCo loads its bundled plugins with ctypes at import. Its compiler and mj_step ran with NPROC=0 in
# the sandbox (measured with mujoco 4.0), so it gets no threads; a library that needs them says how many.
register_library("mujoco", LibraryNeeds(threads=0, ctypes=True))


@dataclass(frozen=True)
class ImportPolicy:
    """Everything the sandbox needs to enforce the policy (filesystem view and in-child guard)."""

    mode: PolicyMode
    allowed: tuple[str, ...] = ()
    """Libraries the user allowed (``--allow-import``), as given."""
    modules: tuple[str, ...] = ()
    """Top-level modules importable besides the standard library: numpy, allowed ones, their dependencies."""
    expose: tuple[str, ...] = ()
    """Files and directories of those modules, re-exposed read-only in the filesystem view."""
    site_dirs: tuple[str, ...] = ()
    """Non-standard-library import directories: hidden in the view except for ``expose``."""
    env_modules: tuple[str, ...] = ()
    env_dirs: tuple[str, ...] = ()
    """The environment packages' directories (code and assets): hidden and unreadable."""
    preload: tuple[str, ...] = ()
    threads: int = 0
    ctypes: bool = False
    notes: tuple[str, ...] = field(default=())

    @property
    def enforced(self) -> bool:
        return self.mode != "trusted"

    def label(self) -> str:
        """One phrase for reports: what a program could import."""
        if self.mode == "trusted":
            return (f"trusted reference model: fork-server preloaded {', '.join(self.preload)}; "
                    "no import policy (never use --preload for untrusted programs)")
        extra = f" + {', '.join(self.allowed)} (--allow-import)" if self.allowed else ""
        return f"standard library + numpy{extra}"

    def wire(self) -> dict[str, Any]:
        """What the child needs (JSON, through the environment)."""
        return {"mode": self.mode, "modules": list(self.modules), "env_modules": list(self.env_modules),
                "env_dirs": list(self.env_dirs), "site_dirs": list(self.site_dirs), "expose": list(self.expose),
                "ctypes": self.ctypes, "allowed": list(self.allowed)}


def describe_enforcement(policy: ImportPolicy, filesystem: bool) -> str:
    """How the policy is enforced with the layers in force (doctor and every report print this)."""
    if not policy.enforced:
        return policy.label()
    how = ("filesystem view (environment packages and other libraries absent) + import guard" if filesystem
           else "import-level only: the filesystem layer is off, so a determined program could still read "
                "the environment's files (install bubblewrap for the filesystem layer)")
    return f"{policy.label()}; enforced by {how}"


def _top(name: str) -> str:
    return name.partition(".")[0]


@functools.cache
def _module_dists() -> dict[str, tuple[str, ...]]:
    return {k: tuple(v) for k, v in md.packages_distributions().items()}


def _dists_of(top: str) -> tuple[str, ...]:
    """Distributions installing module ``top``: the same-named one when it has it (fast), else a full scan."""
    try:
        dist = md.distribution(top)
    except md.PackageNotFoundError:
        return _module_dists().get(top, ())
    return (top,) if top in _dist_paths(dist)[0] else _module_dists().get(top, ())


def environment_modules() -> tuple[str, ...]:
    """gymnasium, gym, and every top-level package that registers environments by entry point."""
    names = set(ENVIRONMENT_PACKAGES)
    try:
        for ep in md.entry_points(group="gymnasium.envs"):
            names.add(_top(ep.value.split(":")[0]))
    except Exception:  # a broken metadata file must not stop the sandbox; the known names still hold
        pass
    return tuple(sorted(names))


def _requirement_names(dist: md.Distribution) -> list[str]:
    """Names of the distributions ``dist`` needs at run time (extras left out)."""
    out = []
    for req in dist.requires or []:
        name, _, marker = req.partition(";")
        if "extra" in marker:
            continue
        if marker.strip():
            try:
                from packaging.markers import Marker

                if not Marker(marker.strip()).evaluate():
                    continue
            except Exception:  # no packaging, or a marker it cannot read: keep the dependency
                pass
        m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", name)
        if m:
            out.append(m.group(1))
    return out


def _dist_paths(dist: md.Distribution) -> tuple[set[str], set[str]]:
    """Top-level modules a distribution installs, and the paths of its top-level entries."""
    modules: set[str] = set()
    paths: set[str] = set()
    firsts: dict[str, int] = {}
    for f in dist.files or []:
        parts = f.parts
        if parts and not parts[0].startswith("..") and parts[0] not in firsts:
            firsts[parts[0]] = len(parts)
    for first, depth in firsts.items():
        if first.endswith(".pth") or first == "__pycache__":
            continue
        located = os.path.abspath(str(dist.locate_file(first)))
        paths.update((located, os.path.realpath(located)))  # where Python looks, and what it points at
        if first.endswith((".dist-info", ".egg-info", ".data")):
            continue
        if depth == 1:
            stem = first.split(".")[0]
            if first.endswith((".py", ".so", ".pyd")) and stem.isidentifier():
                modules.add(stem)
        elif first.isidentifier():
            modules.add(first)
    return modules, paths


def _dist_key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _closure(tops: Iterable[str], forbidden: set[str]) -> tuple[set[str], set[str]]:
    """Modules and paths of ``tops`` and everything their distributions require, recursively."""
    modules: set[str] = set()
    paths: set[str] = set()
    seen: set[str] = set()
    queue: list[str] = []
    for top in tops:
        dists = _dists_of(top)
        if dists:
            queue.extend(dists)
        else:  # no metadata (a module on the path by hand): expose what the import system finds
            modules.add(top)
            paths.update(_spec_paths(top))
    while queue:
        name = queue.pop()
        key = _dist_key(name)
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            continue
        mods, ps = _dist_paths(dist)
        if mods & forbidden:
            continue  # a dependency that is an environment package stays out
        modules |= mods
        paths |= ps
        queue.extend(_requirement_names(dist))
    return modules, paths


def _spec_paths(top: str) -> list[str]:
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return []
    if spec is None:
        return []
    found = list(spec.submodule_search_locations or ([spec.origin] if spec.origin and os.path.isabs(spec.origin)
                                                      else []))
    return sorted({q for p in found for q in (os.path.abspath(p), os.path.realpath(p))})


def _stdlib_dirs() -> set[str]:
    paths = sysconfig.get_paths()
    out = {os.path.realpath(paths[k]) for k in ("stdlib", "platstdlib") if paths.get(k)}
    out |= {os.path.realpath(os.path.join(p, "lib-dynload")) for p in list(out)}
    return out


def site_dirs() -> tuple[str, ...]:
    """Directories on the interpreter's import path that are not the standard library."""
    std = _stdlib_dirs()
    cands = [*site.getsitepackages(), sysconfig.get_paths().get("purelib", ""),
             sysconfig.get_paths().get("platlib", ""),
             *(p for p in sys.path if p and ("site-packages" in p or "dist-packages" in p))]
    out: set[str] = set()
    for p in cands:
        real = os.path.realpath(p) if p else ""
        if not real or not os.path.isdir(real) or real in std:
            continue
        if any(s.startswith(real + os.sep) for s in std):
            continue  # never hide a directory that holds the standard library
        out.update((real, os.path.abspath(p)))  # through a symlinked venv too, not only its target
    return tuple(sorted(out))


def _env_dirs(env_mods: Sequence[str], extra_roots: Sequence[str]) -> tuple[str, ...]:
    """Where the environment packages live: on the import path, and in the usual system places."""
    out: set[str] = set()
    roots = {*extra_roots, *glob.glob("/usr/lib/python3*/*-packages"), *glob.glob("/usr/local/lib/python3*/*-packages"),
             *glob.glob(os.path.join(sys.base_prefix, "lib", "python3*", "site-packages"))}
    for mod in env_mods:
        out.update(_spec_paths(mod))
        for root in roots:
            for cand in (os.path.join(root, mod), os.path.join(root, mod + ".py")):
                if os.path.exists(cand):
                    out.add(os.path.realpath(cand))
    return tuple(sorted(out))


def _check_allowed(allow: Sequence[str], env_mods: set[str]) -> tuple[str, ...]:
    out: list[str] = []
    for raw in allow:
        name = raw.strip()
        if not name:
            continue
        if not all(part.isidentifier() for part in name.split(".")) or "." in name:
            raise CwmError(f"--allow-import {raw!r}: give a top-level module name (e.g. mujoco, scipy)",
                           hint="a library's submodules and dependencies come with it")
        if name in env_mods:
            raise CwmError(f"--allow-import {name}: {name} implements the environments; it can never be "
                           "allowed", hint="a tool-using model writes its own model of the environment")
        if name in sys.stdlib_module_names or name in ALWAYS_ALLOWED:
            continue  # already allowed
        if importlib.util.find_spec(name) is None:
            raise CwmError(f"--allow-import {name}: no module named {name!r} is installed",
                           hint=f"install it into this Python environment (pip install {name})")
        if name not in out:
            out.append(name)
    return tuple(out)


def parse_allow(values: Sequence[str]) -> tuple[str, ...]:
    """``--allow-import a,b --allow-import c`` as a flat tuple (validated later, by ``build_policy``)."""
    return tuple(p.strip() for v in values for p in v.split(",") if p.strip())


def validate_allow(text: str) -> list[str]:
    """One ``--allow-import`` value checked up front: module names that exist and are not environments."""
    names = parse_allow([text])
    if not names:
        raise CwmError("--allow-import needs module names (e.g. mujoco or mujoco,scipy)")
    _check_allowed(names, set(environment_modules()))
    return list(names)


@functools.cache
def build_policy(allow: tuple[str, ...] = (), preload: tuple[str, ...] = ()) -> ImportPolicy:
    """The policy for a sandbox: ``trusted`` when modules are preloaded, else the paper's set plus ``allow``."""
    env_mods = environment_modules()
    sdirs = site_dirs()
    if preload:
        return ImportPolicy("trusted", preload=preload, site_dirs=sdirs, env_modules=env_mods)
    allowed = _check_allowed(allow, set(env_mods))
    modules, paths = _closure((*ALWAYS_ALLOWED, *allowed), set(env_mods))
    _, runtime_paths = _closure(SANDBOX_RUNTIME, set(env_mods))
    env_dirs = _env_dirs(env_mods, sdirs)
    needs = [_LIBRARY_NEEDS[a] for a in allowed if a in _LIBRARY_NEEDS]
    notes = tuple(f"{a}: up to {_LIBRARY_NEEDS[a].threads} threads" for a in allowed
                  if a in _LIBRARY_NEEDS and _LIBRARY_NEEDS[a].threads)
    expose = {p for p in paths | runtime_paths if not any(p == d or p.startswith(d + os.sep) for d in env_dirs)}
    return ImportPolicy(
        "allow" if allowed else "paper", allowed=allowed, modules=tuple(sorted(modules - set(env_mods))),
        expose=tuple(sorted(expose)), site_dirs=sdirs, env_modules=env_mods, env_dirs=env_dirs,
        threads=max((n.threads for n in needs), default=0), ctypes=any(n.ctypes for n in needs), notes=notes)
