"""The ``mem1 train`` Trainer: devices, precision (fp32 master weights, one precision for rollout and
training), exact resume. Multi-process behaviour is in test_train_cli.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mem1_agent.checkpoint import _read_checkpoint

from mem1_agent.config import load_config
from mem1_agent.train import Trainer, sampling_generator
from train_fixtures import tb_scalars

PRESET = Path(__file__).resolve().parents[1] / "examples" / "configs" / "qa2_tiny.yaml"


def _config(out: Path, *overrides: str):
    return load_config(PRESET, [f"train.output_dir={out}", *overrides])


def test_sampling_generators_live_on_the_models_device(tmp_path):
    trainer = Trainer(_config(tmp_path / "run", "train.eval_before=false"))
    model = trainer.accelerator.unwrap_model(trainer.model)
    assert trainer.generator.device == next(model.parameters()).device
    assert sampling_generator(model, 3).device == next(model.parameters()).device
    # Seeded: two generators of one seed draw the same numbers.
    assert torch.equal(torch.rand(4, generator=sampling_generator(model, 3)), torch.rand(4, generator=sampling_generator(model, 3)))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_sampling_generator_on_cuda_samples_with_multinomial():
    from mem1_agent.models import load_policy

    model, _ = load_policy("tiny", seed=0)
    model.cuda()
    gen = sampling_generator(model, 0)
    assert gen.device.type == "cuda"
    probs = torch.softmax(torch.randn(2, 5, device="cuda"), -1)
    assert torch.multinomial(probs, 1, generator=gen).device.type == "cuda"


def _one_sft_step(out: Path, *overrides: str) -> tuple[dict, dict]:
    """Parameters before and after one SFT optimizer step at a tiny learning rate."""
    trainer = Trainer(_config(out, "train.algorithm=sft", "sft.steps=1", "sft.lr=1e-6", *overrides))
    model = trainer.accelerator.unwrap_model(trainer.model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer.run()
    return before, {n: p.detach().clone() for n, p in model.named_parameters()}


def test_bf16_mixed_precision_keeps_fp32_master_weights(tmp_path):
    before, after = _one_sft_step(tmp_path / "bf16", "train.mixed_precision=bf16")
    assert all(p.dtype == torch.float32 for p in after.values())
    ref_before, ref_after = _one_sft_step(tmp_path / "fp32", "train.mixed_precision=no")
    assert all(torch.equal(before[n], ref_before[n]) for n in before)  # same initial weights
    moved = sum(int((after[n] != before[n]).sum()) for n in after)
    total = sum(p.numel() for p in after.values())
    # Adam's first step moves every weight with a gradient by about lr, as in fp32.
    assert moved / total > 0.99
    delta = torch.cat([(after[n] - before[n]).flatten() for n in after])
    ref_delta = torch.cat([(ref_after[n] - ref_before[n]).flatten() for n in after])
    assert (delta.abs().median() - 1e-6).abs() < 2e-7
    assert (torch.sign(delta) == torch.sign(ref_delta)).float().mean() > 0.9


def test_pure_bf16_parameters_lose_small_updates_and_warn(tmp_path):
    with pytest.warns(UserWarning, match="without fp32 master weights"):
        before, after = _one_sft_step(tmp_path / "pure", "model.dtype=bfloat16")
    moved = sum(int((after[n] != before[n]).sum()) for n in after)
    total = sum(p.numel() for p in after.values())
    assert moved / total < 0.05  # 0.17% measured; what train.mixed_precision=bf16 (above) avoids


def test_bf16_rollout_and_training_forwards_share_a_precision(tmp_path):
    out = tmp_path / "ppo"
    Trainer(_config(out, "train.mixed_precision=bf16", "train.iterations=1", "ppo.kl_coef=0.01")).run()
    scalars = {tag: values[-1][1] for tag, values in tb_scalars(out).items()}
    # Rollout (KV-cached decoding) and the stitched training forward both ran under bf16 autocast.
    assert scalars["ppo/logp_gap_mean"] < 1e-2
    assert scalars["ppo/ratio_outside"] < 0.05


def test_fp16_without_cuda_is_a_clear_error(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("fp16 runs on CUDA")
    from mem1_agent.config import ConfigError

    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        Trainer(_config(tmp_path / "fp16", "train.mixed_precision=fp16"))


def test_resume_continues_exactly_like_an_uninterrupted_run(tmp_path):
    common = ("train.lr_warmup=4", "ppo.kl_coef=0.01", "train.save_every=1")
    straight, split = tmp_path / "straight", tmp_path / "split"
    Trainer(_config(straight, "train.iterations=2", *common)).run()
    Trainer(_config(split, "train.iterations=1", *common)).run()
    resumed = Trainer(_config(split, "train.iterations=2", *common))
    resumed.run()
    a_state, a_model, _ = _read_checkpoint(straight)
    b_state, b_model, _ = _read_checkpoint(split)
    assert a_state["step"] == b_state["step"] == 2
    assert a_model.keys() == b_model.keys() and a_model
    for k in a_model:
        assert torch.equal(a_model[k], b_model[k]), k
    a_opt, b_opt = a_state["optimizer"], b_state["optimizer"]
    assert a_opt["state"] and a_opt["state"].keys() == b_opt["state"].keys()
    for key, state in a_opt["state"].items():
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(b_opt["state"][key][name])), (key, name)
    assert a_state["scheduler"] == b_state["scheduler"]
    # The second iteration logged the same scalars (rollout, losses, learning rate).
    sa, sb = tb_scalars(straight), tb_scalars(split)
    second = {tag: dict(v)[2] for tag, v in sa.items() if 2 in dict(v) and "per_s" not in tag}
    assert {"ppo/reward", "ppo/pg_loss", "ppo/lr", "ppo/action_tokens"} <= set(second)
    for tag, value in second.items():
        assert dict(sb[tag])[2] == value, tag
