"""LMPolicy generation (stops, log-probs, left padding, KV reuse) and batched rollout."""

from __future__ import annotations

import pytest
import torch

from mem1_agent.policy import LMPolicy, SamplingConfig
from mem1_agent.rollout import rollout
from mem1_agent.trajectory import stitch, stitched_forward
from train_fixtures import tiny_policy, toy_envs  # noqa: F401  (fixtures)


def fresh_logprobs(model, context: list[int], ids: list[int], temperature: float = 1.0) -> torch.Tensor:
    """Log-probs of ``ids`` after ``context`` from one unpadded forward, no cache, at ``temperature``."""
    seq = torch.tensor([context + ids])
    logits = model.lm(seq).logits[0].float() / temperature
    logp = torch.log_softmax(logits[len(context) - 1 : -1], dim=-1)
    return logp.gather(-1, torch.tensor(ids)[:, None]).squeeze(-1)


def contexts(tok) -> list[list[int]]:
    texts = ["Look up alpha.", "Look up the values of the keys and answer them in order, separated by ';'.", "<IS> beta </IS>"]
    return [tok(t, add_special_tokens=False)["input_ids"] for t in texts]


def test_recorded_logprobs_equal_a_fresh_forward(tiny_policy):
    model, tok = tiny_policy
    policy = LMPolicy(model, tok, sampling=SamplingConfig(max_new_tokens=10), generator=torch.Generator().manual_seed(0))
    ctxs = contexts(tok)
    with torch.no_grad():
        for ctx, gen in zip(ctxs, policy.generate(ctxs)):
            assert len(gen.ids) == len(gen.logprobs) > 0
            assert torch.allclose(fresh_logprobs(model, ctx, gen.ids), torch.tensor(gen.logprobs), atol=1e-5)


def test_tempered_sampling_records_tempered_logprobs(tiny_policy):
    # The recorded log-probs are those of softmax(logits / T), the distribution sampled from
    # (before top-k / top-p filtering), not of the raw logits.
    model, tok = tiny_policy
    cfg = SamplingConfig(max_new_tokens=8, temperature=0.7, top_k=20, top_p=0.9)
    policy = LMPolicy(model, tok, sampling=cfg, generator=torch.Generator().manual_seed(1))
    ctxs = contexts(tok)
    with torch.no_grad():
        for ctx, gen in zip(ctxs, policy.generate(ctxs)):
            recorded = torch.tensor(gen.logprobs)
            assert torch.allclose(fresh_logprobs(model, ctx, gen.ids, temperature=0.7), recorded, atol=1e-5)
            assert not torch.allclose(fresh_logprobs(model, ctx, gen.ids), recorded, atol=1e-3)


def test_stitched_forward_at_the_sampling_temperature_reproduces_a_tempered_rollout(tiny_policy):
    model, tok = tiny_policy
    policy = LMPolicy(model, tok, sampling=SamplingConfig(max_new_tokens=10, temperature=0.6), generator=torch.Generator().manual_seed(3))
    episodes, _ = rollout(toy_envs(tok, memories=("mem1", "full")), policy, [0, 1])
    batch = stitch(episodes, pad_id=tok.pad_token_id)
    with torch.no_grad():
        tempered = stitched_forward(model, batch, temperature=0.6)["logprobs"]
        raw = stitched_forward(model, batch)["logprobs"]
    assert torch.allclose(tempered, batch.rollout_logprobs, atol=1e-4)
    assert (raw - batch.rollout_logprobs).abs().max() > 1e-2


def test_left_padding_with_uneven_lengths_matches_unbatched_greedy(tiny_policy):
    model, tok = tiny_policy
    policy = LMPolicy(model, tok, sampling=SamplingConfig(max_new_tokens=12, temperature=0.0))
    ctxs = contexts(tok)
    assert len({len(c) for c in ctxs}) == 3
    batched = policy.generate(ctxs)
    for ctx, gen in zip(ctxs, batched):
        alone = policy.generate([ctx])[0]
        assert gen.ids == alone.ids
        assert torch.allclose(torch.tensor(gen.logprobs), torch.tensor(alone.logprobs), atol=1e-5)


