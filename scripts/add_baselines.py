"""Measure baselines with ``cwm.bench.baselines.compute`` and merge them into the shipped package data.

    python scripts/add_baselines.py CartPole-v1:oracle Pendulum-v1:oracle [--episodes 10] [--cem paper]

Each ENV:WHICH (which = oracle or random) is measured with the bench's defaults (10 episodes from seed 0,
CEM ``paper``, 25 MCTS simulations, whole episodes) — the settings ``cwm bench`` looks baselines up by —
and replaces any shipped entry with the same key in ``src/cwm/bench/data/baselines.json``. The file is
rewritten after every measurement, so a long list can be cut short without losing what was measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from cwm.bench.baselines import compute

DATA = Path(__file__).resolve().parents[1] / "src" / "cwm" / "bench" / "data" / "baselines.json"


def merge(entry: dict[str, object], path: Path = DATA) -> None:
    doc = json.loads(path.read_text(encoding="utf-8"))
    kept = [e for e in doc["baselines"] if not (e["which"] == entry["which"] and e["key"] == entry["key"])]
    doc["baselines"] = [*kept, entry]
    path.write_text(json.dumps(doc, indent=1), encoding="utf-8")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("jobs", nargs="+", help="ENV:oracle or ENV:random")
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--cem", default="paper")
    ap.add_argument("--simulations", type=int, default=25)
    a = ap.parse_args()
    for job in a.jobs:
        env, _, which = job.partition(":")
        if which not in ("oracle", "random"):
            print(f"{job!r}: expected ENV:oracle or ENV:random", file=sys.stderr)
            return 2
        entry = asyncio.run(compute(env, which, episodes=a.episodes, seed=0, cem=a.cem,  # type: ignore[arg-type]
                                    simulations=a.simulations))
        merge(entry)
        print(f"{env} {which}: mean {entry['mean_return']:.1f} (returns {entry['returns']}), "
              f"{entry['elapsed_s']} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
