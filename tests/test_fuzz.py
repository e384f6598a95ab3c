"""Hostile actions against every env family and TokenizedEnv: nothing raises, everything stays in its space.

Bounded to run in seconds (``max_examples``); the 10 MB non-ASCII action is an explicit example of each.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import mem1_gym  # noqa: F401  (registers the ids)
import webshop_env  # noqa: F401
from mem1_gym.wrappers import TokenizedEnv
from tests.tiny_token_world import build_tiny_tokenizer

#: A 10 MB action of non-ASCII text (3-4 UTF-8 bytes a character), inside a well-formed turn.
HUGE = "<IS> é </IS><query> " + "中🙂" * 1_700_000 + " </query>"

# Any text, lone surrogates included (hypothesis' text and characters leave them out).
_surrogate = st.integers(0xD800, 0xDFFF).map(chr)
_any_text = st.lists(st.one_of(st.characters(), _surrogate), max_size=120).map("".join)
_tags = st.sampled_from(["query", "answer", "open", "action", "info", "IS", "think", "search", "x"])
_verbs = st.sampled_from(["search", "click", "SEARCH", "buy", ""])
HOSTILE = st.one_of(
    _any_text,
    st.builds(lambda a, t, b: f"<IS>{a}</IS><{t}>{b}</{t}>", _any_text, _tags, _any_text),
    st.builds(lambda a, v, b: f"<IS>{a}</IS><action> {v}[{b}] </action>", _any_text, _verbs, _any_text),
    st.builds(lambda v, b: f"{v}[{b}]", _verbs, _any_text),
    st.builds(lambda n, c: c * n, st.integers(100_000, 300_000), st.sampled_from(["a", "é", "中", "\ud800", "<IS>"])),
)

ENVS = {
    "mem1_gym/MultiObjectiveQA-v0": {"n_objectives": 2, "memory": "full"},
    "mem1_gym/WebSearchQA-v0": {"dataset_size": 300},
    "mem1_gym/WebShop-v0": {"num_products": 100},
    "webshop_env/WebShop-v0": {"num_products": 100},
}
_envs: dict[str, gym.Env] = {}


@pytest.fixture(scope="module", autouse=True)
def _close_envs():
    yield
    for env in _envs.values():
        env.close()
    _envs.clear()


def _env(env_id: str) -> gym.Env:
    if env_id not in _envs:
        _envs[env_id] = gym.make(env_id, **ENVS[env_id]).unwrapped
        _envs[env_id].reset(seed=0)
    return _envs[env_id]


def _check_step(env: gym.Env, step: tuple, mem1: bool) -> None:
    obs, reward, terminated, truncated, info = step
    assert env.observation_space.contains(obs)
    assert np.isfinite(reward) and isinstance(info, dict)
    if mem1:
        assert info["metrics"]["turns"] == info["turn"]
        assert info["valid"] or info["error"]
    if terminated or truncated:
        env.reset()


@pytest.mark.parametrize("env_id", list(ENVS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(actions=st.lists(HOSTILE, min_size=1, max_size=4))
@example(actions=[HUGE])
def test_text_envs_take_any_action(env_id, actions):
    env = _env(env_id)
    for action in actions:
        _check_step(env, env.step(action), mem1=env_id.startswith("mem1_gym/"))


_tok_env: list[TokenizedEnv] = []


def _tokenized() -> TokenizedEnv:
    if not _tok_env:
        text_env = gym.make("mem1_gym/MultiObjectiveQA-v0", n_objectives=1, memory="mem1")
        _tok_env.append(TokenizedEnv(text_env, build_tiny_tokenizer(), max_length=1024, max_action_tokens=256))
        _tok_env[0].reset(seed=0)
    return _tok_env[0]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions=st.lists(st.one_of(HOSTILE, st.lists(st.integers(0, 2**31), max_size=600)), min_size=1, max_size=4))
@example(actions=[HUGE])
@example(actions=[np.arange(10_000_000)])  # ten million ids
def test_tokenized_env_takes_any_action(actions):
    env = _tokenized()
    for action in actions:
        if not isinstance(action, str):
            action = np.asarray(action, dtype=np.int64) % env.vocab_size  # ids inside the vocabulary
        obs, reward, terminated, truncated, info = env.step(action)
        assert env.observation_space.contains(obs) and np.isfinite(reward)
        # Whatever came in, the action segment kept at most max_action_tokens ids.
        action_ids = [ids for sid, ids in info["segment_ids"].items()
                      if any(s["id"] == sid and s["kind"] == "action" for s in info["new_segments"])]
        assert len(action_ids) == 1 and len(action_ids[0]) <= 256
        if terminated or truncated:
            env.reset()
