"""Generation speed vs torch's CPU thread count, on an idle machine and under a competing CPU load.

For each condition (``idle``: nothing added; ``loaded``: one busy-looping process per available
core) it times greedy generation of a fixed number of tokens with

* ``all cores``: one thread per available core, what torch picks by default without ``OMP_NUM_THREADS``
  (the reference this module's default replaces);
* ``1``: a single thread;
* ``mem1 default``: :func:`mem1_agent.threads.default_threads` at that moment (free cores from the load average),

and prints tokens/s with the ratio to ``all cores`` in the same condition.

    python -m benchmarks.threads                     # SmolLM2-135M-Instruct, 32 tokens
    python -m benchmarks.threads --model tiny        # tiny random model (seconds)

The "idle" condition is only as idle as the machine is: the load average is printed next to it.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time

import torch

from mem1_agent.models import load_policy
from mem1_agent.threads import default_threads


def _spin() -> None:
    while True:
        pass


def tokens_per_second(lm, ids: torch.Tensor, new_tokens: int, threads: int, repeats: int) -> float:
    """Best of ``repeats`` greedy generations of exactly ``new_tokens`` tokens with ``threads`` threads."""
    torch.set_num_threads(threads)
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        with torch.no_grad():
            lm.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=new_tokens,
                        min_new_tokens=new_tokens, pad_token_id=0)
        best = max(best, new_tokens / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="default | tiny | a path")
    parser.add_argument("--tokens", type=int, default=32, help="tokens generated per measurement")
    parser.add_argument("--prompt-tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    cores = len(os.sched_getaffinity(0))
    policy, tok = load_policy(args.model, value_head=False)
    lm = policy.lm.eval()
    ids = torch.randint(10, len(tok) - 1, (1, args.prompt_tokens), generator=torch.Generator().manual_seed(0))
    tokens_per_second(lm, ids, 4, cores, 1)  # warm-up
    rows = []
    for condition in ("idle", "loaded"):
        spinners = []
        if condition == "loaded":
            spinners = [mp.get_context("fork").Process(target=_spin, daemon=True) for _ in range(cores)]
            for p in spinners:
                p.start()
            time.sleep(2.0)
        try:
            load = os.getloadavg()[0]
            chosen = default_threads(cores)
            settings = [("all cores", cores), ("1", 1), ("mem1 default", chosen)]
            results = [(name, n, tokens_per_second(lm, ids, args.tokens, n, args.repeats)) for name, n in settings]
        finally:
            for p in spinners:
                p.terminate()
                p.join()
        reference = results[0][2]
        for name, n, tps in results:
            rows.append((condition, f"{load:.1f}", name, n, tps, tps / reference))
        if condition == "loaded":
            time.sleep(1.0)

    print(f"model={args.model} tokens={args.tokens} prompt={args.prompt_tokens} available cores={cores}")
    print(f"{'condition':<10} {'load avg':>8} {'threads':<14} {'n':>3} {'tokens/s':>9} {'vs all cores':>13}")
    for condition, load, name, n, tps, ratio in rows:
        print(f"{condition:<10} {load:>8} {name:<14} {n:>3} {tps:>9.1f} {ratio:>12.2f}x")


if __name__ == "__main__":
    main()
