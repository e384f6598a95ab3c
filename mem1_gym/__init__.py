"""MEM1 Gym: Gymnasium environments for constant-memory long-horizon LLM agents.

Importing the package registers the environments::

    import gymnasium as gym
    import mem1_gym  # noqa: F401

    env = gym.make("mem1_gym/MultiObjectiveQA-v0", n_objectives=4, memory="mem1")

This package never imports torch; token-level wrappers need only a tokenizer.
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

from .context import Transcript, hf_token_counter, whitespace_token_counter
from .memory import MemoryPolicy, Segment, SummaryMemory, make_memory_policy, memory_policies, register_memory_policy
from .protocol import CHECKPOINT_TAGS, PAPER_TAGS, TagSet, Turn, format_info, format_turn, parse_turn
from .turn_env import Outcome, RefusedAction, TurnEnv
from .turn_rewards import TurnFeedback

__version__ = "0.1.0"

_ENVS = {
    "mem1_gym/MultiObjectiveQA-v0": "mem1_gym.qa_env:MultiObjectiveQAEnv",
    "mem1_gym/WebSearchQA-v0": "mem1_gym.websearch_env:WebSearchQAEnv",
    "mem1_gym/WebShop-v0": "mem1_gym.webshop:Mem1WebShopEnv",
}

# The http retriever backend registers itself into make_retriever's registry (stdlib only, cheap).
from .retrieval_http import register as _register_http_retriever  # noqa: E402

_register_http_retriever()

for _id, _entry in _ENVS.items():
    if _id not in registry:
        register(id=_id, entry_point=_entry)

__all__ = [
    "CHECKPOINT_TAGS",
    "MemoryPolicy",
    "Outcome",
    "PAPER_TAGS",
    "RefusedAction",
    "Segment",
    "SummaryMemory",
    "TagSet",
    "Transcript",
    "Turn",
    "TurnEnv",
    "TurnFeedback",
    "format_info",
    "format_turn",
    "hf_token_counter",
    "make_memory_policy",
    "memory_policies",
    "parse_turn",
    "register_memory_policy",
    "whitespace_token_counter",
]
