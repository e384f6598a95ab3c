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

from mem1_agent.checkpoint import checkpoint_info, load_tensors, read_snapshot
from mem1_agent.cli import main
from mem1_agent.models import load_policy
from train_fixtures import tb_scalars

ROOT = Path(__file__).resolve().parents[1]
PRESET = ROOT / "examples" / "configs" / "qa2_tiny.yaml"


def _step(out: Path) -> int:
    return checkpoint_info(out)["step"]


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return read_snapshot(out, "checkpoint")[1]["model.safetensors"]


def test_train_runs_end_to_end_and_resumes(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--config", str(PRESET), f"train.output_dir={out}", "train.iterations=1", "train.eval_after=true"]) == 0
    assert _step(out) == 1
    assert (out / "config.yaml").is_file() and list((out / "tb").iterdir())
    results = json.loads((out / "results.json").read_text())
    assert set(results["after"]["2"]) >= {"em", "reward", "peak_tokens"}
    first = _weights(out)
    # Same command with more iterations continues the run from iteration 1.
    assert main(["train", "--config", str(PRESET), f"train.output_dir={out}", "train.iterations=2"]) == 0
    assert "resumed" in capsys.readouterr().out
    assert _step(out) == 2
    second = _weights(out)
    assert any(not torch.equal(first[k], second[k]) for k in first)


def test_sft_then_grpo_algorithms_run(tmp_path):
    assert main(["train", "--config", str(PRESET), f"train.output_dir={tmp_path / 'sft'}", "train.algorithm=sft"]) == 0
    state = checkpoint_info(tmp_path / "sft")
    assert state["extra"]["phase"] == "sft" and state["step"] == 2
    assert main(["train", "--config", str(PRESET), f"train.output_dir={tmp_path / 'grpo'}", "train.algorithm=grpo", "train.iterations=1"]) == 0
    assert _step(tmp_path / "grpo") == 1


def test_sft_then_ppo_uses_the_sft_model_as_kl_reference(tmp_path):
    out = tmp_path / "sftppo"
    assert main(["train", "--config", str(PRESET), f"train.output_dir={out}", "train.algorithm=sft+ppo", "train.iterations=1"]) == 0
    reference, _ = load_tensors(out, "reference")
    initial, _ = load_policy("tiny", seed=0)
    assert any(not torch.equal(v, initial.lm.state_dict()[k]) for k, v in reference.items())


def test_ppo_with_a_separate_critic_checkpoints_and_resumes_it(tmp_path):
    out = tmp_path / "critic"
    args = ["train", "--config", str(PRESET), f"train.output_dir={out}", "model.critic=tiny-qwen2"]
    assert main([*args, "train.iterations=1"]) == 0
    state = _weights(out)
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


def _launch_two(out: Path, *overrides: str) -> tuple[dict, str]:
    """``mem1 train`` on the tiny preset under ``accelerate launch`` with 2 processes; its results and stdout."""
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
    return json.loads((out / "results.json").read_text()), proc.stdout


@pytest.mark.slow
def test_two_processes_sft_then_ppo_with_an_untied_critic_in_bf16(tmp_path):
    # SFT leaves the value head and critic without gradients and the critic's untied output layer never
    # gets one: DDP must not see them as unused. The warm-up counts optimizer steps, not steps x processes.
    out = tmp_path / "ddp"
    results, _ = _launch_two(out, "train.algorithm=sft+ppo", "train.iterations=1", f"model.critic={_untied_critic(tmp_path / 'critic')}",
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
    results, stdout = _launch_two(out, "train.algorithm=grpo", "train.iterations=1")
    assert results["ranks_in_sync"] is True
    # One report for the run, not one per process.
    assert stdout.count("done: grpo finished") == 1 and stdout.count("mem1 train: ") == 1
    assert _step(out) == 1
    assert tb_scalars(out)["grpo/episodes"] == [(1, 8.0)]  # 2 tasks x 2 rollouts on each process


def _scalar_steps(tb_dir: Path, tag: str) -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir))
    acc.Reload()
    return [event.step for event in acc.Scalars(tag)]


