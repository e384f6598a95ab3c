"""The invariant: one stitched forward reproduces the rollout-time log-probs of every action token."""

from __future__ import annotations

import pytest
import torch

from mem1_agent.consistency import check, cli, rollout_episode
from mem1_agent.toy_task import make_env
from mem1_agent.models import load_policy
from mem1_agent.trajectory import stitch, stitched_forward

MEMORIES = ["full", "mem1", "window:2"]
TOL = 1e-4


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module", params=["tiny", "tiny-qwen2"])
def tiny(request):
    torch.manual_seed(0)
    policy, tok = load_policy(request.param, attn_implementation="eager", value_head=False)
    return policy.eval(), tok


def test_stitched_equals_rollout_eager_and_sdpa(tiny):
    policy, tok = tiny
    results = check(policy, tok, ["eager", "sdpa"], MEMORIES, turns=4, episodes=2, env_id="toy", max_new_tokens=10)
    assert [(r.attn, r.memory) for r in results] == [(a, m) for m in MEMORIES for a in ("eager", "sdpa")]
    for r in results:
        assert r.action_tokens > 20
        assert r.max_gap <= TOL, r


@pytest.mark.skipif(not torch.cuda.is_available(), reason="flex_attention is checked on a GPU (CPU inductor support varies)")
def test_stitched_equals_rollout_flex_attention(tiny):
    policy, tok = tiny
    policy.cuda()
    try:
        results = check(policy, tok, ["flex_attention"], MEMORIES, turns=4, episodes=2, env_id="toy", max_new_tokens=10)
    finally:
        policy.cpu()
    assert all(r.max_gap <= TOL for r in results), results


@pytest.fixture(scope="module")
def mem1_episodes(tiny):
    policy, tok = tiny
    policy.lm.set_attn_implementation("sdpa")
    return [rollout_episode(policy, tok, make_env("toy", memory="mem1", max_turns=4, seed=s), s, max_new_tokens=8) for s in range(2)]


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_wrong_masks_are_caught(tiny, mem1_episodes, attn):
    """Negative controls: the check detects a plain causal mask and a 0/1 float mask."""
    policy, tok = tiny
    policy.lm.set_attn_implementation(attn)
    batch = stitch(mem1_episodes, tok.pad_token_id, attn_implementation=attn)
    with torch.no_grad():
        good = stitched_forward(policy, batch)["logprobs"]
        assert (good - batch.rollout_logprobs).abs().max() <= TOL
        batch.attention_mask = batch.visibility.float().unsqueeze(1)  # the classic silent mistake
        zero_one = stitched_forward(policy, batch)["logprobs"]
        batch.attention_mask = None  # plain causal attention over the stitched row
        causal = stitched_forward(policy, batch)["logprobs"]
    assert (zero_one - batch.rollout_logprobs).abs().max() > 1e-2
    assert (causal - batch.rollout_logprobs).abs().max() > 1e-2


def test_mask_built_for_another_implementation_is_refused(tiny, mem1_episodes):
    policy, tok = tiny
    policy.lm.set_attn_implementation("sdpa")
    batch = stitch(mem1_episodes, tok.pad_token_id, attn_implementation="eager")
    with pytest.raises(ValueError, match="built for 'eager'"):
        stitched_forward(policy, batch)


def test_unsupported_attention_is_a_clear_error(tiny, capsys):
    policy, tok = tiny
    with pytest.raises(ValueError, match="flash attention kernels only support"):
        check(policy, tok, ["flash_attention_2"], ["mem1"], turns=2, episodes=1, env_id="toy")
    with pytest.raises(ValueError, match="cannot express"):
        load_policy("tiny", attn_implementation="flash_attention_2")
    assert cli(["--model", "tiny", "--attn", "eager,flash_attention_2"]) == 2
    assert "flash_attention_2" in capsys.readouterr().err


def test_cli_prints_table_and_exit_code(capsys):
    args = ["--model", "tiny", "--attn", "sdpa", "--memory", "mem1", "--turns", "3", "--episodes", "1", "--env", "toy", "--max-new-tokens", "6"]
    assert cli(args) == 0
    out = capsys.readouterr().out
    assert "sdpa" in out and "mem1" in out and "OK" in out
    # A negative tolerance can never be met: the command must then fail.
    assert cli(args + ["--tol", "-1"]) == 1
