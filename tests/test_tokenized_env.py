"""TokenizedEnv: token-in/token-out, exact token counting, prefix_len per memory policy, overflow handling."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from mem1_gym.wrappers import TokenizedEnv
from mem1_gym.wrappers.tokenized import common_prefix_len
from tests.tiny_token_world import SecretNumberEnv, build_tiny_tokenizer, prompt_tokens

POLICIES = ["full", "mem1", "window:2", "truncate:180"]


@pytest.fixture(scope="module", params=["tiny", pytest.param("smollm2", marks=[pytest.mark.model, pytest.mark.slow])])
def tok(request):
    """The in-process tiny tokenizer, and the default model's (SmolLM2), which is what users tokenize with."""
    if request.param == "tiny":
        return build_tiny_tokenizer()
    from mem1_agent.models import default_model_path
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(default_model_path()))


@pytest.fixture(scope="module")
def plain_tok():
    return build_tiny_tokenizer(with_chat_template=False)


def search_turn(i: int) -> str:
    return f"<IS> step {i}: still looking. </IS><query> secret </query>"


def run_episode(env: TokenizedEnv, turns: list[str], seed: int = 0):
    """Reset, then step each turn as ids; yield (obs, info) of the reset and of every step."""
    obs, info = env.reset(seed=seed)
    yield obs, info, False, False
    for text in turns:
        ids = env.tokenizer(text, add_special_tokens=False)["input_ids"]
        obs, _, term, trunc, info = env.step(ids)
        yield obs, info, term, trunc
        if term or trunc:
            return


def test_segments_round_trip_text_to_ids(tok):
    env = TokenizedEnv(SecretNumberEnv(memory="full"), tok, max_length=512)
    turns = [search_turn(0), "no tags at all", env.unwrapped.oracle_action()]
    for _, info, _, _ in run_episode(env, turns):
        for seg in info["new_segments"]:
            ids = info["segment_ids"][seg["id"]]
            if seg["kind"] == "prompt":
                message = [{"role": "user", "content": seg["text"]}]
                templated = tok.apply_chat_template(message, add_generation_prompt=True, tokenize=False)
                assert env.decode(ids) == templated
                assert env.decode(ids).endswith("<|im_start|>assistant\n")
            else:
                assert env.decode(ids) == seg["text"]
                assert ids == tok(seg["text"], add_special_tokens=False)["input_ids"]
            assert len(ids) == seg["tokens"]
        # The context is exactly the visible segments' ids, in order, contiguous.
        pos = 0
        for sid, start, end in info["spans"]:
            assert start == pos and info["input_ids"][start:end] == env.segment_token_ids[sid]
            pos = end
        assert [s for s, _, _ in info["spans"]] == info["visible_ids"]
        assert pos == len(info["input_ids"]) == info["context_tokens"]


def test_prompt_without_chat_template_is_plain_text(plain_tok):
    env = TokenizedEnv(SecretNumberEnv(), plain_tok, max_length=512)
    _, info = env.reset(seed=3)
    prompt = info["new_segments"][0]["text"]
    assert env.decode(info["input_ids"]) == prompt


def test_observation_is_padded_context(tok):
    env = TokenizedEnv(SecretNumberEnv(memory="mem1"), tok, max_length=300)
    for obs, info, _, _ in run_episode(env, [search_turn(i) for i in range(3)]):
        n = len(info["input_ids"])
        assert env.observation_space.contains(obs)
        assert obs["input_ids"][:n].tolist() == info["input_ids"]
        assert obs["attention_mask"].tolist() == [1] * n + [0] * (300 - n)
        assert (obs["input_ids"][n:] == tok.pad_token_id).all()


@pytest.mark.parametrize("memory", POLICIES)
def test_prefix_len_for_every_memory_policy(tok, memory):
    env = TokenizedEnv(SecretNumberEnv(memory=memory, max_turns=6), tok, max_length=1024)
    previous: list[int] | None = None
    prompt_len = 0
    steps = 0
    for _, info, _, _ in run_episode(env, [search_turn(i) for i in range(6)]):
        ids = info["input_ids"]
        p = info["prefix_len"]
        if previous is None:
            assert p == 0
            prompt_len = len(ids)
        else:
            steps += 1
            # Exactly the longest common prefix: reusable KV entries, and no more.
            assert ids[:p] == previous[:p]
            assert p == len(previous) or p == len(ids) or ids[p] != previous[p]
            assert p == common_prefix_len(previous, ids)
            assert p >= prompt_len  # the prompt is always visible and first
            if memory == "full":
                assert p == len(previous)  # the whole previous context is kept
        previous = ids
    assert steps == 6


