"""The sandbox's fork-server. Runs inside the isolation layers, never in the scoring process.

Started once (``python -I -c <this source>``) with a scrubbed environment and a control socket on fd 3.
It imports numpy once, then forks one child per program: the child drops privileges, limits itself,
loads the program and answers step requests on a socket of its own that the evaluator passed in with
the spawn request. Only the standard library and numpy are used here, on purpose: this file must run
wherever the interpreter runs, and nothing in it may depend on code the evaluator trusts for scoring.

Wire format (both sockets): one JSON object per line. Control requests carry ``op``; a spawn request
carries one file descriptor (SCM_RIGHTS). Nothing is ever unpickled.
"""

from __future__ import annotations

import contextlib
import errno
import json
import linecache
import os
import resource
import shutil
import signal
import socket
import sys
import time
import traceback
from typing import Any

# numpy after the stdlib: the launcher pinned BLAS threads to 1 in the environment first
import numpy as np

PROGRAM_FILENAME = "program.py"
NOBODY = 65534
CTRL_FD = 3

try:  # optional syscall filter
    import pyseccomp as _seccomp
except Exception:
    _seccomp = None


class TransitionTimeout(BaseException):
    """Raised by the per-transition timer; a BaseException so ``except Exception`` does not eat it."""


def _send(sock: socket.socket, obj: Any) -> None:
    sock.sendall(json.dumps(obj, allow_nan=True).encode() + b"\n")



# ------------------------------------------------------------------------------- import policy
class ForbiddenImport(ImportError):
    """An import the policy refuses; an ImportError so ordinary fallbacks (``except ImportError``) work."""


class ForbiddenAccess(PermissionError):
    """A file read or ctypes call the policy refuses."""


_INTROSPECTION = frozenset({"gc.get_objects", "gc.get_referrers", "gc.get_referents"})


def _under(path: str, roots: Any) -> bool:
    return any(path == r or path.startswith(r + os.sep) for r in roots)


class _ImportGuard:
    """The in-child half of the import policy (the filesystem view is the other half).

    A meta-path finder refuses imports by name (it sees ``importlib`` and ``__import__``, which raise no
    audit event); an audit hook, which the program cannot remove, refuses the builtin import statement
    by name, file reads inside the environment's packages or inside libraries not allowed, and ctypes
    unless an allowed library needs it. Every refusal is recorded: touching the environment's own
    package fails the program even when it catches the error."""

    def __init__(self, policy: dict[str, Any]) -> None:
        self.modules = set(policy["modules"])
        self.env_modules = set(policy["env_modules"])
        self.env_dirs = tuple(policy["env_dirs"])
        self.site_dirs = tuple(policy["site_dirs"])
        self.expose = tuple(policy["expose"])
        self.ctypes = bool(policy["ctypes"])
        self.allowed_user = list(policy["allowed"])
        self.violations: list[dict[str, str]] = []
        self.busy = False

    def allowed(self, name: str) -> bool:
        top = name.partition(".")[0]
        if top in self.env_modules:
            return False
        return (top in self.modules or top in sys.stdlib_module_names or top in sys.builtin_module_names
                or top == "__main__")

    def _deny_import(self, name: str) -> ForbiddenImport:
        top = name.partition(".")[0]
        if top in self.env_modules:
            msg = (f"import of {name!r} is forbidden: {top} implements the environment being modelled; "
                   "a Code World Model must simulate the dynamics itself, not wrap the real environment")
            kind = "environment"
        else:
            now = "the standard library and numpy" + (f", {', '.join(self.allowed_user)}" if self.allowed_user
                                                         else "")
            msg = (f"import of {name!r} is forbidden: only {now} may be imported "
                   f"(run with --allow-import {top} to allow it)")
            kind = "library"
        self.violations.append({"what": "import", "name": name, "kind": kind, "message": msg})
        return ForbiddenImport(msg, name=name)

    def _deny_path(self, path: str) -> ForbiddenAccess | None:
        if _under(path, self.env_dirs):
            msg = (f"reading {path!r} is forbidden: it belongs to the environment's implementation; "
                   "a Code World Model must describe the environment itself")
            self.violations.append({"what": "open", "name": path, "kind": "environment", "message": msg})
            return ForbiddenAccess(msg)
        if _under(path, self.site_dirs) and not _under(path, self.expose):
            msg = f"reading {path!r} is forbidden: it belongs to a library that is not allowed"
            self.violations.append({"what": "open", "name": path, "kind": "library", "message": msg})
            return ForbiddenAccess(msg)
        return None

    # meta-path finder protocol
    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        if not self.allowed(fullname):
            raise self._deny_import(fullname)
        return None

    def invalidate_caches(self) -> None:
        pass

    def audit(self, event: str, args: tuple[Any, ...]) -> None:
        if self.busy:
            return
        if event == "import":
            if not self.allowed(str(args[0])):
                raise self._deny_import(str(args[0]))
        elif event == "open":
            target = args[0] if args else None
            if isinstance(target, (str, bytes)):
                self.busy = True
                try:
                    err = self._deny_path(os.path.realpath(os.fsdecode(target)))
                finally:
                    self.busy = False
                if err is not None:
                    raise err
        elif event in _INTROSPECTION:
            msg = f"{event} is forbidden in the sandbox (it would reach the sandbox's own objects)"
            self.violations.append({"what": "introspection", "name": event, "kind": "library", "message": msg})
            raise ForbiddenAccess(msg)
        elif event.startswith("ctypes.") and not self.ctypes:
            msg = "ctypes is forbidden: a Code World Model needs no foreign function calls"
            self.violations.append({"what": "ctypes", "name": event, "kind": "library", "message": msg})
            raise ForbiddenAccess(msg)

    def environment_touched(self) -> dict[str, str] | None:
        return next((v for v in self.violations if v["kind"] == "environment"), None)


