"""What the PPO/GRPO update keeps in memory: masks per micro-batch, no entropy graph without a bonus."""

from __future__ import annotations

import pytest
import torch

from mem1_agent.ppo import PPOConfig, action_outputs, ppo_loss, prepare_batch
from train_fixtures import tiny_policy, tiny_rollout  # noqa: F401  (fixtures)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _record_masks(policy) -> tuple[list[tuple[int, ...]], object]:
    """Shapes of the attention masks the decoder receives (a forward pre-hook; nothing replaced)."""
    shapes: list[tuple[int, ...]] = []

    def hook(module, args, kwargs):
        shapes.append(tuple(kwargs["attention_mask"].shape))

    return shapes, policy.backbone().register_forward_pre_hook(hook, with_kwargs=True)


def test_prepare_batch_masks_one_micro_batch_at_a_time(tiny_rollout):
    model, ref, tok, episodes = tiny_rollout
    whole = prepare_batch(model, ref, episodes, PPOConfig(micro_batch_size=len(episodes)), tok.pad_token_id)
    pol_shapes, h1 = _record_masks(model)
    ref_shapes, h2 = _record_masks(ref)
    try:
        micro = prepare_batch(model, ref, episodes, PPOConfig(micro_batch_size=1), tok.pad_token_id)
    finally:
        h1.remove()
        h2.remove()
    # One stitched forward per episode for the values and one for the reference: never a mask
    # over the whole rollout.
    assert len(pol_shapes) == len(ref_shapes) == len(episodes) == 4
    longest = max(s[-1] for s in pol_shapes)
    assert all(s[0] == 1 for s in pol_shapes + ref_shapes)
    assert longest < sum(s[-1] for s in pol_shapes)
    # Same numbers as one big batch.
    for name in ("old_logp", "old_values", "ref_logp", "advantages", "returns", "mask"):
        assert torch.allclose(getattr(micro, name), getattr(whole, name), atol=1e-5), name
    assert micro.stats["logp_gap"] < 1e-4


def _graph_size(t: torch.Tensor) -> int:
    seen, todo = set(), [t.grad_fn]
    while todo:
        fn = todo.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        todo.extend(f for f, _ in fn.next_functions)
    return len(seen)


def test_entropy_graph_only_with_an_entropy_bonus(tiny_rollout):
    model, ref, tok, episodes = tiny_rollout
    cfg0 = PPOConfig(ent_coef=0.0, kl_coef=0.0)
    batch = prepare_batch(model, ref, episodes, cfg0, tok.pad_token_id)
    model.train()
    loss0, stats0 = ppo_loss(model, batch, [0, 1], cfg0, tok.pad_token_id)
    loss1, stats1 = ppo_loss(model, batch, [0, 1], PPOConfig(ent_coef=0.01, kl_coef=0.0), tok.pad_token_id)
    # The entropy is still logged, and equal, but only the bonus puts its ops into the graph.
    assert float(stats0["entropy"]) > 0 and torch.allclose(stats0["entropy"], stats1["entropy"])
    assert _graph_size(loss0) < _graph_size(loss1)
    assert torch.allclose(loss1, loss0 - 0.01 * stats1["entropy"], atol=1e-6)
    out = action_outputs(model, episodes[:2], tok.pad_token_id, need_entropy=True, entropy_grad=False)
    assert out.entropy is not None and not out.entropy.requires_grad and out.logp.requires_grad
