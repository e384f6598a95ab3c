"""GRPO: group-normalised advantages and one critic-free update on a tiny model."""

from __future__ import annotations

import math

import pytest
import torch

from mem1_agent.grpo import GRPOConfig, group_advantages, group_seeds, grpo_iteration
from mem1_agent.policy import LMPolicy, SamplingConfig
from mem1_agent.rollout import rollout
from train_fixtures import toy_envs


def test_group_seeds_repeat_each_task():
    assert group_seeds([7, 9], 3) == [7, 7, 7, 9, 9, 9]


def test_group_advantages_normalise_within_each_group():
    rewards = torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0])
    adv = group_advantages(rewards, 4)
    std = torch.tensor([1.0, 0.0, 0.0, 1.0]).std()
    assert torch.allclose(adv[:4], (torch.tensor([1.0, 0.0, 0.0, 1.0]) - 0.5) / (std + 1e-6))
    assert torch.equal(adv[4:], torch.zeros(4))  # a group that scored alike teaches nothing
    assert torch.allclose(group_advantages(rewards, 4, scale_by_std=False)[:4], torch.tensor([0.5, -0.5, -0.5, 0.5]))
    with pytest.raises(ValueError, match="groups of 3"):
        group_advantages(rewards, 3)


def test_config_needs_a_real_group():
    with pytest.raises(ValueError, match="group_size"):
        GRPOConfig(group_size=1)


def test_grpo_iteration_moves_the_policy_towards_better_episodes():
    from mem1_agent.models import frozen_reference, load_policy

    model, tok = load_policy("tiny", value_head=False, seed=0)
    ref = frozen_reference(model)
    policy = LMPolicy(model, tok, sampling=SamplingConfig(max_new_tokens=10), generator=torch.Generator().manual_seed(0))
    cfg = GRPOConfig(group_size=2, micro_batch_size=1, kl_coef=0.01)
    episodes, _ = rollout(toy_envs(tok), policy, group_seeds([0, 1], cfg.group_size))
    # The tiny random model scores 0 everywhere; give the groups distinct outcomes to learn from.
    for i, ep in enumerate(episodes):
        ep.reward = float(i % 2)
    before = [p.detach().clone() for p in model.parameters()]
    logp_before = _mean_logp(model, episodes, tok.pad_token_id)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    stats = grpo_iteration(model, ref, opt, episodes, cfg, tok.pad_token_id, generator=torch.Generator().manual_seed(0))
    assert math.isfinite(stats["pg_loss"]) and math.isfinite(stats["kl"]) and stats["advantage_abs"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    logp_after = _mean_logp(model, episodes, tok.pad_token_id)
    # Rewarded episodes (odd) became more likely relative to unrewarded ones (even).
    gain = (logp_after - logp_before)
    assert gain[1::2].mean() > gain[0::2].mean()


@torch.no_grad()
def _mean_logp(model, episodes, pad_id):
    from mem1_agent.ppo import action_outputs

    out = action_outputs(model, episodes, pad_id)
    return (out.logp * out.mask).sum(1) / out.mask.sum(1)
