"""Per-turn reward shaping next to the paper's outcome reward (off by default).

The paper trains on the outcome only (exact match, WebShop score). Shaping
terms for format, tool-use cost or progress plug in through an env's
``turn_reward=`` keyword: a callable, a named built-in spec, or a list of
them (summed). The env adds the term to each step's reward and reports it
apart, so the outcome metrics (``em``, ``f1``, ``reward`` in
``info["metrics"]``) stay what the paper reports:

* ``info["reward_terms"] = {"outcome": ..., "turn": ...}`` on every step
  (the step's reward is their sum);
* ``info["metrics"]["turn_reward"]``: the episode's sum of turn terms (only
  when a hook is set).

Built-ins (``c`` a non-negative number):

* ``format:c`` — ``-c`` for a malformed or refused turn;
* ``tool_cost:c`` — ``-c`` for each tool call (a valid turn that does not end the episode).

A callable receives a :class:`TurnFeedback` and returns a float; it may read
``feedback.env`` (e.g. to reward progress towards the hidden task).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence, Union


@dataclass(frozen=True)
class TurnFeedback:
    """What a turn-reward hook sees about the turn just taken.

    Attributes:
        turn: index of the turn (0 for the first).
        role: the action's role (``search``, ``answer``, ...) or None for a malformed turn.
        argument: the action's argument (None for a malformed turn).
        valid: whether the turn was well formed and could be carried out.
        terminated: whether it ended the task.
        outcome_reward: the environment's own reward for it.
        env: the environment (read-only use: its task, transcript, metrics).
    """

    turn: int
    role: str | None
    argument: str | None
    valid: bool
    terminated: bool
    outcome_reward: float
    env: Any


TurnRewardFn = Callable[[TurnFeedback], float]
TurnRewardSpec = Union[None, str, TurnRewardFn, Sequence[Union[str, TurnRewardFn]]]


def _cost(arg: str, name: str) -> float:
    try:
        value = float(arg)
    except ValueError:
        raise ValueError(f"turn reward {name!r}: the cost must be a number, got {arg!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"turn reward {name!r}: the cost must be a finite number >= 0, got {arg!r}")
    return value


def format_reward(cost: float) -> TurnRewardFn:
    """``-cost`` for a malformed or refused turn, 0 otherwise."""

    def reward(fb: TurnFeedback) -> float:
        return 0.0 if fb.valid else -cost

    return reward


def tool_cost_reward(cost: float) -> TurnRewardFn:
    """``-cost`` for every tool call: a valid turn that does not end the episode."""

    def reward(fb: TurnFeedback) -> float:
        return -cost if fb.valid and not fb.terminated else 0.0

    return reward


#: Named built-ins: ``name:cost``.
BUILTINS: dict[str, Callable[[float], TurnRewardFn]] = {"format": format_reward, "tool_cost": tool_cost_reward}


def make_turn_reward(spec: TurnRewardSpec) -> TurnRewardFn | None:
    """The hook ``spec`` describes (None: no shaping).

    ``spec`` is a callable, ``"name:cost"`` (see :data:`BUILTINS`), or a list of those, summed.
    """
    if spec is None:
        return None
    if callable(spec):
        return spec
    if isinstance(spec, str):
        name, _, arg = spec.partition(":")
        if name not in BUILTINS:
            raise ValueError(f"unknown turn reward {spec!r}; built-ins: {', '.join(f'{n}:COST' for n in BUILTINS)}")
        return BUILTINS[name](_cost(arg or "0", name))
    if isinstance(spec, (list, tuple)):
        parts = [make_turn_reward(s) for s in spec]
        hooks = [p for p in parts if p is not None]

        def total(fb: TurnFeedback) -> float:
            return float(sum(h(fb) for h in hooks))

        return total
    raise TypeError(f"turn_reward must be a callable, a spec such as 'tool_cost:0.05', or a list; got {type(spec).__name__}")


def turn_reward_value(hook: TurnRewardFn, feedback: TurnFeedback) -> float:
    """Call ``hook`` and check it returned a finite number (a clear error names the hook otherwise)."""
    value = hook(feedback)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"turn reward {getattr(hook, '__name__', hook)!r} returned {value!r}; it must return a finite number")
    return float(value)
