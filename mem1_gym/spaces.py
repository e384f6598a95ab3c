"""Gymnasium spaces for free text.

Gymnasium's :class:`~gymnasium.spaces.Text` only contains strings drawn from a
fixed character set (alphanumerics by default). Agent turns and observations
hold any Unicode: product names, accents, emoji, newlines. :class:`UnicodeText`
contains every such string and samples from a small but varied alphabet so
that ``env_checker`` and random agents exercise non-ASCII input.

It builds on :class:`webshop_env.spaces.FreeText`, which also makes
``AsyncVectorEnv``'s shared memory hold arbitrary Unicode.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.spaces import Text
from webshop_env.spaces import FreeText

#: What random samples are drawn from: ASCII, markup, accents, CJK, emoji.
SAMPLE_CHARSET = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    " <>/[];:.,!?'\"-_()\n\téèñüßøçÅ漢字😀🛒"
)


class UnicodeText(FreeText):
    """A text space holding any Python string of at most ``max_length`` characters.

    No character is excluded: an agent may write anything (control characters
    included), and environments echo agent text back in their observations.
    """

    def __init__(self, max_length: int, *, min_length: int = 0, sample_max_length: int = 64, seed: Any = None):
        super().__init__(max_length, sample_length=sample_max_length, seed=seed)
        self.min_length = min_length
        self.sample_max_length = sample_max_length

    def contains(self, x: Any) -> bool:
        """True for any string within the length bounds."""
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        """A random string of at most ``sample_max_length`` characters from :data:`SAMPLE_CHARSET`."""
        if mask is not None or probability is not None:
            return Text.sample(self, mask=mask, probability=probability)
        upper = min(self.max_length, self.sample_max_length)
        length = int(self.np_random.integers(self.min_length, upper + 1))
        chars = self.np_random.choice(np.array(list(SAMPLE_CHARSET)), size=length)
        return "".join(chars.tolist())

    def __repr__(self) -> str:
        return f"UnicodeText({self.min_length}, {self.max_length})"

    def __eq__(self, other: Any) -> bool:
        return (
            isinstance(other, UnicodeText)
            and self.min_length == other.min_length
            and self.max_length == other.max_length
        )
