"""mem1_gym/WebShop-v0: the MEM1 turn protocol over WebShop, memory policies, metrics, the oracle."""

from __future__ import annotations

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import mem1_gym  # noqa: F401  (registers the ids)
from mem1_gym.webshop import Mem1WebShopEnv

N = 100


def _run_oracle(env: Mem1WebShopEnv, seed: int) -> dict:
    env.reset(seed=seed)
    for _ in range(env.max_turns):
        _, _, terminated, truncated, info = env.step(env.oracle_action())
        if terminated or truncated:
            return info
    raise AssertionError("the oracle did not finish")


def test_check_env_passes() -> None:
    check_env(Mem1WebShopEnv(num_products=N), skip_render_check=True)


@pytest.mark.parametrize("memory", ["mem1", "full", "window:2", "truncate:300"])
def test_oracle_buys_the_goal_under_every_memory_policy(memory: str) -> None:
    env = gym.make("mem1_gym/WebShop-v0", num_products=N, memory=memory).unwrapped
    seeds = range(20) if memory == "mem1" else range(3)
    for seed in seeds:
        info = _run_oracle(env, seed)
        metrics = info["metrics"]
        assert metrics["reward"] == pytest.approx(1.0), (memory, seed, info["tool_result"])
        assert metrics["bought"] == 1.0 and metrics["invalid_turns"] == 0
        assert metrics["turns"] >= 3 and metrics["peak_tokens"] > 0 and metrics["dependency"] > 0


def test_mem1_keeps_context_bounded_full_grows() -> None:
    peaks = {}
    for memory in ("mem1", "full"):
        env = Mem1WebShopEnv(num_products=N, memory=memory)
        peaks[memory] = _run_oracle(env, 4)["metrics"]["peak_tokens"]
    assert peaks["mem1"] < peaks["full"]


def test_turn_format_and_invalid_actions() -> None:
    env = Mem1WebShopEnv(num_products=N, max_turns=4)
    obs, info = env.reset(seed=1)
    assert "Instruction:" in obs and "Available actions: search[...]" in obs
    _, reward, terminated, _, info = env.step("click[buy now]")
    assert not info["valid"] and "missing internal state" in info["error"] and not terminated
    _, _, _, _, info = env.step("<IS> hm </IS><action> click[nowhere] </action>")
    assert not info["valid"] and "is not clickable" in info["tool_result"]["result"]
    obs, _, _, _, info = env.step("<IS> look </IS><action> search[usb charger] </action>")
    assert info["valid"] and info["tool_result"]["page"] == "results" and "click[back to search]" in obs
    _, _, _, truncated, info = env.step("<IS> x </IS><action> click[back to search] </action>")
    assert truncated and info["metrics"]["reward"] == 0.0 and info["metrics"]["invalid_turns"] == 2


def test_checkpoint_tags() -> None:
    env = Mem1WebShopEnv(num_products=N, tags="checkpoint")
    env.reset(seed=2)
    action = env.oracle_action()
    assert action.startswith("<think>") and "<action> search[" in action
    obs, _, _, _, info = env.step(action)
    assert info["valid"] and "<information>" in obs


def test_reset_is_deterministic() -> None:
    a, b = Mem1WebShopEnv(num_products=N), Mem1WebShopEnv(num_products=N)
    assert a.reset(seed=9)[0] == b.reset(seed=9)[0]
    assert a.step(a.oracle_action())[0] == b.step(b.oracle_action())[0]


def test_vector_envs() -> None:
    def make() -> gym.Env:
        return gym.make("mem1_gym/WebShop-v0", num_products=N)

    # Free-text observations cannot use shared memory.
    for vec in (gym.vector.SyncVectorEnv([make, make]), gym.vector.AsyncVectorEnv([make, make], shared_memory=False)):
        try:
            obs, _ = vec.reset(seed=[0, 1])
            assert all("Instruction:" in o for o in obs)
            _, _, _, _, info = vec.step(["<IS> a </IS><action> search[charger] </action>", "no turn"])
            assert list(info["valid"]) == [True, False]
        finally:
            vec.close()
