"""Policies: default-model conversion and cache, tiny models, value head, frozen reference."""

from __future__ import annotations

import json
import time

import pytest
import torch

from mem1_agent.models import (
    AdapterDisabledReference,
    PolicyWithValue,
    add_lora,
    check_attn_implementation,
    default_model_path,
    enable_gradient_checkpointing,
    frozen_reference,
    is_lora,
    load_policy,
    merged_lm,
    tiny_model,
    tiny_tokenizer,
)


@pytest.mark.model
@pytest.mark.slow
def test_gguf_conversion_is_cached_and_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("MEM1_CACHE_DIR", str(tmp_path))
    path = default_model_path()
    assert path == tmp_path / "models" / "smollm2-135m-instruct"
    assert (path / "model.safetensors").is_file() and (path / "config.json").is_file()
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp folder left behind
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    start = time.perf_counter()
    assert default_model_path() == path  # second call: the cache, not a new conversion
    assert time.perf_counter() - start < 1.0
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp
    policy, tok = load_policy("default", attn_implementation="eager", value_head=True)
    assert type(policy.lm).__name__ == "LlamaForCausalLM" and policy.config._attn_implementation == "eager"
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is 2+2?"}], add_generation_prompt=True, tokenize=False)
    ids = tok(prompt, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = policy(ids)
    assert out["logits"].shape == (1, ids.shape[1], len(tok)) and out["values"].shape == ids.shape
    # The dequantised weights make a working model: greedy continuation is real text, not noise.
    greedy = policy.lm.generate(ids, max_new_tokens=8, do_sample=False)
    text = tok.decode(greedy[0, ids.shape[1]:])
    assert any(w in text.lower() for w in ("4", "four", "answer")), text
    # A trained default model can be exported: the cached config no longer names GGUF quantisation.
    assert "quantization_config" not in json.loads((path / "config.json").read_text())
    policy.lm.save_pretrained(tmp_path / "export")
    assert (tmp_path / "export" / "model.safetensors").is_file()


def test_a_cache_written_with_gguf_quantization_config_is_repaired(tmp_path, monkeypatch):
    monkeypatch.setenv("MEM1_CACHE_DIR", str(tmp_path))
    folder = tmp_path / "models" / "smollm2-135m-instruct"
    folder.mkdir(parents=True)
    old = {"model_type": "llama", "quantization_config": {"quant_method": "gguf", "gguf_file": "x.gguf"}}
    (folder / "config.json").write_text(json.dumps(old))
    assert default_model_path() == folder
    assert json.loads((folder / "config.json").read_text()) == {"model_type": "llama"}
    assert [p.name for p in folder.iterdir()] == ["config.json"]  # no temp file left


def test_tiny_tokenizer_has_a_chat_template():
    tok = tiny_tokenizer()
    text = tok.apply_chat_template([{"role": "user", "content": "alpha"}], add_generation_prompt=True, tokenize=False)
    assert text == "<|im_start|>user\nalpha<|im_end|>\n<|im_start|>assistant\n"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text and max(ids) < len(tok)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_tiny_models_and_value_head(arch):
    lm = tiny_model(arch, seed=1)
    assert type(lm).__name__ == ("LlamaForCausalLM" if arch == "llama" else "Qwen2ForCausalLM")
    assert torch.equal(next(tiny_model(arch, seed=1).parameters()), next(lm.parameters()))  # seeded
    policy = PolicyWithValue(lm)
    ids = torch.randint(3, 400, (2, 7))
    out = policy(ids, logits_at=(torch.tensor([0, 1]), torch.tensor([6, 3])))
    assert out["values"].shape == (2, 7) and out["logits"].shape == (2, 400)
    full = lm(ids).logits
    assert torch.allclose(out["logits"][1], full[1, 3], atol=1e-5)  # same logits as the plain LM


def test_frozen_reference_is_a_frozen_copy():
    policy, _ = load_policy("tiny")
    ref = frozen_reference(policy)
    assert not any(p.requires_grad for p in ref.parameters()) and not ref.training
    with torch.no_grad():
        next(policy.lm.parameters()).add_(1.0)
    assert not torch.equal(next(policy.lm.parameters()), next(ref.parameters()))
    assert isinstance(ref, PolicyWithValue) and ref.value_head is None


def test_unsupported_attention_and_arch_are_refused():
    with pytest.raises(ValueError, match="flash attention kernels only support"):
        check_attn_implementation("flash_attention_2")
    with pytest.raises(ValueError, match="arch"):
        tiny_model("gpt2")
    assert check_attn_implementation("sdpa") == "sdpa"


def test_separate_critic_feeds_the_value_head_and_leaves_the_logits_alone():
    shared, _ = load_policy("tiny", seed=0)
    split, _ = load_policy("tiny", seed=0, critic="tiny-qwen2")
    assert split.critic is not None and shared.critic is None
    ids = torch.randint(3, 400, (2, 9))
    at = (torch.tensor([0, 1]), torch.tensor([8, 4]))
    a, b = shared(ids, logits_at=at), split(ids, logits_at=at)
    assert torch.allclose(a["logits"], b["logits"])  # same actor weights (same seed)
    assert b["values"].shape == (2, 9) and not torch.allclose(a["values"], b["values"])
    # The value loss trains the critic and its head, never the actor.
    b["values"].sum().backward()
    assert all(p.grad is not None for p in split.critic.parameters() if p.requires_grad)
    assert all(p.grad is None for p in split.lm.parameters())
    assert split(ids, logits_at=at, with_values=False)["values"] is None


def test_critic_with_another_tokenizer_or_without_a_value_head_is_refused(tmp_path):
    folder = tmp_path / "other-vocab"
    tok = tiny_tokenizer()
    tok.add_tokens(["<extra>"])
    tiny_model("llama", vocab_size=len(tok)).save_pretrained(folder)
    tok.save_pretrained(folder)
    with pytest.raises(ValueError, match="different tokenizer"):
        load_policy("tiny", critic=str(folder))
    with pytest.raises(ValueError, match="needs value_head=True"):
        load_policy("tiny", critic="tiny", value_head=False)


def _lora_policy(seed: int = 0, **kwargs):
    """A tiny policy with LoRA adapters made non-trivial (lora_B starts at zero)."""
    policy, _ = load_policy("tiny", seed=seed)
    add_lora(policy, r=4, alpha=8, **kwargs)
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.3)
    return policy


