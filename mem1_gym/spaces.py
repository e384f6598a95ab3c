"""Gymnasium spaces for free text.

Gymnasium's :class:`~gymnasium.spaces.Text` only contains strings drawn from a
fixed character set (alphanumerics by default). Agent turns and observations
hold any Unicode: product names, accents, emoji, newlines. :class:`UnicodeText`
contains every such string and samples from a small but varied alphabet so
that ``env_checker`` and random agents exercise non-ASCII input.
"""

from __future__ import annotations

import unicodedata
from typing import Any

import numpy as np
from gymnasium.spaces import Text

#: What random samples are drawn from: ASCII, markup, accents, CJK, emoji.
SAMPLE_CHARSET = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    " <>/[];:.,!?'\"-_()\n\téèñüßøçÅ漢字😀🛒"
)
_ALLOWED_WHITESPACE = {"\n", "\t", "\r"}


class UnicodeText(Text):
    """A text space holding any string of Unicode text up to ``max_length`` characters.

    Control characters other than newline, tab and carriage return, and lone
    surrogates, are not text and are not contained.
    """

    def __init__(self, max_length: int, *, min_length: int = 0, sample_max_length: int = 64, seed: Any = None):
        super().__init__(max_length, min_length=min_length, charset=SAMPLE_CHARSET, seed=seed)
        self.sample_max_length = sample_max_length

    def contains(self, x: Any) -> bool:
        """True for any string within the length bounds made of text characters."""
        if not isinstance(x, str) or not self.min_length <= len(x) <= self.max_length:
            return False
        return all(
            ch in _ALLOWED_WHITESPACE or unicodedata.category(ch) not in ("Cc", "Cs") for ch in x
        )

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        """A random string of at most ``sample_max_length`` characters from :data:`SAMPLE_CHARSET`."""
        if mask is not None or probability is not None:
            return super().sample(mask=mask, probability=probability)
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
