"""Train sb3-contrib MaskablePPO on WebShop through the choice wrapper, and compare with baselines.

The policy sees hashed word ids of the page text and picks one of the page's
actions (``Discrete(k)`` with masks, see :mod:`mem1_gym.wrappers.choice`). It
trains on the ``train`` goals of a small synthetic catalog for a bounded number
of steps, then all three players are scored on the same ``test`` goals:

* MaskablePPO (deterministic, masked);
* random: a uniformly random valid action each step;
* rule-based: search the instruction, click the first result, Buy Now.

With ``--algo ppo`` the same run uses stable-baselines3's plain PPO, which has no
masks: it picks among all slots, and ``--invalid-penalty`` (the choice wrapper's
``invalid_penalty``, default 0) is what teaches it to avoid refused choices.

Usage::

    nice -n 10 python examples/webshop_maskable_ppo.py --products 400 --timesteps 20000 --episodes 200
    nice -n 10 python examples/webshop_maskable_ppo.py --algo ppo --invalid-penalty 0.1
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import numpy as np

from mem1_gym.wrappers.choice import FIXED_SLOTS, WebShopChoiceEnv
from webshop_env.env import WebShopEnv

#: The rule-based player's slots: search, first result, Buy Now.
_SEARCH, _BUY, _FIRST_RESULT = 0, FIXED_SLOTS.index("buy now"), len(FIXED_SLOTS)


def make_env(products: int, split: str, max_steps: int, invalid_penalty: float = 0.0) -> WebShopChoiceEnv:
    """A choice-wrapped WebShop env over ``products`` synthetic products."""
    env = WebShopEnv(num_products=products, goal_split=split, max_steps=max_steps)
    return WebShopChoiceEnv(env, invalid_penalty=invalid_penalty)


def rule_based(env: WebShopChoiceEnv, rng: np.random.Generator) -> int:
    """Search the instruction, click the first result, buy."""
    mask = env.action_masks()
    for slot in (_BUY, _FIRST_RESULT, _SEARCH):
        if mask[slot]:
            return slot
    return int(rng.choice(np.flatnonzero(mask)))


def random_valid(env: WebShopChoiceEnv, rng: np.random.Generator) -> int:
    """A uniformly random action among those the page offers."""
    return int(rng.choice(np.flatnonzero(env.action_masks())))


def evaluate(
    env: WebShopChoiceEnv, act: Callable[[WebShopChoiceEnv, np.random.Generator], int], episodes: int, seed: int
) -> tuple[float, float, float]:
    """Mean reward, purchase rate and invalid-choice rate over ``episodes`` test goals (goal i for episode i)."""
    rng = np.random.default_rng(seed)
    rewards, bought, steps, invalid = [], 0, 0, 0
    for i in range(episodes):
        env.reset(options={"goal_index": i % len(env.unwrapped.site.goals)})
        while True:
            _, reward, terminated, truncated, info = env.step(act(env, rng))
            steps += 1
            invalid += int(not info["valid"])
            if terminated or truncated:
                rewards.append(float(reward))
                bought += int("reward" in info)
                break
    return float(np.mean(rewards)), bought / episodes, invalid / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # The train split starts at goal 1500: about 300 products are needed for it to be non-empty.
    parser.add_argument("--products", type=int, default=400)
    parser.add_argument("--timesteps", type=int, default=20_000)
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--max-steps", type=int, default=8)
    parser.add_argument("--n-envs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--algo", choices=["maskable-ppo", "ppo"], default="maskable-ppo")
    parser.add_argument("--invalid-penalty", type=float, default=0.0, help="subtracted for each refused choice in training")
    args = parser.parse_args()

    from sb3_contrib import MaskablePPO
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    masked = args.algo == "maskable-ppo"
    vec = DummyVecEnv([lambda: make_env(args.products, "train", args.max_steps, args.invalid_penalty) for _ in range(args.n_envs)])
    algo = MaskablePPO if masked else PPO
    model = algo("MlpPolicy", vec, n_steps=256, batch_size=256, learning_rate=3e-4, ent_coef=0.01, seed=args.seed, verbose=0)
    start = time.perf_counter()
    model.learn(total_timesteps=args.timesteps)
    train_s = time.perf_counter() - start

    def ppo(env: WebShopChoiceEnv, rng: np.random.Generator) -> int:
        obs = env.vocab.encode(env.unwrapped.engine.observation("text"), env.obs_length)
        masks = {"action_masks": env.action_masks()} if masked else {}
        action, _ = model.predict(obs, deterministic=True, **masks)
        return int(action)

    test = make_env(args.products, "test", args.max_steps)
    name = "MaskablePPO" if masked else "PPO"
    print(f"{name} trained {args.timesteps} steps on {args.products} products in {train_s:.0f} s "
          f"(invalid_penalty {args.invalid_penalty}); {args.episodes} test goals, max {args.max_steps} steps")
    print(f"{'player':<14} {'mean reward':>12} {'bought':>8} {'invalid':>8}")
    for player, act in ((name, ppo), ("random valid", random_valid), ("rule-based", rule_based)):
        mean, bought, invalid = evaluate(test, act, args.episodes, args.seed)
        print(f"{player:<14} {mean:>12.3f} {bought:>8.2f} {invalid:>8.2f}")


if __name__ == "__main__":
    main()
