"""Per-turn reward hooks: off by default, reported apart from the outcome reward."""

from __future__ import annotations

import gymnasium as gym
import pytest

import mem1_gym  # noqa: F401  (registers the environments)
from mem1_agent.toy_task import make_env
from mem1_gym.turn_rewards import TurnFeedback, make_turn_reward


def _play(**kwargs):
    """Two valid searches, one malformed turn, one search, then the answer (toy task, 3 keys)."""
    env = make_env("toy", n_keys=3, max_turns=8, **kwargs).unwrapped
    env.reset(seed=0)
    steps = []
    for i in range(5):
        action = "not a turn" if i == 2 else env.oracle_action()
        steps.append(env.step(action))
    return env, steps


def test_off_by_default_rewards_are_the_outcome_only():
    env, steps = _play()
    assert [r for _, r, *_ in steps] == [0.0, 0.0, 0.0, 0.0, 3.0]
    assert [info["reward_terms"] for *_, info in steps][-1] == {"outcome": 3.0, "turn": 0.0}
    assert "turn_reward" not in steps[-1][4]["metrics"]


def test_builtin_specs_exact_values():
    env, steps = _play(turn_reward=["tool_cost:0.25", "format:0.5"])
    assert [r for _, r, *_ in steps] == [-0.25, -0.25, -0.5, -0.25, 3.0]
    assert [info["reward_terms"]["turn"] for *_, info in steps] == [-0.25, -0.25, -0.5, -0.25, 0.0]
    metrics = steps[-1][4]["metrics"]
    # The paper's metric is untouched; the shaping is reported next to it.
    assert metrics["em"] == 3.0 and metrics["turn_reward"] == -1.25


def test_callable_hook_sees_the_turn_and_the_env():
    seen: list[tuple] = []

    def progress(fb: TurnFeedback) -> float:
        seen.append((fb.turn, fb.role, fb.valid, fb.terminated, fb.outcome_reward))
        return 0.1 * len(fb.env.found) if fb.valid and not fb.terminated else 0.0

    env, steps = _play(turn_reward=progress)
    assert seen == [
        (0, "search", True, False, 0.0),
        (1, "search", True, False, 0.0),
        (2, None, False, False, 0.0),
        (3, "search", True, False, 0.0),
        (4, "answer", True, True, 3.0),
    ]
    assert [r for _, r, *_ in steps] == pytest.approx([0.1, 0.2, 0.0, 0.3, 3.0])


def test_through_gymnasium_make_and_bad_specs():
    env = gym.make("mem1_gym/MultiObjectiveQA-v0", n_objectives=1, turn_reward="format:1")
    env.reset(seed=0)
    _, reward, *_ , info = env.step("garbage")
    assert reward == -1.0 and info["reward_terms"] == {"outcome": 0.0, "turn": -1.0}
    with pytest.raises(ValueError, match="unknown turn reward 'speed:1'; built-ins: format:COST, tool_cost:COST"):
        make_turn_reward("speed:1")
    with pytest.raises(ValueError, match="cost must be a finite number >= 0"):
        make_turn_reward("format:-1")
    env = make_env("toy", turn_reward=lambda fb: "a lot").unwrapped
    env.reset(seed=0)
    with pytest.raises(ValueError, match="must return a finite number"):
        env.step(env.oracle_action())
