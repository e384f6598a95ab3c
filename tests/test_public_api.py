"""The public API of mem1_agent, a plain HF model in stitched_forward, and the custom-algorithm example."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import mem1_agent

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_import_is_cheap_and_every_public_name_resolves():
    code = "import sys, mem1_agent; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.split() == ["False", "False"]
    for name in mem1_agent.__all__:
        assert getattr(mem1_agent, name) is not None, name
    # A public function that shares its module's name stays the function once the module is imported.
    import mem1_agent.rollout as _  # noqa: F401
    from mem1_agent import rollout, train
    from mem1_agent.rollout import rollout as rollout_fn
    from mem1_agent.train import train as train_fn

    assert rollout is rollout_fn and train is train_fn
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        mem1_agent.nope  # noqa: B018


def _episodes(model, tok, n=4, memory="mem1"):
    from mem1_agent import LMPolicy, SamplingConfig, make_env, rollout
    from mem1_gym.wrappers import TokenizedEnv

    envs = [TokenizedEnv(make_env("toy", memory=memory), tok, max_length=2048) for _ in range(2)]
    policy = LMPolicy(model, tok, sampling=SamplingConfig(max_new_tokens=8), generator=torch.Generator().manual_seed(0))
    episodes, _ = rollout(envs, policy, [0, 0, 1, 1][:n])
    return episodes


def test_stitched_forward_accepts_a_plain_hf_model():
    from mem1_agent import load_policy, per_turn_logprobs, stitch, stitched_forward

    torch.manual_seed(0)
    wrapped, tok = load_policy("tiny", attn_implementation="sdpa", value_head=False)
    plain = wrapped.lm  # a transformers LlamaForCausalLM
    episodes = _episodes(plain, tok, n=2, memory="window:2")
    batch = stitch(episodes, tok.pad_token_id, attn_implementation="sdpa")
    with torch.no_grad():
        out = stitched_forward(plain, batch)
        reference = torch.tensor([x for ep in episodes for lps in per_turn_logprobs(plain, ep) for x in lps])
    assert out["values"] is None
    assert (out["logprobs"] - reference).abs().max().item() <= 1e-4
    assert (out["logprobs"] - batch.rollout_logprobs).abs().max().item() <= 1e-4


def _example():
    spec = importlib.util.spec_from_file_location("custom_algorithm", ROOT / "examples" / "custom_algorithm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_custom_algorithm_loss_is_reinforce_with_a_task_baseline():
    from mem1_agent import load_policy, per_turn_logprobs

    torch.manual_seed(0)
    model, tok = load_policy("tiny", attn_implementation="sdpa", value_head=False)
    episodes = _episodes(model, tok)
    for ep, r in zip(episodes, [1.0, 0.0, 0.0, 2.0]):
        ep.reward = r
    loss = _example().reinforce_loss(model, episodes, group=2, pad_id=tok.pad_token_id)
    advantages = [0.5, -0.5, -1.0, 1.0]
    with torch.no_grad():
        sums = [sum(sum(lps) for lps in per_turn_logprobs(model, ep)) for ep in episodes]
    expected = -sum(a * s for a, s in zip(advantages, sums)) / 4
    assert loss.item() == pytest.approx(expected, abs=1e-3)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_custom_algorithm_example_runs(capsys):
    _example().main(["--iterations", "1", "--tasks", "1", "--group", "2"])
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == "done: 1 iterations of REINFORCE, 2 episodes each"
    assert out.splitlines()[0].startswith("iteration 0: mean reward 0.000, loss ")