def test_top_k_one_is_greedy(tiny_policy):
    model, tok = tiny_policy
    ctxs = contexts(tok)
    greedy = LMPolicy(model, tok, sampling=SamplingConfig(max_new_tokens=6, temperature=0.0)).generate(ctxs)
    top1 = LMPolicy(model, tok, sampling=SamplingConfig(max_new_tokens=6, top_k=1), generator=torch.Generator().manual_seed(3)).generate(ctxs)
    assert [g.ids for g in greedy] == [g.ids for g in top1]


def test_stops_at_a_closing_tag_split_over_tokens(tiny_policy):
    model, tok = tiny_policy
    ctx = contexts(tok)[:1]
    free = LMPolicy(model, tok, sampling=SamplingConfig(max_new_tokens=12, temperature=0.0), stop_strings=[]).generate(ctx)[0]
    assert free.stop == "length" and len(free.ids) == 12
    # A stop string spanning generated tokens 4 and 5: generation must end right after token 5.
    stop = tok.decode(free.ids[4:6])
    first = tok.decode(free.ids).find(stop)
    stopped = LMPolicy(model, tok, sampling=SamplingConfig(max_new_tokens=12, temperature=0.0), stop_strings=[stop]).generate(ctx)[0]
    assert stopped.stop == "tag"
    assert stop in stopped.text and stopped.text.find(stop) == first
    assert stop not in tok.decode(stopped.ids[:-1])
    assert stopped.ids == free.ids[: len(stopped.ids)]


def test_closing_tags_of_the_tag_set_are_the_stop_strings(tiny_policy):
    model, tok = tiny_policy
    assert {"</query>", "</answer>"} <= set(LMPolicy(model, tok).stop_strings)
    assert "</search>" in LMPolicy(model, tok, tags="checkpoint").stop_strings


def test_kv_cache_is_reused_across_calls_and_stays_exact(tiny_policy):
    model, tok = tiny_policy
    policy = LMPolicy(model, tok, sampling=SamplingConfig(max_new_tokens=6), generator=torch.Generator().manual_seed(2))
    ctxs = contexts(tok)
    first = policy.generate(ctxs, keys=[0, 1, 2])
    obs = tok(" <info> alpha = 17 </info>", add_special_tokens=False)["input_ids"]
    longer = [c + g.ids + obs for c, g in zip(ctxs, first)]
    second = policy.generate(longer, prefix_lens=[len(c) + len(g.ids) for c, g in zip(ctxs, first)], keys=[0, 1, 2])
    assert all(g.reused > 0 for g in second)
    with torch.no_grad():
        for ctx, gen in zip(longer, second):
            assert torch.allclose(fresh_logprobs(model, ctx, gen.ids), torch.tensor(gen.logprobs), atol=1e-5)


def test_kv_reuse_with_rows_padded_beyond_the_cached_columns(tiny_policy):
    model, tok = tiny_policy
    policy = LMPolicy(model, tok, sampling=SamplingConfig(max_new_tokens=5), generator=torch.Generator().manual_seed(4))
    ctxs = contexts(tok)
    first = policy.generate(ctxs, keys=[0, 1, 2])
    # Row 1 grows a lot, rows 0 and 2 only by a token: they end up padded past the shared cached columns.
    grown = tok(" <info> alpha = 17. beta = 42. gamma = 3. delta = 88. </info>", add_special_tokens=False)["input_ids"]
    longer = [ctxs[0] + first[0].ids + grown[:1], ctxs[1] + first[1].ids + grown, ctxs[2] + first[2].ids + grown[:1]]
    second = policy.generate(longer, keys=[0, 1, 2])
    assert second[1].reused > 0
    with torch.no_grad():
        for ctx, gen in zip(longer, second):
            assert torch.allclose(fresh_logprobs(model, ctx, gen.ids), torch.tensor(gen.logprobs), atol=1e-5)


