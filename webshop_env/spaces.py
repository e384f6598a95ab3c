"""A Gymnasium space of free text, for WebShop observations and actions.

Gymnasium's :class:`~gymnasium.spaces.Text` contains only strings over a fixed
character set; pages hold any product text (accents, symbols, CJK) and agents
may send anything. :class:`FreeText` contains every ``str`` within its length
bound; its samples mix ASCII, markup and non-ASCII so random agents exercise
the action parser. (webshop_env is standalone, so it keeps its own space.)
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.spaces import Text

#: Characters random samples are drawn from.
SAMPLE_ALPHABET = "abcdefghijklmnopqrstuvwxyz ABCXYZ0123456789[]<>&;'\"/-_.,:\nàéöñ€漢🛍"


class FreeText(Text):
    """Any string of at most ``max_length`` characters; samples are at most ``sample_length`` long."""

    def __init__(self, max_length: int, sample_length: int = 40, seed: Any = None):
        super().__init__(max_length, min_length=0, charset=SAMPLE_ALPHABET, seed=seed)
        self.sample_length = int(sample_length)

    def contains(self, x: Any) -> bool:
        """True for every ``str`` no longer than ``max_length``."""
        return isinstance(x, str) and len(x) <= self.max_length

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        """A short random string; half of them look like ``search[...]`` or ``click[...]``."""
        if mask is not None or probability is not None:
            return super().sample(mask=mask, probability=probability)
        rng = self.np_random
        n = int(rng.integers(0, min(self.max_length, self.sample_length) + 1))
        body = "".join(rng.choice(np.array(list(SAMPLE_ALPHABET)), size=n).tolist())
        verb = ("", "search[", "click[")[int(rng.integers(3))]
        text = f"{verb}{body}]" if verb else body
        return text[: self.max_length]

    def __repr__(self) -> str:
        return f"FreeText({self.max_length})"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, FreeText) and other.max_length == self.max_length
