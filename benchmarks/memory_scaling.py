"""Memory scaling: oracle agent x memory policy x number of objectives.

Prints EM, peak tokens and dependency per cell as a Markdown table, then the
shape checks the paper predicts: ``mem1`` peak tokens stay flat while ``full``
grows linearly with the number of objectives.

    python benchmarks/memory_scaling.py [--episodes 3] [--dataset fictional|wiki-vital] [--tokenizer PATH]

Token counts are whitespace words by default; ``--tokenizer`` counts with a
Hugging Face tokenizer (a local folder) instead.
"""

from __future__ import annotations

import argparse
import statistics

import gymnasium as gym

import mem1_gym  # noqa: F401
from mem1_gym.context import hf_token_counter


def run_cell(memory: str, n: int, episodes: int, counter, dataset: str) -> dict[str, float]:
    env = gym.make("mem1_gym/MultiObjectiveQA-v0", n_objectives=n, memory=memory, token_counter=counter, dataset=dataset)
    rows = []
    for ep in range(episodes):
        _, info = env.reset(seed=1000 * n + ep)
        prompt_tokens = info["new_segments"][0]["tokens"]
        while True:
            *_, terminated, truncated, info = env.step(env.unwrapped.oracle_action())
            if terminated or truncated:
                rows.append({**info["metrics"], "prompt_tokens": prompt_tokens})
                break
    keys = ("em", "peak_tokens", "dependency", "turns", "prompt_tokens")
    return {k: statistics.mean(r[k] for r in rows) for k in keys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--objectives", default="1,2,4,8,16")
    parser.add_argument("--memory", default="full,mem1,window:1")
    parser.add_argument("--tokenizer", default=None, help="local Hugging Face tokenizer folder")
    parser.add_argument("--dataset", default="fictional", help="fictional (short passages) or wiki-vital (real summaries)")
    args = parser.parse_args()
    counter = None
    if args.tokenizer:
        from transformers import AutoTokenizer

        counter = hf_token_counter(AutoTokenizer.from_pretrained(args.tokenizer))
    objectives = [int(x) for x in args.objectives.split(",")]
    memories = args.memory.split(",")
    results = {(m, n): run_cell(m, n, args.episodes, counter, args.dataset) for m in memories for n in objectives}

    unit = "tokenizer tokens" if args.tokenizer else "whitespace tokens"
    print(f"Oracle agent, {args.dataset} QA, {args.episodes} episodes per cell ({unit})\n")
    # The prompt holds all N questions, so it grows with N under every policy; the column
    # "peak - prompt" is the part a memory policy controls.
    print("| memory | N | EM | turns | prompt tokens | peak tokens | peak - prompt | dependency |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for (m, n), r in results.items():
        print(
            f"| {m} | {n} | {r['em']:.2f} | {r['turns']:.1f} | {r['prompt_tokens']:.0f} | {r['peak_tokens']:.0f} "
            f"| {r['peak_tokens'] - r['prompt_tokens']:.0f} | {r['dependency']:.3g} |"
        )

    if {"full", "mem1"} <= set(memories) and 16 in objectives and 2 in objectives:
        mem1 = [results["mem1", n]["peak_tokens"] for n in objectives if n >= 2]
        spread = (max(mem1) - min(mem1)) / statistics.mean(mem1)
        ratio = results["full", 16]["peak_tokens"] / results["mem1", 16]["peak_tokens"]
        print(f"\nmem1 peak tokens N=2..16: min {min(mem1):.0f}, max {max(mem1):.0f}, spread {spread:.0%} of the mean")
        rest = [results["mem1", n]["peak_tokens"] - results["mem1", n]["prompt_tokens"] for n in objectives if n >= 2]
        print(f"mem1 peak minus prompt N=2..16: min {min(rest):.0f}, max {max(rest):.0f}")
        print(f"full/mem1 peak-token ratio at N=16: {ratio:.1f}x (paper, learned agents: 3.7x)")


if __name__ == "__main__":
    main()
