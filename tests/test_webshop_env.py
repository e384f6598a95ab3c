"""webshop_env/WebShop-v0: Gymnasium API, determinism, the page graph, invalid actions, observation modes."""

from __future__ import annotations

import gymnasium as gym
import pytest
from bs4 import BeautifulSoup
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from gymnasium.utils.env_checker import check_env

import webshop_env  # noqa: F401  (registers the ids)
from webshop_env.catalog import Catalog
from webshop_env.env import WebShopEnv
from webshop_env.expert import expert_action, expert_query
from webshop_env.site import Site, SiteConfig, shared_site

N = 100


@pytest.fixture
def env() -> WebShopEnv:
    e = WebShopEnv(num_products=N, max_steps=50)
    e.reset(seed=0)
    return e


def _expert(e: WebShopEnv) -> str:
    return expert_action(e.site, e.goal, e.engine.route, e.engine.view)


def _play_expert(e: WebShopEnv, limit: int = 30) -> tuple[float, dict]:
    for _ in range(limit):
        _, reward, terminated, truncated, info = e.step(_expert(e))
        if terminated or truncated:
            return reward, info
    raise AssertionError("the expert did not finish")


def test_check_env_passes() -> None:
    check_env(WebShopEnv(num_products=N), skip_render_check=True)


def test_registered_and_made_through_gym() -> None:
    e = gym.make("webshop_env/WebShop-v0", num_products=N, observation_mode="text_rich")
    obs, info = e.reset(seed=3)
    assert "[button] Search [button_]" in obs
    assert info["available_actions"] == {"has_search_bar": True, "clickables": ["search"]}
    assert info["goal"] and info["goal"] in obs
    e.close()


def test_reset_is_deterministic_and_seeds_differ() -> None:
    a, b = WebShopEnv(num_products=N), WebShopEnv(num_products=N)
    goals = set()
    for seed in range(6):
        oa, ia = a.reset(seed=seed)
        ob, ib = b.reset(seed=seed)
        assert oa == ob and ia == ib
        goals.add(ia["goal_index"])
        for action in ("search[usb charger]", "click[next >]", "click[< prev]"):
            assert a.step(action)[:4] == b.step(action)[:4]
    assert len(goals) > 1


def test_page_graph(env: WebShopEnv) -> None:
    env.reset(options={"goal_index": 0})
    query = expert_query(env.site, env.goal)
    obs, _, _, _, info = env.step(f"search[{query}]")
    assert info["page"] == "results" and info["valid"]
    assert "Back to Search" in obs and "Page 1 (Total results:" in obs
    clickables = info["available_actions"]["clickables"]
    assert not info["available_actions"]["has_search_bar"]
    product_ids = [c for c in clickables if c not in ("back to search", "next >", "< prev")]
    assert 1 <= len(product_ids) <= 10
    if "next >" in clickables:
        _, _, _, _, info2 = env.step("click[next >]")
        assert info2["url"].endswith("/2") and "< prev" in info2["available_actions"]["clickables"]
        env.step("click[< prev]")
    # Product ids are matched case-insensitively.
    obs, _, _, _, info = env.step(f"click[{product_ids[0].upper()}]")
    assert info["page"] == "item"
    for label in ("description", "features", "reviews", "buy now", "< prev", "back to search"):
        assert label in info["available_actions"]["clickables"]
    assert "Price:" in obs and "Rating:" in obs
    for sub in ("description", "features", "reviews"):
        _, _, _, _, sub_info = env.step(f"click[{sub}]")
        assert sub_info["page"] == "sub_page" and sub_info["available_actions"]["clickables"] == ["back to search", "< prev"]
        _, _, _, _, back = env.step("click[< prev]")
        assert back["page"] == "item"
    _, _, _, _, info = env.step("click[< prev]")
    assert info["page"] == "results"
    _, _, _, _, info = env.step("click[back to search]")
    assert info["page"] == "search" and info["available_actions"]["has_search_bar"]


