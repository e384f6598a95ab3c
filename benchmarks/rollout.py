"""Rollout and PPO-update throughput.

Compares, on the same tasks and sampling seed:

* batched rollout (``--batch`` envs stepped together) against the reference it replaces,
  one env at a time (batch 1); generated tokens/s and the ratio;
* cross-turn KV-cache reuse on vs off at the batched size;
* continuous batching against static batching (every live slot generates one turn per round and
  the round waits for its slowest row) on a workload of mixed episode and turn lengths:
  KeyLookup episodes of 1 to 4 keys (3 to 6 turns), and turns that end early at a stop string.
  A random model stands in for a trained one, so a stop string is a common character
  (``--stops``): greedy decoding then ends its turns after 1 to ``--mixed-max-new-tokens``
  tokens, as a trained model's turns do. Slots hold different tasks, so an episode's slot
  (and its tokens) depends on the schedule: compare the rates. ``tokens/step`` (how full the
  running batch is kept) is what a GPU, where a decode step costs about the same at any
  batch size, turns into tokens/s; on a CPU with a tiny model the extra prefill forwards of
  continuous admission eat part of it;
* one PPO iteration (stitched forward of values/reference, GAE, update): stitched tokens/s,
  without and with gradient checkpointing.

    python -m benchmarks.rollout                       # tiny random model (seconds)
    python -m benchmarks.rollout --model default       # SmolLM2-135M-Instruct
"""

from __future__ import annotations

import argparse
import time

import torch

from mem1_agent.config import EnvConfig
from mem1_agent.models import enable_gradient_checkpointing, frozen_reference, load_policy
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


def batching_rows(model, tok, batch: int, episodes: int, max_new_tokens: int, stops: list[str]) -> list[tuple]:
    """Static vs continuous batching on mixed episode and turn lengths; one row per schedule."""
    from mem1_agent.toy_task import KeyLookupEnv
    from mem1_gym.wrappers import TokenizedEnv

    rows = []
    schedules = [("static batching (reference)", False, 1), ("continuous batching", True, 1)]
    schedules += [(f"continuous, admit >= {k} (or {SamplingConfig.admit_wait} steps)", True, k) for k in (2, 4) if k < batch]
    for label, continuous, admit_min in schedules:
        envs = [TokenizedEnv(KeyLookupEnv(n_keys=1 + i % 4, memory="mem1"), tok, max_length=4096) for i in range(batch)]
        sampling = SamplingConfig(max_new_tokens=max_new_tokens, temperature=0.0, continuous_batching=continuous,
                                  admit_min=admit_min)
        policy = LMPolicy(model, tok, sampling=sampling, stop_strings=stops, generator=torch.Generator().manual_seed(0))
        _, stats = rollout(envs, policy, list(range(episodes)))
        rows.append((label, stats))
    return rows


def update_rows(model_name: str, episodes, pad_id: int) -> list[tuple[str, int, float]]:
    """One PPO iteration on the same episodes, without and with gradient checkpointing (fresh models)."""
    out = []
    for label, checkpointing in [("PPO iteration (reference)", False), ("PPO iteration, gradient checkpointing", True)]:
        model, _ = load_policy(model_name)
        if checkpointing:
            enable_gradient_checkpointing(model)  # what model.gradient_checkpointing=true does
        ref = frozen_reference(model)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
        cfg = PPOConfig(num_minibatches=2, micro_batch_size=2)
        start = time.perf_counter()
        stats = ppo_iteration(model, ref, opt, episodes, cfg, pad_id)
        out.append((label, int(stats["action_tokens"]), time.perf_counter() - start))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--n-objectives", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--max-turns", type=int, default=4)
    parser.add_argument("--mixed-episodes", type=int, default=24, help="episodes of the static/continuous comparison")
    parser.add_argument("--mixed-max-new-tokens", type=int, default=48)
    parser.add_argument("--stops", default="o", help="comma-separated stop strings of the mixed-length workload")
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

    print()
    rows = batching_rows(model, tok, args.batch, args.mixed_episodes, args.mixed_max_new_tokens, args.stops.split(","))
    base = rows[0][1].tokens_per_second
    print(f"batching: {args.mixed_episodes} KeyLookup episodes (1-4 keys), batch {args.batch}, <= {args.mixed_max_new_tokens} "
          f"new tokens/turn, stops {args.stops.split(',')}")
    base_step = rows[0][1].tokens_per_step
    print(f"| {'schedule':<38} | {'tokens':>7} | {'steps':>6} | {'tokens/step':>11} | {'vs static':>9} | {'seconds':>8} | {'tokens/s':>9} | {'vs static':>9} |")
    print(f"|{'-' * 40}|{'-' * 9}|{'-' * 8}|{'-' * 13}|{'-' * 11}|{'-' * 10}|{'-' * 11}|{'-' * 11}|")
    for label, st in rows:
        print(f"| {label:<38} | {st.generated_tokens:>7} | {st.steps:>6} | {st.tokens_per_step:>11.2f} | {st.tokens_per_step / base_step:>8.2f}x | "
              f"{st.seconds:>8.2f} | {st.tokens_per_second:>9.1f} | {st.tokens_per_second / base:>8.2f}x |")

    # PPO update throughput on the batched rollout.
    episodes, _ = run_rollout(model, tok, env_cfg, args.batch, args.episodes, args.max_new_tokens, True)
    stitched = stitch(episodes, pad_id=tok.pad_token_id).n_tokens
    print()
    print(f"PPO iteration: {len(episodes)} episodes, {stitched} stitched tokens (values, reference, 1 epoch of 2 mini-batches)")
    print(f"| {'setting':<40} | {'action tok':>10} | {'seconds':>8} | {'stitched tok/s':>14} | {'vs reference':>12} |")
    print(f"|{'-' * 42}|{'-' * 12}|{'-' * 10}|{'-' * 16}|{'-' * 14}|")
    urows = update_rows(args.model, episodes, tok.pad_token_id)
    for label, n, sec in urows:
        print(f"| {label:<40} | {n:>10} | {sec:>8.2f} | {stitched / sec:>14.1f} | {urows[0][2] / sec:>11.2f}x |")

if __name__ == "__main__":
    main()
