"""Gymnasium spaces for free text.

Gymnasium's :class:`~gymnasium.spaces.Text` only contains strings drawn from a
fixed character set (alphanumerics by default). Agent turns and observations
hold any Unicode: product names, accents, emoji, newlines. :class:`UnicodeText`
contains every such string and samples from a small but varied alphabet so
that ``env_checker`` and random agents exercise non-ASCII input.

``AsyncVectorEnv`` shares observations through shared memory sized by
``max_length``; gymnasium stores :class:`Text` as indices into its charset,
which cannot hold arbitrary Unicode, so this module registers code-point
storage for :class:`UnicodeText` (4 bytes per character of ``max_length``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium.spaces import Text
from gymnasium.vector.utils import create_shared_memory, read_from_shared_memory, write_to_shared_memory

#: What random samples are drawn from: ASCII, markup, accents, CJK, emoji.
SAMPLE_CHARSET = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    " <>/[];:.,!?'\"-_()\n\téèñüßøçÅ漢字😀🛒"
)


class UnicodeText(Text):
    """A text space holding any Python string of at most ``max_length`` characters.

    No character is excluded: an agent may write anything (control characters
    included), and environments echo agent text back in their observations.
    """

    def __init__(self, max_length: int, *, min_length: int = 0, sample_max_length: int = 64, seed: Any = None):
        super().__init__(max_length, min_length=min_length, charset=SAMPLE_CHARSET, seed=seed)
        self.sample_max_length = sample_max_length

    def contains(self, x: Any) -> bool:
        """True for any string within the length bounds."""
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length

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


# Code points are never negative, so -1 marks the unused tail of a slot; 'surrogatepass' keeps
# lone surrogates (valid in a Python str) intact.
@create_shared_memory.register(UnicodeText)
def _create_unicode_shared_memory(space: UnicodeText, n: int = 1, ctx: Any = None) -> Any:
    import multiprocessing as mp

    return (ctx or mp).Array(np.dtype(np.int32).char, n * space.max_length)


@write_to_shared_memory.register(UnicodeText)
def _write_unicode_to_shared_memory(space: UnicodeText, index: int, value: str, shared_memory: Any) -> None:
    size = space.max_length
    slot = np.frombuffer(shared_memory.get_obj(), dtype=np.int32)[index * size : (index + 1) * size]
    codes = np.frombuffer(value.encode("utf-32-le", "surrogatepass"), dtype=np.int32)
    slot[: len(codes)] = codes
    slot[len(codes) :] = -1


class SharedTextBatch(Sequence):
    """A live, read-only view of the strings in a shared-memory buffer.

    ``AsyncVectorEnv`` reads its shared buffer once and expects a view that
    later writes show through (numpy arrays are such views; gymnasium's own
    :class:`Text` read returns frozen strings). Indexing decodes the current
    contents, and ``copy.deepcopy`` (what ``AsyncVectorEnv(copy=True)`` returns)
    gives a plain tuple of strings.
    """

    def __init__(self, shared_memory: Any, n: int, max_length: int):
        self._data = np.frombuffer(shared_memory.get_obj(), dtype=np.int32).reshape((n, max_length))

    def __len__(self) -> int:
        return len(self._data)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return tuple(self[i] for i in range(*index.indices(len(self))))
        row = self._data[index]
        pad = np.flatnonzero(row < 0)
        end = int(pad[0]) if len(pad) else len(row)
        return row[:end].tobytes().decode("utf-32-le", "surrogatepass")

    def __deepcopy__(self, memo: dict) -> tuple[str, ...]:
        return tuple(self)

    def __repr__(self) -> str:
        return f"SharedTextBatch({tuple(self)!r})"


@read_from_shared_memory.register(UnicodeText)
def _read_unicode_from_shared_memory(space: UnicodeText, shared_memory: Any, n: int = 1) -> SharedTextBatch:
    return SharedTextBatch(shared_memory, n, space.max_length)
