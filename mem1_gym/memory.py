"""Episode transcripts as segments, and memory policies that decide what stays visible.

An episode is an ordered list of :class:`Segment` s: the ``prompt``, then per
turn the agent's ``action`` and the environment's ``observation``. A
:class:`MemoryPolicy` chooses, before each generation, which earlier segments
the agent sees. The stitched-trajectory trainer later rebuilds the exact same
visibility as a 2D attention mask, so a policy must be a pure function of the
segments (and their token counts).

A policy may also *rewrite* memory: :meth:`MemoryPolicy.insert` returns
environment-authored texts (a summary of dropped turns, a memory-store
read-out) that the transcript appends as ``memory`` segments before
visibility is decided. They are observation tokens to the trainer (never
trained on) and count in the context metrics like any visible segment.

Policies are chosen by string (``"full"``, ``"mem1"``, ``"window:3"``,
``"truncate:2048"``, ``"summary:2"``) and new ones plug in with
:func:`register_memory_policy`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, ClassVar, Literal, Sequence

SegmentKind = Literal["prompt", "action", "observation", "memory"]


@dataclass(frozen=True)
class Segment:
    """One piece of an episode transcript.

    Attributes:
        id: position in the transcript (0 is the prompt).
        kind: ``prompt``, ``action``, ``observation``, or ``memory`` (inserted by the memory policy).
        turn: the turn it belongs to (-1 for the prompt; a ``memory`` segment: the turn after which it was inserted).
        text: its exact text.
        tokens: its length under the episode's token counter.
    """

    id: int
    kind: SegmentKind
    turn: int
    text: str
    tokens: int

    def to_dict(self) -> dict:
        """Plain-dict form, as reported in ``info``."""
        return asdict(self)


class MemoryPolicy:
    """Decides which earlier segments are visible when the agent generates its next turn.

    Subclasses implement :meth:`visible` (and optionally :meth:`insert`);
    register them with :func:`register_memory_policy` to make them selectable
    by name. A policy instance is shared by every episode of an env, so it
    must keep no per-episode state: everything it needs is in ``segments``.
    """

    name: ClassVar[str] = ""

    def insert(self, segments: Sequence[Segment]) -> list[str]:
        """Texts to append as ``memory`` segments before :meth:`visible` is asked (default: none).

        Called once whenever the agent is about to generate (after the prompt
        and after each observation), with the transcript so far. The inserted
        segments are then part of ``segments`` for :meth:`visible`, which
        decides where (and whether) they appear in the context.
        """
        return []

    def visible(self, segments: Sequence[Segment]) -> list[int]:
        """Ids of the segments the agent sees next, in transcript order.

        ``segments`` is the whole transcript so far, starting with the prompt.
        """
        raise NotImplementedError

    def spec(self) -> str:
        """The string that recreates this policy with :func:`make_memory_policy`."""
        return self.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec()!r})"


_REGISTRY: dict[str, Callable[[str | None], MemoryPolicy]] = {}


def register_memory_policy(name: str) -> Callable[[type], type]:
    """Class decorator registering a policy under ``name``.

    The class is built with the text after ``name:`` (or with no argument),
    e.g. ``"window:3"`` calls ``cls("3")``.
    """

    def deco(cls: type) -> type:
        def factory(arg: str | None) -> MemoryPolicy:
            return cls() if arg is None else cls(arg)

        _REGISTRY[name] = factory
        cls.name = name
        return cls

    return deco


def memory_policies() -> list[str]:
    """Names of the registered policies."""
    return sorted(_REGISTRY)


def make_memory_policy(spec: str | MemoryPolicy) -> MemoryPolicy:
    """Build a policy from its spec string, e.g. ``"mem1"`` or ``"window:2"``."""
    if isinstance(spec, MemoryPolicy):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"memory policy must be a string such as 'mem1', got {type(spec).__name__}")
    name, _, arg = spec.partition(":")
    if name not in _REGISTRY:
        raise ValueError(f"unknown memory policy {spec!r}; registered: {', '.join(memory_policies())}")
    try:
        return _REGISTRY[name](arg if arg else None)
    except (TypeError, ValueError) as err:
        raise ValueError(f"bad memory policy {spec!r}: {err}") from None


def _positive_int(arg: str, what: str) -> int:
    try:
        value = int(arg)
    except ValueError:
        raise ValueError(f"{what} must be an integer, got {arg!r}") from None
    if value < 1:
        raise ValueError(f"{what} must be at least 1, got {value}")
    return value


@register_memory_policy("full")
class FullMemory(MemoryPolicy):
    """Everything stays in context: the usual ever-growing agent."""

    def visible(self, segments: Sequence[Segment]) -> list[int]:
        return [s.id for s in segments]


@register_memory_policy("window")
class WindowMemory(MemoryPolicy):
    """The prompt and the last ``k`` (action, observation) pairs."""

    def __init__(self, k: str | int = 1):
        self.k = _positive_int(str(k), "window size k")

    def spec(self) -> str:
        return f"window:{self.k}"

    def visible(self, segments: Sequence[Segment]) -> list[int]:
        prompt = [s.id for s in segments if s.kind == "prompt"]
        first_kept_turn = segments[-1].turn - self.k + 1 if segments else 0
        return prompt + [s.id for s in segments if s.kind in ("action", "observation") and s.turn >= first_kept_turn]


@register_memory_policy("mem1")
class Mem1Memory(WindowMemory):
    """MEM1: the prompt, the last turn (its internal state and action) and the last observation.

    Equal to ``window:1``; the internal state written in the last turn is the
    only memory of everything older.
    """

    def __init__(self) -> None:
        super().__init__(1)

    def spec(self) -> str:
        return "mem1"


@register_memory_policy("truncate")
class TruncateMemory(MemoryPolicy):
    """The prompt plus the most recent whole segments that fit in ``n`` tokens.

    Segments are never cut: one that does not fit is dropped with everything
    older. The prompt always stays, even when it alone exceeds ``n``.
    """

    def __init__(self, n: str | int = 2048):
        self.n = _positive_int(str(n), "token budget n")

    def spec(self) -> str:
        return f"truncate:{self.n}"

    def visible(self, segments: Sequence[Segment]) -> list[int]:
        prompt = [s for s in segments if s.kind == "prompt"]
        budget = self.n - sum(s.tokens for s in prompt)
        kept: list[int] = []
        for seg in reversed([s for s in segments if s.kind != "prompt"]):
            if seg.tokens > budget:
                break
            budget -= seg.tokens
            kept.append(seg.id)
        return [s.id for s in prompt] + kept[::-1]


Summarizer = Callable[[Sequence[Segment]], str]


def rule_summary(dropped: Sequence[Segment], max_chars: int = 160) -> str:
    """A rule-based summary of dropped turns: per turn, the start of its action and of its observation.

    Whitespace is collapsed and each part cut to ``max_chars`` characters, so
    the summary grows by a bounded amount per dropped turn.
    """

    def clip(text: str) -> str:
        flat = " ".join(text.split())
        return flat if len(flat) <= max_chars else flat[: max_chars - 3] + "..."

    turns = sorted({s.turn for s in dropped})
    lines = [f"\n[Summary of earlier turns {turns[0]}-{turns[-1]}]"]
    for t in turns:
        parts = {s.kind: clip(s.text) for s in dropped if s.turn == t}
        lines.append(f"turn {t}: {parts.get('action', '')} -> {parts.get('observation', '')}")
    return "\n".join(lines) + "\n"


@register_memory_policy("summary")
class SummaryMemory(MemoryPolicy):
    """``window:k`` plus an inserted summary of the turns that fell out of the window.

    The summary is written by ``summarize(dropped_segments) -> str`` (default
    :func:`rule_summary`; pass your own, e.g. an LLM summariser, by building
    the policy in Python: ``memory=SummaryMemory(2, summarize=my_fn)``). A new
    summary is inserted each time a turn drops out of the window; the agent
    sees the prompt, the latest summary, then the last ``k`` turns.
    """

    def __init__(self, k: str | int = 1, summarize: Summarizer | None = None):
        self.k = _positive_int(str(k), "window size k")
        self.summarize = summarize or rule_summary

    def spec(self) -> str:
        return f"summary:{self.k}"

    def _first_kept_turn(self, segments: Sequence[Segment]) -> int:
        return segments[-1].turn - self.k + 1 if segments else 0

    def insert(self, segments: Sequence[Segment]) -> list[str]:
        first_kept = self._first_kept_turn(segments)
        dropped = [s for s in segments if s.kind in ("action", "observation") and s.turn < first_kept]
        if not dropped:
            return []
        text = self.summarize(dropped)
        if not isinstance(text, str):
            raise TypeError(f"the summarizer must return a str, got {type(text).__name__}")
        return [text] if text else []

    def visible(self, segments: Sequence[Segment]) -> list[int]:
        first_kept = self._first_kept_turn(segments)
        prompt = [s.id for s in segments if s.kind == "prompt"]
        memory = [s.id for s in segments if s.kind == "memory"][-1:]
        recent = [s.id for s in segments if s.kind in ("action", "observation") and s.turn >= first_kept]
        return prompt + memory + recent
