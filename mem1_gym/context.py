"""Context accounting: the transcript of an episode under a memory policy.

:class:`Transcript` appends segments, asks the memory policy what is visible
for the next generation, and keeps the paper's memory metrics:

* ``context_tokens``: tokens visible to the agent when it generates next;
* ``peak_tokens``: the largest context the agent ever held, counting the
  turn it was generating (visible context + its own action);
* ``dependency``: attention pairs over every generated token, i.e. for an
  action of ``a`` tokens generated after ``c`` visible tokens,
  ``a * c + a * (a + 1) / 2``, summed over turns.

Token counts come from a pluggable counter: whitespace words by default, or
any Hugging Face tokenizer through :func:`hf_token_counter`.
"""

from __future__ import annotations

from typing import Any, Callable

from .memory import MemoryPolicy, Segment, SegmentKind, make_memory_policy

TokenCounter = Callable[[str], int]


def whitespace_token_counter(text: str) -> int:
    """Count whitespace-separated words: the tokenizer-free default."""
    return len(text.split())


def hf_token_counter(tokenizer: Any) -> TokenCounter:
    """A counter using a Hugging Face tokenizer (no special tokens added)."""

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    return count


class Transcript:
    """The segments of one episode, their visibility, and the memory metrics."""

    def __init__(self, policy: str | MemoryPolicy = "mem1", token_counter: TokenCounter = whitespace_token_counter):
        self.policy = make_memory_policy(policy)
        self.token_counter = token_counter
        self.segments: list[Segment] = []
        self.visible_ids: list[int] = []
        self.peak_tokens = 0
        self.dependency = 0

    def add(self, kind: SegmentKind, turn: int, text: str) -> Segment:
        """Append a segment; an ``action`` is charged to the metrics with the context it was generated in.

        After the prompt or an observation, the policy's inserted ``memory``
        segments (if any) follow it; ``segments[n:]`` lists everything one call appended.
        """
        seg = self._append(kind, turn, text)
        if kind == "action":
            context = self.context_tokens
            a = seg.tokens
            self.peak_tokens = max(self.peak_tokens, context + a)
            self.dependency += a * context + a * (a + 1) // 2
        if kind not in ("action", "memory"):
            # Visibility is decided when the agent is about to generate, i.e.
            # after the prompt or an observation, never mid-turn; a rewriting
            # policy's own segments go in first so it can place them.
            for inserted in self.policy.insert(self.segments):
                self._append("memory", turn, inserted)
            self.visible_ids = self.policy.visible(self.segments)
        return seg

    def _append(self, kind: SegmentKind, turn: int, text: str) -> Segment:
        seg = Segment(id=len(self.segments), kind=kind, turn=turn, text=text, tokens=self.token_counter(text))
        self.segments.append(seg)
        return seg

    @property
    def context_tokens(self) -> int:
        """Tokens the agent sees when generating its next turn."""
        return sum(self.segments[i].tokens for i in self.visible_ids)

    def visible_text(self) -> str:
        """The visible segments concatenated: the agent's context as text."""
        return "".join(self.segments[i].text for i in self.visible_ids)

    def metrics(self) -> dict[str, int]:
        """``peak_tokens`` and ``dependency`` so far."""
        return {"peak_tokens": max(self.peak_tokens, self.context_tokens), "dependency": self.dependency}
