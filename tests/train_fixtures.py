"""Shared fixtures of the training tests: a tiny policy rolled out on the KeyLookup toy task.

Import the fixtures into a test module (``from train_fixtures import tiny_rollout``).
"""

from __future__ import annotations

import pytest
import torch

from mem1_agent.models import frozen_reference, load_policy
from mem1_agent.policy import LMPolicy, SamplingConfig
from mem1_agent.rollout import rollout
from mem1_agent.toy_task import KeyLookupEnv
from mem1_gym.wrappers import TokenizedEnv


def toy_envs(tokenizer, memories=("mem1", "full"), n_keys: int = 2) -> list[TokenizedEnv]:
    """One token-level KeyLookup env per memory policy."""
    return [TokenizedEnv(KeyLookupEnv(n_keys=n_keys, memory=m), tokenizer, max_length=2048) for m in memories]


@pytest.fixture
def tiny_policy():
    """A tiny random Llama with a value head, and its tokenizer."""
    model, tok = load_policy("tiny", seed=0)
    return model, tok


@pytest.fixture
def tiny_rollout(tiny_policy):
    """(model, frozen reference, tokenizer, 4 sampled episodes under mem1 and full memory)."""
    model, tok = tiny_policy
    ref = frozen_reference(model)
    policy = LMPolicy(model, tok, sampling=SamplingConfig(max_new_tokens=12), generator=torch.Generator().manual_seed(0))
    episodes, _ = rollout(toy_envs(tok), policy, seeds=[0, 1, 2, 3])
    return model, ref, tok, episodes


def tb_scalars(run_dir) -> dict[str, list[tuple[int, float]]]:
    """Every TensorBoard scalar a run wrote under ``<run_dir>/tb`` (one folder per phase, ``tb/sft`` and
    ``tb/rl``): ``{tag: [(step, value), ...]}``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars: dict[str, list[tuple[int, float]]] = {}
    tb = run_dir / "tb"
    for folder in [tb, *sorted(p for p in tb.iterdir() if p.is_dir())]:
        acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return scalars