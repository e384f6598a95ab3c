"""The learning experiment's tokenizers and the imperfect demonstrator (mem1_agent.word_model, mem1_gym.imperfect_oracle)."""

from __future__ import annotations

import re

import gymnasium as gym
import pytest

import mem1_gym  # noqa: F401  (registers the envs)
from mem1_agent.word_model import build_word_model, entity_phrases, instruction_phrases, word_tokenizer, world_texts
from mem1_gym.data import load_dataset
from mem1_gym.imperfect_oracle import PrematureAnswerQAEnv


@pytest.fixture(scope="module")
def world():
    return load_dataset("fictional", seed=0, size=400)


def _normalise(text: str) -> list[str]:
    """The words and punctuation of ``text`` (decoding puts a space between tokens)."""
    return re.findall(r"\w+|[^\w\s]", text)


def test_word_level_names_are_one_token(world):
    tok = word_tokenizer(world_texts(world), phrases=[*instruction_phrases(), *entity_phrases(world)])
    title = next(p.title for p in world.corpus if p.title.count(" ") >= 2)  # e.g. "The Corvek Fable"
    assert len(tok(title, add_special_tokens=False).input_ids) == 1
    assert tok.convert_tokens_to_ids("</query>") != tok.unk_token_id


def test_subword_tokenizer_splits_rare_names_into_shared_pieces(world):
    texts = world_texts(world)
    tok = word_tokenizer(texts, phrases=instruction_phrases(), vocab_size=600)
    assert len(tok) < 700  # 600 trained + tags + the instruction phrase
    names = sorted({word for p in world.corpus for word in p.title.split() if word != "The"})
    split = [pieces for pieces in map(tok.tokenize, names) if len(pieces) > 1]
    assert len(split) > 0.8 * len(names), "most name words should split into pieces"
    # Pieces recur across names: far fewer distinct pieces than names.
    assert len({t for pieces in split for t in pieces}) < len(split) // 2
    for passage in world.corpus[:50]:
        ids = tok(passage.contents, add_special_tokens=False).input_ids
        assert tok.unk_token_id not in ids
        assert _normalise(tok.decode(ids)) == _normalise(passage.contents)
    # The tags and the instruction block stay single tokens.
    for tag in ("<IS>", "</IS>", "<query>", "</query>", "<answer>", "</answer>"):
        assert len(tok(tag, add_special_tokens=False).input_ids) == 1
    assert len(tok(instruction_phrases()[0], add_special_tokens=False).input_ids) == 1


def test_build_word_model_with_subwords_loads(tmp_path):
    from mem1_agent.models import load_policy

    folder = build_word_model(tmp_path / "m", dataset_size=400, vocab_size=600, hidden_size=32, num_layers=1,
                              num_heads=2, num_kv_heads=1, intermediate_size=64)
    model, tok = load_policy(str(folder), value_head=False)
    assert model.lm.config.vocab_size == len(tok) < 700


def _run_oracle(env, seed):
    env.reset(seed=seed)
    actions, done, reward = [], False, 0.0
    while not done:
        actions.append(env.unwrapped.oracle_action())
        _, reward, term, trunc, _ = env.step(actions[-1])
        done = term or trunc
    return actions, reward


def test_premature_oracle_answers_unknown_for_the_last_question():
    kwargs = dict(n_objectives=2, memory="mem1", topk=1, dataset_size=400)
    always = PrematureAnswerQAEnv(oracle_error=1.0, **kwargs)
    never = PrematureAnswerQAEnv(oracle_error=0.0, **kwargs)
    plain = gym.make("mem1_gym/MultiObjectiveQA-v0", **kwargs)
    for seed in range(5):
        bad, bad_reward = _run_oracle(always, seed)
        good, good_reward = _run_oracle(never, seed)
        reference, reference_reward = _run_oracle(plain, seed)
        assert good == reference and good_reward == reference_reward == 2.0
        assert bad_reward == 1.0  # the first question right, the last one "unknown"
        assert "unknown" in bad[-1] and "<answer>" in bad[-1]
        assert bad == reference[: len(bad) - 1] + [bad[-1]]  # identical until it stops early


def test_premature_oracle_rate_and_validation():
    env = PrematureAnswerQAEnv(oracle_error=0.7, n_objectives=2, memory="mem1",
                   topk=1, dataset_size=400)
    early = sum(_run_oracle(env, seed)[1] == 1.0 for seed in range(200))
    assert 120 <= early <= 160  # 0.7 of 200 = 140, binomial sd about 6.5
    with pytest.raises(ValueError, match="probability"):
        PrematureAnswerQAEnv(oracle_error=1.5, n_objectives=2, dataset_size=400)
