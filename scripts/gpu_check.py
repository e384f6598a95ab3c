"""GPU check of the trainer at model scale: one command, one table, under 8 minutes on one H100/H200.

Random-initialised Qwen2 models shaped like Qwen2.5-0.5B and Qwen2.5-1.5B (their config values
are written below: nothing is downloaded), bf16 parameters, on one CUDA device. Per model:

* ``rollout``: the continuous-batching engine (``LMPolicy.submit/step``) on ``--requests``
  turns of ``--context`` random context tokens and ``--new-tokens`` new ones, ``--batch`` rows
  at a time: generated tokens/s;
* ``ppo sdpa``: one PPO iteration (values, reference, one update epoch) on four synthetic
  N=16-shaped ``mem1`` episodes (stitched rows of about 8-10.5k tokens, one per micro-batch):
  stitched tokens/s and peak memory; then the same with gradient checkpointing, and with LoRA
  (r=8 on the attention projections, through peft) plus gradient checkpointing;
* ``forward sdpa`` / ``forward flex``: one stitched no-grad forward of the first episode with
  each attention implementation (flex gets the block-sparse BlockMask): seconds, and the largest
  log-prob difference between the two (bf16 kernels differ by rounding only).

The optimizer steps bf16 parameters directly (a throughput check, not a training recipe).
Uses only torch, transformers, peft and this repository's packages.

    python scripts/gpu_check.py              # on a GPU machine
    python scripts/gpu_check.py --tiny       # tiny shapes on CPU: checks that the script still runs
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere: the repo's packages

from benchmarks.masks import n16_episode  # noqa: E402
from mem1_agent.models import PolicyWithValue, frozen_reference, tiny_tokenizer  # noqa: E402
from mem1_agent.policy import LMPolicy, SamplingConfig  # noqa: E402
from mem1_agent.ppo import PPOConfig, ppo_iteration  # noqa: E402
from mem1_agent.trajectory import stitch, stitched_forward  # noqa: E402

#: Qwen2.5-0.5B and -1.5B (config.json values), and a tiny stand-in for ``--tiny``.
SHAPES: dict[str, dict[str, Any]] = {
    "qwen2.5-0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                         num_key_value_heads=2, vocab_size=151936),
    "qwen2.5-1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                         num_key_value_heads=2, vocab_size=151936),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=1000),
}


def qwen2(shape: str, attn: str, device: torch.device) -> Any:
    """A random Qwen2 causal LM of ``shape`` in bf16 on ``device``."""
    from transformers import AutoModelForCausalLM, Qwen2Config

    config = Qwen2Config(**SHAPES[shape], max_position_embeddings=32768, rope_theta=1000000.0, rms_norm_eps=1e-6,
                         tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    torch.manual_seed(0)
    with device:
        return AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16, attn_implementation=attn)


def timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    """Seconds of ``fn()`` (synchronised on CUDA) and its result."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def peak_gib(device: torch.device) -> float:
    """Peak allocated memory since the last reset (NaN off CUDA)."""
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def rollout_row(lm: Any, tok: Any, args: argparse.Namespace, device: torch.device) -> tuple[float, float]:
    """Generated tokens/s of the engine with continuous admission; and seconds."""
    sampling = SamplingConfig(max_new_tokens=args.new_tokens, max_batch_size=args.batch)
    policy = LMPolicy(lm, tok, sampling=sampling, stop_strings=[], generator=torch.Generator(device=device).manual_seed(0))
    rng = torch.Generator().manual_seed(0)
    for _ in range(args.requests):
        policy.submit(torch.randint(3, lm.config.vocab_size, (args.context,), generator=rng).tolist())
    tokens = 0

    def run() -> None:
        nonlocal tokens
        while policy.pending:
            tokens += sum(len(g.ids) for _, g in policy.step())

    sec, _ = timed(run, device)
    return tokens / sec, sec


def ppo_row(lm: Any, episodes: list, device: torch.device, checkpointing: bool, lora: bool) -> tuple[float, float, float]:
    """Stitched tokens/s, peak GiB and seconds of one PPO iteration."""
    from mem1_agent.models import add_lora, enable_gradient_checkpointing

    # The trainer's own LoRA and checkpointing set-up (models.add_lora / enable_gradient_checkpointing).
    model = PolicyWithValue(copy.deepcopy(lm))
    if lora:
        add_lora(model, r=8, alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    if checkpointing:
        enable_gradient_checkpointing(model)
    model = model.to(device=device, dtype=torch.bfloat16)
    ref = frozen_reference(model)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-6)
    cfg = PPOConfig(micro_batch_size=1, num_minibatches=2)
    tokens = sum(stitch([ep], 0).n_tokens for ep in episodes)
    reset_peak(device)
    sec, _ = timed(lambda: ppo_iteration(model, ref, opt, episodes, cfg, pad_id=0), device)
    peak = peak_gib(device)
    del model, ref, opt, lm
    return tokens / sec, peak, sec