def test_mem1_prefix_is_the_prompt_plus_common_turn_tokens(tok):
    env = TokenizedEnv(SecretNumberEnv(memory="mem1"), tok, max_length=1024)
    infos = [info for _, info, _, _ in run_episode(env, [search_turn(0), search_turn(1), search_turn(2)])]
    prompt_end = infos[0]["spans"][0][2]
    # From the second turn on the previous turn is pruned: reuse stops inside the
    # new action (its opening "<IS> step " matches the old one), never before the prompt ends.
    for info in infos[2:]:
        action_start = info["spans"][1][1]
        assert action_start == prompt_end
        assert prompt_end <= info["prefix_len"] < info["spans"][1][2]


def test_ids_are_kept_verbatim_when_decode_then_encode_differs(tok):
    env = TokenizedEnv(SecretNumberEnv(memory="full"), tok, max_length=512)
    env.reset(seed=0)
    text = "<IS> look </IS><query> secret </query>"
    # Spell the turn one byte-level character per token: a valid but unusual tokenization.
    char_ids = []
    for word, _ in tok.backend_tokenizer.pre_tokenizer.pre_tokenize_str(text):
        char_ids.extend(tok.convert_tokens_to_ids(list(word)))
    assert tok.decode(char_ids) == text
    assert tok(text, add_special_tokens=False)["input_ids"] != char_ids  # a round trip would change them
    _, _, _, _, info = env.step(char_ids)
    action = next(s for s in info["new_segments"] if s["kind"] == "action")
    assert action["text"] == text and info["valid"]
    assert info["segment_ids"][action["id"]] == char_ids
    assert env.segment_token_ids[action["id"]] == char_ids
    start, end = next((s, e) for sid, s, e in info["spans"] if sid == action["id"])
    assert info["input_ids"][start:end] == char_ids
    assert action["tokens"] == len(char_ids)  # the env counted the policy's own ids


def test_trailing_eos_is_kept_in_ids_not_in_text(tok):
    env = TokenizedEnv(SecretNumberEnv(memory="full"), tok, max_length=512)
    env.reset(seed=0)
    ids = tok(search_turn(0), add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    _, _, _, _, info = env.step(np.array(ids))
    action = next(s for s in info["new_segments"] if s["kind"] == "action")
    assert info["valid"] and action["text"] == search_turn(0)
    assert info["segment_ids"][action["id"]] == ids


def test_text_actions_use_no_special_tokens(tok):
    env = TokenizedEnv(SecretNumberEnv(memory="full"), tok, max_length=512)
    env.reset(seed=0)
    _, _, _, _, info = env.step(search_turn(0))
    ids = info["segment_ids"][1]
    assert ids == tok(search_turn(0), add_special_tokens=False)["input_ids"]


def test_metrics_are_in_real_tokens(tok):
    env = TokenizedEnv(SecretNumberEnv(memory="mem1"), tok, max_length=512)
    obs, info = env.reset(seed=2)
    peak = 0
    dependency = 0
    while True:
        context = len(env.context_ids)
        ids = tok(env.unwrapped.oracle_action(), add_special_tokens=False)["input_ids"]
        a = len(ids)
        peak = max(peak, context + a)
        dependency += a * context + a * (a + 1) // 2
        obs, reward, term, trunc, info = env.step(ids)
        assert info["context_tokens"] == len(info["input_ids"])
        if term or trunc:
            break
    assert reward == 1.0
    assert info["metrics"]["dependency"] == dependency
    assert info["metrics"]["peak_tokens"] == max(peak, len(info["input_ids"]))


def test_truncate_policy_keeps_context_within_budget(tok):
    budget = prompt_tokens(tok) + 50
    env = TokenizedEnv(SecretNumberEnv(memory=f"truncate:{budget}", max_turns=8), tok, max_length=budget)
    for _, info, term, trunc in run_episode(env, [search_turn(i) for i in range(8)]):
        assert len(info["input_ids"]) <= budget
        assert "max_length" not in info.get("truncation_reason", "")
    assert trunc and not term  # ended by the turn limit, not by overflow
    assert info["truncation_reason"] == "turn limit"
    assert info["turn"] == 8


def test_overflow_truncates_the_episode_with_a_reason(tok):
    limit = prompt_tokens(tok) + 80
    env = TokenizedEnv(SecretNumberEnv(memory="full", max_turns=8), tok, max_length=limit)
    for obs, info, term, trunc in run_episode(env, [search_turn(i) for i in range(8)]):
        pass
    assert trunc and not term
    assert f"max_length={limit}" in info["truncation_reason"]
    assert info["turn"] < 8
    assert info["metrics"]["turns"] == info["turn"] and info["metrics"]["peak_tokens"] > limit - 80
    # The observation holds whole leading segments only; the info keeps the full context.
    n = int(obs["attention_mask"].sum())
    assert n <= limit < len(info["input_ids"])
    assert n in {end for _, _, end in info["spans"]}
    assert obs["input_ids"][:n].tolist() == info["input_ids"][:n]
    # The episode is over for the wrapper even though the text env could go on; its metrics stay final.
    final = info["metrics"]
    _, reward, term, _, info = env.step(search_turn(99))
    assert term and reward == 0.0 and "reset()" in info["error"] and info["metrics"] == final


def test_prompt_longer_than_max_length_is_a_clear_error(tok):
    env = TokenizedEnv(SecretNumberEnv(), tok, max_length=10)
    with pytest.raises(ValueError, match="prompt is .* tokens long"):
        env.reset(seed=0)


def test_bad_actions(tok):
    env = TokenizedEnv(SecretNumberEnv(), tok, max_length=512)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="out of the vocabulary"):
        env.step([5, len(tok) + 3])
    with pytest.raises(TypeError, match="token ids or text"):
        env.step(3.5)
    _, reward, term, _, info = env.step([])  # an empty turn is a malformed turn, reported in-episode
    assert not info["valid"] and "internal state" in info["error"] and not term


