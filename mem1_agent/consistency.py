"""``mem1 check-consistency``: stitched log-probs must equal rollout-time log-probs.

The check rolls a model out against a real environment under each memory
policy, with a reference rollout: every turn's action is sampled from the
visible context laid out contiguously (exactly what the env's
``TokenizedEnv`` observation holds) and its log-probs are computed by a
plain full forward over that context, positions ``0..L-1``, with the
model's default causal mask. The episodes are then stitched (packed several
per row) and run through **one** forward with the stitched 2D mask; the
largest absolute gap between the two sets of action-token log-probs is
reported per (attention implementation, memory policy). Users run it before
training a model of their own: a model whose attention ignores custom 4D
masks, or an attention implementation that cannot express them, shows up
here as a large gap or a clear refusal.

The default environment is ``mem1_gym/MultiObjectiveQA-v0`` when it is
registered, else the toy :class:`~mem1_agent.toy_task.KeyLookupEnv`
(``--env toy`` picks it explicitly; it needs no corpus and runs anywhere).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from typing import Any, Sequence

import gymnasium as gym
import torch

from .models import SUPPORTED_ATTN, check_attn_implementation, load_policy
from .threads import add_threads_argument, apply_threads
from .toy_task import make_env
from .trajectory import Episode, EpisodeBuilder, per_turn_logprobs, stitch, stitched_forward


@dataclass
class ConsistencyResult:
    """One cell of the check: an attention implementation under a memory policy."""

    attn: str
    memory: str
    episodes: int
    action_tokens: int
    stitched_tokens: int
    naive_tokens: int
    max_gap: float
    seconds: float
    error: str | None = None

    def ok(self, tol: float) -> bool:
        """Whether the gap is within ``tol`` (a NaN gap never is)."""
        return not math.isnan(self.max_gap) and self.max_gap <= tol


def _check_env(env_id: str, memory: str, turns: int, seed: int) -> gym.Env:
    kwargs = {"n_keys": 2} if env_id == "toy" else {}
    return make_env(env_id, memory=memory, max_turns=turns, seed=seed, **kwargs)


def default_env_id() -> str:
    """``qa`` when the multi-objective QA environment is available, else ``toy``."""
    import importlib.util

    return "qa" if importlib.util.find_spec("mem1_gym.qa_env") is not None else "toy"


@torch.no_grad()
def rollout_episode(
    policy: Any,
    tokenizer: Any,
    env: gym.Env,
    seed: int,
    max_new_tokens: int = 32,
    max_length: int = 4096,
) -> Episode:
    """Roll out one episode, sampling each action (``generate``) from the contiguous visible context.

    Log-probs are recorded per turn by a full forward over the turn's context
    (see the module docstring): the reference the stitched forward must match.
    """
    from mem1_gym.wrappers import TokenizedEnv

    tenv = TokenizedEnv(env, tokenizer, max_length=max_length)
    device = next(policy.parameters()).device
    gen = torch.Generator(device="cpu").manual_seed(seed)
    builder = EpisodeBuilder()
    _, info = tenv.reset(seed=seed)
    builder.reset(info)
    done = False
    while not done:
        ids = torch.tensor([list(info["input_ids"])], dtype=torch.long, device=device)
        # Sampling may use the KV cache: only the sampled ids matter here, their log-probs
        # are recomputed below exactly as the reference defines them.
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
        out = policy.lm.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            do_sample=True,
            temperature=1.0,
            top_k=0,
            top_p=1.0,
            max_new_tokens=max_new_tokens,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        new = out[0, ids.shape[1] :].tolist()
        if tokenizer.eos_token_id in new:  # generate pads after EOS
            new = new[: new.index(tokenizer.eos_token_id) + 1]
        _, reward, terminated, truncated, info = tenv.step(new)
        builder.step(info, reward)
        done = terminated or truncated
    episode = builder.build()
    for turn, lps in zip(episode.turns, per_turn_logprobs(policy, episode)):
        turn.logprobs = lps
    return episode


def check(
    policy: Any,
    tokenizer: Any,
    attns: Sequence[str],
    memories: Sequence[str],
    turns: int = 6,
    episodes: int = 2,
    seed: int = 0,
    env_id: str = "toy",
    max_new_tokens: int = 32,
) -> list[ConsistencyResult]:
    """Run the check for every (attention implementation, memory policy) pair.

    Rollouts are sampled once per memory policy (with the first implementation);
    each implementation then recomputes the rollout-time log-probs per turn and
    the stitched ones in one forward, and the two are compared.
    """
    for attn in attns:
        check_attn_implementation(attn)
    results: list[ConsistencyResult] = []
    for memory in memories:
        policy.lm.set_attn_implementation(attns[0])
        eps = [
            rollout_episode(policy, tokenizer, _check_env(env_id, memory, turns, seed + i), seed + i, max_new_tokens)
            for i in range(episodes)
        ]
        for attn in attns:
            policy.lm.set_attn_implementation(attn)
            start = time.perf_counter()
            n_actions = sum(len(ep.action_ids(t)) for ep in eps for t in range(len(ep.turns)))
            try:
                with torch.no_grad():
                    rollout = torch.tensor([x for ep in eps for lps in per_turn_logprobs(policy, ep) for x in lps])
                    batch = stitch(eps, tokenizer.pad_token_id, pack=True, attn_implementation=attn, dtype=policy.lm.dtype,
                                   device=next(policy.parameters()).device)
                    stitched = stitched_forward(policy, batch)["logprobs"].cpu()
            except Exception as err:  # noqa: BLE001 - a backend failure is a result of the check, reported in its row
                first = str(err).strip().splitlines()[0] if str(err).strip() else ""
                results.append(ConsistencyResult(attn, memory, len(eps), n_actions, 0, 0, math.nan, time.perf_counter() - start, f"{type(err).__name__}: {first[:200]}"))
                continue
            gap = (stitched - rollout).abs().max().item() if len(rollout) else 0.0
            results.append(
                ConsistencyResult(attn, memory, len(eps), n_actions, batch.n_tokens, batch.naive_tokens, gap, time.perf_counter() - start)
            )
    return results


def format_table(results: Sequence[ConsistencyResult], tol: float) -> str:
    """Results as a fixed-width table."""
    head = f"{'attn':<15} {'memory':<10} {'episodes':>8} {'act.tok':>8} {'stitched':>9} {'per-turn':>9} {'max|gap|':>10}  ok"
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(
            f"{r.attn:<15} {r.memory:<10} {r.episodes:>8} {r.action_tokens:>8} {r.stitched_tokens:>9} "
            f"{r.naive_tokens:>9} {r.max_gap:>10.2e}  {'yes' if r.ok(tol) else 'NO'}"
        )
        if r.error:
            lines.append(f"    error: {r.error}")
    return "\n".join(lines)


def cli(argv: list[str]) -> int:
    """``mem1 check-consistency``: print the gap per (attn, memory); exit 1 above ``--tol``."""
    p = argparse.ArgumentParser(prog="mem1 check-consistency", description=__doc__.split("\n")[0])
    p.add_argument("--model", default="tiny", help="'tiny', 'tiny-qwen2', 'default' (SmolLM2-135M-Instruct), a hub id or a path")
    p.add_argument("--attn", default="eager,sdpa", help=f"comma-separated; supported: {', '.join(SUPPORTED_ATTN)}")
    p.add_argument("--memory", default="full,mem1,window:2", help="comma-separated memory policies")
    p.add_argument("--turns", type=int, default=6, help="turns per episode")
    p.add_argument("--episodes", type=int, default=2, help="episodes per memory policy (packed into one batch)")
    p.add_argument("--env", default=None, help="'toy', 'qa' or a registered env id (default: qa if available, else toy)")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--tol", type=float, default=1e-4, help="largest allowed |gap| (fp32)")
    p.add_argument("--seed", type=int, default=0)
    add_threads_argument(p)
    args = p.parse_args(argv)
    attns = [a.strip() for a in args.attn.split(",") if a.strip()]
    memories = [m.strip() for m in args.memory.split(",") if m.strip()]
    try:
        for attn in attns:
            check_attn_implementation(attn)
        from mem1_gym.memory import make_memory_policy

        for m in memories:
            make_memory_policy(m)
    except ValueError as err:
        print(f"mem1 check-consistency: {err}", file=sys.stderr)
        return 2
    apply_threads(args.threads)
    torch.manual_seed(args.seed)
    policy, tokenizer = load_policy(args.model, attn_implementation=attns[0], dtype=getattr(torch, args.dtype), value_head=False)
    policy.to(args.device).eval()
    env_id = args.env or default_env_id()
    print(f"model={args.model} env={env_id} turns={args.turns} episodes={args.episodes} dtype={args.dtype} device={args.device}")
    results = check(policy, tokenizer, attns, memories, args.turns, args.episodes, args.seed, env_id, args.max_new_tokens)
    print(format_table(results, args.tol))
    bad = [r for r in results if not r.ok(args.tol)]
    if bad:
        print(f"FAIL: {len(bad)} of {len(results)} above tolerance {args.tol:g}", file=sys.stderr)
        return 1
    print(f"OK: all gaps <= {args.tol:g}")
    return 0
