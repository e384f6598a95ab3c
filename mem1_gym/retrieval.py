"""Retrieval: the :class:`Retriever` protocol and its backends.

A retriever answers a batch of queries with the top-k passages each. Backends:

* ``bm25s`` (default): sparse BM25 via the ``bm25s`` package; the index is
  saved to disk and memory-mapped, so many env workers share one copy.
* ``rank_bm25``: the reference implementation, kept for comparison.
* ``http``: a client of a Search-R1-style retrieval server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable


@dataclass(frozen=True)
class Hit:
    """One retrieved passage."""

    id: str
    contents: str
    score: float


@runtime_checkable
class Retriever(Protocol):
    """Anything that answers ``search(queries, k)`` with one ranked hit list per query."""

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        """Top-``k`` hits for each query, best first."""
        ...