def _install_guard(policy: dict[str, Any] | None) -> _ImportGuard | None:
    """Purge what the fork-server imported beyond the policy, then guard every later import and read."""
    if not policy or policy.get("mode") == "trusted":
        return None
    guard = _ImportGuard(policy)
    for name in list(sys.modules):
        if not guard.allowed(name):
            del sys.modules[name]
    sys.meta_path.insert(0, guard)
    sys.path_importer_cache.clear()
    sys.addaudithook(guard.audit)
    return guard


def _forbidden_error(guard: _ImportGuard | None, exc: BaseException | None) -> dict[str, Any] | None:
    """The classified error when the program touched the environment, or died of a refused import."""
    if guard is None:
        return None
    hit = guard.environment_touched()
    if hit is None and exc is not None:
        chain: BaseException | None = exc
        while chain is not None and not isinstance(chain, (ForbiddenImport, ForbiddenAccess)):
            chain = chain.__cause__ or chain.__context__
        if chain is not None:
            hit = next((v for v in reversed(guard.violations) if v["message"] == str(chain)),
                       {"message": str(chain), "name": "", "what": "import"})
    if hit is None:
        return None
    return {"kind": "forbidden_import", "message": hit["message"], "module": hit.get("name", ""),
            "traceback": _tb(exc) if exc is not None else None}


# ----------------------------------------------------------------------------------- child side
class _BoundedText:
    """sys.stdout/sys.stderr replacement that keeps the first ``cap`` characters and drops the rest."""

    def __init__(self, cap: int) -> None:
        self.cap, self.size, self.dropped = cap, 0, 0
        self.parts: list[str] = []

    def write(self, s: str) -> int:
        s = str(s)
        room = self.cap - self.size
        if room > 0:
            self.parts.append(s[:room])
            self.size += min(room, len(s))
        self.dropped += max(0, len(s) - max(room, 0))
        return len(s)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def text(self) -> str:
        out = "".join(self.parts)
        return out + (f"\n[... {self.dropped} more characters dropped]" if self.dropped else "")


def _seccomp_filter() -> None:
    f = _seccomp.SyscallFilter(_seccomp.ALLOW)
    deny = _seccomp.ERRNO(errno.EPERM)
    for name in ("socket", "socketpair", "connect", "bind", "listen", "accept", "accept4", "execve",
                 "execveat", "fork", "vfork", "ptrace", "kill", "process_vm_readv", "process_vm_writev",
                 "mount", "umount2", "unshare", "setns", "chroot", "pivot_root", "setsid", "setpgid",
                 "personality", "userfaultfd", "bpf", "perf_event_open", "keyctl", "add_key"):
        with contextlib.suppress(Exception):
            f.add_rule(deny, name)
    clone_thread = 0x00010000
    f.add_rule(deny, "clone", _seccomp.Arg(0, _seccomp.MASKED_EQ, clone_thread, 0))
    with contextlib.suppress(Exception):  # glibc falls back from clone3 to clone on ENOSYS
        f.add_rule(_seccomp.ERRNO(errno.ENOSYS), "clone3")
    f.load()