def test_sampling_config_validation():
    with pytest.raises(ValueError, match="top_p"):
        SamplingConfig(top_p=0.0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        SamplingConfig(max_new_tokens=0)


def test_rollout_batches_envs_and_episodes_stitch_back_exactly(tiny_policy):
    model, tok = tiny_policy
    envs = toy_envs(tok, memories=("mem1", "full", "window:1"))
    policy = LMPolicy(model, tok, sampling=SamplingConfig(max_new_tokens=10), generator=torch.Generator().manual_seed(0))
    seeds = [5, 6, 7, 8, 5]
    episodes, stats = rollout(envs, policy, seeds)
    assert len(episodes) == 5 and stats.episodes == 5
    assert stats.generated_tokens == sum(len(t.logprobs) for ep in episodes for t in ep.turns)
    assert stats.reused_tokens > 0  # the KV cache was reused across turns
    for ep in episodes:
        assert ep.turns and "turn_rewards" in ep.metrics and "peak_tokens" in ep.metrics
    batch = stitch(episodes, pad_id=tok.pad_token_id)
    with torch.no_grad():
        out = stitched_forward(model, batch)
    assert torch.allclose(out["logprobs"], batch.rollout_logprobs, atol=1e-4)


def test_rollout_uses_the_cache_api_without_deprecation_warnings(tiny_policy):
    """transformers 5.x deprecates ``past_key_values=``; rollout steps must use the current cache API."""
    import warnings

    model, tok = tiny_policy
    policy = LMPolicy(model, tok, sampling=SamplingConfig(max_new_tokens=6), generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        warnings.simplefilter("error", DeprecationWarning)
        episodes, stats = rollout(toy_envs(tok, memories=("full", "mem1")), policy, [0, 1, 2])
    assert stats.reused_tokens > 0 and len(episodes) == 3  # cached prefixes went through the new API too
    batch = stitch(episodes, pad_id=tok.pad_token_id)
    with torch.no_grad():
        assert torch.allclose(stitched_forward(model, batch)["logprobs"], batch.rollout_logprobs, atol=1e-4)


def _mixed_length_rollout(model, tok, continuous: bool, temperature: float = 0.0, seed: int = 0, max_batch_size: int = 0,
                          **sampling_kwargs):
    """Turns of uneven length (ending at a stop string, EOS or the token limit) on interchangeable slots.

    Which slot plays which episode depends on the schedule, so the slots are identical envs (as
    ``make_envs`` builds them): an episode's result then depends only on its seed.
    """
    envs = toy_envs(tok, memories=("mem1",) * 3, n_keys=3)
    sampling = SamplingConfig(max_new_tokens=9, temperature=temperature, continuous_batching=continuous, max_batch_size=max_batch_size,
                              **sampling_kwargs)
    # Stop strings a random model hits at varied points, so turns have uneven lengths.
    policy = LMPolicy(model, tok, sampling=sampling, stop_strings=["a", "e"], generator=torch.Generator().manual_seed(seed))
    return rollout(envs, policy, [3, 4, 5, 6, 7, 8, 9])


def _same_episodes(a, b, atol: float = 1e-5) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert [t.visible_ids for t in x.turns] == [t.visible_ids for t in y.turns]
        assert [x.action_ids(t) for t in range(len(x.turns))] == [y.action_ids(t) for t in range(len(y.turns))]
        assert torch.allclose(torch.tensor([v for t in x.turns for v in t.logprobs]), torch.tensor([v for t in y.turns for v in t.logprobs]), atol=atol)
        assert x.reward == y.reward


def test_continuous_batching_equals_static_batching_under_greedy_decoding(tiny_policy):
    model, tok = tiny_policy
    static, s_stats = _mixed_length_rollout(model, tok, continuous=False)
    cont, c_stats = _mixed_length_rollout(model, tok, continuous=True)
    lengths = {len(t.logprobs) for ep in static for t in ep.turns}
    assert len(lengths) > 2  # the workload really mixes turn lengths
    _same_episodes(static, cont)
    assert c_stats.generated_tokens == s_stats.generated_tokens and c_stats.turns == s_stats.turns
    # The point of it: rows do not wait for the slowest one, so fewer steps carry the same tokens.
    assert c_stats.steps < s_stats.steps
    assert c_stats.tokens_per_step > s_stats.tokens_per_step
    # A bounded running batch changes the schedule, not the result.
    bounded, b_stats = _mixed_length_rollout(model, tok, continuous=True, max_batch_size=2)
    _same_episodes(static, bounded)
    assert b_stats.steps > c_stats.steps


def test_batched_admission_changes_the_schedule_not_the_result(tiny_policy):
    model, tok = tiny_policy
    static, _ = _mixed_length_rollout(model, tok, continuous=False)
    eager, e_stats = _mixed_length_rollout(model, tok, continuous=True)
    gathered, g_stats = _mixed_length_rollout(model, tok, continuous=True, admit_min=3, admit_wait=4)
    _same_episodes(static, gathered)
    # Held-back requests leave rows idle for a few steps: more steps for the same tokens.
    assert g_stats.generated_tokens == e_stats.generated_tokens and g_stats.steps > e_stats.steps
    with pytest.raises(ValueError, match="admit_min"):
        SamplingConfig(admit_min=0)


def test_admission_waits_for_admit_min_requests_or_admit_wait_steps(tiny_policy):
    model, tok = tiny_policy
    policy = LMPolicy(model, tok, sampling=SamplingConfig(max_new_tokens=50, temperature=0.0, admit_min=2, admit_wait=3),
                      stop_strings=[])
    policy.submit([5, 6, 7])
    policy.step()  # nothing runs yet: admitted at once
    assert len(policy._rows) == 1
    policy.submit([8, 9])
    for _ in range(3):  # one request waiting, fewer than admit_min: held back for admit_wait steps
        policy.step()
        assert len(policy._rows) == 1 and len(policy._waiting) == 1
    policy.step()
    assert len(policy._rows) == 2 and not policy._waiting
    policy.submit([1, 2])
    policy.submit([3, 4])
    policy.step()  # two waiting: admitted together, in one prefill
    assert len(policy._rows) == 4


def test_continuous_sampling_is_deterministic_under_a_seed(tiny_policy):
    model, tok = tiny_policy
    first, _ = _mixed_length_rollout(model, tok, continuous=True, temperature=1.0, seed=11)
    again, _ = _mixed_length_rollout(model, tok, continuous=True, temperature=1.0, seed=11)
    other, _ = _mixed_length_rollout(model, tok, continuous=True, temperature=1.0, seed=12)
    _same_episodes(first, again, atol=0.0)
    assert [ep.action_ids(0) for ep in first] != [ep.action_ids(0) for ep in other]
    batch = stitch(first, pad_id=tok.pad_token_id)
    with torch.no_grad():
        assert torch.allclose(stitched_forward(model, batch)["logprobs"], batch.rollout_logprobs, atol=1e-4)


def test_engine_interface_and_request_rules(tiny_policy):
    from mem1_agent.engine import RolloutEngine

    model, tok = tiny_policy
    policy = LMPolicy(model, tok, sampling=SamplingConfig(max_new_tokens=4, temperature=0.0))
    assert isinstance(policy, RolloutEngine)
    ctxs = contexts(tok)
    rid = policy.submit(ctxs[0], key="slot")
    with pytest.raises(ValueError, match="already has a turn in flight"):
        policy.submit(ctxs[1], key="slot")
    with pytest.raises(ValueError, match="at least one token"):
        policy.submit([])
    with pytest.raises(RuntimeError, match="idle engine"):
        policy.generate(ctxs)
    got = {}
    while policy.pending:
        got.update(policy.step())
    assert got[rid].ids == policy.generate(ctxs[:1])[0].ids