def forward_rows(lm: Any, episode: Any, device: torch.device) -> list[tuple[str, float, float, str]]:
    """(check, seconds, peak GiB, note) of one stitched no-grad forward per attention implementation."""
    model = PolicyWithValue(lm, value_head=False).eval()
    out: dict[str, torch.Tensor] = {}
    rows = []
    attns = ["sdpa", "flex_attention"] if device.type == "cuda" else ["sdpa"]
    for attn in attns:
        lm.set_attn_implementation(attn)
        batch = stitch([episode], 0, attn_implementation=attn, dtype=torch.bfloat16, device=device)
        with torch.no_grad():
            stitched_forward(model, batch)  # warm-up (flex compiles its kernel here)
            reset_peak(device)
            sec, res = timed(lambda: stitched_forward(model, batch), device)
        out[attn] = res["logprobs"].float()
        rows.append((f"forward {attn.split('_')[0]}", sec, peak_gib(device), f"{batch.n_tokens} tokens"))
    if len(out) == 2:
        gap = (out["sdpa"] - out["flex_attention"]).abs()
        rows[-1] = (*rows[-1][:3], f"{rows[-1][3]}; max|dlogp| vs sdpa {gap.max():.2e}, mean {gap.mean():.2e}")
    else:
        rows.append(("forward flex", float("nan"), float("nan"), "skipped: flex attention is checked on CUDA only"))
    lm.set_attn_implementation("sdpa")
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tiny", action="store_true", help="tiny shapes on CPU (a smoke test of the script)")
    p.add_argument("--models", default="qwen2.5-0.5b,qwen2.5-1.5b")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--requests", type=int, default=64)
    p.add_argument("--context", type=int, default=1024)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--episodes", type=int, default=4)
    p.add_argument("--turns", type=int, default=17, help="turns of each synthetic N=16 episode")
    p.add_argument("--scale", type=float, default=1.0, help="segment lengths of the synthetic episodes, relative to N=16")
    args = p.parse_args(argv)
    if args.tiny:
        args.models, args.batch, args.requests, args.context, args.new_tokens = "tiny", 4, 6, 32, 8
        args.episodes, args.turns, args.scale = 2, 3, 0.1
        device = torch.device("cpu")
    elif not torch.cuda.is_available():
        print("gpu_check: no CUDA device; run with --tiny for the CPU smoke test", file=sys.stderr)
        return 2
    else:
        device = torch.device("cuda")
    tok = tiny_tokenizer()  # the random models' ids decode to little; only stop detection reads text
    vocab = min(SHAPES[m]["vocab_size"] for m in args.models.split(","))
    episodes = [n16_episode(s, turns=args.turns, scale=args.scale, vocab=vocab) for s in range(args.episodes)]
    lengths = sorted(stitch([ep], 0).n_tokens for ep in episodes)
    table: list[tuple[str, str, str, str, str, str]] = []
    for shape in args.models.split(","):
        lm = qwen2(shape, "sdpa", device)
        n_params = sum(p.numel() for p in lm.parameters()) / 1e9
        tps, sec = rollout_row(lm, tok, args, device)
        table.append((shape, "rollout (continuous)", f"{tps:.0f}", "", f"{sec:.1f}", f"{args.requests} x {args.new_tokens} tok, batch {args.batch}"))
        for label, ckpt, lora in [("ppo sdpa", False, False), ("ppo sdpa + grad ckpt", True, False), ("ppo sdpa + LoRA + grad ckpt", True, True)]:
            tps, peak, sec = ppo_row(lm, episodes, device, ckpt, lora)
            table.append((shape, label, f"{tps:.0f}", f"{peak:.1f}", f"{sec:.1f}", f"stitched {lengths}, micro-batch 1"))
        for label, sec, peak, note in forward_rows(lm, episodes[0], device):
            table.append((shape, label, "", f"{peak:.1f}", f"{sec:.2f}", note))
        print(f"{shape}: {n_params:.2f}B parameters done", file=sys.stderr)
        del lm
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (--tiny)"
    print(f"gpu_check on {where}, torch {torch.__version__}, bf16 parameters")
    print(f"| {'model':<13} | {'check':<28} | {'tokens/s':>9} | {'peak GiB':>8} | {'seconds':>7} | note")
    print(f"|{'-' * 15}|{'-' * 30}|{'-' * 11}|{'-' * 10}|{'-' * 9}|------")
    for row in table:
        print(f"| {row[0]:<13} | {row[1]:<28} | {row[2]:>9} | {row[3]:>8} | {row[4]:>7} | {row[5]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
