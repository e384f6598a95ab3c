"""Train an LLM with stable-baselines3 PPO or sb3-contrib MaskablePPO on the MEM1 token MDP.

Run (bounded, CPU):
    nice -n 10 python examples/sb3_token_mdp.py --algo maskable --timesteps 64
    python examples/sb3_token_mdp.py --model tiny --timesteps 256      # offline random model, seconds

The env is registered with ``gymnasium.register`` so SB3's ``make_vec_env``
builds it by id; the policy is :class:`mem1_agent.sb3_policy.LLMActorCriticPolicy`
(or its maskable twin, which reads the env's grammar ``action_masks()``).
Each SB3 step is one generated token and one full forward pass over the
context (SB3 has no KV cache across steps), so expect a few tokens per second
on a CPU with the 135M default model; see ``benchmarks/sb3_token_mdp.py``.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import torch
from sb3_contrib import MaskablePPO
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

import mem1_gym  # noqa: F401  (registers the mem1_gym/* envs)
from mem1_agent.sb3_policy import LLMActorCriticPolicy, MaskableLLMActorCriticPolicy
from mem1_gym.wrappers import TokenMDPEnv

ENV_ID = "mem1_gym/TokenMDP-MultiObjectiveQA-v0"


def load_tokenizer_and_model_path(model: str):
    """The tokenizer, and the model reference the policy loads (``tiny``, ``default`` or an HF id / path)."""
    from mem1_agent.models import default_model_path, tiny_tokenizer

    if model == "tiny":
        return tiny_tokenizer(), "tiny"
    from transformers import AutoTokenizer

    path = str(default_model_path()) if model == "default" else model
    return AutoTokenizer.from_pretrained(path), path


def make_qa_token_mdp(
    tokenizer, n_objectives: int = 1, memory: str = "mem1", max_length: int = 1024, max_turn_tokens: int = 96
):
    """The multi-objective QA env as a token MDP (the registered entry point)."""
    text_env = gym.make("mem1_gym/MultiObjectiveQA-v0", n_objectives=n_objectives, memory=memory)
    return TokenMDPEnv(text_env, tokenizer, max_length=max_length, max_turn_tokens=max_turn_tokens)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default", help="default | tiny | HF id or path")
    parser.add_argument("--algo", choices=["ppo", "maskable"], default="maskable")
    parser.add_argument("--timesteps", type=int, default=64, help="tokens to generate in total")
    parser.add_argument("--n-steps", type=int, default=32, help="tokens per rollout (per env)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--n-envs", type=int, default=1)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--memory", default="mem1")
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default; 1 on a busy CPU)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    tokenizer, model_ref = load_tokenizer_and_model_path(args.model)
    if ENV_ID not in gym.registry:
        gym.register(ENV_ID, entry_point=make_qa_token_mdp)
    env_kwargs = {"tokenizer": tokenizer, "memory": args.memory, "max_length": args.max_length}
    venv = make_vec_env(ENV_ID, n_envs=args.n_envs, seed=args.seed, env_kwargs=env_kwargs)

    maskable = args.algo == "maskable"
    algo_cls, policy_cls = (MaskablePPO, MaskableLLMActorCriticPolicy) if maskable else (PPO, LLMActorCriticPolicy)
    algo = algo_cls(
        policy_cls, venv, n_steps=args.n_steps, batch_size=args.batch_size, n_epochs=1, learning_rate=args.lr,
        seed=args.seed, device="cpu", policy_kwargs={"model": model_ref}, verbose=0,
    )
    start = time.perf_counter()
    algo.learn(total_timesteps=args.timesteps)
    seconds = time.perf_counter() - start
    result = {"tokens": float(algo.num_timesteps), "seconds": seconds, "tokens_per_s": algo.num_timesteps / seconds}
    print(f"{args.algo} on {ENV_ID} with {args.model}: {algo.num_timesteps} tokens in {seconds:.1f} s "
          f"= {result['tokens_per_s']:.2f} tokens/s (rollouts + updates)")
    return result


if __name__ == "__main__":
    main()