def test_lora_trains_only_adapters_and_value_head():
    policy = _lora_policy()
    trainable = [n for n, p in policy.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or n.startswith("value_head.") for n in trainable)
    assert {"value_head.proj.weight", "value_head.proj.bias"} <= set(trainable)
    assert any("lora_A" in n for n in trainable) and any("lora_B" in n for n in trainable)


def test_lora_reference_is_the_base_model_without_a_copy():
    base, _ = load_policy("tiny", seed=0)
    policy = _lora_policy()
    ref = frozen_reference(policy)
    assert isinstance(ref, AdapterDisabledReference) and ref.policy is policy  # no second copy
    ids = torch.randint(3, 400, (2, 9))
    with torch.no_grad():
        ref_logits, base_logits, policy_logits = ref(ids)["logits"], base(ids)["logits"], policy(ids)["logits"]
    assert torch.equal(ref_logits, base_logits)
    assert (policy_logits - base_logits).abs().max() > 1e-2  # the adapters do change the policy
    policy.train()
    ref(ids)
    assert policy.training  # the reference forward leaves the policy's mode alone


def test_merged_lora_model_is_a_plain_lm_with_the_adapted_logits():
    policy = _lora_policy()
    merged = merged_lm(policy)
    assert type(merged).__name__ == "LlamaForCausalLM" and not is_lora(merged)
    assert is_lora(policy.lm)  # the policy keeps its adapters
    ids = torch.randint(3, 400, (2, 9))
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, policy(ids)["logits"], atol=1e-5)


def test_gradient_checkpointing_recomputes_layers_and_keeps_gradients_identical():
    ids = torch.randint(3, 400, (2, 12))

    def grads(checkpointing: bool):
        policy = _lora_policy(seed=3)
        for p in policy.lm.parameters():  # full fine-tuning of the base too
            p.requires_grad_(True)
        if checkpointing:
            enable_gradient_checkpointing(policy)
        calls = []
        # A pre-hook: the recomputation stops early once the saved tensors are rebuilt, so a
        # forward hook (after the module) may never fire on the replay.
        policy.backbone().layers[0].self_attn.register_forward_pre_hook(lambda *a: calls.append(1))
        policy.train()
        out = policy(ids)
        (out["logits"].logsumexp(-1).mean() + out["values"].pow(2).mean()).backward()
        return {n: p.grad.clone() for n, p in policy.named_parameters() if p.grad is not None}, len(calls)

    plain, plain_calls = grads(False)
    ckpt, ckpt_calls = grads(True)
    assert (plain_calls, ckpt_calls) == (1, 2)  # the layer really ran again in the backward pass
    assert plain.keys() == ckpt.keys() and len(plain) > 10
    for name in plain:
        assert torch.allclose(plain[name], ckpt[name], atol=1e-6, rtol=1e-5), name


def test_lora_critic_value_parameters_are_its_adapters_not_its_frozen_base():
    # The SFT phase freezes and the PPO phase unfreezes value_parameters(): with LoRA on the critic that
    # must not switch on the critic's whole base model.
    policy, _ = load_policy("tiny", seed=0, critic="tiny")
    add_lora(policy, r=4, alpha=8)
    values = policy.value_parameters()
    names = {id(p): n for n, p in policy.named_parameters()}
    assert values and all("lora_" in names[id(p)] or names[id(p)].startswith("value_head.") for p in values)
    assert all(p.requires_grad for p in values)
    from mem1_agent.train import set_phase_trainable

    frozen_before = sum(p.numel() for p in policy.parameters() if not p.requires_grad)
    set_phase_trainable(policy, "sft")  # what the trainer does per phase
    assert not any(p.requires_grad for p in values)
    assert sum(p.numel() for p in policy.parameters() if not p.requires_grad) == frozen_before + sum(p.numel() for p in values)
    set_phase_trainable(policy, "rl")
    assert all(p.requires_grad for p in values)
    assert sum(p.numel() for p in policy.parameters() if not p.requires_grad) == frozen_before


def test_output_layer_computes_fp32_logits_under_bf16_autocast_and_in_copies():
    import copy

    from mem1_agent.models import frozen_reference

    model, _ = load_policy("tiny", seed=0)
    hidden = torch.randn(3, 64)
    exact = hidden @ model.lm.lm_head.weight.T
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model.lm.lm_head(hidden)
        ref_logits = frozen_reference(model).lm.lm_head(hidden)
    assert logits.dtype == torch.float32 and torch.allclose(logits, exact, atol=1e-5)
    # The reference is a deep copy: its output layer must use its own weights, not the policy's.
    ref = frozen_reference(model)
    with torch.no_grad():
        model.lm.lm_head.weight.add_(1.0)
    assert torch.allclose(ref.lm.lm_head(hidden), exact, atol=1e-5)
    assert torch.allclose(ref_logits, exact, atol=1e-5)
    assert copy.deepcopy(model).lm.lm_head.forward.__self__ is not model.lm.lm_head
