"""SFT on oracle trajectories with stitched masks lowers the action-token loss."""

from __future__ import annotations

import pytest
import torch

from mem1_agent.sft import SFTConfig, collect_oracle_episodes, train_sft
from mem1_agent.models import tiny_tokenizer


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_oracle_episodes_solve_the_task_and_end_with_eos():
    tok = tiny_tokenizer()
    eps = collect_oracle_episodes(SFTConfig(episodes=3, memory="mem1", env_kwargs={"n_keys": 3}), tok)
    for ep in eps:
        assert ep.reward == 3.0 and ep.metrics["em"] == 3.0
        assert len(ep.turns) == 4  # three look-ups and an answer
        assert all(ep.action_ids(t)[-1] == tok.eos_token_id for t in range(len(ep.turns)))
        # Under mem1 the answer turn sees the prompt, the last turn and the last observation only.
        assert len(ep.turns[-1].visible_ids) == 3


@pytest.mark.parametrize("memory", ["mem1", "full"])
def test_a_few_sft_steps_lower_the_loss(memory, tmp_path):
    config = SFTConfig(model="tiny", memory=memory, episodes=8, steps=12, batch_episodes=4, lr=3e-3, log_every=0, output_dir=str(tmp_path / "out"))
    metrics = train_sft(config)
    assert metrics["steps"] == 12 and len(metrics["losses"]) == 12 and metrics["action_tokens"] > 0
    assert metrics["final_loss"] < 0.7 * metrics["initial_loss"], metrics
    assert (tmp_path / "out" / "config.json").is_file()
