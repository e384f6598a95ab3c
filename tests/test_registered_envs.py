"""Every registered env id (and the WebShop choice wrapper): check_env, seeded determinism, vector envs,
and running metrics that survive TimeLimit, RecordEpisodeStatistics and vector envs."""

from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.envs.registration import registry
from gymnasium.utils.env_checker import check_env

import mem1_gym  # noqa: F401  (registers the ids)
import webshop_env  # noqa: F401
from mem1_gym.wrappers.choice import WebShopChoiceEnv
from webshop_env.browser_env import BrowserUnavailable, find_browser
from webshop_env.env import WebShopEnv

#: Small, fast settings per id; every registered id of both packages must be listed.
KWARGS: dict[str, dict[str, Any]] = {
    "mem1_gym/MultiObjectiveQA-v0": {"n_objectives": 2},
    "mem1_gym/WebSearchQA-v0": {"n_objectives": 1},
    "mem1_gym/WebShop-v0": {"num_products": 100},
    "webshop_env/WebShop-v0": {"num_products": 100},
    "webshop_env/WebShopBrowser-v0": {"num_products": 100},
}
#: A first action that does something on each env (a search).
FIRST_ACTION = {
    "mem1_gym/MultiObjectiveQA-v0": "<IS> start </IS><query> born city </query>",
    "mem1_gym/WebSearchQA-v0": "<IS> start </IS><query> born city </query>",
    "mem1_gym/WebShop-v0": "<IS> start </IS><action> search[charger] </action>",
    "webshop_env/WebShop-v0": "search[charger]",
    "webshop_env/WebShopBrowser-v0": "search[charger]",
}
BROWSER = "webshop_env/WebShopBrowser-v0"


def _param(env_id: str):
    if env_id == BROWSER:
        return pytest.param(env_id, marks=[pytest.mark.browser, pytest.mark.slow])
    return env_id


IDS = [_param(i) for i in KWARGS]
MEM1_IDS = [i for i in KWARGS if i.startswith("mem1_gym/")]


def _make(env_id: str, **extra: Any) -> gym.Env:
    if env_id == BROWSER:
        try:
            find_browser()
        except BrowserUnavailable as err:
            pytest.skip(str(err))
    return gym.make(env_id, **KWARGS[env_id], **extra)


def _action(env_id: str) -> str:
    return FIRST_ACTION[env_id]


def test_every_registered_id_is_covered() -> None:
    ours = {i for i in registry if i.startswith(("mem1_gym/", "webshop_env/"))}
    assert ours == set(KWARGS)


@pytest.mark.filterwarnings("ignore:.*different from the unwrapped version")
@pytest.mark.parametrize("env_id", IDS)
def test_check_env(env_id: str) -> None:
    env = _make(env_id)
    try:
        check_env(env.unwrapped, skip_render_check=True)
    finally:
        env.close()


@pytest.mark.parametrize("env_id", IDS)
def test_two_envs_reset_with_one_seed_play_the_same_episode(env_id: str) -> None:
    a, b = _make(env_id), _make(env_id)
    try:
        runs = []
        for env in (a, b):
            obs, info = env.reset(seed=11)
            steps = [(obs, info.get("url"))]
            for action in (_action(env_id), "click[nothing]"):
                obs, reward, term, trunc, info = env.step(action)
                steps.append((obs, reward, term, trunc, info.get("url"), info.get("metrics")))
            runs.append(steps)
        assert runs[0] == runs[1]
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("vector", ["sync", "async"])
@pytest.mark.parametrize("env_id", IDS)
def test_vector_envs(env_id: str, vector: str) -> None:
    fns: list[Callable[[], gym.Env]] = [lambda: _make(env_id)] * 2
    venv = gym.vector.SyncVectorEnv(fns) if vector == "sync" else gym.vector.AsyncVectorEnv(fns)
    try:
        obs, _ = venv.reset(seed=[3, 4])
        assert len(obs) == 2 and obs[0] != obs[1]
        obs, reward, term, trunc, info = venv.step([_action(env_id), "click[nothing]"])
        assert info["valid"].tolist() == [True, False]
        if env_id in MEM1_IDS:
            assert info["metrics"]["turns"].tolist() == [1, 1]
            assert info["metrics"]["invalid_turns"].tolist() == [0, 1]
    finally:
        venv.close()