def _limit_child(limits: dict[str, Any], scratch: str) -> None:
    os.chdir(scratch)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    out = os.open(os.path.join(scratch, "fd-output.log"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(out, 1)
    os.dup2(out, 2)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # oversize writes fail with EFBIG instead of killing
    if os.geteuid() == 0 and limits.get("drop_uid", True):
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
    mem = int(limits["memory_mb"]) << 20
    cpu = int(limits["cpu_s"])
    for res, val in ((resource.RLIMIT_AS, mem), (resource.RLIMIT_CPU, cpu),
                     (resource.RLIMIT_FSIZE, int(limits["file_bytes"])),
                     (resource.RLIMIT_NPROC, int(limits["max_tasks"])),
                     (resource.RLIMIT_NOFILE, 64), (resource.RLIMIT_CORE, 0)):
        try:
            resource.setrlimit(res, (val, val))
        except (ValueError, OSError):  # a hard limit inherited below ours (ulimit -t, a batch job): keep it
            hard = resource.getrlimit(res)[1]
            resource.setrlimit(res, (val if hard == resource.RLIM_INFINITY else min(val, hard), hard))
    if limits.get("seccomp", True) and _seccomp is not None:
        _seccomp_filter()


def _error(kind: str, exc: BaseException, code: str) -> dict[str, Any]:
    if isinstance(exc, SyntaxError):
        line = exc.lineno or 0
        text = (exc.text or "").rstrip()
        msg = f"line {line}: {exc.msg}" + (f"\n    {text.strip()}" if text else "")
        return {"kind": "syntax", "message": f"SyntaxError on {msg}", "line": line, "traceback": msg}
    return {"kind": kind, "message": f"{type(exc).__name__}: {exc}"[:2000], "traceback": _tb(exc)}


def _tb(exc: BaseException) -> str:
    """The traceback cut to the program's own frames (plus the frame that raised), with its line numbers."""
    frames = traceback.extract_tb(exc.__traceback__)
    keep = [f for f in frames if f.filename == PROGRAM_FILENAME]
    if frames and (not keep or frames[-1] is not keep[-1]):
        keep.append(frames[-1])
    lines = ["Traceback (most recent call last):\n", *traceback.format_list(keep)]
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines)[-6000:]


def _to_input(value: Any, kind: str, dtype: str) -> Any:
    if kind == "int":
        return int(value)
    if kind == "tuple":
        return tuple(int(v) for v in value)
    return np.array(value, dtype=dtype)


def _encode(out: Any) -> dict[str, Any]:
    if not isinstance(out, (tuple, list)) or len(out) != 3:
        got = f"a {type(out).__name__}" + (f" of length {len(out)}" if isinstance(out, (tuple, list)) else "")
        raise TypeError(f"step must return (next_state, reward, done), got {got}")
    ns, r, d = out
    arr = np.asarray(ns, dtype=np.float64)
    rr = np.asarray(r, dtype=np.float64)
    if rr.size != 1:
        raise TypeError(f"step returned a reward of shape {rr.shape}; it must be a single number")
    dd = np.asarray(d)
    if dd.size != 1:
        raise TypeError(f"step returned done of shape {dd.shape}; it must be a single bool")
    return {"s": arr.ravel().tolist(), "shape": list(arr.shape), "r": float(rr.reshape(-1)[0]),
            "d": bool(dd.reshape(-1)[0])}


def _serve_child(sock: socket.socket, req: dict[str, Any], scratch: str, policy: dict[str, Any] | None) -> None:
    """Load the program, then answer step requests until the evaluator closes the socket."""
    limits = req["limits"]
    _limit_child(limits, scratch)
    guard = _install_guard(policy)
    out = _BoundedText(int(limits["output_chars"]))
    sys.stdout = sys.stderr = out
    code: str = req["code"]
    linecache.cache[PROGRAM_FILENAME] = (len(code), None, code.splitlines(True), PROGRAM_FILENAME)
    ns: dict[str, Any] = {"__name__": "cwm_program", "__file__": PROGRAM_FILENAME}
    reply: dict[str, Any]
    env = None
    try:
        exec(compile(code, PROGRAM_FILENAME, "exec"), ns)
        cls = ns.get("Environment")
        if not isinstance(cls, type):
            reply = {"ok": False, "error": {"kind": "interface", "message":
                     "the program defines no class named Environment", "traceback": None}}
        else:
            missing = [m for m in ("set_state", "step") if not callable(getattr(cls, m, None))]
            if missing:
                reply = {"ok": False, "error": {"kind": "interface", "message":
                         f"class Environment has no method {' or '.join(missing)}", "traceback": None}}
            else:
                env = cls()
                reply = {"ok": True, "step_batch": callable(getattr(env, "step_batch", None))}
    except SyntaxError as exc:
        reply = {"ok": False, "error": _error("syntax", exc, code)}
    except ImportError as exc:
        reply = {"ok": False, "error": _forbidden_error(guard, exc) or _error("import", exc, code)}
    except MemoryError as exc:
        reply = {"ok": False, "error": _error("memory", exc, code)}
    except SystemExit as exc:
        reply = {"ok": False, "error": {"kind": "crash", "message":
                 f"the program called exit({exc.code!r}) while loading", "traceback": _tb(exc)}}
    except BaseException as exc:
        reply = {"ok": False, "error": _forbidden_error(guard, exc) or _error("runtime", exc, code)}
    touched = _forbidden_error(guard, None)
    if touched is not None:  # it reached for the environment, even if it caught the refusal
        reply, env = {"ok": False, "error": touched}, None
    reply["output"] = out.text()
    _send(sock, reply)
    if env is None:
        return
    sk, sd, ak, ad = req["state_kind"], req["state_dtype"], req["action_kind"], req["action_dtype"]
    per_item = float(limits["transition_s"])

    def on_alarm(signum: int, frame: Any) -> None:
        raise TransitionTimeout(f"step took longer than {per_item:g} s")

    signal.signal(signal.SIGALRM, on_alarm)
    reader = sock.makefile("rb")
    planner = _PlannerOps(env, sk, sd, ak, ad)
    for line in reader:
        msg = json.loads(line)
        op = msg.get("op", "step")
        if op != "step":
            answer = _guarded(lambda op=op, msg=msg: planner.run(op, msg), code)
            if not _fatal(sock, guard):
                _send(sock, answer)
                continue
            return
        for state, action in msg["items"]:
            def one(state: Any = state, action: Any = action) -> dict[str, Any]:
                env.set_state(_to_input(state, sk, sd))
                return _encode(env.step(_to_input(action, ak, ad)))

            signal.setitimer(signal.ITIMER_REAL, per_item)
            answer = _guarded(one, code)
            if _fatal(sock, guard):
                return
            _send(sock, answer)


def _fatal(sock: socket.socket, guard: _ImportGuard | None) -> bool:
    """After the program reached for the environment, answer nothing more: one fatal record, then stop."""
    hit = _forbidden_error(guard, None)
    if hit is None:
        return False
    _send(sock, {"fatal": hit})
    return True


def _guarded(fn: Any, code: str) -> dict[str, Any]:
    """Run ``fn`` (the program's code underneath) and turn whatever it raises into an error record."""
    try:
        try:
            out: dict[str, Any] = fn()
            return out
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except SystemExit as exc:
        return {"error": {"kind": "crash", "message": f"the program called exit({exc.code!r})", "traceback": _tb(exc)}}
    except MemoryError as exc:
        return {"error": _error("memory", exc, code)}
    except TransitionTimeout as exc:
        return {"error": {"kind": "timeout", "message": str(exc), "traceback": _tb(exc)}}
    except (ForbiddenImport, ForbiddenAccess) as exc:
        return {"error": {"kind": "forbidden_import", "message": str(exc), "traceback": _tb(exc)}}
    except BaseException as exc:
        return {"error": _error("runtime", exc, code)}


class _PlannerOps:
    """Planner helpers run next to the model so a rollout costs one message, not one per step.

    The planner's code here is trusted; the model it calls is not, and may lie about its own rollouts,
    which only misleads its own planning: the evaluator measures returns in the real environment.
    Every step calls ``set_state`` with the model's previous output (the Markov contract, as in scoring).
    """

    def __init__(self, env: Any, sk: str, sd: str, ak: str, ad: str) -> None:
        self.env, self.sk, self.sd, self.ak, self.ad = env, sk, sd, ak, ad
        self.batch: Any = getattr(env, "step_batch", None)

    def _step(self, state: Any, action: Any) -> tuple[Any, float, bool]:
        self.env.set_state(state)
        out = self.env.step(action)
        if not isinstance(out, (tuple, list)) or len(out) != 3:
            raise TypeError("step must return (next_state, reward, done)")
        return out[0], float(out[1]), bool(out[2])

    def _action(self, a: Any) -> Any:
        return _to_input(a, self.ak, self.ad)

    def run(self, op: str, msg: dict[str, Any]) -> dict[str, Any]:
        if op == "rollouts":
            return self.rollouts(msg)
        if op == "simulate":
            return self.simulate(msg)
        if op == "check_batch":
            return self.check_batch(msg)
        raise ValueError(f"unknown op {op!r}")

    def rollouts(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Undiscounted return of each action sequence from ``state`` (stopping at done)."""
        s0 = _to_input(msg["state"], self.sk, self.sd)
        plans = np.asarray(msg["plans"], dtype=np.float64 if self.ak == "array" else np.int64)
        if msg.get("use_batch") and self.batch is not None and self.sk == "array":
            return {"returns": self._batched(s0, plans)}
        out = []
        for plan in plans:
            state, total = s0, 0.0
            for a in plan:
                state, r, d = self._step(state, self._action(a.tolist() if hasattr(a, "tolist") else a))
                total += r
                if d:
                    break
            out.append(total)
        return {"returns": out}

    def _batched(self, s0: Any, plans: Any) -> list[float]:
        n = plans.shape[0]
        states = np.repeat(np.asarray(s0)[None], n, axis=0)
        alive = np.ones(n, dtype=bool)
        totals = np.zeros(n)
        for t in range(plans.shape[1]):
            nxt, rew, done = self.batch(states, plans[:, t])
            rew = np.asarray(rew, dtype=np.float64).reshape(n)
            totals += np.where(alive, rew, 0.0)
            alive &= ~np.asarray(done, dtype=bool).reshape(n)
            states = np.asarray(nxt)
            if not alive.any():
                break
        result: list[float] = totals.tolist()
        return result

    def check_batch(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Largest difference between step_batch and step on the given inputs (None: no step_batch)."""
        if self.batch is None or self.sk != "array":
            return {"max_diff": None}
        states = [_to_input(s, self.sk, self.sd) for s, _ in msg["items"]]
        actions = [self._action(a) for _, a in msg["items"]]
        bs, br, bd = self.batch(np.stack(states), np.stack([np.asarray(a) for a in actions]))
        br, bd = np.asarray(br, dtype=np.float64).reshape(-1), np.asarray(bd, dtype=bool).reshape(-1)
        diff = 0.0
        for i, (s, a) in enumerate(zip(states, actions, strict=True)):
            ns, r, d = self._step(s, a)
            gap = np.abs(np.asarray(ns, dtype=np.float64) - np.asarray(bs[i], dtype=np.float64))
            diff = max(diff, float(np.max(gap)), abs(r - float(br[i])), float(d != bool(bd[i])))
        return {"max_diff": diff}

    def simulate(self, msg: dict[str, Any]) -> dict[str, Any]:
        """One step from ``state`` with ``action``, then a random rollout of ``depth`` steps (MCTS leaf value)."""
        import random as _random

        rng = _random.Random(int(msg["seed"]))
        gamma = float(msg["discount"])
        ns, r, d = self._step(_to_input(msg["state"], self.sk, self.sd), self._action(msg["action"]))
        out = _encode((ns, r, d))
        value, g, state = 0.0, 1.0, ns
        if not d:
            n_actions = int(msg["n_actions"])
            for _ in range(int(msg["depth"])):
                state, rr, dd = self._step(state, rng.randrange(n_actions))
                value += g * rr
                g *= gamma
                if dd:
                    break
        out["v"] = value
        return out


# ---------------------------------------------------------------------------------- zygote side
def _self_report() -> dict[str, Any]:
    try:
        with open("/proc/net/dev") as fh:
            ifaces = sorted(ln.split(":")[0].strip() for ln in fh.read().splitlines()[2:])
    except OSError:
        ifaces = []
    return {
        "pid": os.getpid(), "uid": os.geteuid(), "python": sys.version.split()[0], "numpy": np.__version__,
        "interfaces": ifaces, "seccomp": _seccomp is not None,
        "can_drop_uid": os.geteuid() == 0,
    }


def _load_policy() -> dict[str, Any] | None:
    raw = os.environ.get("CWM_POLICY", "")
    if not raw:
        return None
    policy: dict[str, Any] = json.loads(raw)
    return policy


def _preload(names: str) -> dict[str, str]:
    """Import the trusted preload modules once; failures are reported to the evaluator, not swallowed."""
    failed: dict[str, str] = {}
    for mod in filter(None, names.split(",")):
        try:
            __import__(mod)
        except BaseException as exc:  # any failure of a preload is reported, not swallowed
            failed[mod] = f"{type(exc).__name__}: {exc}"[:500]
    return failed


def main() -> None:
    ctrl = socket.socket(fileno=int(sys.argv[1]) if len(sys.argv) > 1 else CTRL_FD)
    base = os.environ.get("CWM_SCRATCH", "/tmp/cwm-sandbox")
    if "CWM_SCRATCH" not in os.environ and os.geteuid() == 0:
        # a private view (bubblewrap): shared writable places become read-only for the children,
        # so the per-child scratch directory is the only place they can write
        for shared in ("/tmp", "/dev/shm", "/var/tmp"):
            with contextlib.suppress(OSError):
                os.chmod(shared, 0o755)
    os.makedirs(base, mode=0o755, exist_ok=True)
    os.chmod(base, 0o755)
    children: dict[str, tuple[int, str]] = {}
    buf = b""
    pending_fds: list[int] = []

    def kill(sid: str) -> dict[str, Any]:
        pid, scratch = children.pop(sid, (0, ""))
        if not pid:
            return {"id": sid, "status": "unknown"}
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        shutil.rmtree(scratch, ignore_errors=True)
        if os.WIFSIGNALED(status):
            return {"id": sid, "signal": os.WTERMSIG(status)}
        return {"id": sid, "exit": os.WEXITSTATUS(status)}

    policy = _load_policy()
    preload_errors = _preload(os.environ.get("CWM_PRELOAD", ""))
    while True:
        while b"\n" not in buf:
            msg_bytes, fds, _, _ = socket.recv_fds(ctrl, 1 << 20, 4)
            if not msg_bytes:
                for sid in list(children):
                    kill(sid)
                return
            buf += msg_bytes
            pending_fds.extend(fds)
        line, buf = buf.split(b"\n", 1)
        req = json.loads(line)
        op = req.get("op")
        if op == "hello":
            _send(ctrl, {**_self_report(), "preload_errors": preload_errors,
                         "policy": policy is not None and policy.get("mode") != "trusted"})
        elif op == "spawn":
            fd = pending_fds.pop(0)
            sid = str(req["id"])
            scratch = os.path.join(base, f"s{sid}")
            os.makedirs(scratch, mode=0o700)
            if os.geteuid() == 0 and req["limits"].get("drop_uid", True):
                os.chown(scratch, NOBODY, NOBODY)
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    os.setsid()
                    ctrl.close()
                    for other_fd in pending_fds:
                        os.close(other_fd)
                    child_sock = socket.socket(fileno=fd)
                    _serve_child(child_sock, req, scratch, policy)
                except BaseException:
                    code = 70
                os._exit(code)
            os.close(fd)
            children[sid] = (pid, scratch)
            _send(ctrl, {"id": sid, "pid": pid, "t": time.time()})
        elif op == "kill":
            _send(ctrl, kill(str(req["id"])))
        else:
            _send(ctrl, {"error": f"unknown op {op!r}"})


if __name__ == "__main__":
    main()
