"""SFT on oracle trajectories with stitched masks lowers the action-token loss."""

from __future__ import annotations

import pytest
import torch

from mem1_agent.sft import SFTConfig, collect_oracle_episodes, train_sft
from mem1_agent.models import tiny_tokenizer
from mem1_gym.protocol import PAPER_TAGS


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_oracle_episodes_solve_the_task_and_end_at_the_closing_tag_like_rollouts():
    tok = tiny_tokenizer()
    eps = collect_oracle_episodes(SFTConfig(episodes=3, memory="mem1", env_kwargs={"n_keys": 3}), tok)
    closing = PAPER_TAGS.closing_tags()
    for ep in eps:
        assert ep.reward == 3.0 and ep.metrics["em"] == 3.0
        assert len(ep.turns) == 4  # three look-ups and an answer
        for t in range(len(ep.turns)):
            ids = ep.action_ids(t)
            # A rollout stops at the closing action tag, so its action segment never holds EOS;
            # the SFT segment must be the same tokens, or a remembered action differs between phases.
            assert tok.eos_token_id not in ids
            assert any(tok.decode(ids).endswith(tag) for tag in closing), tok.decode(ids)
            assert not any(tok.decode(ids[:-1]).endswith(tag) for tag in closing)
        # Under mem1 the answer turn sees the prompt, the last turn and the last observation only.
        assert len(ep.turns[-1].visible_ids) == 3


@pytest.mark.parametrize("memory", ["mem1", "full"])
def test_a_few_sft_steps_lower_the_loss(memory, tmp_path):
    config = SFTConfig(model="tiny", memory=memory, episodes=8, steps=12, batch_episodes=4, lr=3e-3, log_every=0, output_dir=str(tmp_path / "out"))
    metrics = train_sft(config)
    assert metrics["steps"] == 12 and len(metrics["losses"]) == 12 and metrics["action_tokens"] > 0
    assert metrics["final_loss"] < 0.7 * metrics["initial_loss"], metrics
    assert (tmp_path / "out" / "config.json").is_file()
