"""The SB3 LLM policy: exact LM logits under padding, PPO / MaskablePPO smoke runs on the token MDP."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces
from sb3_contrib import MaskablePPO
from stable_baselines3 import PPO

from mem1_agent.sb3_policy import LLMActorCriticPolicy, MaskableLLMActorCriticPolicy
from mem1_gym.wrappers import TokenMDPEnv, token_observation_space
from mem1_gym.wrappers.tokenized import pad_ids
from tests.tiny_token_world import SecretNumberEnv, build_tiny_model_dir, build_tiny_tokenizer

MAX_LEN = 160


pytestmark = pytest.mark.usefixtures("one_torch_thread", "sb3_logs_in_tmp")


@pytest.fixture(scope="module")
def tok():
    return build_tiny_tokenizer()


@pytest.fixture(scope="module")
def model_dir(tok, tmp_path_factory):
    return build_tiny_model_dir(tmp_path_factory.mktemp("tiny-llama"), tok)


def make_env(tok) -> TokenMDPEnv:
    return TokenMDPEnv(SecretNumberEnv(memory="mem1", max_turns=3), tok, max_length=MAX_LEN, max_turn_tokens=12)


def test_logits_and_values_match_the_lm_under_padding(tok, model_dir):
    space = token_observation_space(len(tok), MAX_LEN)
    policy = LLMActorCriticPolicy(space, spaces.Discrete(len(tok)), lambda _: 1e-4, model=str(model_dir))
    lm = policy.features_extractor.lm
    rows = [[1, 40, 271, 70, 277], [1, 87, 85, 259, 201, 40, 271, 70, 277, 267, 284, 16, 5]]
    batch = [pad_ids(r, MAX_LEN, tok.pad_token_id) for r in rows]
    # Float tensors, as SB3's rollout buffer stores them.
    obs = {k: torch.as_tensor(np.stack([b[k] for b in batch]).astype(np.float32)) for k in batch[0]}
    with torch.no_grad():
        dist = policy.get_distribution(obs)
        values = policy.predict_values(obs)
        for i, r in enumerate(rows):
            expected = lm(torch.tensor([r])).logits[0, -1]
            expected = torch.log_softmax(expected, -1)
            torch.testing.assert_close(dist.distribution.logits[i], expected, atol=1e-5, rtol=1e-5)
    assert values.shape == (2, 1) and torch.all(values == 0)  # zero-initialised value head


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_ppo_runs_on_the_token_mdp(tok, model_dir):
    torch.manual_seed(0)
    algo = PPO(
        LLMActorCriticPolicy, make_env(tok), n_steps=16, batch_size=8, n_epochs=1, learning_rate=1e-3,
        ent_coef=0.01, seed=0, device="cpu", policy_kwargs={"model": str(model_dir)},
    )
    head = algo.policy.features_extractor.lm.get_output_embeddings().weight
    before = head.detach().clone()
    algo.learn(total_timesteps=32)
    assert algo.num_timesteps == 32
    assert not torch.equal(before, head)  # the update reached the LM's weights
    obs, _ = make_env(tok).reset(seed=0)
    action, _ = algo.predict(obs, deterministic=True)
    # Deterministic: the most likely next token of the trained LM for this context.
    ids = torch.as_tensor(obs["input_ids"][: int(obs["attention_mask"].sum())])[None]
    with torch.no_grad():
        expected = algo.policy.features_extractor.lm(ids).logits[0, -1].argmax().item()
    assert int(action) == expected


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_maskable_ppo_respects_grammar_masks_and_reloads(tok, model_dir, tmp_path):
    algo = MaskablePPO(
        MaskableLLMActorCriticPolicy, make_env(tok), n_steps=16, batch_size=8, n_epochs=1,
        seed=0, device="cpu", policy_kwargs={"model": str(model_dir)},
    )
    algo.learn(total_timesteps=16)
    buf = algo.rollout_buffer
    actions = buf.actions.reshape(-1).astype(int)
    masks = buf.action_masks.reshape(len(actions), -1)
    assert masks[np.arange(len(actions)), actions].all()  # every sampled token was grammatical
    assert not masks.all()  # and the masks did constrain something

    algo.save(tmp_path / "mppo.zip")
    loaded = MaskablePPO.load(tmp_path / "mppo.zip", device="cpu")
    obs, _ = make_env(tok).reset(seed=1)
    obs_t, _ = algo.policy.obs_to_tensor(obs)
    with torch.no_grad():
        a = algo.policy.get_distribution(obs_t).distribution.logits
        b = loaded.policy.get_distribution(obs_t).distribution.logits
    torch.testing.assert_close(a, b)


def test_needs_the_token_mdp_spaces(tok, model_dir):
    space = token_observation_space(len(tok), MAX_LEN)
    with pytest.raises(ValueError, match="Discrete"):
        LLMActorCriticPolicy(space, spaces.Box(0, 1, (3,)), lambda _: 1e-4, model=str(model_dir))
    with pytest.raises(ValueError, match="vocabulary"):
        LLMActorCriticPolicy(space, spaces.Discrete(len(tok) + 10), lambda _: 1e-4, model=str(model_dir))
    with pytest.raises(ValueError, match="token Dict"):
        LLMActorCriticPolicy(spaces.Box(0, 1, (3,)), spaces.Discrete(len(tok)), lambda _: 1e-4, model=str(model_dir))
