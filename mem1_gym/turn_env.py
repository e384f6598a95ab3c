"""The base class of every MEM1 environment: turns in, pruned context out.

:class:`TurnEnv` owns what all MEM1 environments share: parsing the turn
protocol, the transcript and its memory policy, invalid-turn handling, turn
limits and metrics. A concrete environment only says how to draw a task
(:meth:`TurnEnv._new_task`), what an action does (:meth:`TurnEnv._execute`),
what the episode scored (:meth:`TurnEnv._task_metrics`) and what an expert
would do (:meth:`TurnEnv.oracle_action`).

Observation: the visible context as text (what the agent conditions on next).
Action: the agent's whole turn text. Every step's ``info`` holds:

* ``turn``: turns taken so far; ``valid`` and ``error`` for the last turn;
* ``tool_result``: what the action did (role, argument, result text);
* ``new_segments``: segments appended by this call (dicts, see :class:`~mem1_gym.memory.Segment`);
* ``visible_ids``: ids of the segments visible for the next generation;
* ``context_tokens``: their total size;
* ``metrics``: ``turns``, ``peak_tokens``, ``dependency``, ``invalid_turns`` and the task's
  own (``em``/``f1``, ``tool_errors`` or ``reward``). They are **running** values, in every
  ``info`` (reset included), so a wrapper that ends the episode from outside (``TimeLimit``,
  a vector env's autoreset) still leaves them in the last step's ``info``; on the step that
  ends the episode they are the episode's final metrics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

from .context import TokenCounter, Transcript, whitespace_token_counter
from .memory import MemoryPolicy, make_memory_policy
from .protocol import TagSet, Turn, format_info, get_tag_set, parse_turn
from .spaces import UnicodeText
from .turn_rewards import TurnFeedback, TurnRewardSpec, make_turn_reward, turn_reward_value

#: Default bound of the observation space. ``AsyncVectorEnv`` reserves 4 bytes per character of it in
#: shared memory, so it is a real budget: an episode whose visible context outgrows it is truncated.
MAX_OBSERVATION_CHARS = 2**20


class RefusedAction(str):
    """An action a wrapper has already refused (too long, not encodable, ...).

    The env records its text (which the wrapper bounded) as the action segment and
    counts an invalid turn explaining ``reason``; wrappers in between pass it on as
    the plain string it is.
    """

    reason: str

    def __new__(cls, text: str, reason: str) -> "RefusedAction":
        """Wrap ``text`` with the refusal ``reason`` (one sentence, no final period)."""
        obj = super().__new__(cls, text)
        obj.reason = reason
        return obj


@dataclass
class Outcome:
    """What executing one turn produced.

    Attributes:
        info: text for the agent, wrapped in the info tag by the base class.
        reward: reward for this turn.
        terminated: whether the task ended (e.g. answered, bought).
        valid: whether the action could be carried out.
        extra: environment-specific entries merged into ``info["tool_result"]``.
    """

    info: str
    reward: float = 0.0
    terminated: bool = False
    valid: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


class TurnEnv(gym.Env[str, str]):
    """Base class of MEM1 text environments (see the module docstring for the step API).

    Args:
        memory: memory policy spec (``full``, ``mem1``, ``window:k``, ``truncate:n``, ``summary:k``) or instance.
        tags: ``"paper"``, ``"checkpoint"`` or a :class:`~mem1_gym.protocol.TagSet`.
        max_turns: the episode is truncated after this many turns.
        format_penalty: subtracted from the reward of a malformed turn.
        max_action_chars: longer turns are cut to this length and refused.
        max_observation_chars: bound of the observation space; a visible context beyond it ends the
            episode (``truncated``, with ``info["truncation_reason"]``).
        token_counter: counts tokens of a segment's text (whitespace words by default).
        seed: seeds the first ``reset()`` when it is called without a seed.
        render_mode: ``"ansi"`` returns the visible context, ``"human"`` prints it.
        turn_reward: per-turn shaping added to the outcome reward and reported apart
            (``info["reward_terms"]``); a callable, ``"format:c"``, ``"tool_cost:c"`` or a list
            (see :mod:`mem1_gym.turn_rewards`). Off by default.
    """

    metadata = {"render_modes": ["ansi", "human"]}
    #: Action roles this environment accepts; subclasses narrow or extend it.
    roles: tuple[str, ...] = ()

    def __init__(
        self,
        memory: str | MemoryPolicy = "mem1",
        tags: str | TagSet = "paper",
        max_turns: int = 10,
        format_penalty: float = 0.0,
        max_action_chars: int = 100_000,
        max_observation_chars: int = MAX_OBSERVATION_CHARS,
        token_counter: TokenCounter | None = None,
        seed: int | None = None,
        render_mode: str | None = None,
        turn_reward: TurnRewardSpec = None,
    ):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
        if max_turns < 1:
            raise ValueError(f"max_turns must be at least 1, got {max_turns}")
        self.memory = make_memory_policy(memory)
        self.tags = get_tag_set(tags)
        self.max_turns = int(max_turns)
        self.turn_reward = make_turn_reward(turn_reward)
        self.turn_reward_sum = 0.0
        self.format_penalty = float(format_penalty)
        self.max_action_chars = int(max_action_chars)
        #: Settable: token-level wrappers install a counter that matches their ids.
        self.token_counter: TokenCounter = token_counter or whitespace_token_counter
        self.render_mode = render_mode
        self._first_seed = seed
        self.max_observation_chars = int(max_observation_chars)
        self.observation_space = UnicodeText(self.max_observation_chars)
        self.action_space = UnicodeText(self.max_action_chars)
        self.transcript = Transcript(self.memory, self.token_counter)
        self.turn = 0
        self.invalid_turns = 0
        self.episode_over = True

    # -- hooks for subclasses -------------------------------------------------

    def _new_task(self) -> str:
        """Draw a task with ``self.np_random`` and return the prompt text."""
        raise NotImplementedError

    def _execute(self, turn: Turn) -> Outcome:
        """Carry out a well-formed turn."""
        raise NotImplementedError

    def _task_metrics(self) -> dict[str, float]:
        """The task's own end-of-episode metrics (``em``/``f1``, ``reward``, ...)."""
        return {}

    def oracle_action(self) -> str:
        """The turn an expert would take now (may read the hidden task)."""
        raise NotImplementedError

    def _format_info(self, text: str) -> str:
        """The observation segment of a tool result (subclasses with other formats override it)."""
        return format_info(text, self.tags)

    # -- Gymnasium API --------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """Start an episode; ``seed`` makes the task draw reproducible."""
        if seed is None and self._first_seed is not None:
            seed, self._first_seed = self._first_seed, None
        super().reset(seed=seed)
        self.transcript = Transcript(self.memory, self.token_counter)
        self.turn = 0
        self.invalid_turns = 0
        self.turn_reward_sum = 0.0
        self.episode_over = False
        self.transcript.add("prompt", -1, self._new_task())
        # tool_result is always a dict (empty when no tool ran): gymnasium's vector
        # envs merge infos key by key and fail when a key is None in one env and a dict in another.
        info = self._step_info(self._segments_since(0), valid=True, error=None, tool_result={})
        if self.render_mode == "human":
            self.render()
        return self.transcript.visible_text(), info

    def step(self, action: Any) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Take one agent turn. Never raises on bad agent input."""
        if self.episode_over:
            info = self._step_info([], valid=False, error="the episode has ended; call reset() to start a new one", tool_result={})
            return self.transcript.visible_text(), 0.0, True, False, info

        text = str(action) if isinstance(action, str) else ""
        too_long = len(text) > self.max_action_chars
        if too_long:
            text = text[: self.max_action_chars]
        first_new = len(self.transcript.segments)
        self.transcript.add("action", self.turn, text)

        if not isinstance(action, str):
            turn = Turn(None, None, None, f"the action must be text, got {type(action).__name__}")
        elif isinstance(action, RefusedAction):
            turn = Turn(None, None, None, action.reason)
        elif too_long:
            turn = Turn(None, None, None, f"the turn is {len(action)} characters long; the limit is {self.max_action_chars}")
        else:
            turn = parse_turn(text, self.tags, self.roles)

        if turn.valid:
            outcome = self._execute(turn)
        else:
            outcome = Outcome(info=f"Invalid turn: {turn.error}.", reward=-self.format_penalty, valid=False)
        if not outcome.valid:
            self.invalid_turns += 1
        shaped = 0.0
        if self.turn_reward is not None:
            feedback = TurnFeedback(self.turn, turn.role, turn.argument, outcome.valid, outcome.terminated, float(outcome.reward), self)
            shaped = turn_reward_value(self.turn_reward, feedback)
            self.turn_reward_sum += shaped
        self.turn += 1
        terminated = outcome.terminated
        truncated = not terminated and self.turn >= self.max_turns
        info_text = outcome.info
        if truncated:
            info_text += f" The turn limit ({self.max_turns}) is reached; the episode ends."
        self.transcript.add("observation", self.turn - 1, self._format_info(info_text))
        observation = self.transcript.visible_text()
        truncation_reason = "turn limit" if truncated else None
        if len(observation) > self.max_observation_chars:
            # Rare (a huge context under `full`): end the episode rather than hand out an observation
            # outside the space; the agent's last view keeps the newest text.
            truncated = not terminated
            truncation_reason = (
                f"the visible context is {len(observation)} characters; max_observation_chars is {self.max_observation_chars}"
            )
            observation = observation[-self.max_observation_chars :]
        self.episode_over = terminated or truncated

        tool_result = {"role": turn.role, "argument": turn.argument, "result": outcome.info, **outcome.extra}
        info = self._step_info(
            self._segments_since(first_new),
            valid=outcome.valid,
            error=None if outcome.valid else outcome.info,
            tool_result=tool_result,
        )
        info["reward_terms"] = {"outcome": float(outcome.reward), "turn": shaped}
        if truncation_reason:
            info["truncation_reason"] = truncation_reason
        if self.render_mode == "human":
            self.render()
        return observation, float(outcome.reward) + shaped, terminated, truncated, info

    def render(self) -> str | None:
        """``ansi``: the visible context; ``human``: print it."""
        text = self.transcript.visible_text()
        if self.render_mode == "human":
            print(text)
            return None
        return text

    # -- helpers --------------------------------------------------------------

    def metrics(self) -> dict[str, float]:
        """Episode metrics so far (``info["metrics"]`` of every step; final on the step that ends the episode)."""
        return {
            "turns": self.turn,
            "invalid_turns": self.invalid_turns,
            **self.transcript.metrics(),
            **self._task_metrics(),
            **({"turn_reward": self.turn_reward_sum} if self.turn_reward is not None else {}),
        }

    def _segments_since(self, first: int) -> list[dict]:
        """The segments appended from id ``first`` on (incl. a memory policy's inserted ones), as dicts."""
        return [seg.to_dict() for seg in self.transcript.segments[first:]]

    def _step_info(self, new_segments: list[dict], valid: bool, error: str | None, tool_result: dict) -> dict[str, Any]:
        info: dict[str, Any] = {
            "turn": self.turn,
            "valid": valid,
            "error": error,
            "tool_result": tool_result,
            "new_segments": new_segments,
            "visible_ids": list(self.transcript.visible_ids),
            "context_tokens": self.transcript.context_tokens,
            # Running values on every step: whoever ends the episode (this env, TimeLimit, a
            # vector env) finds them in the last info.
            "metrics": self.metrics(),
        }
        return info
