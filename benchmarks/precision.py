"""Benchmark: rollout vs stitched-forward log-probs under each training precision.

The trainer records each action token's log-prob while it samples (KV-cached decoding, one token
at a time) and later recomputes it with one stitched forward over the whole episode. Under
``train.mixed_precision=bf16`` both run under the same bf16 autocast (fp32 weights); this prints
how far apart the two are — mean and max |Δlogp| and the fraction of ratios ``exp(Δ)`` outside
[0.9, 1.1] — for ``fp32`` (reference), ``bf16`` (both under autocast, what the trainer does) and
``bf16, bf16 logits`` (the output layer under autocast too, as before ``models.fp32_logits``) and
``bf16, fp32 rollout`` (the rollout outside autocast, as before ``train.mixed_precision``); ``ratio``
is a row's mean |Δlogp| over the bf16 row's. Episodes are sampled
(temperature 1) on the KeyLookup toy task under ``mem1`` and ``full`` memory. Target: mean
|Δlogp| ≤ 1e-2 in bf16.

    python benchmarks/precision.py --models default,tiny-qwen2 --episodes 4
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch

from mem1_agent.models import fp32_logits, load_policy
from mem1_agent.policy import LMPolicy, SamplingConfig
from mem1_agent.rollout import rollout
from mem1_agent.toy_task import make_env
from mem1_agent.trajectory import stitch, stitched_forward
from mem1_gym.wrappers import TokenizedEnv


def precision(name: str, device: str) -> contextlib.AbstractContextManager:
    """The autocast the trainer's ``train.mixed_precision`` gives (``no``: none)."""
    if name == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device, dtype=torch.bfloat16)


@contextlib.contextmanager
def bf16_logits(model):
    """The output layer as plain ``nn.Linear`` (under autocast: bf16 logits) for the block's duration."""
    head = model.lm.get_output_embeddings()
    del head.forward
    try:
        yield
    finally:
        fp32_logits(model.lm)


def measure(model, tok, rollout_precision: str, train_precision: str, args, seed: int) -> dict[str, float]:
    """Roll out under one precision, recompute under another; the log-prob mismatch."""
    envs = [TokenizedEnv(make_env("toy", memory=m, n_keys=args.keys), tok, max_length=2048) for m in ("mem1", "full")]
    gen = torch.Generator(device=args.device).manual_seed(seed)
    policy = LMPolicy(model, tok, sampling=SamplingConfig(max_new_tokens=args.max_new_tokens), generator=gen)
    with torch.no_grad(), precision(rollout_precision, args.device):
        episodes, _ = rollout(envs, policy, list(range(args.episodes)))
    batch = stitch(episodes, tok.pad_token_id, attn_implementation=args.attn, device=args.device)
    with torch.no_grad(), precision(train_precision, args.device):
        trained = stitched_forward(model, batch, with_values=False)["logprobs"].float().cpu()
    diff = trained - batch.rollout_logprobs
    ratio = diff.exp()
    return {
        "tokens": diff.numel(),
        "mean": diff.abs().mean().item(),
        "max": diff.abs().max().item(),
        "outside": ((ratio < 0.9) | (ratio > 1.1)).float().mean().item(),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="default,tiny-qwen2")
    p.add_argument("--episodes", type=int, default=4, help="episodes, spread over a mem1 and a full env")
    p.add_argument("--keys", type=int, default=3, help="KeyLookup keys (turns = keys + 1)")
    p.add_argument("--max-new-tokens", type=int, default=24)
    p.add_argument("--attn", default="sdpa")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rows = [("fp32", "fp32", "fp32"), ("bf16", "bf16", "bf16"), ("bf16, bf16 logits", "bf16", "bf16"), ("bf16, fp32 rollout", "fp32", "bf16")]
    print(f"{'model':<11} {'precision':<19} {'tokens':>6} {'mean|Δlogp|':>11} {'max|Δlogp|':>10} {'ratio∉[.9,1.1]':>14} {'ratio':>6} {'s':>6}")
    for name in args.models.split(","):
        model, tok = load_policy(name, attn_implementation=args.attn, value_head=False)
        model.to(args.device).eval()
        bf16_mean = None
        for label, roll, train in rows:
            start = time.perf_counter()
            with bf16_logits(model) if label == "bf16, bf16 logits" else contextlib.nullcontext():
                r = measure(model, tok, roll, train, args, seed=0)
            if label == "bf16":
                bf16_mean = r["mean"]
            ratio = f"{r['mean'] / bf16_mean:.1f}x" if label.startswith("bf16,") and bf16_mean else ""
            print(f"{name:<11} {label:<19} {r['tokens']:>6} {r['mean']:>11.2e} {r['max']:>10.2e} {r['outside']:>14.3f} {ratio:>6} {time.perf_counter() - start:>6.1f}", flush=True)


if __name__ == "__main__":
    main()
