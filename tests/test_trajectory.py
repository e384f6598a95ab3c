"""Stitched trajectories: masks, positions, loss mask and packing against a brute-force reference."""

from __future__ import annotations

import random

import pytest
import torch

from mem1_gym.memory import Segment, make_memory_policy
from mem1_agent.trajectory import Episode, EpisodeBuilder, attention_mask_for, stitch

POLICIES = ["full", "mem1", "window:2", "truncate:20"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def random_episode(spec: str, seed: int, turns: int = 5, empty_obs: bool = False) -> Episode:
    """An episode whose visibility follows the real memory policy, with random segment ids and lengths."""
    rng = random.Random(seed)
    policy = make_memory_policy(spec)
    builder = EpisodeBuilder()
    segments: list[Segment] = []

    def add(kind: str, turn: int, n: int | None = None) -> int:
        sid = len(segments)
        n = rng.randrange(1, 7) if n is None else n
        builder.add_segment(sid, kind, turn, [rng.randrange(3, 300) for _ in range(n)])
        segments.append(Segment(sid, kind, turn, "", n))  # type: ignore[arg-type]
        return sid

    add("prompt", -1)
    for t in range(turns):
        visible = policy.visible(segments)
        builder.add_turn(add("action", t), visible, [-float(t)] * builder.segments[len(segments) - 1].ids.__len__())
        add("observation", t, 0 if empty_obs and t == 1 else None)
    return builder.build()


def ordered_view(batch, row: int, col: int) -> tuple[list[int], list[int]]:
    """Ids and positions of every token that (row, col) may attend to, in column order (brute force)."""
    cols = torch.nonzero(batch.visibility[row, col]).flatten().tolist()
    return batch.input_ids[row, cols].tolist(), batch.position_ids[row, cols].tolist()


@pytest.mark.parametrize("spec", POLICIES)
@pytest.mark.parametrize("pack", [False, True])
def test_every_action_token_sees_exactly_its_rollout_context(spec, pack):
    eps = [random_episode(spec, s) for s in range(4)]
    batch = stitch(eps, pad_id=0, pack=pack)
    for k, (e, t, j) in enumerate(batch.action_index.tolist()):
        row, col = batch.logit_index[k].tolist()
        ids, pos = ordered_view(batch, row, col)
        expected = eps[e].context_ids(t) + eps[e].action_ids(t)[:j]
        assert ids == expected  # exactly the rollout context, in order
        assert pos == list(range(len(expected)))  # contiguous rollout positions
        assert batch.target_ids[k].item() == eps[e].action_ids(t)[j]
        trow, tcol = batch.token_index[k].tolist()
        assert batch.input_ids[trow, tcol].item() == batch.target_ids[k].item()
        assert batch.position_ids[trow, tcol].item() == len(expected)
        assert batch.rollout_logprobs[k].item() == -float(t)


@pytest.mark.parametrize("spec", POLICIES)
def test_every_token_sees_a_prefix_of_some_rollout_sequence(spec):
    """Memory copies too: each token's view is a contiguous prefix of some turn's context + action."""
    eps = [random_episode(spec, s) for s in range(3)]
    batch = stitch(eps, pad_id=0, pack=True)
    for e, (row, start, length) in enumerate(batch.placement):
        sequences = [eps[e].context_ids(t) + eps[e].action_ids(t) for t in range(len(eps[e].turns))]
        for col in range(start, start + length):
            ids, pos = ordered_view(batch, row, col)
            assert pos == list(range(len(ids)))
            assert any(seq[: len(ids)] == ids for seq in sequences), (e, col)
            assert ids[-1] == batch.input_ids[row, col].item()  # a token always sees itself, last


def test_loss_mask_is_the_generation_copies():
    eps = [random_episode(s, 7) for s in POLICIES]
    batch = stitch(eps, pad_id=0)
    n_actions = sum(len(ep.action_ids(t)) for ep in eps for t in range(len(ep.turns)))
    assert int(batch.loss_mask.sum()) == n_actions == len(batch.target_ids)
    assert batch.loss_mask[batch.token_index[:, 0], batch.token_index[:, 1]].all()


def test_full_memory_has_each_segment_once_and_mem1_copies_moved_actions():
    # The final observation is in no context, so it is not stitched.
    full = random_episode("full", 3)
    used = sum(len(s.ids) for s in full.segments.values()) - len(full.segments[max(full.segments)].ids)
    assert stitch([full], 0).n_tokens == used
    mem1 = random_episode("mem1", 3)
    # Action 0 is remembered at the offset it was generated at (right after the prompt); actions
    # 1..T-2 are remembered there too, a second copy; the last action is never remembered.
    actions_but_last = sum(len(mem1.action_ids(t)) for t in range(1, len(mem1.turns) - 1))
    used = sum(len(s.ids) for s in mem1.segments.values()) - len(mem1.segments[max(mem1.segments)].ids)
    assert stitch([mem1], 0).n_tokens == used + actions_but_last


def test_packing_is_block_diagonal_and_changes_nothing_within_an_episode():
    eps = [random_episode(s, i) for i, s in enumerate(POLICIES * 2)]
    loose = stitch(eps, pad_id=0, pack=False)
    packed = stitch(eps, pad_id=0, pack=True, max_len=max(n for _, _, n in loose.placement) * 2)
    assert packed.input_ids.shape[0] < loose.input_ids.shape[0]
    owner = torch.full(packed.input_ids.shape, -1)
    for e, (row, start, length) in enumerate(packed.placement):
        owner[row, start : start + length] = e
    for row in range(packed.input_ids.shape[0]):
        same = owner[row][:, None] == owner[row][None, :]
        real = owner[row] >= 0
        # No token attends across episodes; padding attends only to itself.
        assert not (packed.visibility[row] & ~same).any()
        pad = torch.nonzero(~real).flatten()
        assert torch.equal(packed.visibility[row][pad][:, pad], torch.eye(len(pad), dtype=torch.bool))
    for e in range(len(eps)):
        (r1, s1, n1), (r2, s2, n2) = loose.placement[e], packed.placement[e]
        assert n1 == n2
        assert torch.equal(loose.visibility[r1, s1 : s1 + n1, s1 : s1 + n1], packed.visibility[r2, s2 : s2 + n2, s2 : s2 + n2])
        assert torch.equal(loose.position_ids[r1, s1 : s1 + n1], packed.position_ids[r2, s2 : s2 + n2])
    assert torch.equal(loose.action_index, packed.action_index)


def test_empty_segments_are_skipped():
    ep = random_episode("window:2", 1, empty_obs=True)
    batch = stitch([ep], 0)
    for k, (_, t, j) in enumerate(batch.action_index.tolist()):
        ids, _ = ordered_view(batch, *batch.logit_index[k].tolist())
        assert ids == ep.context_ids(t) + ep.action_ids(t)[:j]


def test_mask_forms():
    vis = torch.tensor([[[True, False], [True, True]]])
    for attn in ("eager", "sdpa"):
        m = attention_mask_for(vis, attn, torch.float32)
        assert m.shape == (1, 1, 2, 2) and m.dtype == torch.float32
        assert m[0, 0, 0, 0] == 0 and m[0, 0, 0, 1] == torch.finfo(torch.float32).min
    assert attention_mask_for(vis, "sdpa", torch.bfloat16).dtype == torch.bfloat16
    for bad in ("flash_attention_2", "paged_attention", "nonsense"):
        with pytest.raises(ValueError, match="eager, sdpa"):
            attention_mask_for(vis, bad, torch.float32)
        with pytest.raises(ValueError, match="cannot express"):
            stitch([random_episode("mem1", 0)], 0, attn_implementation=bad)


def test_bad_episodes_and_limits_are_clear_errors():
    ep = random_episode("mem1", 0)
    with pytest.raises(ValueError, match="max_len"):
        stitch([ep], 0, max_len=3)
    with pytest.raises(ValueError, match="at least one"):
        stitch([], 0)
    broken = Episode(dict(ep.segments), [type(ep.turns[0])(99, (0,))])
    with pytest.raises(ValueError, match="unknown segment"):
        stitch([broken], 0)
    own = Episode(dict(ep.segments), [type(ep.turns[0])(1, (0, 1))])
    with pytest.raises(ValueError, match="its own context"):
        own.validate()
    wrong_len = Episode(dict(ep.segments), [type(ep.turns[0])(1, (0,), [0.0] * 99)])
    with pytest.raises(ValueError, match="log-probs"):
        wrong_len.validate()


def test_builder_from_tokenized_env_infos():
    """A rollout through TokenizedEnv yields episodes whose contexts are exactly the env's observations."""
    from mem1_gym.wrappers import TokenizedEnv
    from mem1_agent.models import tiny_tokenizer
    from mem1_agent.toy_task import KeyLookupEnv

    tok = tiny_tokenizer()
    for memory in ("full", "mem1", "window:2"):
        env = TokenizedEnv(KeyLookupEnv(n_keys=3, memory=memory), tok)
        _, info = env.reset(seed=1)
        reset_info, infos, contexts, done = info, [], [list(info["input_ids"])], False
        while not done:
            action = tok(env.unwrapped.oracle_action(), add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            _, _, term, trunc, info = env.step(action)
            infos.append(info)
            contexts.append(list(info["input_ids"]))
            done = term or trunc
        ep = Episode.from_env_infos(reset_info, infos, rewards=[0.0] * (len(infos) - 1) + [3.0])
        assert ep.reward == 3.0 and ep.metrics["em"] == 3.0
        for t in range(len(ep.turns)):
            assert ep.context_ids(t) == contexts[t]


def _block_reference(vis: torch.Tensor, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, nq, nk) bool: blocks holding some visible pair, and complete blocks whose pairs all are."""
    B, S, _ = vis.shape
    n = -(-S // block)
    padded = torch.zeros(B, n * block, n * block, dtype=torch.bool)
    padded[:, :S, :S] = vis
    tiles = padded.view(B, n, block, n, block)
    some = tiles.any(dim=4).any(dim=2)
    full = tiles.all(dim=4).all(dim=2)
    return some, full


def _listed(count: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    """(B, nq, nk) bool from a BlockMask's per-query-block counts and key-block indices (head 0)."""
    B, _, nq = count.shape
    out = torch.zeros(B, nq, n, dtype=torch.bool)
    for b in range(B):
        for q in range(nq):
            out[b, q, index[b, 0, q, : count[b, 0, q]].long()] = True
    return out


@pytest.mark.parametrize("spec", ["full", "mem1", "window:2"])
@pytest.mark.parametrize("block", [8, 128])
def test_flex_block_mask_equals_the_stitched_visibility(spec, block):
    """The flex-attention BlockMask, evaluated densely on CPU, is exactly the stitcher's visibility;
    its block lists skip exactly the blocks with no visible pair and mark exactly the all-visible ones full."""
    from torch.nn.attention.flex_attention import create_mask

    from mem1_agent.trajectory import block_mask

    eps = [random_episode(spec, s, turns=8) for s in range(5)]
    longest = max(n for _, _, n in stitch(eps, pad_id=0, pack=False).placement)
    batch = stitch(eps, pad_id=0, pack=True, max_len=longest + 7, attn_implementation="flex_attention")
    vis = batch.visibility  # walked from the prefix trees, independently of the mask
    B, S = batch.input_ids.shape
    assert B >= 2 and (batch.input_ids == 0).any()  # packed rows with padding
    mask = batch.attention_mask if block == 128 else block_mask(batch.tree_in, batch.tree_out, block_size=block)
    assert torch.equal(create_mask(mask.mask_mod, B, 1, S, S, device="cpu")[:, 0], vis)
    some, full = _block_reference(vis, block)
    n = some.shape[-1]
    listed_full = _listed(mask.full_kv_num_blocks, mask.full_kv_indices, n)
    listed_partial = _listed(mask.kv_num_blocks, mask.kv_indices, n)
    assert torch.equal(listed_full | listed_partial, some)
    assert not (listed_full & listed_partial).any()
    assert torch.equal(listed_full, full & (torch.arange(n) < S // block)[None, :, None] & (torch.arange(n) < S // block)[None, None, :])
    assert torch.equal(mask.to_dense()[:, 0].bool(), some)
    if block == 8:
        assert (~some).any() and full.any()  # the test exercises skipped, partial and full blocks


def test_dense_masks_come_from_the_tree_ranges():
    from mem1_agent.trajectory import tree_visibility

    eps = [random_episode(s, i, turns=6) for i, s in enumerate(POLICIES)]
    batch = stitch(eps, pad_id=0, pack=True, attn_implementation="eager")
    vis = batch.visibility
    assert torch.equal(tree_visibility(batch.tree_in, batch.tree_out), vis)
    assert torch.equal(batch.attention_mask[:, 0] == 0, vis)