# -- metrics under wrappers that end the episode from outside ---------------------------------


@pytest.mark.parametrize("env_id", MEM1_IDS)
def test_time_limit_truncation_still_reports_metrics(env_id: str) -> None:
    env = _make(env_id, max_episode_steps=2)
    env.reset(seed=0)
    _, _, _, trunc, info = env.step(_action(env_id))
    assert not trunc and info["metrics"]["turns"] == 1
    _, _, term, trunc, info = env.step("no tags")
    assert trunc and not term  # TimeLimit, not the env, ended it
    assert info["metrics"]["turns"] == 2 and info["metrics"]["invalid_turns"] == 1
    assert info["metrics"]["peak_tokens"] >= info["context_tokens"] > 0 and info["metrics"]["dependency"] > 0
    env.close()


@pytest.mark.parametrize("env_id", MEM1_IDS)
def test_record_episode_statistics_keeps_metrics(env_id: str) -> None:
    env = gym.wrappers.RecordEpisodeStatistics(_make(env_id, max_episode_steps=3))
    env.reset(seed=0)
    for _ in range(3):
        _, _, term, trunc, info = env.step("no tags")
    assert trunc and info["episode"]["l"] == 3
    assert info["metrics"]["turns"] == 3 and info["metrics"]["invalid_turns"] == 3
    env.close()


@pytest.mark.parametrize("env_id", MEM1_IDS)
def test_vector_env_autoreset_step_carries_the_final_metrics(env_id: str) -> None:
    venv = gym.vector.SyncVectorEnv([lambda: _make(env_id, max_episode_steps=2)] * 2)
    venv.reset(seed=[0, 1])
    venv.step([_action(env_id), "no tags"])
    _, _, _, trunc, info = venv.step(["no tags", "no tags"])
    assert trunc.tolist() == [True, True] and info["_metrics"].tolist() == [True, True]
    assert info["metrics"]["turns"].tolist() == [2, 2] and info["metrics"]["invalid_turns"].tolist() == [1, 2]
    venv.close()


# -- the WebShop choice wrapper ----------------------------------------------------------------


def _choice_env() -> WebShopChoiceEnv:
    return WebShopChoiceEnv(WebShopEnv(num_products=100, max_steps=6), invalid_penalty=0.1)


@pytest.mark.filterwarnings("ignore:.*different from the unwrapped version")
def test_choice_env_passes_check_env_and_is_deterministic() -> None:
    check_env(_choice_env(), skip_render_check=True)
    runs = []
    for _ in range(2):
        env = _choice_env()
        obs, _ = env.reset(seed=5)
        trace = [obs.tolist(), env.action_masks().tolist()]
        for action in (0, 8, 1):
            obs, reward, term, trunc, _ = env.step(action)
            trace.append((obs.tolist(), reward, term, trunc, env.action_masks().tolist()))
        runs.append(trace)
    assert runs[0] == runs[1]


@pytest.mark.parametrize("vector", [gym.vector.SyncVectorEnv, gym.vector.AsyncVectorEnv])
def test_choice_env_in_vector_envs(vector) -> None:
    venv = vector([_choice_env, _choice_env])
    try:
        obs, _ = venv.reset(seed=[0, 1])
        assert obs.shape == (2, 256) and not np.array_equal(obs[0], obs[1])
        _, reward, _, _, info = venv.step(np.array([0, 1]))  # a search; buy now is masked out on the search page
        assert info["valid"].tolist() == [True, False] and reward.tolist() == [0.0, -0.1]
    finally:
        venv.close()