def test_token_counter_is_installed_and_exact(tok):
    env = TokenizedEnv(SecretNumberEnv(), tok, max_length=512)
    assert env.unwrapped.token_counter is env.counter
    env.unwrapped.token_counter = lambda text: 1
    with pytest.raises(RuntimeError, match="token_counter replaced"):
        env.reset(seed=0)


@pytest.mark.filterwarnings("ignore:.*different from the unwrapped version")
def test_deterministic_and_passes_gymnasium_check_env(tok):
    env = TokenizedEnv(SecretNumberEnv(memory="mem1"), tok, max_length=512)
    check_env(env, skip_render_check=True)
    a, _ = env.reset(seed=7)
    b, _ = TokenizedEnv(SecretNumberEnv(memory="mem1"), tok, max_length=512).reset(seed=7)
    assert np.array_equal(a["input_ids"], b["input_ids"])


def test_tokenizer_can_be_given_by_path(tok, tmp_path):
    tok.save_pretrained(tmp_path)
    env = TokenizedEnv(SecretNumberEnv(), str(tmp_path), max_length=512)
    _, info = env.reset(seed=0)
    _, info2 = TokenizedEnv(SecretNumberEnv(), tok, max_length=512).reset(seed=0)
    assert info["input_ids"] == info2["input_ids"]


def test_rejects_non_mem1_envs(tok):
    with pytest.raises(TypeError, match="TurnEnv"):
        TokenizedEnv(gym.make("CartPole-v1"), tok)


@pytest.mark.parametrize("memory", ["full", "mem1", "truncate:600"])
def test_multi_objective_qa_oracle_episode_in_tokens(tok, memory):
    import mem1_gym  # noqa: F401  (registers the envs)

    text_env = gym.make("mem1_gym/MultiObjectiveQA-v0", n_objectives=2, memory=memory)
    env = TokenizedEnv(text_env, tok, max_length=8192)
    obs, info = env.reset(seed=0)
    prompt_len = len(info["input_ids"])
    previous = info["input_ids"]
    total = 0.0
    while True:
        ids = tok(env.unwrapped.oracle_action(), add_special_tokens=False)["input_ids"]
        obs, reward, term, trunc, info = env.step(ids)
        total += reward
        ids_now = info["input_ids"]
        assert info["context_tokens"] == len(ids_now) == int(obs["attention_mask"].sum())
        assert info["prefix_len"] == common_prefix_len(previous, ids_now) >= prompt_len
        if memory == "full":
            assert info["prefix_len"] == len(previous)
        if memory.startswith("truncate"):
            assert len(ids_now) <= 600
        for seg in info["new_segments"]:
            assert env.decode(info["segment_ids"][seg["id"]]) == seg["text"]
        previous = ids_now
        if term or trunc:
            break
    assert term and total == 2.0 and info["metrics"]["em"] == 2.0


