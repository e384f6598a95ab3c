"""PPO on stitched masked trajectories, CleanRL style: the whole algorithm in this file.

One iteration (:func:`ppo_iteration`):

1. **Rollout** a batch of episodes with the current policy (``mem1_agent.rollout``);
   the log-probs ``logp_rollout`` of every action token are recorded at generation time.
2. **Stitch** each episode into one sequence with a 2D visibility mask
   (``mem1_agent.trajectory.stitch``) and run no-grad forwards of the policy
   (values ``V`` and, in training precision, the pre-update ``logp_trainer``) and of the frozen
   reference (``logp_ref``), one micro-batch of episodes at a time (a mask never spans the whole
   rollout). The ratio's denominator ``logp_old`` is ``logp_trainer``
   (``recompute_old_logp``) or the recorded ``logp_rollout``. The rollout↔trainer mismatch
   ``logp_trainer - logp_rollout`` (other kernels, another precision, another engine) is logged and,
   with ``tis_cap``, corrected by truncated importance sampling: the policy-gradient term of each
   token is weighted by ``w_t = min(exp(logp_trainer - logp_rollout), tis_cap)``.
3. **Rewards** per action token: ``-beta * KL_t`` (KL estimator ``k1 = logp_old - logp_ref``
   or ``k3 = exp(logp_ref - logp_old) - 1 - (logp_ref - logp_old)``) when the KL is in the reward,
   plus each turn's environment reward on the turn's last token (the outcome reward — EM sum — comes
   with the final turn).
4. **Token-level GAE** over the episode's action tokens in generation order
   (``delta_t = r_t + gamma * V_{t+1} - V_t``, ``A_t = delta_t + gamma * lambda * A_{t+1}``, 0 after the
   last token); returns ``R_t = A_t + V_t``; advantages whitened over all action tokens of the batch
   (of every process, under ``accelerate launch``).
5. **Update**: ``update_epochs`` passes over shuffled mini-batches of episodes, each split into
   micro-batches whose gradients accumulate; loss =
   clipped surrogate ``w * max(-A r, -A clip(r, 1-eps, 1+eps))`` with ``r = exp(logp - logp_old)``
   + ``vf_coef * 0.5 * max((V - R)^2, (V_old + clip(V - V_old, +-eps_v) - R)^2)``
   - ``ent_coef * H`` (+ ``beta * KL`` when the KL is a loss), token means over action tokens;
   gradients clipped to ``max_grad_norm``.

Log-probs are those of the sampling distribution: logits divided by the sampling temperature,
at rollout and here alike. Names follow the PPO paper (Schulman et al., 2017) and GAE
(Schulman et al., 2016).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

import torch

from .trajectory import Episode, stitch, stitched_forward


@dataclass
class PPOConfig:
    """PPO hyper-parameters.

    Attributes:
        lr: learning rate (AdamW).
        weight_decay: AdamW weight decay.
        episodes_per_iteration: episodes rolled out per iteration (per process).
        update_epochs: passes over the rollout per iteration.
        num_minibatches: optimizer steps per epoch (episodes are split evenly).
        micro_batch_size: episodes per forward/backward (gradient accumulation below a mini-batch).
        gamma: discount over action tokens.
        lam: GAE lambda.
        clip_coef: policy ratio clip epsilon.
        vf_clip: value clip range around the rollout-time value (0 disables value clipping).
        vf_coef: weight of the value loss.
        ent_coef: weight of the entropy bonus.
        kl_coef: beta of the KL penalty to the reference (0 disables it and the reference forward).
        kl_estimator: ``"k1"`` or ``"k3"``.
        kl_in_reward: put the KL penalty into the per-token reward (True) or into the loss (False).
        whiten_advantages: normalise advantages over the batch's action tokens.
        max_grad_norm: gradient clipping norm.
        recompute_old_logp: ``logp_old`` from a no-grad forward in training precision before the
            update (free: the value forward computes it); False uses the rollout's recorded
            log-probs. Either way the recorded ones are compared with the trainer's and logged.
        tis_cap: truncated importance sampling: weight the policy-gradient term of each token by
            ``min(exp(logp_old_trainer - logp_rollout), tis_cap)`` (``None``: no weighting).
    """

    lr: float = 1e-5
    weight_decay: float = 0.0
    episodes_per_iteration: int = 8
    update_epochs: int = 1
    num_minibatches: int = 2
    micro_batch_size: int = 2
    gamma: float = 1.0
    lam: float = 1.0
    clip_coef: float = 0.2
    vf_clip: float = 0.2
    vf_coef: float = 0.5
    ent_coef: float = 0.0
    kl_coef: float = 0.001
    kl_estimator: str = "k1"
    kl_in_reward: bool = True
    whiten_advantages: bool = True
    max_grad_norm: float = 1.0
    recompute_old_logp: bool = True
    tis_cap: float | None = None

    def __post_init__(self) -> None:
        if self.tis_cap is not None and self.tis_cap <= 0:
            raise ValueError(f"ppo.tis_cap must be positive (or null), got {self.tis_cap}")
        if self.tis_cap is not None and not self.recompute_old_logp:
            # With the rollout's log-probs as logp_old the PPO ratio already corrects the rollout/trainer
            # mismatch; the truncated IS weight would correct it a second time.
            raise ValueError("ppo.tis_cap needs ppo.recompute_old_logp=true: with the rollout's log-probs as the old "
                             "log-probs the ratio already corrects the rollout/trainer mismatch")
        if self.kl_estimator not in KL_ESTIMATORS:
            raise ValueError(f"kl_estimator must be one of {sorted(KL_ESTIMATORS)}, got {self.kl_estimator!r}")
        for name in ("episodes_per_iteration", "update_epochs", "num_minibatches", "micro_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"ppo.{name} must be at least 1, got {getattr(self, name)}")


# -- the maths -----------------------------------------------------------------


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over positions where ``mask`` is 1 (0 when the mask is empty)."""
    mask = mask.to(x.dtype)
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def masked_whiten(
    x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8, all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None
) -> torch.Tensor:
    """``(x - mean) / std`` over the masked positions; masked-out positions become 0.

    ``all_reduce`` (a tensor -> its sum over processes) makes the mean and std those of every
    process's masked positions together, as if the batches were concatenated.
    """
    total = all_reduce or (lambda t: t)
    m = mask.to(x.dtype)
    count, x_sum = total(torch.stack([m.sum(), (x * m).sum()])).unbind()
    count = count.clamp(min=1.0)
    mean = x_sum / count
    var = total(((x - mean) ** 2 * m).sum()) / count
    return (x - mean) * torch.rsqrt(var + eps) * m


