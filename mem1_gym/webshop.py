"""``mem1_gym/WebShop-v0``: WebShop under the MEM1 turn protocol.

Each agent turn is an internal state and one WebShop action::

    <IS> shopping for ...; on the results page, the item is B0... </IS><action> click[b0...] </action>

The action is a ``search[...]`` or ``click[...]`` string of
:class:`webshop_env.env.WebShopEnv`; the environment answers with the page text
and the available actions inside ``<info>``. Buying ends the episode with the
WebShop reward in [0, 1] (``info["metrics"]["reward"]``). The instruction is in
the prompt, which every memory policy keeps visible; everything learnt while
browsing must be carried in the internal state.
"""

from __future__ import annotations

from typing import Any

from webshop_env.env import WebShopEnv

from .context import TokenCounter
from .memory import MemoryPolicy
from .protocol import ACTION, TagSet, Turn, format_turn
from .turn_env import Outcome, TurnEnv
from .turn_rewards import TurnRewardSpec

PROMPT_TEMPLATE = """\
You are shopping on a web store. Instruction: {instruction}
Every turn, first write your internal state inside <{state}> </{state}>: what you are looking for, what you have \
found so far that you still need, and your plan. Older turns are removed from your context, so the internal state \
is your only memory.
Then write exactly one action inside <{action}> </{action}>: search[keywords] on a page with a search bar, or \
click[label] with a label from the available actions (a button, a product id, an option value). \
click[buy now] on a product page buys it and ends the task.
You have at most {max_turns} turns.
The store shows:
{page}
"""


def describe_actions(available: dict[str, Any]) -> str:
    """The available actions of a page as one line for the agent."""
    parts = ["search[...]"] if available.get("has_search_bar") else []
    parts += [f"click[{c}]" for c in available.get("clickables", []) if c != "search"]
    return "Available actions: " + ", ".join(parts)


class Mem1WebShopEnv(TurnEnv):
    """WebShop with MEM1 turns and memory policies (see the module docstring).

    Args:
        memory: memory policy (``mem1``, ``full``, ``window:k``, ``truncate:n``).
        observation_mode: page rendering inside ``<info>`` (``text`` or ``text_rich``).
        num_products: synthetic catalog size.
        goal_split: ``test``, ``eval`` or ``train``.
        max_turns: turn limit.
        webshop_kwargs: further :class:`~webshop_env.env.WebShopEnv` arguments (catalog paths, ...).
        The remaining arguments are :class:`~mem1_gym.turn_env.TurnEnv`'s.
    """

    roles = (ACTION,)

    def __init__(
        self,
        memory: str | MemoryPolicy = "mem1",
        observation_mode: str = "text",
        num_products: int = 1000,
        goal_split: str = "test",
        max_turns: int = 15,
        tags: str | TagSet = "paper",
        format_penalty: float = 0.0,
        webshop_kwargs: dict[str, Any] | None = None,
        token_counter: TokenCounter | None = None,
        seed: int | None = None,
        render_mode: str | None = None,
        turn_reward: TurnRewardSpec = None,
    ):
        super().__init__(
            memory=memory, tags=tags, max_turns=max_turns, format_penalty=format_penalty,
            token_counter=token_counter, seed=seed, render_mode=render_mode, turn_reward=turn_reward,
        )
        # The MEM1 turn limit governs; the inner env never truncates first.
        self.shop = WebShopEnv(
            observation_mode=observation_mode, num_products=num_products, goal_split=goal_split,
            max_steps=max_turns + 1, **(webshop_kwargs or {}),
        )
        self.reward = 0.0
        self.bought = False
        self.last_info: dict[str, Any] = {}

    def _page(self, obs: str, info: dict[str, Any]) -> str:
        self.last_info = info
        return f"{obs}\n{describe_actions(info['available_actions'])}"

    def _new_task(self) -> str:
        index = int(self.np_random.integers(len(self.shop.site.goals)))
        obs, info = self.shop.reset(seed=index, options={"goal_index": index})
        self.reward, self.bought = 0.0, False
        return PROMPT_TEMPLATE.format(
            instruction=info["goal"], state=self.tags.state, action=self.tags.tag(ACTION),
            max_turns=self.max_turns, page=self._page(obs, info),
        )

    def _execute(self, turn: Turn) -> Outcome:
        obs, reward, terminated, _, info = self.shop.step(turn.argument)
        extra: dict[str, Any] = {"page": info["page"], "available_actions": info["available_actions"]}
        if terminated and "reward" in info:
            self.reward, self.bought = float(reward), True
            extra["reward_breakdown"] = info["reward_breakdown"]
            extra["purchased_asin"] = info["purchased_asin"]
        return Outcome(info=self._page(obs, info), reward=reward, terminated=terminated, valid=info["valid"], extra=extra)

    def _task_metrics(self) -> dict[str, float]:
        return {"reward": self.reward, "bought": float(self.bought)}

    def oracle_action(self) -> str:
        """Search, page through the results to the goal's product, open it, select its options, Buy Now."""
        action = self.shop.oracle_action()
        assert self.shop.engine is not None
        page = self.shop.engine.route.kind.replace("_", " ")
        state = f"Shopping for: {self.shop.goal.instruction_text}. I am on the {page} page; next: {action}."
        return format_turn(state, ACTION, action, self.tags)