def test_works_in_sync_vector_env(tok):
    def make():
        return TokenizedEnv(SecretNumberEnv(memory="mem1"), tok, max_length=256)

    venv = gym.vector.SyncVectorEnv([make, make])
    obs, info = venv.reset(seed=[0, 1])
    ids = np.array(tok(search_turn(0), add_special_tokens=False)["input_ids"])
    obs, _, _, _, info = venv.step((ids, ids))
    assert obs["input_ids"].shape == (2, 256)
    assert (obs["attention_mask"].sum(1) > info["prefix_len"]).all()
    venv.close()


class _LengthRecordingTokenizer:
    """The real tiny tokenizer, recording the length of every text it is asked to tokenize."""

    def __init__(self, tok):
        self._tok = tok
        self.longest = 0

    def __call__(self, text, **kwargs):
        self.longest = max(self.longest, len(text))
        return self._tok(text, **kwargs)

    def __len__(self):
        return len(self._tok)

    def __getattr__(self, name):
        if name.startswith("__"):  # copy/pickle probes: not the tokenizer's business
            raise AttributeError(name)
        return getattr(self.__dict__["_tok"], name)


def test_a_10mb_action_is_refused_before_it_is_tokenized(tok):
    spy = _LengthRecordingTokenizer(tok)
    env = TokenizedEnv(SecretNumberEnv(memory="mem1"), spy, max_length=512, max_action_tokens=256)
    env.reset(seed=0)
    spy.longest = 0
    action = "<IS> é中 </IS><query> " + "é中🙂" * 3_500_000 + " </query>"  # ~10.5 M characters, non-ASCII
    obs, reward, term, trunc, info = env.step(action)
    assert not info["valid"] and "characters long; the limit is 100000" in info["error"]
    # Only a bounded prefix was tokenized: max_action_bytes (16 per token of max_action_tokens) at most.
    assert 0 < spy.longest <= 16 * 256
    action_seg = info["new_segments"][0]
    # Cut at a token boundary: a character split across tokens decodes as U+FFFD at the very end.
    assert action.startswith(action_seg["text"].rstrip("\ufffd")) and len(info["segment_ids"][action_seg["id"]]) == 256
    assert not term and not trunc and env.observation_space.contains(obs)
    # The episode goes on normally.
    _, _, _, _, info = env.step(search_turn(1))
    assert info["valid"]


def test_long_id_and_byte_actions_are_invalid_turns(tok):
    env = TokenizedEnv(SecretNumberEnv(memory="mem1"), tok, max_length=512, max_action_tokens=40, max_action_bytes=300)
    env.reset(seed=0)
    ids = np.array(tok(search_turn(0) * 20, add_special_tokens=False)["input_ids"] * 50_000)  # millions of ids
    _, _, _, _, info = env.step(ids)
    assert not info["valid"] and info["error"] == f"Invalid turn: the turn is {len(ids)} tokens long; the limit is 40."
    seg = info["new_segments"][0]
    assert info["segment_ids"][seg["id"]] == ids[:40].tolist()  # the policy's ids, kept verbatim up to the bound
    _, _, _, _, info = env.step("<IS> " + "ü" * 200 + " </IS><query> x </query>")
    assert not info["valid"] and "bytes long in UTF-8; the limit is 300" in info["error"]
    _, _, _, _, info = env.step("<IS> " + "w " * 45 + "</IS><query> x </query>")
    assert not info["valid"] and "tokens long; the limit is 40" in info["error"]
    assert len(info["segment_ids"][info["new_segments"][0]["id"]]) == 40


def test_a_lone_surrogate_is_an_invalid_turn_with_a_clear_message(tok):
    env = TokenizedEnv(SecretNumberEnv(memory="mem1"), tok, max_length=512)
    env.reset(seed=0)
    _, _, term, _, info = env.step("<IS> a\ud800b </IS><query> secret </query>")
    assert not info["valid"] and not term
    assert "unpaired surrogate '\\ud800' at character 6" in info["error"]
    assert info["new_segments"][0]["text"] == "<IS> a?b </IS><query> secret </query>"