def kl_k1(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k1 estimator of KL(pi || ref) per sampled token: ``log pi - log ref`` (unbiased, can be negative)."""
    return logp - ref_logp


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k3 estimator of KL(pi || ref): ``(r - 1) - log r`` with ``r = ref/pi`` (unbiased, never negative)."""
    log_ratio = ref_logp - logp
    return torch.expm1(log_ratio) - log_ratio


KL_ESTIMATORS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {"k1": kl_k1, "k3": kl_k3}


def compute_gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over right-padded token sequences.

    Args:
        rewards, values: (B, T) per action token; positions where ``mask`` is 0 are padding
            after each row's last token (the episode ends there: no bootstrap).
        mask: (B, T) 1 for real tokens, a prefix of each row.

    Returns:
        ``(advantages, returns)``, both (B, T), zero on padding.
    """
    mask_f = mask.to(values.dtype)
    B, T = rewards.shape
    advantages = torch.zeros_like(values)
    last = torch.zeros(B, dtype=values.dtype, device=values.device)
    for t in reversed(range(T)):
        next_value = values[:, t + 1] * mask_f[:, t + 1] if t + 1 < T else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = (delta + gamma * lam * last) * mask_f[:, t]
        advantages[:, t] = last
    returns = (advantages + values) * mask_f
    return advantages, returns


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_coef: float,
    is_weight: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO clipped surrogate (to minimise) and its diagnostics (clip fraction, approx. KL).

    ``is_weight`` (per token, no gradient) scales each token's surrogate: the truncated
    importance weight between the trainer's and the rollout engine's distributions.
    """
    log_ratio = logp - old_logp
    ratio = torch.exp(log_ratio)
    pg1 = -advantages * ratio
    pg2 = -advantages * torch.clamp(ratio, 1.0 - clip_coef, 1.0 + clip_coef)
    surrogate = torch.maximum(pg1, pg2)
    if is_weight is not None:
        surrogate = surrogate * is_weight
    loss = masked_mean(surrogate, mask)
    with torch.no_grad():
        stats = {
            "clipfrac": masked_mean(((ratio - 1.0).abs() > clip_coef).float(), mask),
            # The k3 estimator of KL(old || new) (CleanRL's approx_kl).
            "approx_kl": masked_mean(torch.expm1(log_ratio) - log_ratio, mask),
        }
    return loss, stats


def value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, vf_clip: float
) -> torch.Tensor:
    """``0.5 * max((V - R)^2, (V_clipped - R)^2)``; plain squared error when ``vf_clip`` is 0."""
    unclipped = (values - returns) ** 2
    if vf_clip <= 0:
        return 0.5 * masked_mean(unclipped, mask)
    clipped_values = old_values + torch.clamp(values - old_values, -vf_clip, vf_clip)
    clipped = (clipped_values - returns) ** 2
    return 0.5 * masked_mean(torch.maximum(unclipped, clipped), mask)


