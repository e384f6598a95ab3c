"""Rollout and PPO-update throughput.

Compares, on the same tasks and sampling seed:

* batched rollout (``--batch`` envs stepped together, one left-padded generation per round)
  against the reference it replaces, one env at a time (batch 1); generated tokens/s and the ratio;
* cross-turn KV-cache reuse on vs off at the batched size;
* one PPO iteration (stitched forward of values/reference, GAE, update): stitched tokens/s.

    python benchmarks/rollout.py                       # tiny random model (seconds)
    python benchmarks/rollout.py --model default       # SmolLM2-135M-Instruct
"""

from __future__ import annotations

import argparse
import time

import torch

from mem1_agent.config import EnvConfig
from mem1_agent.models import frozen_reference, load_policy
from mem1_agent.policy import LMPolicy, SamplingConfig
from mem1_agent.ppo import PPOConfig, ppo_iteration
from mem1_agent.rollout import rollout
from mem1_agent.train import make_envs
from mem1_agent.trajectory import stitch


def run_rollout(model, tok, env_cfg: EnvConfig, batch: int, episodes: int, max_new_tokens: int, reuse: bool):
    """Roll out ``episodes`` tasks with ``batch`` envs; returns (episodes, stats)."""
    envs = make_envs(EnvConfig(**{**env_cfg.__dict__, "num_envs": batch}), tok)
    sampling = SamplingConfig(max_new_tokens=max_new_tokens, reuse_prefix=reuse)
    policy = LMPolicy(model, tok, sampling=sampling, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return rollout(envs, policy, list(range(episodes)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--n-objectives", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--max-turns", type=int, default=4)
    args = parser.parse_args()

    model, tok = load_policy(args.model)
    env_cfg = EnvConfig(max_turns=args.max_turns, max_length=4096, kwargs={"n_objectives": args.n_objectives})
    run_rollout(model, tok, env_cfg, 1, 1, 4, True)  # warm-up (index build, first-call overheads)

    rows = []
    for label, batch, reuse in [("batch 1 (reference)", 1, True), (f"batch {args.batch}", args.batch, True),
                                (f"batch {args.batch}, no KV reuse across turns", args.batch, False)]:
        eps, stats = run_rollout(model, tok, env_cfg, batch, args.episodes, args.max_new_tokens, reuse)
        rows.append((label, stats.generated_tokens, stats.seconds, stats.tokens_per_second, stats.reused_tokens))
    base = rows[0][3]
    print(f"rollout: model={args.model}, {args.episodes} episodes of MultiObjectiveQA N={args.n_objectives}, "
          f"<= {args.max_turns} turns, <= {args.max_new_tokens} new tokens/turn")
    print(f"| {'setting':<44} | {'tokens':>7} | {'seconds':>8} | {'tokens/s':>9} | {'vs batch 1':>10} | {'KV-reused ctx tokens':>20} |")
    print(f"|{'-' * 46}|{'-' * 9}|{'-' * 10}|{'-' * 11}|{'-' * 12}|{'-' * 22}|")
    for label, n, sec, tps, reused in rows:
        print(f"| {label:<44} | {n:>7} | {sec:>8.2f} | {tps:>9.1f} | {tps / base:>9.2f}x | {reused:>20} |")

    # PPO update throughput on the batched rollout.
    episodes, _ = run_rollout(model, tok, env_cfg, args.batch, args.episodes, args.max_new_tokens, True)
    ref = frozen_reference(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
    cfg = PPOConfig(num_minibatches=2, micro_batch_size=2)
    stitched = stitch(episodes, pad_id=tok.pad_token_id).n_tokens
    start = time.perf_counter()
    stats = ppo_iteration(model, ref, opt, episodes, cfg, tok.pad_token_id)
    sec = time.perf_counter() - start
    # Tokens pushed through the model: values + reference forwards once, forward+backward once per epoch.
    print()
    print(f"PPO iteration: {len(episodes)} episodes, {stitched} stitched tokens, {int(stats['action_tokens'])} action tokens, "
          f"{sec:.2f} s -> {stitched / sec:.1f} stitched tokens/s, {stats['action_tokens'] / sec:.1f} action tokens/s")


if __name__ == "__main__":
    main()
