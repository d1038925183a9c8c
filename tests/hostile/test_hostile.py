"""Hostile programs against the real sandbox: each class of attack from the sandbox-hardening issue.

Every test checks the same promises: the evaluator answers in bounded time with a classified error,
nothing is left behind, and nothing the program does raises its score.
"""

from __future__ import annotations

import asyncio
import os
import socket
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from cwm.envs.dataset import bundled_path
from cwm.sandbox import Limits, Sandbox, SandboxConfig, evaluate

ROOT = os.geteuid() == 0


def prog(body: str) -> str:
    return "import numpy as np\n" + textwrap.dedent(body)


def step_prog(step_body: str, top: str = "") -> str:
    """A program whose step runs ``step_body`` and then answers like an identity model."""
    return prog(f"""
{textwrap.dedent(top)}
class Environment:
    def set_state(self, s):
        self.s = np.asarray(s)
    def step(self, a):
{textwrap.indent(textwrap.dedent(step_body), ' ' * 8)}
        return self.s, 1.0, False
""")


def _processes() -> dict[int, tuple[int, str]]:
    """Every process on the host: pid -> (parent pid, pid namespace)."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text(encoding="utf-8")
                ns = os.readlink(f"/proc/{entry}/ns/pid")
            except OSError:
                continue
            table[int(entry)] = (int(stat.rsplit(")", 1)[1].split()[1]), ns)
    return table


def _own_pids(namespaces: set[str]) -> set[int]:
    """Processes this test started: descendants of the test process, or members of its sandbox's pid
    namespaces (an orphan re-parented out of our tree stays in the namespace). Other programs' sandboxes
    running on the same machine are neither, so they cannot fail the test."""
    table, me = _processes(), os.getpid()
    own = set()
    for pid, (_ppid, ns) in table.items():
        if ns in namespaces:
            own.add(pid)
            continue
        seen, cur = set(), pid
        while cur in table and cur not in seen and cur > 1:
            if cur == me and pid != me:
                own.add(pid)
                break
            seen.add(cur)
            cur = table[cur][0]
    return own


@pytest.fixture
async def hostile_sandbox(tmp_path):
    limits = Limits(load_s=2.0, base_s=1.5, per_transition_s=0.01, transition_s=0.3, memory_mb=768)
    before = _own_pids(set())
    my_ns = os.readlink("/proc/self/ns/pid")
    async with Sandbox(SandboxConfig(limits=limits, hide=(str(tmp_path),))) as sb:
        table = _processes()
        started = _own_pids(set()) - before
        assert started, "the sandbox's processes are not visible as ours: the leftover check would see nothing"
        namespaces = {table[p][1] for p in started if p in table} - {my_ns}
        yield sb
    # nothing left behind: no process of this sandbox survives it
    for _ in range(50):
        if not (_own_pids(namespaces) - before):
            break
        await asyncio.sleep(0.05)
    assert not (_own_pids(namespaces) - before)


async def _run(sb: Sandbox, code: str, ds, budget: float = 8.0):
    t0 = time.monotonic()
    report = await evaluate(sb, code, ds)
    elapsed = time.monotonic() - t0
    assert elapsed < budget, f"evaluator took {elapsed:.1f} s"
    # the fork-server still serves an honest program afterwards
    honest = await evaluate(sb, step_prog("pass"), ds)
    assert honest.error is None
    return report


# ------------------------------------------------------------------------------------ hangs
@pytest.mark.parametrize("code", [
    step_prog("while True: pass"),
    step_prog("""
        while True:
            try:
                while True:
                    pass
            except BaseException:
                pass
    """),
    step_prog("while True: pass", top="import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)"),
    step_prog("time.sleep(3600)", top="import time"),
    step_prog("", top="import signal\nsignal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})\n"
                      "while True: pass"),
], ids=["busy", "catches-BaseException", "ignores-SIGALRM", "sleeps", "hangs-at-import-masked"])
async def test_hangs_end_in_a_timeout(hostile_sandbox, cartpole_small, code):
    report = await _run(hostile_sandbox, code, cartpole_small)
    assert report.error is not None and report.error.kind == "timeout"
    assert report.accuracy < 0.5


async def test_hang_at_import(hostile_sandbox, cartpole_small):
    report = await _run(hostile_sandbox, "import time\ntime.sleep(1000)\n", cartpole_small)
    assert report.error.kind == "timeout" and "loading" in report.error.message


# ----------------------------------------------------------------------------------- memory
@pytest.mark.parametrize("code", [
    "x = bytearray(10**11)\n",
    "chunks = []\nwhile True:\n    chunks.append(bytearray(10**7))\n",
    "import numpy as np\nx = np.ones((10**6, 10**5))\n",
], ids=["one-huge", "gradual", "numpy"])
async def test_memory_bombs_are_stopped(hostile_sandbox, cartpole_small, code):
    report = await _run(hostile_sandbox, code, cartpole_small)
    assert report.error.kind == "memory"


async def test_memory_bomb_inside_step_is_per_transition(hostile_sandbox, cartpole_small):
    report = await _run(hostile_sandbox, step_prog("x = [0] * 10**10"), cartpole_small)
    assert report.exceptions == len(cartpole_small)
    assert "MemoryError" in report.failures[0]["traceback"]


# ------------------------------------------------------------------------- processes, threads
@pytest.mark.parametrize("code", [
    "import os\nwhile True:\n    os.fork()\n",
    "import os\nfor _ in range(100):\n    if os.fork() == 0:\n        os.setsid()\n        import time\n"
    "        time.sleep(3600)\n",
    "import threading, time\nfor _ in range(10000):\n"
    "    threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()\n",
    "import subprocess\nsubprocess.Popen(['sleep', '3600'])\n",
    "import os\nos.system('sleep 3600 &')\nraise SystemExit(0)\n",
    "import multiprocessing\nmultiprocessing.Process(target=print).start()\n",
], ids=["fork-bomb", "daemonize", "thread-bomb", "subprocess", "system", "multiprocessing"])
async def test_no_processes_or_threads_escape(hostile_sandbox, cartpole_small, code):
    report = await _run(hostile_sandbox, code, cartpole_small)
    assert report.error is not None
    assert report.error.kind in ("runtime", "crash")


@pytest.mark.parametrize("code", [
    "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n",
    "import os, signal\nos.killpg(0, signal.SIGKILL)\n",
    "import os, signal\nos.kill(-1, signal.SIGKILL)\n",
    "import os, signal\nos.kill(1, signal.SIGKILL)\n",
], ids=["parent", "own-group", "everyone", "pid-1"])
async def test_killing_the_evaluator_fails(hostile_sandbox, cartpole_small, code):
    report = await _run(hostile_sandbox, code, cartpole_small)
    assert report.error is not None  # the program errors or dies; the evaluator lives on


@pytest.mark.parametrize(("code", "kind"), [
    ("import sys\nsys.exit(0)\n", "crash"),
    ("import os\nos._exit(0)\n", "crash"),
    (step_prog("import os; os._exit(0)"), "crash"),
    ("import faulthandler\nfaulthandler._sigsegv()\n", "crash"),
    (step_prog("import faulthandler; faulthandler._sigsegv()"), "crash"),
    ("import ctypes\nctypes.string_at(0)\n", "forbidden_import"),  # ctypes is refused before it reads
    ("import sys\nsys.setrecursionlimit(10**7)\ndef f(n):\n    return f(n + 1) + 1\nf(0)\n",
     "crash|memory|timeout"),
], ids=["sys-exit-0", "os-exit-0", "exit-in-step", "segfault", "segfault-in-step", "ctypes-null-read",
        "deep-recursion"])
async def test_early_exits_and_crashes_are_classified(hostile_sandbox, cartpole_small, code, kind):
    report = await _run(hostile_sandbox, code, cartpole_small)
    assert report.error is not None and report.error.kind in kind.split("|")
    assert report.accuracy == 0.0 or report.error.index is not None


async def test_python_recursion_is_a_per_transition_error(hostile_sandbox, cartpole_small):
    report = await _run(hostile_sandbox, step_prog("def f(): return f()\nf()"), cartpole_small)
    assert "RecursionError" in report.failures[0]["traceback"]


# ------------------------------------------------------------------------------------ output
async def test_enormous_output_is_bounded(hostile_sandbox, cartpole_small):
    code = step_prog("""
        print('x' * 10**7)
        import os
        try:
            os.write(1, b'y' * 10**8)
        except OSError:
            pass
    """)
    report = await _run(hostile_sandbox, code, cartpole_small)
    assert len(report.output) < 20_000


# ------------------------------------------------------------------------ forged predictions
@pytest.mark.parametrize("ret", [
    "return float('nan'), float('nan'), float('nan')",
    "return [float('nan')] * 4, float('inf'), np.bool_(False)",
    "return 'garbage', 'reward', 'done'",
    "return None",
    "return self.s.tolist() * 1000, [1.0, 2.0], [True, False]",
    "return Evil(), Evil(), Evil()",
], ids=["nan", "inf", "strings", "none", "wrong-shapes", "evil-objects"])
async def test_garbage_never_scores(hostile_sandbox, cartpole_small, ret):
    code = prog(f"""
    import os
    class Evil:
        def __reduce__(self):
            return (os.system, ('touch /tmp/cwm-pwned',))
        def __float__(self):
            return float('nan')
        def __bool__(self):
            raise RuntimeError('no')
    class Environment:
        def set_state(self, s):
            self.s = np.asarray(s)
        def step(self, a):
            {ret}
    """)
    report = await _run(hostile_sandbox, code, cartpole_small)
    assert report.accuracy < 0.34 and report.strict_accuracy == 0.0
    assert not Path("/tmp/cwm-pwned").exists()


async def test_patching_numpy_and_builtins_changes_nothing(hostile_sandbox, cartpole_small):
    code = prog("""
    import builtins, json, math
    np.allclose = np.isclose = np.array_equal = lambda *a, **k: True
    math.isclose = lambda *a, **k: True
    builtins.float = lambda *a, **k: 0.0
    builtins.abs = lambda x: 0
    class Environment:
        def set_state(self, s):
            self.s = s
        def step(self, a):
            return [0.0, 0.0, 0.0, 0.0], 0.0, False
    """)
    report = await _run(hostile_sandbox, code, cartpole_small)
    assert report.strict_accuracy == 0.0


async def test_writing_to_the_result_channel_forges_nothing(hostile_sandbox, cartpole_small):
    payload = b'\x80\x04\x95cos\nsystem\n(S"touch /tmp/cwm-pwned-2"\ntR.'
    code = prog(f"""
    import os
    class Environment:
        def set_state(self, s):
            self.s = np.asarray(s)
        def step(self, a):
            for fd in range(3, 64):
                try:
                    os.write(fd, {payload!r} + b'\\n{{"s": [1, 2, 3, 4], "shape": [4], "r": 1.0, "d": false}}\\n')
                except OSError:
                    pass
            return self.s, 1.0, False
    """)
    report = await _run(hostile_sandbox, code, cartpole_small)
    assert report.strict_accuracy == 0.0
    assert report.error is not None and report.error.kind == "protocol"
    assert not Path("/tmp/cwm-pwned-2").exists()


async def test_walking_memory_and_stack_finds_no_answers(hostile_sandbox, cartpole):
    """The strongest cheat the inputs allow: remember every state ever seen and predict the closest
    one. With lockstep batches the true next state is never seen before its prediction is due."""
    code = prog("""
    import gc, sys
    SEEN = []
    class Environment:
        def set_state(self, s):
            self.s = np.asarray(s, dtype=np.float64)
            SEEN.append(self.s.copy())
        def step(self, a):
            found = []
            for obj in gc.get_objects():
                if isinstance(obj, (list, np.ndarray)) and len(obj) == 4:
                    try:
                        found.append(np.asarray(obj, dtype=np.float64))
                    except Exception:
                        pass
            frame = sys._getframe()
            while frame is not None:
                for v in frame.f_locals.values():
                    if isinstance(v, (list, tuple)):
                        for item in v:
                            if isinstance(item, (list, tuple)) and item and isinstance(item[0], list):
                                found.append(np.asarray(item[0], dtype=np.float64))
                frame = frame.f_back
            candidates = [c for c in found + SEEN if c.shape == (4,) and not np.array_equal(c, self.s)]
            if not candidates:
                return self.s, 1.0, False
            best = min(candidates, key=lambda c: float(np.abs(c - self.s).sum()))
            return best, 1.0, False
    """)
    report = await _run(hostile_sandbox, code, cartpole, budget=20)
    assert report.strict_accuracy < 0.05


# ------------------------------------------------------------------------ network and files
async def test_no_network_even_to_host_loopback(hostile_sandbox, cartpole_small):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    port = server.getsockname()[1]
    accepted: list[object] = []

    def accept() -> None:
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:
            try:
                conn, _ = server.accept()
                accepted.append(conn)
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    code = f"""
import socket, urllib.request
errors = []
for target in (('127.0.0.1', {port}), ('localhost', {port})):
    try:
        socket.create_connection(target, timeout=1).sendall(b'leak')
    except OSError as e:
        errors.append(repr(e))