def test_options_are_selected_and_marked(env: WebShopEnv) -> None:
    site = env.site
    index = next(i for i, g in enumerate(site.goals) if g.goal_options)
    env.reset(options={"goal_index": index})
    env.observation_mode = "text_rich"
    while env.engine.route.kind != "item" or env.engine.route.asin != env.goal.asin:
        env.step(_expert(env))
    value = next(iter(env.goal.goal_options.values())).lower()
    obs, _, _, _, info = env.step(f"click[{value}]")
    assert info["valid"] and info["page"] == "item"
    assert f"[clicked button] {value} [clicked button_]".lower() in obs.lower()
    assert value in {v.lower() for v in env.engine.route.options.values()}


def test_buy_now_ends_with_reward_and_breakdown(env: WebShopEnv) -> None:
    env.reset(options={"goal_index": 1})
    reward, info = _play_expert(env)
    assert reward == pytest.approx(1.0)
    assert info["reward"] == reward and info["reward_breakdown"]["total"] == reward
    assert info["page"] == "done" and info["purchased_asin"] == env.goal.asin
    obs, reward2, terminated, _, info2 = env.step("click[buy now]")
    assert reward2 == 0.0 and terminated and not info2["valid"] and "episode has ended" in obs


def test_wrong_product_scores_below_one(env: WebShopEnv) -> None:
    env.reset(options={"goal_index": 2})
    env.step(f"search[{expert_query(env.site, env.goal)}]")
    other = next(c for c in env.engine.available_actions()["clickables"][2:] if c != env.goal.asin.lower() and c not in ("next >",))
    env.step(f"click[{other}]")
    _, reward, terminated, _, info = env.step("click[buy now]")
    assert terminated and 0.0 <= reward < 1.0 and info["reward_breakdown"]["total"] == reward


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        (42, "an action is a string"),
        ("buy the red one", "write search[query] or click[label]"),
        ("jump[now]", "unknown action 'jump'"),
        ("search[]", "the search query is empty"),
        ("search[   ]", "the search query is empty"),
        ("search[" + "x" * 600 + "]", "the limit is 500"),
        ("click[" + "y" * 5000 + "]", "the limit is 2000"),
        ("search[red\x00shoes]", "U+0000"),
        ("search[red\u202eshoes]", "U+202E"),
        ("search[\ud800]", "U+D800"),
        ("click[nothing here]", "is not clickable"),
        ("click[search]", "to search, write search[query]"),
    ],
)
def test_invalid_actions_are_reported_and_keep_the_page(env: WebShopEnv, action: object, expected: str) -> None:
    before = env.engine.route
    obs, reward, terminated, truncated, info = env.step(action)
    assert not info["valid"] and expected in info["message"]
    assert expected in obs and reward == 0.0 and not terminated and not truncated
    assert env.engine.route == before
    # The notice goes away with the next valid action.
    obs, _, _, _, info = env.step("search[charger]")
    assert info["valid"] and "Invalid action" not in obs


def test_search_without_search_bar_is_refused(env: WebShopEnv) -> None:
    env.step("search[charger]")
    obs, _, _, _, info = env.step("search[shoes]")
    assert not info["valid"] and "no search bar" in obs and info["page"] == "results"


def test_unicode_search_is_fine(env: WebShopEnv) -> None:
    _, _, _, _, info = env.step("search[café 漢字 🛒 charger]")
    assert info["valid"] and info["page"] == "results"


def test_max_steps_truncates() -> None:
    e = WebShopEnv(num_products=N, max_steps=3)
    e.reset(seed=1)
    flags = [e.step("click[nothing]")[3] for _ in range(3)]
    assert flags == [False, False, True]


