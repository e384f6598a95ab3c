"""The N-objective composer: N single questions interleaved into one task.

MEM1's multi-objective QA asks N independent questions in one prompt; the
agent must answer all of them, in order, in one ``<answer>`` separated by
``;``. A task is drawn as N distinct questions from a split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .schema import QAItem


@dataclass(frozen=True)
class MultiObjectiveTask:
    """N questions asked together; answers are scored by position.

    Attributes:
        items: the questions, in the order they are asked.
    """

    items: tuple[QAItem, ...]

    @property
    def questions(self) -> list[str]:
        """The question texts, in order."""
        return [item.question for item in self.items]

    @property
    def answers(self) -> list[tuple[str, ...]]:
        """The gold answer aliases of each question, in order."""
        return [item.answers for item in self.items]

    def __len__(self) -> int:
        """The number of objectives."""
        return len(self.items)


def sample_task(items: Sequence[QAItem], n: int, rng: np.random.Generator) -> MultiObjectiveTask:
    """Draw ``n`` distinct questions from ``items`` with ``rng``.

    Raises:
        ValueError: when ``n`` is not positive or exceeds the number of questions.
    """
    if n < 1:
        raise ValueError(f"a task needs at least one objective, got n={n}")
    if n > len(items):
        raise ValueError(f"cannot draw {n} distinct questions from a split of {len(items)}")
    picks = rng.choice(len(items), size=n, replace=False)
    return MultiObjectiveTask(tuple(items[i] for i in picks.tolist()))


def compose_tasks(items: Sequence[QAItem], n: int, num_tasks: int, seed: int) -> list[MultiObjectiveTask]:
    """A fixed list of ``num_tasks`` N-objective tasks: the same for the same arguments (eval sets)."""
    rng = np.random.default_rng(seed)
    return [sample_task(items, n, rng) for _ in range(num_tasks)]


def format_questions(task: MultiObjectiveTask) -> str:
    """The task's questions, numbered one per line, for the task prompt.

    >>> format_questions(MultiObjectiveTask((QAItem("a", "Who?", ("x",)), QAItem("b", "Where?", ("y",)))))
    'Question 1: Who?\\nQuestion 2: Where?'
    """
    return "\n".join(f"Question {i}: {q}" for i, q in enumerate(task.questions, start=1))
