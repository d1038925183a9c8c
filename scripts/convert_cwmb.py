"""Convert the CWMB transitions (JSON lines from the paper's release) into cwm-dataset v1 files.

Run once by maintainers: python scripts/convert_cwmb.py ../shared/cwmb src/cwm/envs/data

The original collection stored ``done = terminated or truncated``. A ``done`` on the step where the
env's time limit (as registered in gymnasium 0.29.1, which recorded the data) runs out is a truncation,
unless the env's own terminal condition also holds on that step; those conditions are checked below
for the envs that have both a time limit and a terminal state reachable in the data.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from cwm.envs.dataset import Dataset
from cwm.envs.registry import benchmark_env

# max_episode_steps of each env in gymnasium 0.29.1 (None: no TimeLimit)
TIME_LIMIT = {
    "Blackjack-v1": None, "CliffWalking-v0": None, "Taxi-v3": 200, "CartPole-v1": 500,
    "MountainCar-v0": 200, "Acrobot-v1": 500, "Pendulum-v1": 200, "Reacher-v4": 50, "Pusher-v4": 100,
    "InvertedPendulum-v4": 1000, "InvertedDoublePendulum-v4": 1000, "HalfCheetah-v4": 1000,
    "Hopper-v4": 1000, "Swimmer-v4": 1000, "Walker2d-v4": 1000, "Ant-v4": 1000,
}


def really_terminal(env: str, rec: dict) -> bool:
    """The env's terminal condition on a transition, for envs that can hit it at the time limit."""
    s2 = rec["next_state"]
    if env == "Taxi-v3":
        return rec["reward"] == 20.0
    if env == "MountainCar-v0":
        return s2[0] >= 0.5 and s2[1] >= 0
    if env == "Acrobot-v1":
        c1, s1, c2, s2_ = s2[0], s2[1], s2[2], s2[3]
        cos12 = c1 * c2 - s1 * s2_
        return -c1 - cos12 > 1.0
    return False


ATTRIBUTION = (
    "Code World Models Benchmark (Dainese, Merler, Alakuijala, Marttinen; NeurIPS 2024), replay buffer "
    "data/replay_buffers/gymnasium_envs/{env}/train_buffer.pkl of github.com/nicoladainese96/"
    "code-world-models, Apache License 2.0. Converted by cwm: done split into terminated/truncated."
)


def convert(src: Path, env: str) -> Dataset:
    recs = [json.loads(line) for line in (src / env / "transitions.jsonl").read_text("utf-8").splitlines()]
    limit = TIME_LIMIT[env]
    first = recs[0]["state"]
    if isinstance(first, list) and env == "Blackjack-v1":
        state_kind, sdtype = "tuple", np.int64
    elif isinstance(first, int):
        state_kind, sdtype = "int", np.int64
    else:
        meta = json.loads((src / env / "meta.json").read_text("utf-8"))
        state_kind, sdtype = "array", np.dtype(meta["stored_dtypes"]["state"].split(":")[-1])
    action_kind = "array" if isinstance(recs[0]["action"], list) else "int"
    terminated, truncated = [], []
    for r in recs:
        cut = limit is not None and r["done"] and r["step"] + 1 == limit
        term = r["done"] and (not cut or really_terminal(env, r))
        terminated.append(term)
        truncated.append(r["done"] and not term)
    bench = benchmark_env(env)
    assert bench is not None
    return Dataset(
        env_id=env,
        state=np.array([r["state"] for r in recs], dtype=sdtype),
        action=np.array([r["action"] for r in recs], dtype=np.float64 if action_kind == "array" else np.int64),
        next_state=np.array([r["next_state"] for r in recs], dtype=sdtype),
        reward=np.array([r["reward"] for r in recs], dtype=np.float32),
        terminated=np.array(terminated), truncated=np.array(truncated),
        trajectory=np.array([r["trajectory"] for r in recs], dtype=np.int32),
        step=np.array([r["step"] for r in recs], dtype=np.int32),
        state_kind=state_kind, action_kind=action_kind,
        meta={
            "gym_id": bench.gym_id, "recorded_with": "gymnasium 0.29.1", "time_limit": limit,
            "source": ATTRIBUTION.format(env=env), "license": "Apache-2.0",
            "protocol": "10 trajectories of at most 100 steps (CartPole/Taxi/MountainCar/Acrobot: up to the "
                        "time limit), policies from near-random to competent (paper App. F)",
        },
    )


def main() -> None:
    src, out = Path(sys.argv[1]), Path(sys.argv[2])
    for env_dir in sorted(p for p in src.iterdir() if (p / "transitions.jsonl").is_file()):
        ds = convert(src, env_dir.name)
        ds.save(out / f"{env_dir.name}.npz")
        print(f"{env_dir.name:28s} {len(ds):5d} transitions  {ds.n_trajectories:2d} trajectories  "
              f"terminated {int(ds.terminated.sum()):3d}  truncated {int(ds.truncated.sum()):3d}")


if __name__ == "__main__":
    main()
