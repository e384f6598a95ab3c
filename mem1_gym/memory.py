"""Episode transcripts as segments, and memory policies that decide what stays visible.

An episode is an ordered list of :class:`Segment` s: the ``prompt``, then per
turn the agent's ``action`` and the environment's ``observation``. A
:class:`MemoryPolicy` chooses, before each generation, which earlier segments
the agent sees. The stitched-trajectory trainer later rebuilds the exact same
visibility as a 2D attention mask, so a policy must be a pure function of the
segments (and their token counts).

Policies are chosen by string (``"full"``, ``"mem1"``, ``"window:3"``,
``"truncate:2048"``) and new ones plug in with :func:`register_memory_policy`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, ClassVar, Literal, Sequence

SegmentKind = Literal["prompt", "action", "observation"]


@dataclass(frozen=True)
class Segment:
    """One piece of an episode transcript.

    Attributes:
        id: position in the transcript (0 is the prompt).
        kind: ``prompt``, ``action`` or ``observation``.
        turn: the turn it belongs to (-1 for the prompt).
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

    Subclasses implement :meth:`visible`; register them with
    :func:`register_memory_policy` to make them selectable by name.
    """

    name: ClassVar[str] = ""

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
        return prompt + [s.id for s in segments if s.kind != "prompt" and s.turn >= first_kept_turn]


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
