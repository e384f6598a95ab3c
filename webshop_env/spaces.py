"""A Gymnasium space of free text, for WebShop observations and actions.

Gymnasium's :class:`~gymnasium.spaces.Text` contains only strings over a fixed
character set; pages hold any product text (accents, symbols, CJK) and agents
may send anything. :class:`FreeText` contains every ``str`` within its length
bound; its samples mix ASCII, markup and non-ASCII so random agents exercise
the action parser. (webshop_env is standalone, so it keeps its own space;
``mem1_gym.spaces.UnicodeText`` builds on it.)

``AsyncVectorEnv`` shares observations through shared memory sized by
``max_length``; gymnasium stores :class:`Text` as indices into its charset,
which cannot hold arbitrary Unicode, and reads the buffer into frozen strings.
This module registers code-point storage for :class:`FreeText` (4 bytes per
character of ``max_length``) read through a live view, so the default
``AsyncVectorEnv(shared_memory=True)`` works.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium.spaces import Text
from gymnasium.vector.utils import create_shared_memory, read_from_shared_memory, write_to_shared_memory

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


# Code points are never negative, so -1 marks the unused tail of a slot; 'surrogatepass' keeps
# lone surrogates (valid in a Python str) intact.
@create_shared_memory.register(FreeText)
def _create_unicode_shared_memory(space: FreeText, n: int = 1, ctx: Any = None) -> Any:
    import multiprocessing as mp

    return (ctx or mp).Array(np.dtype(np.int32).char, n * space.max_length)


@write_to_shared_memory.register(FreeText)
def _write_unicode_to_shared_memory(space: FreeText, index: int, value: str, shared_memory: Any) -> None:
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


@read_from_shared_memory.register(FreeText)
def _read_unicode_from_shared_memory(space: FreeText, shared_memory: Any, n: int = 1) -> SharedTextBatch:
    return SharedTextBatch(shared_memory, n, space.max_length)
