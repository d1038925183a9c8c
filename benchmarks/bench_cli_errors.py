"""How fast the ``cwm`` command refuses bad input: wall time of a fresh process per bad command line.

    python benchmarks/bench_cli_errors.py [--repeat 5]

Each case runs the installed console entry point (``python -m cwm.cli``) in a new process, as a user
would, and prints the median wall time and the exit code. Argument errors are caught while parsing,
before numpy, gymnasium, the sandbox or the LLM stack is imported; an unknown non-benchmark env id
imports gymnasium to look it up, and a bad --llm imports the provider parser.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = [
    ["synthesize", "--env", "CartPole-v1", "--out", "README.md"],
    ["synthesize", "--env", "CartPole-v1", "--budget", "0"],
    ["synthesize", "--env", "CartPole-v1", "--temperature", "9"],
    ["synthesize", "--env", "NoSuchEnv-v0"],
    ["synthesize", "--env", "CartPole-v1", "--llm", "gpt-4o"],
    ["plan", "--env", "CartPole-v1", "--model", "random", "--episodes", "0"],
    ["collect", "CartPole-v1", "--cem-samples", "10", "--cem-elites", "20"],
    ["ask", ""],
    ["check", "missing.py", "--env", "CartPole-v1", "--json"],
]


def main(repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "README.md").write_text("not a run\n", encoding="utf-8")
        print(f"{'median s':>9}  exit  command line")
        for argv in CASES:
            times, code = [], None
            for _ in range(repeat):
                t0 = time.perf_counter()
                proc = subprocess.run([sys.executable, "-m", "cwm.cli", *argv], cwd=tmp, capture_output=True,
                                      text=True, check=False)
                times.append(time.perf_counter() - t0)
                code = proc.returncode
            print(f"{statistics.median(times):9.3f}  {code:4d}  cwm {' '.join(argv) or repr('')}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    main(ap.parse_args().repeat)
