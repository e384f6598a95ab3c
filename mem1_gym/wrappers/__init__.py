"""Wrappers that change how an agent talks to a MEM1 env.

* :class:`TokenizedEnv`: token-in / token-out turns (ids kept verbatim, ``prefix_len`` for KV reuse).
* :class:`TokenMDPEnv`: one token per step, ``Discrete(vocab)`` actions and ``action_masks()``.
* :class:`WebShopChoiceEnv`: WebShop as ``Discrete(k)`` choices with ``action_masks()`` and word-id observations.

Further wrappers add their exports here.
"""

from __future__ import annotations

from .choice import HashedWordVocabulary, WebShopChoiceEnv
from .token_mdp import TokenMDPEnv
from .tokenized import SegmentTokenizer, TokenizedEnv, token_observation_space
from .turn_grammar import GrammarState, TurnGrammar

__all__ = [
    "GrammarState",
    "HashedWordVocabulary",
    "SegmentTokenizer",
    "TokenMDPEnv",
    "TokenizedEnv",
    "TurnGrammar",
    "WebShopChoiceEnv",
    "token_observation_space",
]
