"""``webshop_env/WebShop-v0``: the WebShop benchmark as a Gymnasium text environment.

Actions are WebShop's strings, ``search[query]`` and ``click[label]``; the
observation is the current page as ``text`` (visible strings joined with
``[SEP]``), ``text_rich``, ``html`` or ``url``. Every step's ``info`` holds
``available_actions`` (``has_search_bar``, ``clickables``), ``goal`` (the
instruction), ``valid`` and ``message``; clicking Buy Now ends the episode with
the WebShop reward in [0, 1] and ``info["reward_breakdown"]``.

Example::

    import gymnasium as gym
    import webshop_env  # noqa: F401

    env = gym.make("webshop_env/WebShop-v0", num_products=1000, observation_mode="text")
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step("search[red shoes]")
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from .engine import MAX_ACTION_CHARS, OBSERVATION_MODES, Engine, StepResult
from .extract import PageView
from .routes import Route
from .schema import Goal
from .site import Site, SiteConfig, shared_site
from .spaces import FreeText
from .expert import expert_action

#: Longest observation the space admits (pages are far shorter). Kept moderate because
#: ``AsyncVectorEnv``'s default shared memory reserves 4 bytes per character per env.
MAX_OBSERVATION_CHARS = 1_000_000


def check_modes(observation_mode: str, render_mode: str | None, render_modes: list[str]) -> None:
    """Raise ``ValueError`` for an unknown observation or render mode."""
    if observation_mode not in OBSERVATION_MODES:
        raise ValueError(f"observation_mode must be one of {OBSERVATION_MODES}, got {observation_mode!r}")
    if render_mode is not None and render_mode not in render_modes:
        raise ValueError(f"render_mode must be one of {render_modes}, got {render_mode!r}")


def step_info(
    view: PageView, route: Route, goal_text: str, goal_index: int, steps: int, result: StepResult
) -> dict[str, Any]:
    """The ``info`` dict of a WebShop step (both the in-process and the browser env)."""
    info: dict[str, Any] = {
        "available_actions": view.available_actions(),
        "goal": goal_text,
        "goal_index": goal_index,
        "page": route.kind,
        "url": route.path(),
        "valid": result.valid,
        "message": result.message,
        "steps": steps,
    }
    if result.done:
        info["reward"] = result.reward
        info["reward_breakdown"] = result.breakdown
        info["purchased_asin"] = route.asin
        info["purchased_options"] = dict(route.options)
    return info


class ShopEnvBase(gym.Env[str, str]):
    """What the in-process and the browser WebShop envs share: spaces, goal draw, step bookkeeping, render.

    Subclasses implement ``_observation()`` and ``_info(result)``.
    """

    metadata = {"render_modes": ["ansi", "human"]}

    def __init__(self, observation_mode: str, max_steps: int, seed: int | None, render_mode: str | None):
        check_modes(observation_mode, render_mode, self.metadata["render_modes"])
        if max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {max_steps}")
        self.observation_mode = observation_mode
        self.max_steps = int(max_steps)
        self.render_mode = render_mode
        self.observation_space = FreeText(MAX_OBSERVATION_CHARS)
        self.action_space = FreeText(MAX_ACTION_CHARS)
        self._first_seed = seed
        self.goal_index = 0
        self.steps = 0

    def _draw_goal(self, seed: int | None, options: dict[str, Any] | None, num_goals: int | None) -> int:
        """Seed the episode and pick its goal: ``options["goal_index"]`` or a draw from ``num_goals``."""
        if seed is None and self._first_seed is not None:
            seed, self._first_seed = self._first_seed, None
        super().reset(seed=seed)
        self.steps = 0
        options = options or {}
        if "goal_index" in options:
            index = int(options["goal_index"])
            if num_goals is not None and not 0 <= index < num_goals:
                raise ValueError(f"goal_index must be in [0, {num_goals}), got {index}")
        else:
            # Without a known goal count (a remote server), the server maps the index onto its goals.
            index = int(self.np_random.integers(num_goals if num_goals else 2**31 - 1))
        self.goal_index = index
        return index

    def _finish_step(self, result: StepResult, done: bool) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Count the step and build the Gymnasium step tuple (after a purchase every step stays terminated)."""
        self.steps += 1
        truncated = not done and self.steps >= self.max_steps
        if self.render_mode == "human":
            self.render()
        return self._observation(), float(result.reward), done, truncated, self._info(result)

    def render(self) -> str | None:
        """``ansi``: the current observation; ``human``: print it."""
        text = self._observation()
        if self.render_mode == "human":
            print(text)
            return None
        return text

    def _observation(self) -> str:
        raise NotImplementedError

    def _info(self, result: StepResult) -> dict[str, Any]:
        raise NotImplementedError


