"""A token-per-step MDP over a MEM1 env, for classic RL libraries (stable-baselines3, sb3-contrib).

:class:`TokenMDPEnv` makes every generated token one environment step:

* action: ``Discrete(vocab)``, one token id;
* observation: the same padded ``input_ids`` / ``attention_mask`` dict as
  :class:`~mem1_gym.wrappers.tokenized.TokenizedEnv`, holding the visible
  context followed by the tokens of the turn generated so far;
* a turn ends at the closing action tag (e.g. ``</query>``), at EOS, after
  ``max_turn_tokens`` tokens, or when the observation is full; the turn's ids
  then go to the inner env verbatim and its reward, ``terminated`` and
  ``truncated`` are returned; tokens inside a turn give reward 0;
* :meth:`TokenMDPEnv.action_masks` constrains the next token to the turn
  grammar (``<IS> ... </IS><tag> ... </tag>``), the interface sb3-contrib's
  ``MaskablePPO`` reads.

Every step's ``info`` holds ``turn_tokens`` (tokens of the current turn),
``turn_done`` and ``prefix_len`` (leading tokens shared with the previous
observation: the whole previous observation inside a turn); at the end of a
turn it also holds everything the inner ``TokenizedEnv`` step reported
(``segment_ids``, ``spans``, ``visible_ids``, ``metrics``, ...).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from .tokenized import TokenizedEnv, common_prefix_len, pad_ids
from .turn_grammar import DEAD, DONE, GrammarState, TurnGrammar, token_strings


class TokenMDPEnv(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """One token per step over a MEM1 text env (see the module docstring).

    Args:
        env: a :class:`TokenizedEnv`, or a MEM1 text env to wrap in one.
        tokenizer: the tokenizer (or its id / path) when ``env`` is a text env.
        max_length: observation length (when wrapping a text env).
        max_turn_tokens: a turn is cut after this many tokens.
        grammar: constrain :meth:`action_masks` to the turn grammar; when False
            every token is allowed (all ones).
        **tokenized_kwargs: further :class:`TokenizedEnv` arguments
            (``chat_template``, ``system_prompt``).
    """

    def __init__(
        self,
        env: gym.Env,
        tokenizer: Any = None,
        max_length: int = 2048,
        max_turn_tokens: int = 128,
        grammar: bool = True,
        **tokenized_kwargs: Any,
    ):
        gym.utils.RecordConstructorArgs.__init__(
            self,
            tokenizer=tokenizer,
            max_length=max_length,
            max_turn_tokens=max_turn_tokens,
            grammar=grammar,
            **tokenized_kwargs,
        )
        if not isinstance(env, TokenizedEnv):
            if tokenizer is None:
                raise ValueError("TokenMDPEnv needs a tokenizer when env is not already a TokenizedEnv")
            env = TokenizedEnv(env, tokenizer, max_length=max_length, **tokenized_kwargs)
        gym.Wrapper.__init__(self, env)
        if max_turn_tokens < 1:
            raise ValueError(f"max_turn_tokens must be at least 1, got {max_turn_tokens}")
        self.tokenized: TokenizedEnv = env
        self.max_turn_tokens = int(max_turn_tokens)
        self.use_grammar = bool(grammar)
        self.action_space = spaces.Discrete(env.vocab_size)
        self.observation_space = env.observation_space
        self._grammar: TurnGrammar | None = None
        self.turn_ids: list[int] = []
        self._state = GrammarState(0)
        self._prev_ids: list[int] = []
        self._over = True
        self._last_obs: dict[str, np.ndarray] | None = None

    @property
    def grammar(self) -> TurnGrammar:
        """The turn grammar over this tokenizer's vocabulary (built on first use)."""
        if self._grammar is None:
            inner = self.env.unwrapped
            tok = self.tokenized.tokenizer
            self._grammar = TurnGrammar(
                inner.tags,
                inner.roles,
                token_strings(tok, self.tokenized.vocab_size),
                special_ids=list(getattr(tok, "all_special_ids", []) or []),
            )
        return self._grammar

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Reset the inner env; the first turn starts empty."""
        obs, info = self.env.reset(seed=seed, options=options)
        self.turn_ids = []
        self._state = GrammarState(0)
        self._prev_ids = list(self.tokenized.context_ids)
        self._over = False
        self._last_obs = obs
        info = dict(info)
        info.update(turn_tokens=0, turn_done=False)
        return obs, info

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Append one token; when it ends the turn, step the inner env with the whole turn."""
        if self._over:
            assert self._last_obs is not None, "call reset() before step()"
            return self._last_obs, 0.0, True, False, {"error": "the episode has ended; call reset() to start a new one"}
        token = int(np.asarray(action).reshape(-1)[0]) if not isinstance(action, (int, np.integer)) else int(action)
        if not 0 <= token < self.tokenized.vocab_size:
            raise ValueError(f"token id {token} is outside the vocabulary [0, {self.tokenized.vocab_size})")
        self.turn_ids.append(token)
        text = self.tokenized.segmenter.action_text(self.turn_ids)
        self._state = self.grammar.advance(self.grammar.initial, text)
        context = self.tokenized.context_ids
        turn_over = (
            self._state.phase == DONE
            or (self._state.phase == DEAD and self._closes_action(text))
            or token == self.tokenized.segmenter.eos_token_id
            or len(self.turn_ids) >= self.max_turn_tokens
            or len(context) + len(self.turn_ids) >= self.tokenized.max_length
        )
        if not turn_over:
            ids = context + self.turn_ids
            obs = pad_ids(ids, self.tokenized.max_length, self.tokenized.pad_token_id)
            info = {"turn_tokens": len(self.turn_ids), "turn_done": False, "prefix_len": len(self._prev_ids)}
            self._prev_ids = ids
            self._last_obs = obs
            return obs, 0.0, False, False, info

        obs, reward, terminated, truncated, info = self.env.step(self.turn_ids)
        info = dict(info)
        info.update(turn_tokens=len(self.turn_ids), turn_done=True)
        new_ids = list(self.tokenized.context_ids)
        info["prefix_len"] = common_prefix_len(self._prev_ids, new_ids)
        self._prev_ids = new_ids
        self.turn_ids = []
        self._state = GrammarState(0)
        self._over = bool(terminated or truncated)
        self._last_obs = obs
        return obs, reward, terminated, truncated, info

    def action_masks(self) -> np.ndarray:
        """Tokens allowed next under the turn grammar (all True when ``grammar=False``)."""
        if not self.use_grammar:
            return np.ones(self.tokenized.vocab_size, dtype=bool)
        return self.grammar.mask(self._state)

    def _closes_action(self, text: str) -> bool:
        """For a turn already off-grammar: stop at any closing action tag, as generation would."""
        return any(f"</{t}>" in text for t in self.grammar.action_tags)
