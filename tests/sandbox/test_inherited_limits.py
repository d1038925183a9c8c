"""The sandbox under a hard resource limit inherited from its parent (``ulimit -t``, a batch scheduler,
mutmut's per-mutant CPU cap): a child that cannot set its own CPU limit keeps the tighter inherited one
instead of crashing, so programs are still classified by what they do."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from conftest import EXAMPLES

SCRIPT = textwrap.dedent("""
    import asyncio, json, resource, sys
    resource.setrlimit(resource.RLIMIT_CPU, (900, 900))
    from cwm.envs.dataset import load_for_env
    from cwm.sandbox import Limits, SandboxConfig
    from cwm.sandbox.evaluate import check_program
    import numpy as np

    ds = load_for_env("CartPole-v1")
    ds = ds.subset(np.flatnonzero(ds.trajectory < 1))
    cfg = SandboxConfig(limits=Limits(load_s=5.0, memory_mb=1024))
    good = asyncio.run(check_program(open(sys.argv[1]).read(), ds, config=cfg))
    bad = asyncio.run(check_program("class Environment(:\\n", ds, config=cfg))
    print(json.dumps([good.passed, bad.error.kind if bad.error else None]))
""")


def test_a_lower_inherited_cpu_hard_limit_is_kept_not_fatal():
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(EXAMPLES / "cartpole_cwm.py")], capture_output=True,
                         text=True, timeout=120, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [True, "syntax"]
