"""GRPO on stitched masked trajectories: G rollouts per task, group-normalised outcome advantages, no critic.

One iteration (:func:`grpo_iteration`):

1. **Rollout** ``G = group_size`` episodes of each of ``tasks_per_iteration`` tasks (the same
   reset seed repeated G times, see :func:`group_seeds`); log-probs recorded at generation time.
2. **Advantages**: every action token of episode i of group g gets
   ``A_i = (R_i - mean_g(R)) / (std_g(R) + eps)`` (or ``R_i - mean_g(R)`` with ``scale_by_std=False``),
   where R is the episode's outcome reward (QA: the EM sum).
3. **Update**: clipped surrogate ``max(-A r, -A clip(r, 1-eps, 1+eps))`` averaged over the action
   tokens of the batch, plus ``kl_coef * KL(pi || ref)`` as a loss (k3 by default, as in the GRPO
   paper), with the same mini-/micro-batching and gradient clipping as PPO.

Groups whose episodes all scored the same carry zero advantage: they teach nothing, as in GRPO.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from .ppo import KL_ESTIMATORS, action_outputs, masked_mean, minibatch_update, policy_loss, recorded_logprobs
from .trajectory import Episode


@dataclass
class GRPOConfig:
    """GRPO hyper-parameters.

    Attributes:
        lr: learning rate (AdamW).
        weight_decay: AdamW weight decay.
        group_size: G, rollouts per task.
        tasks_per_iteration: tasks per iteration (per process); episodes = G x tasks.
        update_epochs: passes over the rollout per iteration.
        num_minibatches: optimizer steps per epoch.
        micro_batch_size: episodes per forward/backward.
        clip_coef: ratio clip epsilon.
        kl_coef: weight of the KL loss to the reference (0 disables it).
        kl_estimator: ``"k1"`` or ``"k3"``.
        scale_by_std: divide by the group's reward standard deviation.
        eps: added to the standard deviation.
        max_grad_norm: gradient clipping norm.
    """

    lr: float = 1e-5
    weight_decay: float = 0.0
    group_size: int = 4
    tasks_per_iteration: int = 2
    update_epochs: int = 1
    num_minibatches: int = 1
    micro_batch_size: int = 4
    clip_coef: float = 0.2
    kl_coef: float = 0.001
    kl_estimator: str = "k3"
    scale_by_std: bool = True
    eps: float = 1e-6
    max_grad_norm: float = 1.0

    def __post_init__(self) -> None:
        if self.group_size < 2:
            raise ValueError(f"grpo.group_size must be at least 2 (advantages are relative to the group), got {self.group_size}")
        if self.kl_estimator not in KL_ESTIMATORS:
            raise ValueError(f"kl_estimator must be one of {sorted(KL_ESTIMATORS)}, got {self.kl_estimator!r}")
        for name in ("tasks_per_iteration", "update_epochs", "num_minibatches", "micro_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"grpo.{name} must be at least 1, got {getattr(self, name)}")


def group_seeds(task_seeds: Sequence[int], group_size: int) -> list[int]:
    """Each task seed repeated ``group_size`` times, groups contiguous."""
    return [int(s) for s in task_seeds for _ in range(group_size)]


def group_advantages(rewards: torch.Tensor, group_size: int, scale_by_std: bool = True, eps: float = 1e-6) -> torch.Tensor:
    """Group-normalised advantages of contiguous groups of ``group_size`` episode rewards."""
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    groups = rewards.float().view(-1, group_size)
    centred = groups - groups.mean(dim=1, keepdim=True)
    if scale_by_std:
        centred = centred / (groups.std(dim=1, keepdim=True, unbiased=True) + eps)
    return centred.reshape(-1)


def grpo_iteration(
    model: Any,
    ref_model: Any | None,
    optimizer: Any,
    episodes: Sequence[Episode],
    cfg: GRPOConfig,
    pad_id: int,
    accelerator: Any = None,
    scheduler: Any = None,
    generator: torch.Generator | None = None,
    temperature: float = 1.0,
) -> dict[str, float]:
    """One GRPO update on ``episodes`` (contiguous groups of ``group_size``); returns scalars.

    ``temperature`` is the rollout's sampling temperature (log-probs score ``logits / temperature``,
    as recorded); ``generator`` (CPU) shuffles the mini-batches.
    """
    episodes = list(episodes)
    rewards = torch.tensor([ep.reward for ep in episodes], dtype=torch.float32)
    episode_adv = group_advantages(rewards, cfg.group_size, cfg.scale_by_std, cfg.eps)
    width = max(sum(len(t.logprobs or []) for t in ep.turns) for ep in episodes)
    old_logp, lengths = recorded_logprobs(episodes, width)
    mask = torch.zeros_like(old_logp)
    for b, turn_lens in enumerate(lengths):
        mask[b, : sum(turn_lens)] = 1.0
    advantages = episode_adv[:, None] * mask
    ref_logp = None
    model.eval()
    if cfg.kl_coef > 0 and ref_model is not None:
        with torch.no_grad():
            ref_logp = action_outputs(ref_model, episodes, pad_id, micro_batch_size=cfg.micro_batch_size, temperature=temperature).logp.float().cpu()

    def loss_fn(part: list[int]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        out = action_outputs(model, [episodes[i] for i in part], pad_id, need_entropy=True, entropy_grad=False,
                             temperature=temperature)
        idx = torch.tensor(part)
        cols = out.logp.shape[1]

        def take(x: torch.Tensor) -> torch.Tensor:
            return x[idx, :cols].to(out.logp.device)

        m = take(mask)
        loss, stats = policy_loss(out.logp, take(old_logp), take(advantages), m, cfg.clip_coef)
        stats["pg_loss"] = loss.detach()
        if ref_logp is not None:
            kl = masked_mean(KL_ESTIMATORS[cfg.kl_estimator](out.logp, take(ref_logp)), m)
            loss = loss + cfg.kl_coef * kl
            stats["kl"] = kl.detach()
        stats["entropy"] = masked_mean(out.entropy, m).detach() if out.entropy is not None else torch.zeros(())
        return loss, stats

    stats = minibatch_update(model, optimizer, mask, loss_fn, cfg, accelerator, scheduler, generator)
    stats["advantage_abs"] = float(episode_adv.abs().mean())
    stats["action_tokens"] = float(mask.sum())
    return stats
