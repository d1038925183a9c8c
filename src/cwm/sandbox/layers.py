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

from cwm.sandbox.policy import ImportPolicy, describe_enforcement

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
    "import-policy": "borrowing the real environment (gymnasium, its assets) or libraries not allowed",
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


def _needed_paths(extra: Sequence[str], *, with_site: bool) -> list[str]:
    """Paths the interpreter needs inside the view, wherever they live (a venv under /tmp included): the
    executable as invoked and its real file, the prefixes, the standard library and, unless an import
    policy hides them, the site-packages directories."""
    exe = os.path.abspath(sys.executable)
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(exe),
             os.path.dirname(os.path.realpath(exe))}
    keys = ("stdlib", "platstdlib", "purelib", "platlib") if with_site else ("stdlib", "platstdlib")
    for key in keys:
        paths.add(sysconfig.get_paths()[key])
    paths.update(extra)
    return sorted(p for p in paths if p and os.path.exists(p))


def _hidden_defaults() -> list[str]:
    """Where a user's secrets and data usually live: hidden behind empty tmpfs mounts."""
    home = os.path.expanduser("~")
    out = [p for p in ("/root", "/home", home, "/mnt", "/media", "/srv", "/var/lib", "/run/user") if p]
    out.append(os.getcwd())
    return out


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


class _View:
    """The mount table being built, so each step knows what the program would see at a path.

    bubblewrap applies its arguments in order and a later mount over a directory covers earlier mounts
    below it, so a path is visible when the last mount at or above it is a bind (or there is none)."""

    def __init__(self, args: list[str]) -> None:
        self.args = args
        self.mounts: list[tuple[str, str]] = [("tmpfs", "/tmp"), ("tmpfs", "/dev"), ("tmpfs", "/proc")]
        self.made: set[str] = set()

    def covering(self, path: str) -> tuple[str, str] | None:
        for kind, at in reversed(self.mounts):
            if _under(path, at):
                return kind, at
        return None

    def visible(self, path: str) -> bool:
        cov = self.covering(path)
        return cov is None or cov[0] == "bind"

    def hide(self, path: str) -> None:
        if path in ("/", "/tmp") or not self.visible(path):
            return
        if os.path.isdir(path):
            self.args += ["--tmpfs", path]
        else:
            self.args += ["--ro-bind", "/dev/null", path]
        self.mounts.append(("tmpfs", path))
        self.made = {d for d in self.made if not _under(d, path)}

    def bind(self, src: str, dest: str) -> None:
        if self.visible(dest) and os.path.realpath(dest) == src:
            return
        cov = self.covering(dest)
        if cov is not None and cov[0] == "tmpfs":
            # bubblewrap creates missing parents 0700 (unreadable to the dropped uid): make them 0755
            parent, chain = os.path.dirname(dest), []
            while len(parent) > len(cov[1]) and parent not in self.made:
                chain.append(parent)
                parent = os.path.dirname(parent)
            for d in reversed(chain):
                self.args += ["--perms", "0755", "--dir", d]
                self.made.add(d)
        self.args += ["--ro-bind", src, dest]
        self.mounts.append(("bind", dest))


def bwrap_args(hide: Sequence[str], keep: Sequence[str], env: dict[str, str], *,
               expose: Sequence[str] = (), forbid: Sequence[str] = ()) -> list[str]:
    """bubblewrap arguments: read-only root, private /tmp, fresh /dev and /proc, new namespaces; ``hide``
    behind empty tmpfs mounts (or /dev/null for files); the interpreter's paths (``keep``) re-exposed
    read-only wherever they are, then ``hide`` applied again inside them (a venv in the project, the
    site-packages of an import policy); ``expose`` (allowed packages) re-exposed inside those; ``forbid``
    (the environment's implementation) hidden last, so nothing above can re-expose it."""
    exe = shutil.which("bwrap") or "bwrap"
    args = [exe, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
            "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent", "--new-session", "--clearenv", "--chdir", "/tmp"]
    for key, val in env.items():
        args += ["--setenv", key, val]
    view = _View(args)
    hidden = sorted({q for h in hide if os.path.exists(h) for q in (os.path.abspath(h), os.path.realpath(h))},
                    key=len)
    for h in hidden:
        view.hide(h)
    for k in sorted({os.path.abspath(k) for k in keep}, key=len):
        real = os.path.realpath(k)
        view.bind(real, real)
        if k != real:
            view.bind(real, k)  # the path as invoked (a symlinked venv directory), not only its target
    for h in hidden:
        view.hide(h)
    for e in sorted({os.path.abspath(e) for e in expose if os.path.exists(e)}, key=len):
        view.bind(os.path.realpath(e), e)
    for path in sorted({q for f in forbid if os.path.exists(f) for q in (os.path.abspath(f), os.path.realpath(f))},
                       key=len):
        view.hide(path)
    return args


def plan_launch(isolation: Isolation, hide: Sequence[str], keep: Sequence[str],
                env: dict[str, str], policy: ImportPolicy | None = None) -> LaunchPlan:
    if isolation in ("auto", "bwrap") and bwrap_available():
        enforced = policy is not None and policy.enforced
        site = list(policy.site_dirs) if enforced and policy is not None else []
        return LaunchPlan("bwrap", tuple(bwrap_args(
            [*_hidden_defaults(), *hide, *site], _needed_paths(keep, with_site=not enforced), env,
            expose=policy.expose if enforced and policy is not None else (),
            forbid=policy.env_dirs if enforced and policy is not None else ())))
    if isolation == "bwrap":
        from cwm.errors import CwmError

        raise CwmError("bubblewrap (bwrap) was requested but does not work here",
                       hint="install it (apt-get install bubblewrap) or use --isolation auto")
    if isolation in ("auto", "unshare") and unshare_available():
        exe = shutil.which("unshare") or "unshare"
        return LaunchPlan("unshare", (exe, "--net", "--pid", "--fork", "--kill-child", "--mount-proc"))
    return LaunchPlan("none", ())


def describe_layers(plan: LaunchPlan, hello: dict[str, Any], *, drop_uid: bool, seccomp: bool,
                    policy: ImportPolicy | None = None) -> list[Layer]:
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
    if policy is not None:
        layers.append(Layer("import-policy", policy.enforced and bool(hello.get("policy")),
                            describe_enforcement(policy, plan.mode == "bwrap")))
    return layers


def zygote_source() -> str:
    return (Path(__file__).with_name("_zygote.py")).read_text(encoding="utf-8")
