import pytest

from cwm.envs.dataset import bundled_path
from cwm.envs.registry import BENCHMARK, benchmark_env, make_env, resolve_gym_id
from cwm.errors import CwmError


def test_eighteen_benchmark_envs_with_unique_names():
    assert len(BENCHMARK) == 18
    assert len({b.name for b in BENCHMARK}) == 18


@pytest.mark.parametrize(("name", "gym_id"), [("Taxi-v3", "Taxi-v4"), ("CliffWalking-v0", "CliffWalking-v1"),
                                              ("Pusher-v4", "Pusher-v5"), ("CartPole-v1", "CartPole-v1")])
def test_renamed_ids_resolve(name, gym_id):
    assert resolve_gym_id(name) == gym_id
    assert benchmark_env(gym_id) is benchmark_env(name)


def test_any_registered_gymnasium_id_is_accepted():
    assert resolve_gym_id("LunarLander-v3") == "LunarLander-v3"


def test_unknown_id_suggests_close_names():
    with pytest.raises(CwmError, match="did you mean CartPole-v1"):
        resolve_gym_id("CartPol-v1")


def test_every_recorded_benchmark_env_ships_its_dataset():
    missing = [b.name for b in BENCHMARK if bundled_path(b.name) is None]
    assert missing == [], f"no bundled dataset for {missing}"


@pytest.mark.parametrize("bench", [b for b in BENCHMARK if b.needs is None], ids=lambda b: b.name)
def test_non_mujoco_envs_instantiate(bench):
    env = make_env(bench.name)
    env.reset(seed=0)
    env.close()
