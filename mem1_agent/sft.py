"""SFT: distil ``oracle_action()`` trajectories into a policy, under the rollout's own visibility.

Oracle episodes of any MEM1 environment are collected through
:class:`~mem1_gym.wrappers.TokenizedEnv` (each segment tokenized once, the
oracle's turn tokenized as it is, ending at its closing action tag: generation stops
at that tag, so an RL rollout's action segment ends there too and a remembered action
looks the same in both phases), then stitched exactly like RL rollouts: each action token is predicted from the
segments that were visible when it was taken. Under ``mem1`` the model
therefore learns to act from the prompt, its own last internal state and the
last observation only, i.e. to consolidate what it needs into the state.

Cross-entropy on action tokens (their generation copies) only; the loop is
plain PyTorch on ``accelerate`` so ``accelerate launch`` spreads it over
devices or processes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from .models import load_policy
from .toy_task import make_env
from .trajectory import Episode, EpisodeBuilder, stitch, stitched_forward


@dataclass
class SFTConfig:
    """Settings of :func:`train_sft`.

    Attributes:
        model: ``tiny``, ``default``, a hub id or a path.
        attn_implementation: ``eager``, ``sdpa`` or ``flex_attention``.
        env: environment id (``toy``, ``qa`` or a registered id).
        env_kwargs: extra environment arguments.
        memory: memory policy the oracle episodes are collected (and trained) under.
        episodes: oracle episodes to collect.
        steps: optimiser steps.
        batch_episodes: episodes per step (stitched, packed).
        lr, weight_decay, max_grad_norm: AdamW settings and gradient clipping.
        max_len: stitched row length (``None``: the longest packed row).
        seed: seeds the episodes, the shuffling and the model init.
        log_every: print the loss every this many steps (0: never).
        output_dir: save the trained LM and tokenizer here (``None``: don't).
    """

    model: str = "tiny"
    attn_implementation: str = "sdpa"
    env: str = "toy"
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    memory: str = "mem1"
    episodes: int = 32
    steps: int = 50
    batch_episodes: int = 4
    lr: float = 3e-4
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    max_len: int | None = None
    seed: int = 0
    log_every: int = 10
    output_dir: str | None = None


def oracle_episode(env: Any, tokenizer: Any, seed: int, max_length: int = 4096) -> Episode:
    """One episode that follows ``env.unwrapped.oracle_action()``, as token ids.

    Each action segment is the oracle text's ids and nothing more (no EOS): a rollout stops
    generating at the closing action tag, so its action segments end there as well.
    """
    from mem1_gym.wrappers import TokenizedEnv

    tenv = TokenizedEnv(env, tokenizer, max_length=max_length)
    builder = EpisodeBuilder()
    _, info = tenv.reset(seed=seed)
    builder.reset(info)
    done = False
    while not done:
        text = tenv.unwrapped.oracle_action()
        ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
        _, reward, terminated, truncated, info = tenv.step(ids)
        builder.step(info, reward)
        done = terminated or truncated
    return builder.build()


def collect_oracle_episodes(config: SFTConfig, tokenizer: Any) -> list[Episode]:
    """``config.episodes`` oracle episodes, seeds ``seed .. seed + episodes - 1``."""
    episodes = []
    for i in range(config.episodes):
        env = make_env(config.env, memory=config.memory, **config.env_kwargs)
        episodes.append(oracle_episode(env, tokenizer, config.seed + i))
    return episodes


def sft_loss(policy: Any, episodes: Sequence[Episode], pad_id: int, attn: str, max_len: int | None = None) -> tuple[torch.Tensor, int]:
    """Mean negative log-likelihood of the action tokens under the stitched masks, and the token count."""
    lm = getattr(policy, "module", policy)  # through DDP
    param = next(lm.parameters())
    batch = stitch(episodes, pad_id, max_len=max_len, pack=True, attn_implementation=attn, dtype=param.dtype, device=param.device)
    logprobs = stitched_forward(policy, batch, with_values=False)["logprobs"]
    return -logprobs.mean(), int(logprobs.numel())


def train_sft(config: SFTConfig, policy: Any = None, tokenizer: Any = None) -> dict[str, Any]:
    """Collect oracle episodes and fine-tune on them; returns metrics.

    Args:
        config: the settings.
        policy, tokenizer: an already loaded :class:`~mem1_agent.models.PolicyWithValue`
            and its tokenizer; loaded from ``config.model`` when omitted.

    Returns:
        ``losses`` (per step), ``initial_loss`` and ``final_loss`` (on the whole
        oracle set, before and after training), ``action_tokens`` and ``steps``.
    """
    from accelerate import Accelerator

    torch.manual_seed(config.seed)
    if policy is None or tokenizer is None:
        policy, tokenizer = load_policy(config.model, attn_implementation=config.attn_implementation, value_head=False, seed=config.seed)
    accelerator = Accelerator()
    episodes = collect_oracle_episodes(config, tokenizer)
    pad_id = tokenizer.pad_token_id
    attn = config.attn_implementation

    optimizer = torch.optim.AdamW(
        [p for p in policy.parameters() if p.requires_grad], lr=config.lr, weight_decay=config.weight_decay
    )
    model, optimizer = accelerator.prepare(policy, optimizer)

    def evaluate() -> float:
        model.eval()
        with torch.no_grad():
            loss, _ = sft_loss(model, episodes, pad_id, attn)
        model.train()
        return float(loss)

    initial = evaluate()
    rng = random.Random(config.seed)
    order: list[int] = []
    losses: list[float] = []
    tokens = 0
    for step in range(config.steps):
        if len(order) < config.batch_episodes:  # a fresh epoch, reshuffled
            order = list(range(len(episodes)))
            rng.shuffle(order)
        chosen = [episodes[order.pop()] for _ in range(min(config.batch_episodes, len(episodes)))]
        loss, n = sft_loss(model, chosen, pad_id, attn, config.max_len)
        accelerator.backward(loss)
        if config.max_grad_norm:
            accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        tokens += n
        if config.log_every and (step + 1) % config.log_every == 0:
            accelerator.print(f"sft step {step + 1}/{config.steps}  loss {losses[-1]:.4f}")
    final = evaluate()
    if config.output_dir and accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        unwrapped.lm.save_pretrained(config.output_dir)
        tokenizer.save_pretrained(config.output_dir)
    return {"losses": losses, "initial_loss": initial, "final_loss": final, "action_tokens": tokens, "steps": config.steps}
