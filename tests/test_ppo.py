"""PPO maths (GAE, clipped losses, KL estimators, whitening) and one PPO iteration on a tiny model."""

from __future__ import annotations

import math

import pytest
import torch

from mem1_agent.ppo import (
    PPOConfig,
    compute_gae,
    kl_k1,
    kl_k3,
    masked_mean,
    masked_whiten,
    mismatch_stats,
    policy_loss,
    ppo_iteration,
    prepare_batch,
    truncated_is_weight,
    turn_reward_tensor,
    value_loss,
)
from mem1_agent.trajectory import Episode, SegmentTokens, TurnRecord
from mem1_agent.models import load_policy
from train_fixtures import tiny_policy, tiny_rollout  # noqa: F401  (fixtures)


def test_gae_matches_a_hand_computed_example():
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.4, 0.3]])
    mask = torch.ones(1, 3)
    gamma, lam = 0.9, 0.8
    # delta_2 = 1 - 0.3 = 0.7                     A_2 = 0.7
    # delta_1 = 0 + 0.9*0.3 - 0.4 = -0.13         A_1 = -0.13 + 0.72*0.7 = 0.374
    # delta_0 = 0 + 0.9*0.4 - 0.5 = -0.14         A_0 = -0.14 + 0.72*0.374 = 0.12928
    adv, ret = compute_gae(rewards, values, mask, gamma, lam)
    assert torch.allclose(adv, torch.tensor([[0.12928, 0.374, 0.7]]), atol=1e-6)
    assert torch.allclose(ret, adv + values, atol=1e-6)


