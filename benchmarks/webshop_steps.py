"""WebShop env step latency: in-process (WebShop-v0) against the real site in headless Chromium (WebShopBrowser-v0).

Both envs play the same episodes (the expert's actions plus one refused action
each), so the table compares like with like; the ratio column is each row's
mean step time over the in-process text env's. Usage::

    nice -n 10 python benchmarks/webshop_steps.py --products 1000 --episodes 10
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium as gym

from webshop_env.browser_env import BrowserUnavailable, WebShopBrowserEnv
from webshop_env.env import WebShopEnv
from webshop_env.expert import expert_action
from webshop_env.extract import read_page


def episodes_of_actions(products: int, episodes: int) -> list[tuple[int, list[str]]]:
    """(goal index, actions) of each benchmark episode: one refused action, then the expert's purchase."""
    env = WebShopEnv(num_products=products)
    plan = []
    for goal_index in range(episodes):
        env.reset(options={"goal_index": goal_index})
        actions = ["click[not a button]"]
        env.step(actions[0])
        while True:
            action = expert_action(env.site, env.goal, env.engine.route, env.engine.view)
            actions.append(action)
            if env.step(action)[2]:
                break
        plan.append((goal_index, actions))
    return plan


def time_steps(env: gym.Env, plan: list[tuple[int, list[str]]]) -> list[float]:
    """Seconds per step over ``plan`` (reset not counted)."""
    times = []
    # Time first visits: the page-reading cache would otherwise make repeated runs look free.
    read_page.cache_clear()
    for goal_index, actions in plan:
        env.reset(options={"goal_index": goal_index})
        for action in actions:
            start = time.perf_counter()
            env.step(action)
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--products", type=int, default=1000)
    parser.add_argument("--episodes", type=int, default=10)
    args = parser.parse_args()

    plan = episodes_of_actions(args.products, args.episodes)
    rows: list[tuple[str, list[float]]] = []
    for mode in ("text", "html"):
        env = WebShopEnv(num_products=args.products, observation_mode=mode)
        time_steps(env, plan[:1])  # warm imports and the first search
        rows.append((f"WebShop-v0 ({mode})", time_steps(env, plan)))
    try:
        browser = WebShopBrowserEnv(num_products=args.products, observation_mode="text")
    except BrowserUnavailable as err:
        print(f"browser row skipped: {err}")
    else:
        try:
            time_steps(browser, plan[:1])
            rows.append(("WebShopBrowser-v0 (text)", time_steps(browser, plan)))
        finally:
            browser.close()

    steps = sum(len(a) for _, a in plan)
    print(f"{args.episodes} episodes, {steps} steps, {args.products} products")
    print(f"{'env':<26} {'mean ms':>9} {'median ms':>10} {'p95 ms':>8} {'ratio':>7}")
    base = statistics.mean(rows[0][1])
    for name, times in rows:
        ordered = sorted(times)
        p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
        mean = statistics.mean(times)
        print(f"{name:<26} {mean * 1e3:>9.2f} {statistics.median(times) * 1e3:>10.2f} {p95 * 1e3:>8.2f} {mean / base:>6.1f}x")


if __name__ == "__main__":
    main()
