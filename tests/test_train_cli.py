"""``mem1 train`` end to end on the tiny preset: runs, writes its outputs, resumes; multi-process on accelerate."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mem1_agent.checkpoint import CHECKPOINT_FILE
from mem1_agent.cli import main
from mem1_agent.models import load_policy
from train_fixtures import tb_scalars

ROOT = Path(__file__).resolve().parents[1]
PRESET = ROOT / "examples" / "configs" / "qa2_tiny.yaml"


def _step(out: Path) -> int:
    return torch.load(out / CHECKPOINT_FILE, map_location="cpu", weights_only=False)["step"]


def test_train_runs_end_to_end_and_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--config", str(PRESET), f"train.output_dir={out}", "train.iterations=1", "train.eval_after=true"]) == 0
    assert _step(out) == 1
    assert (out / "config.yaml").is_file() and list((out / "tb").iterdir())
    results = json.loads((out / "results.json").read_text())
    assert set(results["after"]["2"]) >= {"em", "reward", "peak_tokens"}
    first = torch.load(out / CHECKPOINT_FILE, map_location="cpu", weights_only=False)["model"]
    # Same command with more iterations continues the run from iteration 1.
    assert main(["train", "--config", str(PRESET), f"train.output_dir={out}", "train.iterations=2"]) == 0
    assert "resumed" in capsys.readouterr().out
    assert _step(out) == 2
    second = torch.load(out / CHECKPOINT_FILE, map_location="cpu", weights_only=False)["model"]
    assert any(not torch.equal(first[k], second[k]) for k in first)


def test_sft_then_grpo_algorithms_run(tmp_path):
    assert main(["train", "--config", str(PRESET), f"train.output_dir={tmp_path / 'sft'}", "train.algorithm=sft"]) == 0
    state = torch.load(tmp_path / "sft" / CHECKPOINT_FILE, map_location="cpu", weights_only=False)
    assert state["extra"]["phase"] == "sft" and state["step"] == 2
    assert main(["train", "--config", str(PRESET), f"train.output_dir={tmp_path / 'grpo'}", "train.algorithm=grpo", "train.iterations=1"]) == 0
    assert _step(tmp_path / "grpo") == 1


def test_sft_then_ppo_uses_the_sft_model_as_kl_reference(tmp_path):
    out = tmp_path / "sftppo"
    assert main(["train", "--config", str(PRESET), f"train.output_dir={out}", "train.algorithm=sft+ppo", "train.iterations=1"]) == 0
    reference = torch.load(out / "reference.pt", map_location="cpu", weights_only=False)["lm"]
    initial, _ = load_policy("tiny", seed=0)
    assert any(not torch.equal(v, initial.lm.state_dict()[k]) for k, v in reference.items())


def test_ppo_with_a_separate_critic_checkpoints_and_resumes_it(tmp_path):
    out = tmp_path / "critic"
    args = ["train", "--config", str(PRESET), f"train.output_dir={out}", "model.critic=tiny-qwen2"]
    assert main([*args, "train.iterations=1"]) == 0
    state = torch.load(out / CHECKPOINT_FILE, map_location="cpu", weights_only=False)["model"]
    assert any(k.startswith("critic.") for k in state) and any(k.startswith("lm.") for k in state)
    assert main([*args, "train.iterations=2"]) == 0
    assert _step(out) == 2


def test_bad_config_is_a_clear_error(tmp_path, capsys):
    assert main(["train", "--config", str(PRESET), "ppo.lrr=1"]) == 2
    assert "unknown key ppo.lrr" in capsys.readouterr().err


def _untied_critic(folder: Path) -> Path:
    """A tiny Qwen2 whose output layer is not tied to its embeddings, saved with the tiny tokenizer."""
    from mem1_agent.models import tiny_model, tiny_tokenizer

    tok = tiny_tokenizer()
    lm = tiny_model("qwen2", seed=5, vocab_size=len(tok))
    lm.config.tie_word_embeddings = False
    lm.lm_head.weight = torch.nn.Parameter(lm.lm_head.weight.detach().clone())
    lm.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def _launch_two(out: Path, *overrides: str) -> dict:
    """``mem1 train`` on the tiny preset under ``accelerate launch`` with 2 processes; its results."""
    accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable))
    if accelerate is None:
        pytest.fail("the accelerate launcher is not installed next to this Python")
    # Without CUDA the trainer asks accelerate for CPU processes (gloo); --multi_gpu selects the
    # multi-process launcher (``--cpu`` alone starts one process unless MPI is configured).
    cmd = [accelerate, "launch", "--num_processes", "2", "--multi_gpu", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "-m", "mem1_agent.cli", "train", "--config", str(PRESET), f"train.output_dir={out}", *overrides]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "results.json").read_text())


@pytest.mark.slow
def test_two_processes_sft_then_ppo_with_an_untied_critic_in_bf16(tmp_path):
    # SFT leaves the value head and critic without gradients and the critic's untied output layer never
    # gets one: DDP must not see them as unused. The warm-up counts optimizer steps, not steps x processes.
    out = tmp_path / "ddp"
    results = _launch_two(out, "train.algorithm=sft+ppo", "train.iterations=1", f"model.critic={_untied_critic(tmp_path / 'critic')}",
                          "train.lr_warmup=8", "train.mixed_precision=bf16")
    assert results["ranks_in_sync"] is True
    assert _step(out) == 1
    scalars = tb_scalars(out)
    sft_lr = [v for _, v in scalars["sft/lr"]]
    assert sft_lr == pytest.approx([5e-5 * 2 / 8, 5e-5 * 3 / 8])  # after 1 and 2 optimizer steps
    assert [v for _, v in scalars["ppo/lr"]] == pytest.approx([1e-4 * 3 / 8])  # 2 mini-batches
    assert scalars["ppo/episodes"] == [(1, 8.0)]  # 4 episodes on each process, logged together
    assert scalars["ppo/logp_gap_mean"][0][1] < 1e-2


@pytest.mark.slow
def test_two_processes_grpo(tmp_path):
    out = tmp_path / "grpo"
    results = _launch_two(out, "train.algorithm=grpo", "train.iterations=1")
    assert results["ranks_in_sync"] is True
    assert _step(out) == 1
    assert tb_scalars(out)["grpo/episodes"] == [(1, 8.0)]  # 2 tasks x 2 rollouts on each process