try:
    urllib.request.urlopen('http://127.0.0.1:{port}/', timeout=1)
except Exception as e:
    errors.append(repr(e))
raise RuntimeError(f'{{len(errors)}} connection attempts failed')
"""
    report = await _run(hostile_sandbox, code, cartpole_small)
    t.join()
    server.close()
    assert accepted == []
    assert "3 connection attempts failed" in report.error.message


@pytest.mark.skipif(not ROOT, reason="file permissions are only enforced through the uid drop as root")
async def test_no_writes_outside_scratch(hostile_sandbox, cartpole_small, tmp_path):
    targets = [str(Path.cwd() / "cwm-pwned.txt"), "/tmp/cwm-pwned-3", "/etc/cwm-pwned",
               str(tmp_path / "pwned"), "/dev/shm/cwm-pwned", "/var/tmp/cwm-pwned"]
    code = f"""
import os
ok = []
for path in {targets!r}:
    try:
        with open(path, 'w') as fh:
            fh.write('x')
        ok.append(path)
    except OSError:
        pass
with open('scratch-file.txt', 'w') as fh:  # the private scratch directory is writable
    fh.write('fine')
raise RuntimeError(f'wrote {{ok}}')
"""
    report = await _run(hostile_sandbox, code, cartpole_small)
    for path in targets:
        assert not Path(path).exists(), path
    if hostile_sandbox.plan is not None and hostile_sandbox.plan.mode == "bwrap":
        assert "wrote []" in report.error.message


async def test_no_secrets_or_data_are_readable(hostile_sandbox, cartpole_small, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-value")
    secret = tmp_path / "dataset.npz"
    secret.write_text("expected answers", encoding="utf-8")
    bundled = str(bundled_path("CartPole-v1"))
    home_file = Path.home() / ".cwm-test-secret"
    home_file.write_text("home secret", encoding="utf-8")
    try:
        code = f"""