def test_observation_modes() -> None:
    modes = {m: WebShopEnv(num_products=N, observation_mode=m) for m in ("html", "text", "text_rich", "url")}
    obs = {m: e.reset(seed=5)[0] for m, e in modes.items()}
    assert obs["html"].startswith("<!DOCTYPE html>") and 'id="search_input"' in obs["html"]
    assert obs["text"].startswith("Instruction: [SEP] ") and obs["text"].endswith("[SEP] Search")
    assert obs["text_rich"].splitlines()[-1] == "[button] Search [button_]"
    assert obs["url"].startswith("/fixed_")
    step = {m: e.step("search[usb charger]")[0] for m, e in modes.items()}
    assert step["url"].startswith("/search_results/fixed_") and step["url"].endswith("/1")
    assert "[button] Back to Search [button_]" in step["text_rich"]
    assert " [SEP] Back to Search [SEP] " in step["text"]
    with pytest.raises(ValueError, match="observation_mode"):
        WebShopEnv(num_products=N, observation_mode="pixels")


def test_markup_in_actions_and_catalog_is_shown_as_text() -> None:
    base = shared_site(SiteConfig(num_products=N))
    product = base.catalog.at(0)
    evil = type(product)(**{**product.to_dict(), "title": "<script>alert('x')</script> & <b>bold</b>"})
    goal = type(base.goals[0])(**{**base.goals[0].to_dict(), "asin": evil.asin, "instruction_text": "buy <i>it</i>"})
    site = Site(Catalog.from_products([evil]), [goal])
    e = WebShopEnv(site=site, observation_mode="html")
    html, _ = e.reset(seed=0)
    assert "<i>" not in html and "buy &lt;i&gt;it&lt;/i&gt;" in html
    html, _, _, _, info = e.step("search[<script>alert(1)</script>]")
    assert info["valid"]
    html, _, _, _, _ = e.step(f"click[{evil.asin}]")
    soup = BeautifulSoup(html, "html.parser")
    assert soup.find("script") is None and soup.find("b") is None
    assert soup.find(id="product-title").get_text() == evil.title
    html, _, _, _, info = e.step("click[<script>x</script>]")
    assert not info["valid"] and BeautifulSoup(html, "html.parser").find("script") is None
    assert "&lt;script&gt;x&lt;/script&gt;" in html
    e.observation_mode = "text"
    assert "'<script>x</script>' is not clickable" in str(e.render())


def test_sync_and_async_vector_envs() -> None:
    def make() -> gym.Env:
        return gym.make("webshop_env/WebShop-v0", num_products=N)

    # Free text goes through shared memory as code points (webshop_env.spaces), so the default works too.
    for vec in (gym.vector.SyncVectorEnv([make, make]), gym.vector.AsyncVectorEnv([make, make]), gym.vector.AsyncVectorEnv([make, make], shared_memory=False)):
        try:
            obs, info = vec.reset(seed=[0, 1])
            assert len(obs) == 2 and all(o.startswith("Instruction:") for o in obs)
            obs, reward, terminated, truncated, info = vec.step(["search[charger]", "click[nothing]"])
            assert list(info["valid"]) == [True, False]
            assert "Page 1" in obs[0] and "Invalid action" in obs[1]
        finally:
            vec.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(action=st.one_of(
    st.text(max_size=80),
    st.builds(lambda v, a: f"{v}[{a}]", st.sampled_from(["search", "click", "SEARCH", "Click", "buy"]), st.text(max_size=60)),
))
def test_no_action_raises(env: WebShopEnv, action: str) -> None:
    before = env.engine.route
    obs, reward, _, _, info = env.step(action)
    assert isinstance(obs, str) and reward == 0.0
    if not info["valid"]:
        assert env.engine.route == before and info["message"] in obs


def test_raw_env_oracle_buys_the_goal():
    env = gym.make("webshop_env/WebShop-v0", num_products=N)
    for seed in range(3):
        env.reset(seed=seed)
        for _ in range(env.unwrapped.max_steps):
            _, reward, terminated, truncated, _ = env.step(env.unwrapped.oracle_action())
            if terminated or truncated:
                break
        assert terminated and reward == 1.0
