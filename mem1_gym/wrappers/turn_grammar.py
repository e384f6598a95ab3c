"""The turn grammar as a character automaton, and per-token masks derived from it.

A well-formed MEM1 turn is ``<IS> free text </IS><tag> free text </tag>``
where ``tag`` is one of the env's action tags (whitespace may precede the
opening tags). :class:`TurnGrammar` tracks where a partial turn stands and
which vocabulary tokens keep it well formed, so a token-per-step policy can
be constrained (e.g. after ``</IS>`` only an action tag may follow).

A token is judged by its standalone decoded string. That is exact for
byte-level BPE vocabularies except for tokens holding a fragment of a
multi-byte character (they decode to U+FFFD and are allowed only in free
text); SentencePiece tokenizers that drop a word's leading space when a token
is decoded alone make leading whitespace slightly under-constrained, never
over-constrained.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import numpy as np

from ..protocol import TagSet

# Phases of a turn.
OPEN_STATE = 0  # before/inside the opening state tag
IN_STATE = 1  # free text of the internal state
BEFORE_ACTION = 2  # after the closing state tag, before/inside an opening action tag
IN_ACTION = 3  # free text of the action argument
DONE = 4  # the closing action tag was written
DEAD = 5  # the text left the grammar


class GrammarState(NamedTuple):
    """Where a partial turn stands.

    Attributes:
        phase: one of the phase constants.
        buf: the pending text that may still become a tag (a prefix of one).
        tag: the chosen action tag once inside the action.
    """

    phase: int
    buf: str = ""
    tag: str = ""


class TurnGrammar:
    """Character automaton of one turn, with cached token masks per state.

    Args:
        tags: the env's tag set.
        roles: the env's action roles (their tags are the allowed actions).
        token_strings: each vocabulary token's decoded string.
        special_ids: token ids (EOS, BOS, chat markers, ...) allowed only once
            the turn is complete or already malformed.
    """

    def __init__(
        self,
        tags: TagSet,
        roles: Sequence[str],
        token_strings: Sequence[str],
        special_ids: Sequence[int] = (),
    ):
        self.open_state = f"<{tags.state}>"
        self.close_state = f"</{tags.state}>"
        self.action_tags = [tags.tag(r) for r in roles] or list(tags.actions.values())
        self.open_actions = {f"<{t}>": t for t in self.action_tags}
        self.token_strings = list(token_strings)
        self.special = np.zeros(len(self.token_strings), dtype=bool)
        for i in special_ids:
            if 0 <= i < len(self.special):
                self.special[i] = True
        # Per-token facts that let mask() skip tokens that cannot touch a tag.
        self._has_lt = np.array(["<" in s for s in self.token_strings], dtype=bool)
        self._first = np.array([s[:1] for s in self.token_strings], dtype="<U1")
        self._space_first = np.array([s[:1].isspace() for s in self.token_strings], dtype=bool)
        self._nonempty = np.array([bool(s) for s in self.token_strings], dtype=bool)
        self._masks: dict[GrammarState, np.ndarray] = {}

    @property
    def initial(self) -> GrammarState:
        """The state of an empty turn."""
        return GrammarState(OPEN_STATE)

    def closing_tag(self, state: GrammarState) -> str:
        """The text that ends the free text of ``state``'s phase."""
        return self.close_state if state.phase == IN_STATE else f"</{state.tag}>"

    def advance(self, state: GrammarState, text: str) -> GrammarState:
        """The state after appending ``text``."""
        for ch in text:
            state = self._step(state, ch)
            if state.phase in (DONE, DEAD):
                return state
        return state

    def _step(self, state: GrammarState, ch: str) -> GrammarState:
        phase, buf, tag = state
        if phase == OPEN_STATE:
            if not buf and ch.isspace():
                return state
            cand = buf + ch
            if cand == self.open_state:
                return GrammarState(IN_STATE)
            return GrammarState(OPEN_STATE, cand) if self.open_state.startswith(cand) else GrammarState(DEAD)
        if phase == BEFORE_ACTION:
            if not buf and ch.isspace():
                return state
            cand = buf + ch
            if cand in self.open_actions:
                return GrammarState(IN_ACTION, "", self.open_actions[cand])
            if any(o.startswith(cand) for o in self.open_actions):
                return GrammarState(BEFORE_ACTION, cand)
            return GrammarState(DEAD)
        # Free text: keep the longest suffix that is a prefix of the closing tag.
        closing = self.closing_tag(state)
        cand = buf + ch
        while cand and not closing.startswith(cand):
            cand = cand[1:]
        if cand == closing:
            return GrammarState(BEFORE_ACTION) if phase == IN_STATE else GrammarState(DONE)
        return GrammarState(phase, cand, tag)

    def mask(self, state: GrammarState) -> np.ndarray:
        """Boolean mask over the vocabulary: tokens that keep the turn well formed from ``state``."""
        cached = self._masks.get(state)
        if cached is not None:
            return cached
        n = len(self.token_strings)
        if state.phase in (DONE, DEAD):
            # Nothing left to constrain: the turn is over or already malformed.
            mask = np.ones(n, dtype=bool)
        else:
            # Only tokens whose first character can touch a tag need simulating:
            # in free text every other token is fine, in a tag position none is.
            if state.phase in (IN_STATE, IN_ACTION):
                closing = self.closing_tag(state)
                touching = self._has_lt | (self._first == closing[len(state.buf)]) if state.buf else self._has_lt.copy()
                mask = ~touching
            else:
                targets = [self.open_state] if state.phase == OPEN_STATE else list(self.open_actions)
                nexts = [t[len(state.buf)] for t in targets if t.startswith(state.buf) and len(t) > len(state.buf)]
                touching = np.isin(self._first, nexts)
                if not state.buf:
                    touching |= self._space_first
                mask = np.zeros(n, dtype=bool)
            for i in np.flatnonzero(touching):
                s = self.token_strings[i]
                if "\ufffd" in s and state.phase in (OPEN_STATE, BEFORE_ACTION):
                    continue
                mask[i] = self.advance(state, s).phase != DEAD
            mask &= ~self.special & self._nonempty
            if not mask.any():
                # A vocabulary that cannot spell the grammar: do not dead-end the policy.
                mask = ~self.special
        self._masks[state] = mask
        return mask


def token_strings(tokenizer: Any, vocab_size: int) -> list[str]:
    """Each token id's standalone decoded string."""
    return [
        tokenizer.decode([i], skip_special_tokens=False, clean_up_tokenization_spaces=False) for i in range(vocab_size)
    ]