def truncated_is_weight(trainer_logp: torch.Tensor, rollout_logp: torch.Tensor, cap: float) -> torch.Tensor:
    """``min(exp(trainer_logp - rollout_logp), cap)``: how much more likely the trainer finds each
    sampled token than the engine that sampled it, capped so rare tokens cannot blow the gradient up."""
    return torch.exp(trainer_logp - rollout_logp).clamp(max=cap)


def mismatch_stats(trainer_logp: torch.Tensor, rollout_logp: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
    """Rollout↔trainer log-prob mismatch over the masked tokens: mean and max ``|Δlogp|``
    (``logp_gap_mean``, ``logp_gap``) and the fraction of ratios outside [0.9, 1.1] (``ratio_outside``)."""
    diff = (trainer_logp - rollout_logp).abs() * mask
    ratio = torch.exp(trainer_logp - rollout_logp)
    outside = ((ratio < 0.9) | (ratio > 1.1)).float()
    return {
        "logp_gap_mean": float(masked_mean(diff, mask)),
        "logp_gap": float(diff.max()) if diff.numel() else 0.0,
        "ratio_outside": float(masked_mean(outside, mask)),
    }


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the categorical distribution of each row of ``logits``."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def turn_reward_tensor(episodes: Sequence[Episode], lengths: Sequence[Sequence[int]], width: int) -> torch.Tensor:
    """(B, width) environment rewards: each turn's reward on its last action token.

    ``lengths[b]`` are the token counts of episode b's turns, in order. When an episode
    carries no per-turn rewards, its total reward goes on its last token.
    """
    out = torch.zeros(len(episodes), width)
    for b, (ep, turn_lens) in enumerate(zip(episodes, lengths)):
        per_turn = list(ep.metrics.get("turn_rewards") or [])
        if len(per_turn) != len(turn_lens):
            per_turn = [0.0] * (len(turn_lens) - 1) + [float(ep.reward)]
        end = 0
        for n, r in zip(turn_lens, per_turn):
            end += n
            if n > 0:
                out[b, end - 1] += r
    return out


# -- forward over stitched episodes ------------------------------------------------


@dataclass
class ActionOutputs:
    """Per action token of a batch of episodes, packed as (B, T) in generation order.

    Attributes:
        logp: log-probability of the sampled token.
        mask: 1 on real action tokens (a prefix of each row).
        values: value estimate of the state before the token (None without a value head).
        entropy: entropy of the policy at that token (None unless asked for).
    """

    logp: torch.Tensor
    mask: torch.Tensor
    values: torch.Tensor | None = None
    entropy: torch.Tensor | None = None


def action_outputs(
    model: Any, episodes: Sequence[Episode], pad_id: int, need_entropy: bool = False,
    micro_batch_size: int = 0, entropy_grad: bool = True, temperature: float = 1.0,
) -> ActionOutputs:
    """Stitched forwards of ``model`` over ``episodes``: per-action-token log-probs, values, entropy.

    ``model`` is a ``PolicyWithValue`` (possibly wrapped by accelerate/DDP, see
    :func:`expose_config`); the stitched masks make each token see exactly what it saw
    at rollout time, so at the rollout weights these log-probs equal the recorded ones
    (the rollout's sampling ``temperature`` must be passed: both score ``logits / temperature``).
    With ``micro_batch_size`` the episodes go through in groups of that many, each
    stitched (and masked) on its own, so no mask ever spans the whole rollout.
    ``entropy_grad=False`` computes the entropy outside the autograd graph (for logging).
    """
    episodes = list(episodes)
    if 0 < micro_batch_size < len(episodes):
        parts = [
            action_outputs(model, episodes[i : i + micro_batch_size], pad_id, need_entropy, 0, entropy_grad, temperature)
            for i in range(0, len(episodes), micro_batch_size)
        ]
        return _concat(parts)
    inner = getattr(model, "module", model)
    attn = getattr(inner.config, "_attn_implementation", None) or "eager"
    param = next(inner.parameters())
    batch = stitch(episodes, pad_id=pad_id, attn_implementation=attn, dtype=param.dtype, device=param.device)
    out = stitched_forward(model, batch, with_entropy=need_entropy, entropy_grad=entropy_grad, temperature=temperature)
    pack = _packer(batch.action_index[:, 0], len(episodes))
    logp = out["logprobs"]
    return ActionOutputs(
        logp=pack(logp),
        mask=pack(torch.ones_like(logp)),
        values=pack(out["values"]) if out["values"] is not None else None,
        entropy=pack(out["entropy"]) if out["entropy"] is not None else None,
    )


def _concat(parts: list[ActionOutputs]) -> ActionOutputs:
    """Stack micro-batches' (b, T_i) outputs into one (B, max T) batch, right-padded with zeros."""
    width = max(p.logp.shape[1] for p in parts)

    def cat(xs: list[torch.Tensor | None]) -> torch.Tensor | None:
        if any(x is None for x in xs):
            return None
        return torch.cat([torch.nn.functional.pad(x, (0, width - x.shape[1])) for x in xs], dim=0)  # type: ignore[union-attr]

    return ActionOutputs(
        logp=cat([p.logp for p in parts]), mask=cat([p.mask for p in parts]),  # type: ignore[arg-type]
        values=cat([p.values for p in parts]), entropy=cat([p.entropy for p in parts]),
    )


def expose_config(model: Any) -> Any:
    """Let a DDP-wrapped policy answer ``.config`` (the stitched forward reads the attention
    implementation from it) while its forward still goes through the wrapper's gradient sync."""
    inner = getattr(model, "module", None)
    if inner is not None and not hasattr(model, "config"):
        model.config = inner.config
    return model


def _packer(rows: torch.Tensor, batch_size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Pack a flat per-action-token tensor (ordered by episode) into right-padded (B, T)."""
    counts = torch.bincount(rows, minlength=batch_size)
    width = int(counts.max()) if counts.numel() else 0
    starts = torch.cumsum(counts, 0) - counts
    within = torch.arange(rows.numel(), device=rows.device) - starts[rows]

    def pack(flat: torch.Tensor) -> torch.Tensor:
        out = flat.new_zeros(batch_size, width)
        out[rows, within] = flat
        return out

    return pack


def recorded_logprobs(episodes: Sequence[Episode], width: int) -> tuple[torch.Tensor, list[list[int]]]:
    """(B, width) rollout-time log-probs in generation order, and each episode's turn lengths."""
    out = torch.zeros(len(episodes), width)
    lengths = []
    for b, ep in enumerate(episodes):
        flat = [lp for turn in ep.turns for lp in turn.logprobs]
        out[b, : len(flat)] = torch.tensor(flat, dtype=torch.float32)
        lengths.append([len(turn.logprobs) for turn in ep.turns])
    return out, lengths


# -- one iteration ---------------------------------------------------------------------


@dataclass
class PPOBatch:
    """Everything the update needs, per action token, packed (B, T)."""

    episodes: list[Episode]
    old_logp: torch.Tensor
    old_values: torch.Tensor
    ref_logp: torch.Tensor | None
    advantages: torch.Tensor
    returns: torch.Tensor
    mask: torch.Tensor
    stats: dict[str, float]
    rollout_logp: torch.Tensor | None = None
    is_weight: torch.Tensor | None = None
    temperature: float = 1.0


@torch.no_grad()
def prepare_batch(
    model: Any,
    ref_model: Any | None,
    episodes: Sequence[Episode],
    cfg: PPOConfig,
    pad_id: int,
    temperature: float = 1.0,
    all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> PPOBatch:
    """Old log-probs, values, reference log-probs, KL-shaped rewards, GAE advantages and returns for a rollout.

    ``all_reduce`` sums a tensor over processes (advantages are whitened over all of them).
    """
    episodes = list(episodes)
    current = action_outputs(model, episodes, pad_id, micro_batch_size=cfg.micro_batch_size, temperature=temperature)
    mask = current.mask.cpu()
    width = mask.shape[1]
    rollout_logp, lengths = recorded_logprobs(episodes, width)
    trainer_logp = current.logp.float().cpu() * mask
    old_logp = trainer_logp if cfg.recompute_old_logp else rollout_logp
    is_weight = truncated_is_weight(trainer_logp, rollout_logp, cfg.tis_cap) * mask if cfg.tis_cap is not None else None
    old_values = current.values.float().cpu() if current.values is not None else torch.zeros_like(old_logp)
    rewards = turn_reward_tensor(episodes, lengths, width)
    ref_logp = None
    kl = torch.zeros_like(old_logp)
    if cfg.kl_coef > 0 and ref_model is not None:
        ref_logp = action_outputs(ref_model, episodes, pad_id, micro_batch_size=cfg.micro_batch_size, temperature=temperature).logp.float().cpu()
        kl = KL_ESTIMATORS[cfg.kl_estimator](old_logp, ref_logp) * mask
        if cfg.kl_in_reward:
            rewards = rewards - cfg.kl_coef * kl
    advantages, returns = compute_gae(rewards, old_values, mask, cfg.gamma, cfg.lam)
    if cfg.whiten_advantages:
        advantages = masked_whiten(advantages, mask, all_reduce=all_reduce)
    stats = {
        "kl": float(masked_mean(kl, mask)),
        "action_tokens": float(mask.sum()),
        **mismatch_stats(trainer_logp, rollout_logp, mask),
    }
    if is_weight is not None:
        stats["tis_weight_mean"] = float(masked_mean(is_weight, mask))
    return PPOBatch(episodes, old_logp, old_values, ref_logp, advantages, returns, mask, stats, rollout_logp, is_weight, temperature)


def ppo_loss(model: Any, batch: PPOBatch, index: Sequence[int], cfg: PPOConfig, pad_id: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The PPO loss on the episodes ``index`` of ``batch`` (a micro-batch)."""
    idx = torch.tensor(list(index))
    # Without an entropy bonus the entropy is only logged: no autograd graph over (tokens, vocab) for it.
    out = action_outputs(model, [batch.episodes[i] for i in index], pad_id, need_entropy=True, entropy_grad=cfg.ent_coef != 0,
                         temperature=batch.temperature)
    device = out.logp.device
    width = out.logp.shape[1]

    def take(x: torch.Tensor) -> torch.Tensor:
        return x[idx, :width].to(device)

    mask = take(batch.mask)
    is_weight = take(batch.is_weight) if batch.is_weight is not None else None
    pg_loss, stats = policy_loss(out.logp, take(batch.old_logp), take(batch.advantages), mask, cfg.clip_coef, is_weight)
    loss = pg_loss
    v_loss = torch.zeros((), device=device)
    if out.values is not None:
        v_loss = value_loss(out.values.float(), take(batch.old_values), take(batch.returns), mask, cfg.vf_clip)
        loss = loss + cfg.vf_coef * v_loss
    entropy = masked_mean(out.entropy, mask) if out.entropy is not None else torch.zeros((), device=device)
    loss = loss - cfg.ent_coef * entropy
    if cfg.kl_coef > 0 and not cfg.kl_in_reward and batch.ref_logp is not None:
        kl = masked_mean(KL_ESTIMATORS[cfg.kl_estimator](out.logp, take(batch.ref_logp)), mask)
        loss = loss + cfg.kl_coef * kl
    stats.update(pg_loss=pg_loss.detach(), value_loss=v_loss.detach(), entropy=entropy.detach())
    return loss, stats


class UpdateSchedule(Protocol):
    """How a rollout is cut into optimizer steps (:class:`PPOConfig` and ``GRPOConfig`` both are one)."""

    update_epochs: int
    num_minibatches: int
    micro_batch_size: int
    max_grad_norm: float


def minibatch_update(
    model: Any,
    optimizer: Any,
    mask: torch.Tensor,
    loss_fn: Callable[[list[int]], tuple[torch.Tensor, dict[str, torch.Tensor]]],
    schedule: UpdateSchedule,
    accelerator: Any = None,
    scheduler: Any = None,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """``update_epochs`` passes of shuffled mini-batches of episodes, micro-batch gradient
    accumulation, clipping, one optimizer step per mini-batch; returns the mean diagnostics.

    ``mask`` (episodes, T) marks action tokens; ``loss_fn(episode_indices)`` returns a token-mean
    loss over those episodes and its diagnostics. Shared by PPO and GRPO.
    """
    n = mask.shape[0]
    totals: dict[str, float] = {}
    count = 0
    model.train()
    for _ in range(schedule.update_epochs):
        order = torch.randperm(n, generator=generator).tolist()
        for minibatch in _split(order, schedule.num_minibatches):
            size = schedule.micro_batch_size
            micro = [minibatch[i : i + size] for i in range(0, len(minibatch), size)]
            tokens = float(mask[minibatch].sum()) or 1.0
            optimizer.zero_grad(set_to_none=True)
            for part in micro:
                loss, stats = loss_fn(part)
                # Weight micro-batches by their share of the mini-batch's action tokens so the
                # accumulated gradient is that of the token mean over the whole mini-batch.
                weight = float(mask[part].sum()) / tokens
                if accelerator is not None:
                    accelerator.backward(loss * weight)
                else:
                    (loss * weight).backward()
                for k, v in stats.items():
                    totals[k] = totals.get(k, 0.0) + float(v) * weight
            params = [p for p in model.parameters() if p.requires_grad]
            if accelerator is not None:
                grad_norm = accelerator.clip_grad_norm_(params, schedule.max_grad_norm)
            else:
                grad_norm = torch.nn.utils.clip_grad_norm_(params, schedule.max_grad_norm)
            totals["grad_norm"] = totals.get("grad_norm", 0.0) + float(grad_norm)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            count += 1
    return {k: v / max(count, 1) for k, v in totals.items()}


def sum_over_processes(accelerator: Any) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """A function summing a tensor over ``accelerator``'s processes (None with a single process)."""
    if accelerator is None or accelerator.num_processes == 1:
        return None

    def total(t: torch.Tensor) -> torch.Tensor:
        return accelerator.reduce(t.to(accelerator.device), "sum").to(t.device)

    return total


def _split(items: list[int], parts: int) -> list[list[int]]:
    """``items`` in ``parts`` contiguous chunks of near-equal size (empty chunks dropped)."""
    parts = max(1, min(parts, len(items)))
    size, extra = divmod(len(items), parts)
    out, start = [], 0
    for p in range(parts):
        end = start + size + (1 if p < extra else 0)
        out.append(items[start:end])
        start = end
    return [c for c in out if c]


def ppo_iteration(
    model: Any,
    ref_model: Any | None,
    optimizer: Any,
    episodes: Sequence[Episode],
    cfg: PPOConfig,
    pad_id: int,
    accelerator: Any = None,
    scheduler: Any = None,
    generator: torch.Generator | None = None,
    temperature: float = 1.0,
) -> dict[str, float]:
    """Prepare (old log-probs, values, KL, GAE) and update on one rollout; returns the iteration's scalars.

    ``temperature`` is the rollout's sampling temperature; ``generator`` (CPU) shuffles the mini-batches.
    """
    model.eval()
    batch = prepare_batch(model, ref_model, episodes, cfg, pad_id, temperature, sum_over_processes(accelerator))
    stats = minibatch_update(
        model, optimizer, batch.mask, lambda part: ppo_loss(model, batch, part, cfg, pad_id), cfg,
        accelerator, scheduler, generator,
    )
    stats.update(batch.stats)
    stats["value_mean"] = float(masked_mean(batch.old_values, batch.mask))
    return stats