def test_gae_defaults_give_reward_to_go_minus_value_and_respect_padding():
    rewards = torch.tensor([[0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    values = torch.tensor([[0.1, 0.2, 9.0, 9.0], [0.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    adv, ret = compute_gae(rewards, values, mask, 1.0, 1.0)
    # Row 0 ends after two tokens: the padded values (9.0) must not be bootstrapped from.
    assert torch.allclose(adv[0], torch.tensor([1.9, 1.8, 0.0, 0.0]))
    assert torch.allclose(ret[0], torch.tensor([2.0, 2.0, 0.0, 0.0]))
    assert torch.allclose(adv[1], torch.ones(4))


def test_clipped_policy_loss_sign_and_values():
    mask = torch.ones(1, 1)
    cases = [
        # (ratio, advantage, expected loss = max(-A r, -A clip(r)))
        (1.5, 1.0, -1.2),  # positive advantage: gain capped at 1 + eps
        (0.5, 1.0, -0.5),  # positive advantage, ratio fell: unclipped (pessimistic)
        (1.5, -1.0, 1.5),  # negative advantage, ratio rose: unclipped
        (0.5, -1.0, 0.8),  # negative advantage: gain capped at 1 - eps
        (1.0, 2.0, -2.0),
    ]
    for ratio, adv, expected in cases:
        old = torch.zeros(1, 1)
        logp = torch.full((1, 1), math.log(ratio))
        loss, stats = policy_loss(logp, old, torch.full((1, 1), adv), mask, clip_coef=0.2)
        assert loss.item() == pytest.approx(expected, abs=1e-6), (ratio, adv)
        assert stats["clipfrac"].item() == (1.0 if abs(ratio - 1) > 0.2 else 0.0)


def test_policy_loss_gradient_pushes_up_good_actions():
    logp = torch.zeros(1, 2, requires_grad=True)
    loss, _ = policy_loss(logp, torch.zeros(1, 2), torch.tensor([[1.0, -1.0]]), torch.ones(1, 2), 0.2)
    loss.backward()
    assert logp.grad[0, 0] < 0 < logp.grad[0, 1]  # descent raises logp of the positive-advantage token


def test_value_loss_clipping():
    mask = torch.ones(1, 1)
    old, ret = torch.zeros(1, 1), torch.ones(1, 1)
    # V moved from 0 to 0.5 (clipped to 0.2): max((0.5-1)^2, (0.2-1)^2) / 2 = 0.32
    assert value_loss(torch.full((1, 1), 0.5), old, ret, mask, 0.2).item() == pytest.approx(0.32)
    assert value_loss(torch.full((1, 1), 0.5), old, ret, mask, 0.0).item() == pytest.approx(0.125)


def test_kl_estimators_on_known_distributions():
    p = torch.tensor([0.5, 0.3, 0.2])
    q = torch.tensor([0.2, 0.5, 0.3])
    exact = float((p * (p / q).log()).sum())
    gen = torch.Generator().manual_seed(0)
    x = torch.multinomial(p, 200_000, replacement=True, generator=gen)
    logp, logq = p.log()[x], q.log()[x]
    k1, k3 = kl_k1(logp, logq), kl_k3(logp, logq)
    assert k1.mean().item() == pytest.approx(exact, rel=0.03)
    assert k3.mean().item() == pytest.approx(exact, rel=0.03)
    assert (k3 >= 0).all() and (k1 < 0).any()
    # Per token, exactly: k1 = log p - log q, k3 = q/p - 1 - log(q/p).
    assert kl_k1(torch.tensor(-1.0), torch.tensor(-2.0)).item() == pytest.approx(1.0)
    assert kl_k3(torch.tensor(-1.0), torch.tensor(-2.0)).item() == pytest.approx(math.exp(-1) - 1 + 1)


def test_masked_whiten_and_mean():
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    assert masked_mean(x, mask).item() == pytest.approx(2.0)
    w = masked_whiten(x, mask)
    assert w[0, 3] == 0
    assert masked_mean(w, mask).item() == pytest.approx(0.0, abs=1e-6)
    assert masked_mean(w**2, mask).item() == pytest.approx(1.0, abs=1e-4)


def _episode(turn_lens: list[int], turn_rewards: list[float] | None, reward: float) -> Episode:
    segments = {0: SegmentTokens(0, "prompt", -1, (1, 2))}
    turns = []
    for t, n in enumerate(turn_lens):
        segments[2 * t + 1] = SegmentTokens(2 * t + 1, "action", t, tuple(range(3, 3 + n)))
        segments[2 * t + 2] = SegmentTokens(2 * t + 2, "observation", t, (5,))
        turns.append(TurnRecord(2 * t + 1, (0,), [0.0] * n))
    metrics = {"turn_rewards": turn_rewards} if turn_rewards is not None else {}
    return Episode(segments, turns, reward, metrics)


def test_turn_rewards_land_on_each_turns_last_token():
    eps = [_episode([2, 3], [-0.5, 2.0], 1.5), _episode([1, 1], None, 1.0)]
    r = turn_reward_tensor(eps, [[2, 3], [1, 1]], 5)
    assert r[0].tolist() == [0.0, -0.5, 0.0, 0.0, 2.0]
    assert r[1].tolist() == [0.0, 1.0, 0.0, 0.0, 0.0]


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="kl_estimator"):
        PPOConfig(kl_estimator="k7")
    with pytest.raises(ValueError, match="micro_batch_size"):
        PPOConfig(micro_batch_size=0)


@pytest.mark.parametrize("kl_in_reward", [True, False])
def test_ppo_iteration_on_a_tiny_model_changes_parameters(tiny_rollout, kl_in_reward):
    model, ref, tok, episodes = tiny_rollout
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    cfg = PPOConfig(num_minibatches=2, micro_batch_size=1, ent_coef=0.01, kl_coef=0.01, kl_in_reward=kl_in_reward, kl_estimator="k3")
    stats = ppo_iteration(model, ref, opt, episodes, cfg, tok.pad_token_id, generator=torch.Generator().manual_seed(0))
    for key in ("pg_loss", "value_loss", "entropy", "clipfrac", "approx_kl", "kl", "grad_norm"):
        assert math.isfinite(stats[key]), key
    # The stitched forward reproduces the rollout's log-probs before any update.
    assert stats["logp_gap"] < 1e-4
    assert stats["action_tokens"] == sum(len(t.logprobs) for ep in episodes for t in ep.turns)
    changed = [not torch.equal(a, b) for a, b in zip(before, model.parameters())]
    assert all(changed), "every parameter (LM and value head) should move"


def test_ppo_iteration_with_a_separate_critic(tiny_rollout):
    _, ref, tok, episodes = tiny_rollout
    model, _ = load_policy("tiny", seed=0, critic="tiny")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    stats = ppo_iteration(model, ref, opt, episodes, PPOConfig(num_minibatches=2), tok.pad_token_id, generator=torch.Generator().manual_seed(0))
    # Same actor weights as the rollout's policy, so the stitched log-probs still match the recorded ones.
    assert stats["logp_gap"] < 1e-4 and math.isfinite(stats["value_loss"]) and stats["value_loss"] > 0
    moved = {n for n, p in model.named_parameters() if not torch.equal(before[n], p)}
    assert any(n.startswith("critic.") for n in moved) and any(n.startswith("lm.") for n in moved)
    assert any(n.startswith("value_head.") for n in moved)


def test_rollout_trainer_mismatch_and_truncated_importance_weights_on_a_hand_made_case():
    trainer = torch.tensor([[-1.0, -2.0, -0.5, 0.0]])
    rollout_lp = torch.tensor([[-1.0, -2.2, -0.1, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    stats = mismatch_stats(trainer, rollout_lp, mask)
    assert stats["logp_gap_mean"] == pytest.approx(0.2, abs=1e-6)  # (0 + 0.2 + 0.4) / 3
    assert stats["logp_gap"] == pytest.approx(0.4, abs=1e-6)
    assert stats["ratio_outside"] == pytest.approx(2 / 3)  # e^0.2 = 1.22 and e^-0.4 = 0.67
    w = truncated_is_weight(trainer, rollout_lp, cap=1.1)
    assert w[0, :3].tolist() == pytest.approx([1.0, 1.1, math.exp(-0.4)], abs=1e-6)
    # At ratio 1 the surrogate of each token is -A, scaled by its weight: (-1 - 1.1 + 2 e^-0.4) / 3.
    adv = torch.tensor([[1.0, 1.0, -2.0, 5.0]])
    loss, _ = policy_loss(trainer, trainer, adv, mask, 0.2, is_weight=w)
    assert loss.item() == pytest.approx((-1.0 - 1.1 + 2 * math.exp(-0.4)) / 3, abs=1e-6)
    with pytest.raises(ValueError, match="tis_cap"):
        PPOConfig(tis_cap=0.0)


@pytest.mark.parametrize("recompute", [True, False])
def test_prepare_batch_takes_old_logprobs_from_the_trainer_and_weights_the_mismatch(tiny_rollout, recompute):
    model, ref, tok, episodes = tiny_rollout
    recorded = episodes[0].turns[0].logprobs[0]
    episodes[0].turns[0].logprobs[0] = recorded + 0.3  # as if the rollout engine disagreed by 0.3 nats
    cfg = PPOConfig(recompute_old_logp=recompute, tis_cap=2.0 if recompute else None, kl_coef=0.0)
    batch = prepare_batch(model, ref, episodes, cfg, tok.pad_token_id)
    tokens = batch.stats["action_tokens"]
    assert batch.rollout_logp[0, 0].item() == pytest.approx(recorded + 0.3, abs=1e-6)
    assert batch.old_logp[0, 0].item() == pytest.approx(recorded + (0.0 if recompute else 0.3), abs=1e-4)
    assert batch.stats["logp_gap"] == pytest.approx(0.3, abs=1e-4)
    assert batch.stats["logp_gap_mean"] == pytest.approx(0.3 / tokens, abs=1e-4)
    assert batch.stats["ratio_outside"] == pytest.approx(1 / tokens)
    if recompute:
        assert batch.is_weight[0, 0].item() == pytest.approx(math.exp(-0.3), abs=1e-4)
        others = batch.is_weight[batch.mask.bool()][1:]
        assert torch.allclose(others, torch.ones_like(others), atol=1e-4)
    else:
        assert batch.is_weight is None
        with pytest.raises(ValueError, match="recompute_old_logp"):  # the ratio already corrects the mismatch
            PPOConfig(recompute_old_logp=False, tis_cap=2.0)


def test_ppo_update_raises_logprobs_of_positive_advantage_tokens_and_lowers_negative_ones(tiny_rollout):
    model, _, tok, episodes = tiny_rollout
    for i, ep in enumerate(episodes):  # even episodes succeed, odd ones fail
        ep.reward, ep.metrics["turn_rewards"] = (1.0 if i % 2 == 0 else -1.0), None
    cfg = PPOConfig(num_minibatches=1, micro_batch_size=4, vf_coef=0.0, kl_coef=0.0, max_grad_norm=1e9)
    batch = prepare_batch(model, None, episodes, cfg, tok.pad_token_id)
    positive, negative = (batch.advantages > 0) & batch.mask.bool(), (batch.advantages < 0) & batch.mask.bool()
    assert positive.any() and negative.any()
    before = batch.old_logp
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    ppo_iteration(model, None, opt, episodes, cfg, tok.pad_token_id, generator=torch.Generator().manual_seed(0))
    after = prepare_batch(model, None, episodes, cfg, tok.pad_token_id).old_logp
    change = after - before
    assert change[positive].mean() > 0 > change[negative].mean()
