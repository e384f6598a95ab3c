"""The WebShop choice wrapper: fixed slots, masks, word-id observations, and a MaskablePPO smoke run."""

from __future__ import annotations

import numpy as np
import pytest

from mem1_gym.wrappers.choice import FIXED_SLOTS, HashedWordVocabulary, WebShopChoiceEnv
from webshop_env.env import WebShopEnv

N = 100
RESULT0 = len(FIXED_SLOTS)


def _env(**kwargs) -> WebShopChoiceEnv:
    return WebShopChoiceEnv(WebShopEnv(num_products=N, max_steps=8), **kwargs)


def test_spaces_and_observation() -> None:
    env = _env(obs_length=64, vocab_size=1000)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs) and obs.shape == (64,) and obs.dtype == np.int64
    assert env.action_space.n == len(FIXED_SLOTS) + 10 + 24
    assert obs[0] != 0 and (obs < 1000).all()


def test_vocabulary_is_stable_and_padded() -> None:
    vocab = HashedWordVocabulary(50)
    a, b = vocab.encode("Buy NOW, please", 6), vocab.encode("buy now , please", 6)
    assert (a == b).all() and (a[:4] > 0).all() and (a[4:] == 0).all()
    with pytest.raises(ValueError):
        HashedWordVocabulary(1)


def test_masks_follow_the_page_and_slots_keep_their_meaning() -> None:
    env = _env()
    env.reset(seed=0)
    assert list(np.flatnonzero(env.action_masks())) == [0]
    assert env.action_text(0) == f"search[{env.goal_text}]"
    _, _, _, _, info = env.step(0)
    assert info["page"] == "results" and info["action_text"].startswith("search[")
    mask = env.action_masks()
    assert mask[FIXED_SLOTS.index("back to search")] and mask[RESULT0] and not mask[0]
    assert not mask[FIXED_SLOTS.index("buy now")]
    _, _, _, _, info = env.step(RESULT0)
    assert info["page"] == "item"
    assert env.action_masks()[FIXED_SLOTS.index("buy now")] and env.action_masks()[FIXED_SLOTS.index("description")]
    _, reward, terminated, _, info = env.step(FIXED_SLOTS.index("buy now"))
    # The first hit bought with its default options: its one goal attribute and the price match, neither
    # goal option does: (1 + 0 + 1) / (1 attribute + 2 options + 1) with r_type 1.
    assert terminated and reward == info["reward"] == 0.5
    assert info["reward_breakdown"]["num_attr_matches"] == 1 and info["reward_breakdown"]["num_option_matches"] == 0


def test_masked_out_choice_is_refused_not_raised() -> None:
    env = _env()
    env.reset(seed=1)
    _, reward, terminated, _, info = env.step(FIXED_SLOTS.index("buy now"))
    assert not info["valid"] and info["action_text"] is None and reward == 0.0 and not terminated


@pytest.mark.slow
@pytest.mark.usefixtures("sb3_logs_in_tmp")
def test_maskable_ppo_smoke() -> None:
    sb3_contrib = pytest.importorskip("sb3_contrib")
    from stable_baselines3.common.vec_env import DummyVecEnv

    vec = DummyVecEnv([_env, _env])
    model = sb3_contrib.MaskablePPO("MlpPolicy", vec, n_steps=64, batch_size=64, n_epochs=2, seed=0, verbose=0)
    model.learn(total_timesteps=256)
    env = _env()
    obs, _ = env.reset(seed=3)
    for _ in range(8):
        action, _ = model.predict(obs, action_masks=env.action_masks(), deterministic=True)
        assert env.action_masks()[int(action)]
        obs, _, terminated, truncated, _ = env.step(int(action))
        if terminated or truncated:
            break


def test_invalid_penalty_is_off_by_default_and_charged_on_refused_choices() -> None:
    with pytest.raises(ValueError, match="invalid_penalty"):
        _env(invalid_penalty=-1.0)
    env = _env(invalid_penalty=0.25)
    env.reset(seed=1)
    _, reward, _, _, info = env.step(FIXED_SLOTS.index("buy now"))  # masked out on the search page
    assert not info["valid"] and reward == -0.25
    _, reward, _, _, info = env.step(env.num_choices + 5)  # outside the action space altogether
    assert not info["valid"] and reward == -0.25
    _, reward, _, _, info = env.step(0)  # a valid search costs nothing
    assert info["valid"] and reward == 0.0
