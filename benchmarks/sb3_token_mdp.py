"""SB3 on the token MDP: tokens/s of PPO / MaskablePPO rollouts and updates vs KV-cached generation.

    nice -n 10 python benchmarks/sb3_token_mdp.py [--model default|tiny|PATH] [--tokens 32] [--threads 1]

SB3 makes every generated token one env step and one forward pass over the
whole padded context (no KV cache across steps), and PPO's update re-runs the
LM on every stored observation. The reference is what a generation loop with
a KV cache does on the same context: Hugging Face ``generate`` sampling the
same number of tokens. The table reports both and their ratio.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import torch
from sb3_contrib import MaskablePPO
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback

import mem1_gym  # noqa: F401  (registers the mem1_gym/* envs)
from mem1_agent.sb3_policy import LLMActorCriticPolicy, MaskableLLMActorCriticPolicy
from mem1_gym.wrappers import TokenMDPEnv


class PhaseTimer(BaseCallback):
    """Wall time spent collecting rollouts (the rest of ``learn`` is PPO's update)."""

    def __init__(self) -> None:
        super().__init__()
        self.rollout_s = 0.0
        self._t0 = 0.0

    def _on_rollout_start(self) -> None:
        self._t0 = time.perf_counter()

    def _on_rollout_end(self) -> None:
        self.rollout_s += time.perf_counter() - self._t0

    def _on_step(self) -> bool:
        return True


def load(model: str):
    """Tokenizer and the reference the policy loads."""
    from mem1_agent.models import default_model_path, tiny_tokenizer

    if model == "tiny":
        return tiny_tokenizer(), "tiny"
    from transformers import AutoTokenizer

    path = str(default_model_path()) if model == "default" else model
    return AutoTokenizer.from_pretrained(path), path


def sb3_row(name: str, tokenizer, model_ref: str, tokens: int, max_length: int) -> dict:
    env = TokenMDPEnv(gym.make("mem1_gym/MultiObjectiveQA-v0", n_objectives=1), tokenizer, max_length=max_length)
    maskable = name == "MaskablePPO"
    algo_cls, policy_cls = (MaskablePPO, MaskableLLMActorCriticPolicy) if maskable else (PPO, LLMActorCriticPolicy)
    algo = algo_cls(policy_cls, env, n_steps=tokens, batch_size=min(8, tokens), n_epochs=1, learning_rate=1e-5,
                    seed=0, device="cpu", policy_kwargs={"model": model_ref})
    timer = PhaseTimer()
    t0 = time.perf_counter()
    algo.learn(total_timesteps=tokens, callback=timer)
    total = time.perf_counter() - t0
    obs, _ = env.reset(seed=0)
    return {
        "what": f"SB3 {name}",
        "context": int(obs["attention_mask"].sum()),
        "tokens": algo.num_timesteps,
        "rollout_tps": algo.num_timesteps / timer.rollout_s,
        "total_tps": algo.num_timesteps / total,
        "lm": algo.policy.features_extractor.lm,
        "prompt_ids": obs["input_ids"][: int(obs["attention_mask"].sum())].tolist(),
    }


def generate_row(lm, prompt_ids: list[int], tokens: int, pad_id: int) -> dict:
    lm.eval()
    ids = torch.tensor([prompt_ids])
    with torch.no_grad():
        t0 = time.perf_counter()
        out = lm.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=tokens, min_new_tokens=tokens,
                          do_sample=True, use_cache=True, pad_token_id=pad_id)
        seconds = time.perf_counter() - t0
    n = out.shape[1] - ids.shape[1]
    return {
        "what": "HF generate + KV cache",
        "context": len(prompt_ids),
        "tokens": n,
        "rollout_tps": n / seconds,
        "total_tps": float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--tokens", type=int, default=32, help="tokens per measurement (one PPO rollout)")
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--algos", default="PPO,MaskablePPO")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tokenizer, model_ref = load(args.model)
    rows = [sb3_row(name, tokenizer, model_ref, args.tokens, args.max_length) for name in args.algos.split(",")]
    torch.manual_seed(0)
    ref = generate_row(rows[0]["lm"], rows[0]["prompt_ids"], args.tokens, tokenizer.pad_token_id or 0)
    print(f"model={args.model} threads={torch.get_num_threads()} tokens={args.tokens}")
    print("| what | context tokens | tokens | rollout tokens/s | rollout+update tokens/s | rollout speed vs generate |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows + [ref]:
        ratio = r["rollout_tps"] / ref["rollout_tps"]
        speeds = f"{r['rollout_tps']:.2f}", f"{r['total_tps']:.2f}", f"{ratio:.3f}x"
        cells = [r["what"], r["context"], r["tokens"], *speeds]
        print("| " + " | ".join(str(c) for c in cells) + " |")


if __name__ == "__main__":
    main()
