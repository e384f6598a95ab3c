"""The records every dataset produces: passages for the corpus, questions with gold answers."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Passage:
    """One retrievable document.

    ``contents`` is the FlashRAG/Search-R1 layout: the quoted title on the
    first line, then the text.
    """

    id: str
    title: str
    text: str

    @property
    def contents(self) -> str:
        """Title and text as one retrievable string."""
        return f'"{self.title}"\n{self.text}'


@dataclass(frozen=True)
class QAItem:
    """A single question.

    Attributes:
        id: stable identifier within its dataset.
        question: the question text.
        answers: gold answers; any alias counts.
        gold_queries: the search queries an expert would issue, one per hop,
            in order (empty when unknown, e.g. for external datasets).
        hops: reasoning hops (1 single-hop, 2 two-hop, ...).
    """

    id: str
    question: str
    answers: tuple[str, ...]
    gold_queries: tuple[str, ...] = ()
    hops: int = 1


@dataclass
class QADataset:
    """A corpus and its questions, split into train and test.

    Attributes:
        name: what it was loaded as (``fictional``, ``wiki-vital``, a path).
        corpus: the passages the retriever indexes.
        splits: split name -> questions.
        fingerprint: identifies the corpus content (used to key cached indexes).
    """

    name: str
    corpus: list[Passage]
    splits: dict[str, list[QAItem]] = field(default_factory=dict)
    fingerprint: str = ""

    def split(self, name: str) -> list[QAItem]:
        """The questions of split ``name``, with a clear error for unknown splits."""
        try:
            return self.splits[name]
        except KeyError:
            raise ValueError(f"dataset {self.name!r} has no split {name!r}; it has {sorted(self.splits)}") from None
