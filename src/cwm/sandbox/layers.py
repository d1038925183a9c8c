"""Isolation layers: which ones this machine offers, and the command that starts the fork-server in them.

Each layer stops a different threat; none is trusted alone. Where a layer is unavailable the sandbox
still runs, logs a warning naming it, and ``cwm doctor`` shows it as inactive.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Isolation = Literal["auto", "bwrap", "unshare", "none"]

THREATS: dict[str, str] = {
    "fork-server": "crashes, segfaults and patched globals stay in a throw-away child process",
    "deadline": "infinite loops, sleeps and hangs: the evaluator SIGKILLs the child's process group",
    "rlimits": "memory bombs (address space), CPU spin, huge files, fork/thread bombs (NPROC=0), fd floods",
    "uid-drop": "reading or writing the user's files; makes NPROC=0 binding for a root evaluator",
    "network-namespace": "any network access, loopback services of the host included",
    "pid-namespace": "seeing or signalling the evaluator and other host processes",
    "filesystem-view": "writing anywhere but a private tmpfs; reading the home, project and datasets",
    "seccomp": "sockets, exec, fork, ptrace, kill and namespace tricks at the syscall level",
}


@dataclass(frozen=True)
class Layer:
    name: str
    active: bool
    detail: str

    @property
    def threat(self) -> str:
        return THREATS[self.name]


@dataclass(frozen=True)
class LaunchPlan:
    """How to start the fork-server: the command prefix and the mode it gives."""

    mode: Literal["bwrap", "unshare", "none"]
    prefix: tuple[str, ...]


@functools.cache
def _works(argv: tuple[str, ...]) -> bool:
    try:
        done = subprocess.run([*argv, "true"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def bwrap_available() -> bool:
    exe = shutil.which("bwrap")
    return exe is not None and _works((exe, "--ro-bind", "/", "/", "--unshare-net", "--unshare-pid"))


def unshare_available() -> bool:
    exe = shutil.which("unshare")
    return exe is not None and os.geteuid() == 0 and _works((exe, "--net", "--pid", "--fork"))


def _needed_paths(extra: Sequence[str]) -> list[str]:
    """Paths the interpreter needs inside the view: its prefixes and site-packages."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable))}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        paths.add(sysconfig.get_paths()[key])
    paths.update(extra)
    return sorted(p for p in paths if p and os.path.exists(p))


def _hidden_defaults() -> list[str]:
    """Where a user's secrets and data usually live: hidden behind empty tmpfs mounts."""
    home = os.path.expanduser("~")
    out = [p for p in ("/root", "/home", home, "/mnt", "/media", "/srv", "/var/lib", "/run/user") if p]
    out.append(os.getcwd())
    return out


def bwrap_args(hide: Sequence[str], keep: Sequence[str], env: dict[str, str]) -> list[str]:
    """bubblewrap arguments: read-only root, private /tmp, fresh /dev and /proc, new namespaces,
    secrets hidden by empty tmpfs (or /dev/null for files), interpreter paths re-exposed read-only."""
    exe = shutil.which("bwrap") or "bwrap"
    args = [exe, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
            "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent", "--new-session", "--clearenv", "--chdir", "/tmp"]
    for key, val in env.items():
        args += ["--setenv", key, val]
    keep_real = [os.path.realpath(k) for k in keep]
    dirs = sorted({os.path.realpath(h) for h in hide if os.path.isdir(h)}, key=len)
    files = sorted({os.path.realpath(h) for h in hide if os.path.isfile(h)})
    mounted: list[str] = []
    for d in dirs:
        if d in ("/", "/tmp") or any(d.startswith(m + os.sep) or d == m for m in mounted):
            continue
        args += ["--tmpfs", d]
        mounted.append(d)
    made: set[str] = set()
    for k in keep_real:
        inside = [m for m in mounted if k == m or k.startswith(m + os.sep)]
        if not inside:
            continue
        # bubblewrap creates missing parents 0700 (unreadable to the dropped uid): make them 0755
        parent, chain = os.path.dirname(k), []
        while parent != inside[0] and parent not in made and len(parent) > len(inside[0]):
            chain.append(parent)
            parent = os.path.dirname(parent)
        for d in reversed(chain):
            args += ["--perms", "0755", "--dir", d]
            made.add(d)
        args += ["--ro-bind", k, k]
    # data inside a re-exposed path (a venv in the project, the package's own datasets) hides again
    for d in dirs:
        if any(d.startswith(k + os.sep) for k in keep_real):
            args += ["--tmpfs", d]
    for f in files:
        args += ["--ro-bind", "/dev/null", f]
    return args


def plan_launch(isolation: Isolation, hide: Sequence[str], keep: Sequence[str],
                env: dict[str, str]) -> LaunchPlan:
    if isolation in ("auto", "bwrap") and bwrap_available():
        return LaunchPlan("bwrap", tuple(bwrap_args([*_hidden_defaults(), *hide],
                                                    _needed_paths(keep), env)))
    if isolation == "bwrap":
        from cwm.errors import CwmError

        raise CwmError("bubblewrap (bwrap) was requested but does not work here",
                       hint="install it (apt-get install bubblewrap) or use --isolation auto")
    if isolation in ("auto", "unshare") and unshare_available():
        exe = shutil.which("unshare") or "unshare"
        return LaunchPlan("unshare", (exe, "--net", "--pid", "--fork", "--kill-child", "--mount-proc"))
    return LaunchPlan("none", ())


def describe_layers(plan: LaunchPlan, hello: dict[str, Any], *, drop_uid: bool, seccomp: bool) -> list[Layer]:
    """The layers in force, from the launch plan and what the fork-server reported about itself."""
    ifaces = hello.get("interfaces") or []
    net = ifaces == ["lo"]
    uid = int(hello.get("uid", -1))
    layers = [
        Layer("fork-server", True, f"warm fork-server pid {hello.get('pid')} (Python {hello.get('python')}, "
              f"numpy {hello.get('numpy')}); one child per program"),
        Layer("deadline", True, "the evaluator kills the child's process group at the deadline"),
        Layer("rlimits", True, "RLIMIT_AS, CPU, FSIZE, NPROC=0, NOFILE, CORE=0 in every child"),
        Layer("uid-drop", uid == 0 and drop_uid,
              "children run as uid 65534 (nobody)" if uid == 0 and drop_uid else
              f"the fork-server runs as uid {uid}: children keep that uid" + (
                  "" if uid != 0 else " (disabled by configuration)")),
        Layer("network-namespace", net, "private network namespace (only lo)" if net else
              "children share the host network: install bubblewrap or run as root for `unshare -n`"),
        Layer("pid-namespace", plan.mode in ("bwrap", "unshare"),
              f"private PID namespace via {plan.mode}" if plan.mode != "none" else "host PID namespace"),
        Layer("filesystem-view", plan.mode == "bwrap",
              "read-only root, private /tmp, home/project/datasets hidden (bubblewrap)" if plan.mode == "bwrap"
              else "host filesystem visible: install bubblewrap (apt-get install bubblewrap)"),
        Layer("seccomp", bool(hello.get("seccomp")) and seccomp,
              "libseccomp filter via pyseccomp" if hello.get("seccomp") and seccomp else
              "no syscall filter (pyseccomp/libseccomp2 missing or disabled)"),
    ]
    return layers


def zygote_source() -> str:
    return (Path(__file__).with_name("_zygote.py")).read_text(encoding="utf-8")
