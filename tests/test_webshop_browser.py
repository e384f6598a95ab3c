"""WebShopBrowser-v0: the real site in headless Chromium gives what the in-process env gives."""

from __future__ import annotations

from typing import Iterator

import gymnasium as gym
import pytest

import webshop_env  # noqa: F401  (registers the ids)
from webshop_env.browser_env import BrowserUnavailable, WebShopBrowserEnv, find_browser
from webshop_env.env import WebShopEnv
from webshop_env.expert import expert_action
from webshop_env.server import WebShopServer
from webshop_env.site import SiteConfig, shared_site

N = 100


def _browser_or_skip() -> None:
    try:
        find_browser()
    except BrowserUnavailable as err:
        pytest.skip(str(err))


def test_missing_browser_gives_a_clear_error(tmp_path) -> None:
    with pytest.raises(BrowserUnavailable, match="apt-get install chromium chromium-driver"):
        find_browser(chromium_path=str(tmp_path / "no-chromium"), chromedriver_path=str(tmp_path / "no-driver"))
    with pytest.raises(BrowserUnavailable, match="chromium"):
        gym.make("webshop_env/WebShopBrowser-v0", num_products=N, chromium_path=str(tmp_path / "none"))


@pytest.fixture(scope="module")
def envs() -> Iterator[tuple[WebShopBrowserEnv, WebShopEnv]]:
    _browser_or_skip()
    browser = WebShopBrowserEnv(num_products=N, observation_mode="text")
    try:
        yield browser, WebShopEnv(num_products=N, observation_mode="text")
    finally:
        browser.close()


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize("goal_index", [0, 7])
def test_same_actions_same_observations_and_rewards(envs, goal_index: int) -> None:
    browser, local = envs
    ob, ib = browser.reset(options={"goal_index": goal_index})
    ol, il = local.reset(options={"goal_index": goal_index})
    assert ob == ol and ib["goal"] == il["goal"] and ib["available_actions"] == il["available_actions"]
    # Invalid actions and a detour first, then the expert's purchase.
    script = ["click[nothing]", "search[]", "search[charger 🛒 café]", "click[next >]", "click[< prev]",
              "search[more]", "click[back to search]"]
    for _ in range(40):
        action = script.pop(0) if script else expert_action(local.site, local.goal, local.engine.route, local.engine.view)
        b, lo = browser.step(action), local.step(action)
        assert b[0] == lo[0], action
        assert b[1:4] == lo[1:4], action
        assert b[4]["available_actions"] == lo[4]["available_actions"] and b[4]["valid"] == lo[4]["valid"]
        if lo[2]:
            assert b[4]["reward_breakdown"] == lo[4]["reward_breakdown"]
            assert b[1] == pytest.approx(1.0)
            return
    raise AssertionError("the episode did not end")


@pytest.mark.browser
@pytest.mark.slow
def test_browser_env_on_a_shared_server_url() -> None:
    _browser_or_skip()
    with WebShopServer(shared_site(SiteConfig(num_products=N))) as server:
        env = WebShopBrowserEnv(server=server.url, observation_mode="url", max_steps=2)
        try:
            obs, info = env.reset(seed=0)
            assert obs.startswith("/b") and info["goal"]
            obs, _, _, truncated, info = env.step("search[charger]")
            assert obs.startswith("/search_results/") and info["valid"] and not truncated
            _, _, _, truncated, _ = env.step("click[nowhere]")
            assert truncated
        finally:
            env.close()


@pytest.mark.browser
@pytest.mark.slow
def test_browser_oracle_buys_the_goal(envs) -> None:
    browser, _ = envs
    browser.reset(options={"goal_index": 3})
    for _ in range(browser.max_steps):
        _, reward, terminated, truncated, _ = browser.step(browser.oracle_action())
        if terminated or truncated:
            break
    assert terminated and reward == 1.0
