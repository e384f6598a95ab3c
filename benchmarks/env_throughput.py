"""Env throughput: oracle steps per second on fictional corpora of 10k and 100k passages.

    python benchmarks/env_throughput.py [--sizes 10000,100000] [--steps 400]

Index build time is reported separately (it is cached on disk after the first run).
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym

import mem1_gym  # noqa: F401


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--objectives", type=int, default=4)
    parser.add_argument("--retrievers", default="bm25s,rank_bm25")
    args = parser.parse_args()
    print("| passages | retriever | make (s) | steps | steps/s | ms/step |")
    print("|---:|---|---:|---:|---:|---:|")
    for size in [int(s) for s in args.sizes.split(",")]:
        for retriever in args.retrievers.split(","):
            steps = args.steps if retriever == "bm25s" else max(20, args.steps // 20)
            t0 = time.perf_counter()
            env = gym.make(
                "mem1_gym/MultiObjectiveQA-v0", n_objectives=args.objectives, dataset_size=size, retriever=retriever
            )
            env.reset(seed=0)
            made = time.perf_counter() - t0
            done = 0
            t0 = time.perf_counter()
            while done < steps:
                *_, terminated, truncated, _ = env.step(env.unwrapped.oracle_action())
                done += 1
                if terminated or truncated:
                    env.reset()
            elapsed = time.perf_counter() - t0
            print(f"| {size} | {retriever} | {made:.1f} | {done} | {done / elapsed:.0f} | {1000 * elapsed / done:.2f} |")


if __name__ == "__main__":
    main()
