"""Run by tests/test_fsdp.py under ``torch.distributed.run`` with 2 CPU (gloo) processes: an FSDP2-sharded
tiny policy rolls out, trains, checkpoints sharded state and resumes bit-exactly."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from accelerate import Accelerator
from torch.distributed.fsdp import fully_shard

from mem1_agent.checkpoint import checkpoint_info, load_checkpoint, save_checkpoint
from mem1_agent.models import add_lora, load_policy, merge_lora
from mem1_agent.policy import LMPolicy, SamplingConfig
from mem1_agent.sharding import gathered_parameters, is_sharded, local


def sharded_policy(seed: int):
    policy, tokenizer = load_policy("tiny", seed=seed)
    for layer in policy.lm.model.layers:
        fully_shard(layer)
    fully_shard(policy)
    return policy, tokenizer


def train_step(policy, optimizer, rank: int, step: int) -> None:
    ids = torch.randint(3, 400, (2, 10), generator=torch.Generator().manual_seed(100 * step + rank))
    out = policy(ids)
    loss = out["logits"].logsumexp(-1).mean() + out["values"].pow(2).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def main(out: Path) -> None:
    acc = Accelerator(cpu=True)
    rank = acc.process_index
    reference, tokenizer = load_policy("tiny", seed=0)
    policy, _ = sharded_policy(seed=0)
    assert is_sharded(policy) and type(policy.lm.model.layers[0].mlp.up_proj.weight).__name__ == "DTensor"

    # Rollout on sharded weights: the ranks generate different numbers of tokens.
    prompts = [tokenizer("alpha is")["input_ids"], tokenizer("the quick brown")["input_ids"]][: 1 + rank]
    sampling = SamplingConfig(max_new_tokens=6 + 5 * rank, temperature=1.0)
    with torch.no_grad(), gathered_parameters(policy):
        sharded = LMPolicy(policy, tokenizer, sampling=sampling, generator=torch.Generator().manual_seed(rank)).generate(prompts)
    plain = LMPolicy(reference, tokenizer, sampling=sampling, generator=torch.Generator().manual_seed(rank)).generate(prompts)
    assert [g.ids for g in sharded] == [g.ids for g in plain]
    assert max(abs(a - b) for g, h in zip(sharded, plain) for a, b in zip(g.logprobs, h.logprobs)) < 1e-5
    assert type(policy.lm.model.layers[0].mlp.up_proj.weight).__name__ == "DTensor"  # resharded afterwards

    # Train, checkpoint (sharded), train on; a fresh sharded model resumed from the checkpoint matches.
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-2)
    train_step(policy, optimizer, rank, 1)
    save_checkpoint(out, policy, step=1, optimizer=optimizer, accelerator=acc)
    train_step(policy, optimizer, rank, 2)
    resumed, _ = sharded_policy(seed=5)
    resumed_opt = torch.optim.AdamW(resumed.parameters(), lr=1e-2)
    train_step(resumed, resumed_opt, rank, 0)  # optimizer state exists before loading, as in the trainer
    assert checkpoint_info(out)["step"] == 1  # what the trainer reads first, on every process
    assert load_checkpoint(out, resumed, resumed_opt, accelerator=acc)["step"] == 1
    train_step(resumed, resumed_opt, rank, 2)
    for (name, a), b in zip(policy.named_parameters(), resumed.parameters()):
        assert torch.equal(local(a), local(b)), name
    files = json.loads((out / "checkpoint.json").read_text())["files"]
    assert {"model.rank0.safetensors", "model.rank1.safetensors", "state.json"} <= set(files), sorted(files)

    # Merging LoRA adapters into sharded weights would be silently lost: refused.
    lora, _ = load_policy("tiny", seed=0)
    add_lora(lora, r=2, alpha=4)
    for layer in lora.lm.get_base_model().model.layers:
        fully_shard(layer)
    fully_shard(lora)
    try:
        merge_lora(lora)
    except ValueError as err:
        assert "FSDP-sharded" in str(err)
    else:
        raise AssertionError("merge_lora on a sharded model did not refuse")
    acc.wait_for_everyone()
    print(f"fsdp worker rank {rank}: OK", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
