"""A short tour: MEM1 envs through ``gymnasium.make``, at text level, token level and as a token MDP.

Run:  python examples/gym_make_tour.py [--tokenizer tiny|default|HF_ID_OR_PATH]

1. ``gymnasium.make("mem1_gym/MultiObjectiveQA-v0", ...)``: text in, text out; the oracle solves it.
2. ``TokenizedEnv``: the same episode in token ids (ids kept verbatim, ``prefix_len`` for KV reuse).
3. Registering a token-level env id of your own, so ``gymnasium.make`` (and SB3's ``make_vec_env``) build it.
"""

from __future__ import annotations

import argparse

import gymnasium as gym

import mem1_gym  # noqa: F401  (registers the mem1_gym/* envs)
from mem1_gym.wrappers import TokenizedEnv, TokenMDPEnv


def load_tokenizer(name: str):
    """``tiny`` (offline test tokenizer), ``default`` (SmolLM2-135M-Instruct) or any HF id / path."""
    if name == "tiny":
        from mem1_agent.models import tiny_tokenizer

        return tiny_tokenizer()
    from transformers import AutoTokenizer

    if name == "default":
        from mem1_agent.models import default_model_path

        name = str(default_model_path())
    return AutoTokenizer.from_pretrained(name)


def make_token_mdp(
    tokenizer, n_objectives: int = 1, memory: str = "mem1", max_length: int = 2048, max_turn_tokens: int = 128
):
    """Entry point for the registered token-MDP id below."""
    text_env = gym.make("mem1_gym/MultiObjectiveQA-v0", n_objectives=n_objectives, memory=memory)
    return TokenMDPEnv(text_env, tokenizer, max_length=max_length, max_turn_tokens=max_turn_tokens)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", default="tiny")
    args = parser.parse_args()
    tok = load_tokenizer(args.tokenizer)

    print("registered:", ", ".join(sorted(k for k in gym.registry if k.startswith(("mem1_gym/", "webshop_env/")))))

    # 1. Text level.
    env = gym.make("mem1_gym/MultiObjectiveQA-v0", n_objectives=2, memory="mem1")
    obs, info = env.reset(seed=0)
    done = False
    while not done:
        obs, reward, terminated, truncated, info = env.step(env.unwrapped.oracle_action())
        done = terminated or truncated
    print("text level, oracle:", {k: info["metrics"][k] for k in ("em", "turns", "peak_tokens")})

    # 2. Token level: the same episode; the metrics are now in real tokens.
    tenv = TokenizedEnv(gym.make("mem1_gym/MultiObjectiveQA-v0", n_objectives=2, memory="mem1"), tok, max_length=4096)
    obs, info = tenv.reset(seed=0)
    print(f"token level: prompt {len(info['input_ids'])} tokens; observation {obs['input_ids'].shape}")
    done = False
    while not done:
        ids = tok(tenv.unwrapped.oracle_action(), add_special_tokens=False)["input_ids"]
        obs, reward, terminated, truncated, info = tenv.step(ids)  # ids in, kept verbatim
        print(f"  turn {info['turn']}: context {len(info['input_ids'])} tokens, reusable prefix {info['prefix_len']}")
        done = terminated or truncated
    print("token level, oracle:", {k: info["metrics"][k] for k in ("em", "turns", "peak_tokens", "dependency")})

    # 3. Your own id for the token MDP: gym.make / make_vec_env build it like any env.
    gym.register("my/TokenMDP-QA-v0", entry_point=make_token_mdp, kwargs={"tokenizer": tok})
    mdp = gym.make("my/TokenMDP-QA-v0", max_length=1024)
    obs, info = mdp.reset(seed=0)
    allowed = int(mdp.get_wrapper_attr("action_masks")().sum())
    print(f"token MDP: actions {mdp.action_space}, {allowed} tokens may open a turn (grammar mask)")


if __name__ == "__main__":
    main()
