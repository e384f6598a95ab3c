"""`mem1 demo`: the main job runs end to end (tiny model) and its preset fits the oracle's turns."""

from __future__ import annotations

import gymnasium as gym
import pytest

import mem1_gym  # noqa: F401
from mem1_agent.config import load_config
from mem1_agent.demo import PRESETS, cli


def test_demo_runs_end_to_end_with_a_tiny_model(tmp_path, capsys):
    code = cli([
        "--out", str(tmp_path), "--objectives", "1,2", "--episodes", "1",
        "model.name=tiny", "sft.steps=2", "sft.episodes=2", "train.iterations=1",
        "ppo.episodes_per_iteration=2", "eval.episodes=1", "train.progress=false", "env.num_envs=2",
        "sampling.max_new_tokens=8", "eval.max_new_tokens=8",
    ])
    assert code == 0
    out = capsys.readouterr().out
    assert "Outputs:" in out and str(tmp_path) in out
    assert (tmp_path / "eval" / "results.csv").exists() and (tmp_path / "eval" / "results.md").exists()
    assert list((tmp_path / "eval").glob("plot_*.png"))
    assert (tmp_path / "train" / "checkpoint.json").exists()
    table = (tmp_path / "eval" / "results.md").read_text()
    assert "| oracle |" in table and "| mem1 |" in table and "| full |" in table


@pytest.mark.slow
def test_demo_builds_the_word_model_and_evaluates_on_the_plain_task(tmp_path, capsys):
    code = cli([
        "--out", str(tmp_path), "--objectives", "2", "--episodes", "2", "--memories", "mem1",
        "sft.steps=2", "sft.episodes=2", "train.iterations=1", "ppo.episodes_per_iteration=2",
        "eval.episodes=2", "train.progress=false", "env.num_envs=2", "sampling.max_new_tokens=8",
        "eval.max_new_tokens=8", "env.kwargs.oracle_error=1.0",
    ])
    assert code == 0
    assert (tmp_path / "word_model" / "tokenizer.json").is_file()
    # The grid's oracle is the plain task's perfect one, not SFT's demonstrator (which always errs here).
    table = (tmp_path / "eval" / "results.md").read_text()
    assert "| oracle | MultiObjectiveQA-v0 | mem1 | 2 | 2.000 ± 0.00 |" in table, table


def test_demo_rejects_bad_overrides(tmp_path, capsys):
    assert cli(["--out", str(tmp_path), "sft.nonsense=1"]) == 2
    assert "nonsense" in capsys.readouterr().err


@pytest.mark.model
@pytest.mark.slow
def test_preset_turn_budget_fits_the_oracle_turns():
    """A turn budget shorter than the oracle's turns teaches SFT turns the model can never finish."""
    from transformers import AutoTokenizer

    from mem1_agent.models import default_model_path

    cfg = load_config(PRESETS["smollm2"])
    tok = AutoTokenizer.from_pretrained(default_model_path())
    longest = 0
    for n in (1, 2, 4):
        env = gym.make(cfg.env.id, n_objectives=n, memory="mem1", topk=cfg.env.kwargs["topk"], split="test")
        for seed in range(5):
            env.reset(seed=seed)
            while True:
                action = env.unwrapped.oracle_action()
                longest = max(longest, len(tok(action, add_special_tokens=False)["input_ids"]))
                *_, terminated, truncated, _ = env.step(action)
                if terminated or truncated:
                    break
    assert longest <= cfg.sampling.max_new_tokens and longest <= cfg.eval.max_new_tokens