class WebShopEnv(ShopEnvBase):
    """The WebShop simulator stepped in-process (see the module docstring).

    Args:
        observation_mode: ``text`` (default), ``text_rich``, ``html`` or ``url``.
        num_products: size of the seeded synthetic catalog (ignored with ``catalog_path``).
        catalog_path: WebShop product JSON to load instead of the synthetic catalog.
        attributes_path: WebShop attribute/instruction JSON for ``catalog_path``.
        human_goals_path: WebShop human instruction JSON (with ``human_goals=True``).
        human_goals: play the human-written goals.
        goal_split: ``test`` (goals 0-499), ``eval`` (500-1499) or ``train`` (1500+).
        catalog_seed: seeds the synthetic catalog and goal generation.
        max_steps: the episode is truncated after this many actions.
        seed: seeds the first ``reset()`` called without a seed.
        site: a ready :class:`~webshop_env.site.Site` (overrides the catalog arguments).
        reward_variant: ``original`` (WebShop's reward code, quirks included; default) or
            ``corrected`` (see :mod:`webshop_env.reward`).
        render_mode: ``ansi`` returns the observation, ``human`` prints it.
    """

    def __init__(
        self,
        observation_mode: str = "text",
        num_products: int = 1000,
        catalog_path: str | None = None,
        attributes_path: str | None = None,
        human_goals_path: str | None = None,
        human_goals: bool = False,
        goal_split: str = "test",
        catalog_seed: int = 0,
        max_steps: int = 20,
        seed: int | None = None,
        site: Site | None = None,
        render_mode: str | None = None,
        reward_variant: str = "original",
    ):
        super().__init__(observation_mode, max_steps, seed, render_mode)
        self.site = site or shared_site(SiteConfig(
            num_products=int(num_products), catalog_path=catalog_path, attributes_path=attributes_path,
            human_goals_path=human_goals_path, human_goals=bool(human_goals), goal_split=goal_split,
            catalog_seed=int(catalog_seed), reward_variant=reward_variant,
        ))
        self.engine: Engine | None = None

    @property
    def goal(self) -> Goal:
        """The goal of the current episode."""
        return self.site.goals[self.goal_index]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """Start on the search page of a goal drawn with the env's RNG (or ``options["goal_index"]``)."""
        index = self._draw_goal(seed, options, len(self.site.goals))
        self.engine = Engine(self.site, self.goal, session=f"fixed_{index}")
        if self.render_mode == "human":
            self.render()
        return self._observation(), self._info(StepResult(True))

    def step(self, action: Any) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Carry out ``search[...]`` or ``click[...]``; bad actions are refused in the observation."""
        if self.engine is None:
            raise RuntimeError("call reset() before step()")
        result = self.engine.step(action)
        return self._finish_step(result, self.engine.done)

    def oracle_action(self) -> str:
        """The expert's next action: search, page to the goal product, pick its options, buy."""
        if self.engine is None:
            raise RuntimeError("call reset() before oracle_action()")
        return expert_action(self.site, self.goal, self.engine.route, self.engine.view) or "click[buy now]"

    def _observation(self) -> str:
        return "" if self.engine is None else self.engine.observation(self.observation_mode)

    def _info(self, result: StepResult) -> dict[str, Any]:
        assert self.engine is not None
        e = self.engine
        return step_info(e.view, e.route, self.goal.instruction_text, self.goal_index, self.steps, result)
