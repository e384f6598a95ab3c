"""A choice wrapper for classic RL on WebShop: ``Discrete(k)`` over the page's actions, with masks.

:class:`WebShopChoiceEnv` turns ``webshop_env/WebShop-v0`` (or the browser env)
into an MDP that stable-baselines3 PPO and sb3-contrib MaskablePPO train on
unchanged:

* **actions**: ``Discrete(k)`` over a fixed layout of slots, so a slot means the
  same thing on every page (see :data:`FIXED_SLOTS`): 0 searches with the
  instruction text, then Buy Now, Back to Search, < Prev, Next >, Description,
  Features, Reviews; then ``max_results`` slots for the product ids in result
  order; the rest hold option values in page order.
* **masks**: :meth:`WebShopChoiceEnv.action_masks` marks the slots the current
  page offers (MaskablePPO calls it); a masked-out choice given anyway is sent as
  an invalid action and refused by the env. Algorithms without masks (PPO, A2C,
  DQN, RecurrentPPO) only learn to avoid such choices when they cost something:
  ``invalid_penalty`` (off by default) is subtracted from the reward of every
  refused choice.
* **observations**: a fixed-length ``Box`` of word ids of the text observation,
  from a hashed word-level vocabulary (:class:`HashedWordVocabulary`), so no
  tokenizer download is needed.
"""

from __future__ import annotations

import re
import zlib
from typing import Any

import gymnasium as gym
import numpy as np

#: Slot -> clickable label (slot 0 is the search with the instruction text).
FIXED_SLOTS: tuple[str, ...] = (
    "search", "buy now", "back to search", "< prev", "next >", "description", "features", "reviews",
)
_WORD_RE = re.compile(r"\w+|[^\w\s]")


class HashedWordVocabulary:
    """Words to ids by hashing: id 0 is padding, words map to ``1 .. size-1`` (CRC32, stable across runs)."""

    def __init__(self, size: int = 8192):
        if size < 2:
            raise ValueError(f"the vocabulary needs at least 2 ids, got {size}")
        self.size = int(size)

    def encode(self, text: str, length: int) -> np.ndarray:
        """The first ``length`` word ids of ``text`` (lower-cased words and punctuation), zero-padded."""
        ids = np.zeros(length, dtype=np.int64)
        for i, word in enumerate(_WORD_RE.findall(text.lower())[:length]):
            ids[i] = 1 + zlib.crc32(word.encode("utf-8")) % (self.size - 1)
        return ids


class WebShopChoiceEnv(gym.Wrapper):
    """``Discrete(k)`` actions with masks and word-id observations over a WebShop env (see the module docstring).

    Args:
        env: a ``webshop_env`` env (``WebShop-v0`` or ``WebShopBrowser-v0``) in ``text`` mode.
        max_results: product-id slots (WebShop shows 10 per page).
        max_options: option-value slots.
        obs_length: word ids per observation.
        vocab_size: size of the hashed vocabulary.
        invalid_penalty: subtracted from the reward of a choice the env refuses (a masked-out
            slot, or an action the page does not allow); 0 (default) keeps WebShop's reward.
    """

    def __init__(
        self,
        env: gym.Env,
        max_results: int = 10,
        max_options: int = 24,
        obs_length: int = 256,
        vocab_size: int = 8192,
        invalid_penalty: float = 0.0,
    ):
        super().__init__(env)
        if invalid_penalty < 0:
            raise ValueError(f"invalid_penalty is subtracted, so it must be >= 0, got {invalid_penalty}")
        self.invalid_penalty = float(invalid_penalty)
        self.max_results = int(max_results)
        self.max_options = int(max_options)
        self.obs_length = int(obs_length)
        self.vocab = HashedWordVocabulary(vocab_size)
        self.num_choices = len(FIXED_SLOTS) + self.max_results + self.max_options
        self.action_space = gym.spaces.Discrete(self.num_choices)
        self.observation_space = gym.spaces.Box(0, vocab_size - 1, shape=(self.obs_length,), dtype=np.int64)
        self._actions: list[str | None] = [None] * self.num_choices
        self.goal_text = ""

    def _layout(self, info: dict[str, Any]) -> None:
        """Fill the slots from ``info["available_actions"]`` of the current page."""
        available = info["available_actions"]
        slots: list[str | None] = [None] * self.num_choices
        if available["has_search_bar"]:
            slots[0] = f"search[{self.goal_text}]"
        rest = []
        for label in available["clickables"]:
            if label in FIXED_SLOTS[1:]:
                slots[FIXED_SLOTS.index(label)] = f"click[{label}]"
            elif label != "search":
                rest.append(label)
        page = info.get("page")
        results = rest if page == "results" else []
        options = rest if page != "results" else []
        base = len(FIXED_SLOTS)
        for i, label in enumerate(results[: self.max_results]):
            slots[base + i] = f"click[{label}]"
        for i, label in enumerate(options[: self.max_options]):
            slots[base + self.max_results + i] = f"click[{label}]"
        self._actions = slots

    def _encode(self, obs: str) -> np.ndarray:
        return self.vocab.encode(obs, self.obs_length)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset the WebShop env; the observation is the page's word ids."""
        obs, info = self.env.reset(seed=seed, options=options)
        self.goal_text = info["goal"]
        self._layout(info)
        return self._encode(obs), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Carry out choice ``action``; ``info["action_text"]`` is the WebShop action it stood for."""
        index = int(action)
        text = self._actions[index] if 0 <= index < self.num_choices else None
        obs, reward, terminated, truncated, info = self.env.step(text if text is not None else f"choice[{index}]")
        info["action_text"] = text
        if not info.get("valid", True):
            reward = float(reward) - self.invalid_penalty
        self._layout(info)
        return self._encode(obs), reward, terminated, truncated, info

    def action_masks(self) -> np.ndarray:
        """Which choices the current page offers (for MaskablePPO)."""
        return np.array([a is not None for a in self._actions], dtype=bool)

    def action_text(self, index: int) -> str | None:
        """The WebShop action choice ``index`` stands for now (None when masked out)."""
        return self._actions[index]