def test_tensorboard_steps_rerun_after_a_resume_are_not_duplicated(tmp_path, monkeypatch):
    from mem1_agent.train import Trainer

    out = tmp_path / "tb-run"
    args = ["train", "--config", str(PRESET), f"train.output_dir={out}", "train.algorithm=sft", "sft.steps=3", "train.save_every=2"]
    real_save = Trainer.save

    def killed_at_step_3(self):
        if self.state.step == 3:
            raise KeyboardInterrupt("killed after logging step 3, before its checkpoint")
        real_save(self)

    monkeypatch.setattr(Trainer, "save", killed_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        main(args)
    monkeypatch.undo()
    assert _step(out) == 2
    assert main(args) == 0  # resumes at 2 and logs step 3 again
    assert _step(out) == 3
    assert _scalar_steps(out / "tb" / "sft", "sft/loss") == [1, 2, 3]


def test_lora_ppo_checkpoints_adapters_and_head_only_and_resumes(tmp_path):
    from mem1_agent.checkpoint import load_checkpoint
    from mem1_agent.config import load_config
    from mem1_agent.train import build_policy

    out = tmp_path / "lora"
    args = ["train", "--config", str(PRESET), f"train.output_dir={out}", "model.lora={r: 4, alpha: 8}", "model.gradient_checkpointing=true"]
    assert main([*args, "train.iterations=1"]) == 0
    first = _weights(out)
    assert first and all("lora_" in k or k.startswith("value_head.") for k in first)
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in first.items())  # the adapters trained
    # Resume restores exactly the stored adapters and head into a freshly built network.
    cfg = load_config(out / "config.yaml")
    model, _ = build_policy(cfg)
    load_checkpoint(out, model)
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in first.items())
    assert main([*args, "train.iterations=2"]) == 0
    assert _step(out) == 2
    assert any(not torch.equal(first[k], v) for k, v in _weights(out).items())


def test_lora_sft_then_ppo_resumes_and_exports_a_merged_model(tmp_path):
    from transformers import AutoModelForCausalLM

    from mem1_agent.export import load_run

    out = tmp_path / "lora-sftppo"
    args = ["train", "--config", str(PRESET), f"train.output_dir={out}", "train.algorithm=sft+ppo", "model.lora={r: 4, alpha: 8}"]
    assert main([*args, "train.iterations=1"]) == 0
    adapters, meta = load_tensors(out, "reference")
    assert meta["kind"] == "lora" and adapters and all("lora_" in k for k in adapters)
    assert main([*args, "train.iterations=2"]) == 0  # resumes in the PPO phase on the merged SFT base
    assert _step(out) == 2
    # The PPO phase's KL reference (adapters off) is the SFT model: base + SFT adapters, merged.
    from mem1_agent.checkpoint import load_model_tensors
    from mem1_agent.config import load_config
    from mem1_agent.models import add_lora
    from mem1_agent.train import Trainer

    trainer = Trainer(load_config(out / "config.yaml"))
    assert trainer.resume() and trainer.state.phase == "rl"
    sft_model, _ = load_policy("tiny", seed=0)
    add_lora(sft_model, r=4, alpha=8)
    load_model_tensors(sft_model.lm, adapters, meta["aliases"], True, "reference")
    probe = torch.randint(3, 400, (2, 9))
    with torch.no_grad():
        assert torch.allclose(trainer.ref(probe)["logits"], sft_model(probe)["logits"], atol=1e-5)
    assert main(["export", str(out), str(tmp_path / "hf")]) == 0
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    policy, _ = load_run(out)
    ids = torch.randint(3, 400, (2, 9))
    with torch.no_grad():
        assert torch.allclose(exported(ids).logits, policy(ids)["logits"], atol=1e-4)
        # ...and it is not the initial model: SFT and PPO both changed it.
        initial, _ = load_policy("tiny", seed=0)
        assert not torch.allclose(exported(ids).logits, initial(ids)["logits"], atol=1e-3)


def test_export_without_a_checkpoint_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "config.yaml").write_text("model:\n  name: tiny\n")
    assert main(["export", str(tmp_path), str(tmp_path / "hf")]) == 2
    assert "holds no checkpoint" in capsys.readouterr().err


def test_train_refuses_a_pickle_checkpoint_in_the_output_dir(tmp_path, capsys):
    import pickle

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    out = tmp_path / "old"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(pickle.dumps({"step": 1, "model": Exploit()}))
    assert main(["train", "--config", str(PRESET), f"train.output_dir={out}", "train.iterations=1"]) == 2
    assert "pickle checkpoint of an older mem1 version" in capsys.readouterr().err
    assert not (tmp_path / "pwned").exists()


def test_export_of_a_lora_sft_then_ppo_run_stopped_in_its_sft_phase(tmp_path, monkeypatch):
    # A LoRA checkpoint holds the trainable parameters only, and the value head is frozen during SFT:
    # `mem1 export` used to rebuild the network with a trainable value head and refuse the checkpoint.
    import importlib

    from transformers import AutoModelForCausalLM

    trainer_module = importlib.import_module("mem1_agent.train")

    def stop(self, save):
        raise KeyboardInterrupt("stopped between the phases")

    monkeypatch.setattr(trainer_module.Trainer, "_set_sft_reference", stop)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        main(["train", "--config", str(PRESET), f"train.output_dir={out}", "train.algorithm=sft+ppo",
              "model.lora={r: 4, alpha: 8}", "sft.steps=4", "train.save_every=2", "train.eval_after=false"])
    assert checkpoint_info(out)["extra"]["phase"] == "sft"
    assert main(["export", str(out), str(tmp_path / "hf")]) == 0
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    ids = torch.randint(3, 400, (2, 9))
    with torch.no_grad():
        # The SFT adapters are in it, merged: not the initial model.
        initial, _ = load_policy("tiny", seed=0)
        assert not torch.allclose(exported(ids).logits, initial(ids)["logits"], atol=1e-3)