import os
leaks = []
if any('secret' in v for v in os.environ.values()):
    leaks.append('environ')
for path in ({str(secret)!r}, {bundled!r}, {str(home_file)!r}, '/proc/1/environ', 'pyproject.toml',
             {str(Path.cwd() / "pyproject.toml")!r}):
    try:
        with open(path, 'rb') as fh:
            data = fh.read()
        if b'secret' in data or b'expected' in data or path.endswith('.npz') or b'cwm' in data:
            leaks.append(path)
    except OSError:
        pass
raise RuntimeError(f'leaks={{leaks}}')
"""
        report = await _run(hostile_sandbox, code, cartpole_small)
    finally:
        home_file.unlink()
    assert "leaks=[]" in report.error.message, report.error.message


async def test_layers_are_reported_and_warned(cartpole_small):
    async with Sandbox(SandboxConfig(isolation="none", limits=Limits(seccomp=False))) as sb:
        names = {layer.name: layer.active for layer in sb.layers}
        assert names["filesystem-view"] is False and names["seccomp"] is False
        assert names["rlimits"] is True
        report = await evaluate(sb, step_prog("pass"), cartpole_small)
        assert report.error is None


@pytest.mark.parametrize("isolation", ["none", "unshare"])
async def test_degraded_modes_still_stop_hangs_and_bombs(cartpole_small, isolation):
    from cwm.sandbox.layers import unshare_available

    if isolation == "unshare" and not unshare_available():
        pytest.skip("unshare needs root here")
    limits = Limits(load_s=2.0, base_s=1.0, per_transition_s=0.01, transition_s=0.3, memory_mb=768)
    async with Sandbox(SandboxConfig(isolation=isolation, limits=limits)) as sb:
        scratch = sb._scratch
        assert scratch is not None and os.path.isdir(scratch)
        r1 = await evaluate(sb, step_prog("while True:\n    try:\n        pass\n    except BaseException:"
                                          "\n        pass"), cartpole_small)
        r2 = await evaluate(sb, "x = bytearray(10**11)\n", cartpole_small)
        r3 = await evaluate(sb, "import os\nwhile True:\n    os.fork()\n", cartpole_small)
    assert r1.error.kind == "timeout" and r2.error.kind == "memory" and r3.error.kind in ("runtime", "crash")
    assert np.isfinite(r1.elapsed_s)
    # the host-side scratch directory is removed with the sandbox
    assert not os.path.exists(scratch)


# ------------------------------------------------------------------ with a library allowed (mujoco)
@pytest.fixture
async def mujoco_sandbox(tmp_path):
    limits = Limits(load_s=5.0, base_s=1.5, per_transition_s=0.01, transition_s=0.3, memory_mb=1024)
    async with Sandbox(SandboxConfig(limits=limits, hide=(str(tmp_path),), allow_import=("mujoco",))) as sb:
        yield sb


@pytest.mark.parametrize(("code", "kinds"), [
    ("import os\nwhile True:\n    os.fork()\n", "runtime|crash"),
    ("import threading, time\nfor _ in range(10000):\n"
     "    threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()\n", "runtime|crash"),
    ("import subprocess\nsubprocess.Popen(['sleep', '3600'])\n", "runtime|crash"),
    ("import socket\nsocket.create_connection(('127.0.0.1', 22), timeout=1)\n", "runtime"),
    ("x = bytearray(10**11)\n", "memory"),
    ("while True:\n    pass\n", "timeout"),
    ("open('/etc/cwm-escape', 'w').write('x')\n", "runtime"),
    ("import gymnasium\n", "forbidden_import"),
    ("import scipy\n", "forbidden_import"),
], ids=["fork-bomb", "thread-bomb", "subprocess", "network", "memory", "hang", "write-outside", "environment",
        "other-library"])
async def test_an_allowed_library_loosens_no_other_limit(mujoco_sandbox, cartpole_small, code, kinds):
    report = await _run(mujoco_sandbox, "import mujoco\n" + code, cartpole_small, budget=15.0)
    assert report.error is not None and report.error.kind in kinds.split("|"), report.error
    assert report.accuracy == 0.0
    assert not Path("/etc/cwm-escape").exists()
