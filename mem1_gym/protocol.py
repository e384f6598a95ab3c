"""The MEM1 turn protocol: one internal state, then exactly one action.

A turn is a piece of text such as::

    <IS> what I know and what I will do next </IS><query> search keywords </query>

The environment answers with ``<info> ... </info>``. Tag names are a value
(:class:`TagSet`), not constants, so the released MEM1 checkpoints (which use
``think/search/answer/information``) can be evaluated unchanged.

Parsing never raises on agent text: a malformed turn comes back as a
:class:`Turn` whose ``error`` says what was wrong, so the environment can
report it in-episode.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping

#: Roles an action can play. Environments pick the subset they accept.
SEARCH = "search"
ANSWER = "answer"
ACTION = "action"
OPEN = "open"


@dataclass(frozen=True)
class TagSet:
    """Names of the tags of the turn grammar.

    Attributes:
        state: tag of the internal state (IS) that opens every turn.
        info: tag the environment wraps its answers in.
        actions: role -> tag name, e.g. ``{"search": "query", "answer": "answer"}``.
    """

    state: str = "IS"
    info: str = "info"
    actions: Mapping[str, str] = field(
        default_factory=lambda: {SEARCH: "query", ANSWER: "answer", ACTION: "action", OPEN: "open"}
    )

    def tag(self, role: str) -> str:
        """The tag name used for ``role``."""
        return self.actions[role]

    def closing_tags(self, roles: tuple[str, ...] | None = None) -> list[str]:
        """Closing action tags (e.g. ``</query>``): generation stops at any of them."""
        return [f"</{self.actions[r]}>" for r in (roles or tuple(self.actions))]


#: The paper's tags (default).
PAPER_TAGS = TagSet()
#: The tags of the released MEM1 checkpoints.
CHECKPOINT_TAGS = TagSet(
    state="think",
    info="information",
    actions={SEARCH: "search", ANSWER: "answer", ACTION: "action", OPEN: "open"},
)

TAG_SETS: dict[str, TagSet] = {"paper": PAPER_TAGS, "checkpoint": CHECKPOINT_TAGS}


def get_tag_set(tags: str | TagSet) -> TagSet:
    """Resolve ``"paper"`` / ``"checkpoint"`` (or a :class:`TagSet`) to a :class:`TagSet`."""
    if isinstance(tags, TagSet):
        return tags
    try:
        return TAG_SETS[tags]
    except KeyError:
        raise ValueError(f"unknown tag set {tags!r}; choose one of {sorted(TAG_SETS)} or pass a TagSet") from None


@dataclass(frozen=True)
class Turn:
    """One parsed agent turn.

    ``role``/``argument`` are None when the turn is malformed; ``error`` then
    holds a message meant for the agent.
    """

    state: str | None
    role: str | None
    argument: str | None
    error: str | None = None

    @property
    def valid(self) -> bool:
        """True when the turn parsed into exactly one allowed action."""
        return self.error is None


def _block(tag: str) -> re.Pattern[str]:
    return re.compile(rf"<{re.escape(tag)}>(.*?)</{re.escape(tag)}>", re.DOTALL)


def parse_turn(text: object, tags: TagSet = PAPER_TAGS, roles: tuple[str, ...] = (SEARCH, ANSWER)) -> Turn:
    """Parse an agent turn. Never raises on any input.

    Rules: the turn holds one ``<state>...</state>`` block followed by exactly
    one action block whose role is in ``roles``. Anything after the first
    closing action tag is ignored (generation stops there). Whitespace inside
    tags is stripped.
    """
    if not isinstance(text, str):
        return Turn(None, None, None, f"the action must be text, got {type(text).__name__}")
    allowed = {tags.tag(r): r for r in roles}
    expected = " or ".join(f"<{t}>...</{t}>" for t in allowed)

    states = _block(tags.state).findall(text)
    if not states:
        return Turn(None, None, None, f"missing internal state: start the turn with <{tags.state}>...</{tags.state}>, then {expected}")
    if len(states) > 1:
        return Turn(None, None, None, f"found {len(states)} <{tags.state}> blocks; write exactly one")
    state_match = _block(tags.state).search(text)
    assert state_match is not None
    state = state_match.group(1).strip()
    rest = text[state_match.end():]

    found: list[tuple[int, str, str]] = []
    for tag, role in allowed.items():
        m = _block(tag).search(rest)
        if m:
            found.append((m.start(), role, m.group(1)))
    if not found:
        unknown = re.findall(r"<([A-Za-z_][\w-]*)>", rest)
        hint = f" (tag <{unknown[0]}> is not an action here)" if unknown else ""
        return Turn(state, None, None, f"missing action after </{tags.state}>: write {expected}{hint}")
    found.sort()
    _, role, argument = found[0]
    # A second action block before the first one closes would be nested; one
    # after it is ignored, like any text after the closing tag.
    return Turn(state, role, argument.strip())


def format_turn(state: str, role: str, argument: str, tags: TagSet = PAPER_TAGS) -> str:
    """Render a turn the way an agent is expected to write it."""
    action = tags.tag(role)
    return f"<{tags.state}> {state} </{tags.state}><{action}> {argument} </{action}>"


#: How tool results are shown to the agent:
#:
#: * ``paper``: ``\n<info> text </info>\n``, passages as ``Doc 1 "Title"\ntext`` lines.
#: * ``search-r1``: Search-R1's observation, on which the released MEM1 checkpoints' base was
#:   trained: ``\n\n<information>text</information>\n\n`` (text stripped), passages as
#:   ``Doc 1(Title: "Title") text`` lines.
#: * ``mem1``: MEM1's QA trainer: ``search-r1`` with a turns-left hint first in the block.
OBSERVATION_FORMATS: tuple[str, ...] = ("paper", "search-r1", "mem1")


def resolve_format(format: str | None, tags: str | TagSet) -> str:
    """``format``, checked; ``None`` follows the tags (checkpoint tags: ``search-r1``, else ``paper``)."""
    if format is None:
        return "search-r1" if get_tag_set(tags) == CHECKPOINT_TAGS else "paper"
    if format not in OBSERVATION_FORMATS:
        raise ValueError(f"unknown observation format {format!r}; choose one of {list(OBSERVATION_FORMATS)}")
    return format


def turns_left_hint(turns_left: int) -> str:
    """MEM1's hint of how many turns remain (empty when none)."""
    if turns_left > 1:
        return f"[HINT]You have {turns_left} turns left.[/HINT]"
    if turns_left == 1:
        return "[HINT]You have 1 turn left. You must answer the question in the next turn.[/HINT]"
    return ""


def format_info(text: str, tags: TagSet = PAPER_TAGS, format: str = "paper", turns_left: int = 0) -> str:
    """Wrap an environment answer in the info tag as ``format`` shows it (see :data:`OBSERVATION_FORMATS`).

    ``turns_left`` feeds the ``mem1`` format's hint.
    """
    if format == "paper":
        return f"\n<{tags.info}> {text} </{tags.info}>\n"
    if format == "search-r1":
        return f"\n\n<{tags.info}>{text.strip()}</{tags.info}>\n\n"
    if format == "mem1":
        return f"\n\n<{tags.info}>{turns_left_hint(turns_left)}\n\n{text.strip()}</{tags.info}>\n\n"
    raise ValueError(f"unknown observation format {format!r}; choose one of {list(OBSERVATION_FORMATS)}")
