"""Benchmark: one stitched forward vs per-turn recomputation of the same 8-turn episodes.

Both compute the log-probs of every action token of the same oracle episodes
(``KeyLookupEnv`` with 7 keys: 7 look-ups and an answer = 8 turns) under each
memory policy. The reference recomputes each turn's context with its own
forward pass (what a trainer without stitching does); the stitched path runs
all episodes, packed, in one forward with the 2D mask. Forward only
(``no_grad``), fp32, CPU unless ``--device`` says otherwise; best of
``--repeats``. Also prints the token counts and the largest log-prob gap
between the two paths. ``unique tok`` counts each segment once (the ideal),
``stitched tok`` what the prefix tree emits (moved segments get a copy per
distinct context prefix), ``per-turn tok`` what per-turn recomputation processes.

    python benchmarks/stitched_forward.py --models tiny,default --episodes 8
"""

from __future__ import annotations

import argparse
import time

import torch

from mem1_agent.models import load_policy
from mem1_agent.sft import oracle_episode
from mem1_agent.toy_task import make_env
from mem1_agent.trajectory import Episode, per_turn_logprobs, stitch, stitched_forward


def best_time(fn, repeats: int) -> tuple[float, object]:
    """Best wall-clock seconds of ``repeats`` calls, and the last result."""
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def unique_tokens(episodes: list[Episode]) -> int:
    """Tokens of the distinct segments that occur in some context or as an action (each counted once)."""
    total = 0
    for ep in episodes:
        used = {sid for turn in ep.turns for sid in (*turn.visible_ids, turn.action_id)}
        total += sum(len(ep.segments[sid].ids) for sid in used)
    return total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="tiny,default")
    p.add_argument("--memory", default="full,mem1,window:2")
    p.add_argument("--episodes", type=int, default=8)
    p.add_argument("--attn", default="sdpa")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{'model':<8} {'memory':<9} {'turns':>5} {'unique tok':>10} {'stitched tok':>12} {'per-turn tok':>12} {'stitched s':>10} {'per-turn s':>10} {'speed-up':>8} {'max|gap|':>9}")
    for name in args.models.split(","):
        policy, tok = load_policy(name, attn_implementation=args.attn, value_head=False)
        policy.to(args.device).eval()
        for memory in args.memory.split(","):
            eps = [oracle_episode(make_env("toy", memory=memory, n_keys=7), tok, seed=s) for s in range(args.episodes)]
            turns = {len(ep.turns) for ep in eps}

            def stitched() -> torch.Tensor:
                with torch.no_grad():
                    batch = stitch(eps, tok.pad_token_id, attn_implementation=args.attn, device=args.device)
                    return stitched_forward(policy, batch)["logprobs"].cpu()

            def per_turn() -> torch.Tensor:
                return torch.tensor([x for ep in eps for lps in per_turn_logprobs(policy, ep) for x in lps])

            t_s, lp_s = best_time(stitched, args.repeats)
            t_p, lp_p = best_time(per_turn, args.repeats)
            batch = stitch(eps, tok.pad_token_id, attn_implementation=args.attn)
            gap = (lp_s - lp_p).abs().max().item()
            print(
                f"{name:<8} {memory:<9} {'/'.join(map(str, sorted(turns))):>5} {unique_tokens(eps):>10} {batch.n_tokens:>12} {batch.naive_tokens:>12} "
                f"{t_s:>10.3f} {t_p:>10.3f} {t_p / t_s:>7.2f}x {gap:>9.1e}"
            )


if __name__ == "__main__":
    main()
