"""TokenMDPEnv: one token per step, turn boundaries, grammar masks, env checkers."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from mem1_gym.wrappers import TokenizedEnv, TokenMDPEnv
from mem1_gym.wrappers.turn_grammar import BEFORE_ACTION, DEAD, DONE, IN_ACTION, TurnGrammar
from mem1_gym.protocol import PAPER_TAGS
from tests.tiny_token_world import SecretNumberEnv, build_tiny_tokenizer, prompt_tokens


@pytest.fixture(scope="module", params=["tiny", pytest.param("smollm2", marks=[pytest.mark.model, pytest.mark.slow])])
def tok(request):
    """The in-process tiny tokenizer, and the default model's (SmolLM2), which is what users tokenize with."""
    if request.param == "tiny":
        return build_tiny_tokenizer()
    from mem1_agent.models import default_model_path
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(default_model_path()))


@pytest.fixture(scope="module")
def tiny_tok():
    """The tiny tokenizer only: for tests that sample thousands of masked tokens or brute-force the vocabulary,
    which a 49k vocabulary makes take many minutes."""
    return build_tiny_tokenizer()


def make(tok, memory="mem1", **kwargs) -> TokenMDPEnv:
    kwargs.setdefault("max_length", 300)
    kwargs.setdefault("max_turn_tokens", 40)
    return TokenMDPEnv(SecretNumberEnv(memory=memory), tok, **kwargs)


def allowed_strings(env: TokenMDPEnv) -> set[str]:
    mask = env.action_masks()
    return {env.grammar.token_strings[i] for i in np.flatnonzero(mask)}


@pytest.mark.filterwarnings("ignore:.*different from the unwrapped version")
def test_passes_gymnasium_and_sb3_check_env(tok):
    gym_check_env(make(tok), skip_render_check=True)
    sb3_check_env(make(tok))


def test_token_by_token_oracle_matches_turn_level_env(tok):
    mdp = make(tok, memory="full")
    turn_env = TokenizedEnv(SecretNumberEnv(memory="full"), tok, max_length=300)
    obs, info = mdp.reset(seed=4)
    ref_obs, _ = turn_env.reset(seed=4)
    assert np.array_equal(obs["input_ids"], ref_obs["input_ids"])
    total = 0.0
    while True:
        ids = tok(mdp.unwrapped.oracle_action(), add_special_tokens=False)["input_ids"]
        ref_obs, ref_reward, ref_term, _, ref_info = turn_env.step(ids)
        for k, token in enumerate(ids):
            assert mdp.action_masks()[token], f"the grammar refuses oracle token {k}"
            prev_len = int(obs["attention_mask"].sum())
            obs, reward, term, trunc, info = mdp.step(token)
            total += reward
            if k < len(ids) - 1:
                assert not info["turn_done"] and reward == 0.0 and not term
                assert info["prefix_len"] == prev_len and int(obs["attention_mask"].sum()) == prev_len + 1
                assert obs["input_ids"][prev_len] == token
        assert info["turn_done"] and info["turn_tokens"] == len(ids)  # the closing tag ended the turn
        assert np.array_equal(obs["input_ids"], ref_obs["input_ids"]) and reward == ref_reward
        assert info["segment_ids"] == ref_info["segment_ids"]
        assert info["prefix_len"] == prev_len  # full memory: the previous observation is a prefix
        if term:
            assert ref_term
            break
    assert total == 1.0 and info["metrics"]["em"] == 1.0


def test_turn_limit_cuts_a_turn(tok):
    env = make(tok, max_turn_tokens=5)
    env.reset(seed=0)
    word = tok.convert_tokens_to_ids("a")
    for k in range(5):
        _, _, _, _, info = env.step(word)
    assert info["turn_done"] and info["turn_tokens"] == 5 and not info["valid"]
    assert info["segment_ids"][1] == [word] * 5


def test_eos_ends_a_turn(tok):
    env = make(tok)
    env.reset(seed=0)
    ids = tok("<IS> x", add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    for t in ids:
        _, _, _, _, info = env.step(t)
    assert info["turn_done"] and info["segment_ids"][1] == ids


def test_full_observation_ends_the_turn(tok):
    limit = prompt_tokens(tok) + 9
    env = make(tok, max_length=limit, max_turn_tokens=100)
    obs, info = env.reset(seed=0)
    room = limit - len(info["input_ids"])
    word = tok.convert_tokens_to_ids("a")
    for k in range(room):
        obs, _, _, trunc, info = env.step(word)
    assert info["turn_done"] and info["turn_tokens"] == room
    assert trunc and f"max_length={limit}" in info["truncation_reason"]


def test_grammar_masks_follow_the_turn(tok):
    env = make(tok)
    env.reset(seed=0)
    start = allowed_strings(env)
    assert "<" in start and " the" not in start and tok.eos_token not in start
    assert all(s.strip() == "" or "<IS>".startswith(s.strip()) or s.strip().startswith("<IS>") for s in start)
    for t in tok("<IS> some notes </IS>", add_special_tokens=False)["input_ids"]:
        assert env.action_masks()[t]
        env.step(t)
    after = allowed_strings(env)
    # After </IS> only an action tag may follow (or whitespace before it).
    opens = ("<query>", "<answer>")
    assert after
    for s in after:
        s = s.strip()
        assert s == "" or any(o.startswith(s) or s.startswith(o) for o in opens), s
    assert not any(s.strip().startswith("<IS>") or s.strip().startswith("<info>") for s in after)
    for t in tok("<query> sec", add_special_tokens=False)["input_ids"]:
        env.step(t)
    inside = env.action_masks()
    assert inside[tok.convert_tokens_to_ids("a")] and not inside[tok.eos_token_id]
    assert not inside[tok.convert_tokens_to_ids("<|im_start|>")]


def test_masked_random_turns_are_always_well_formed(tiny_tok):
    tok = tiny_tok
    env = make(tok, memory="mem1", max_turn_tokens=200, max_length=1000)
    g = env.grammar
    rng = np.random.default_rng(0)
    env.reset(seed=1)
    checked = 0
    for _ in range(3000):
        allowed = np.flatnonzero(env.action_masks())
        state = env._state
        # Random masked tokens, nudged towards the next tag so turns finish quickly.
        progress = [
            i for i in allowed
            if (n := g.advance(state, g.token_strings[i])).phase != state.phase or len(n.buf) > len(state.buf)
        ]
        pool = progress if progress and rng.random() < 0.4 else allowed
        _, _, term, trunc, info = env.step(int(rng.choice(pool)))
        if info["turn_done"]:
            text = next(s["text"] for s in info["new_segments"] if s["kind"] == "action")
            if g.advance(g.initial, text).phase == DONE:
                assert info["valid"], (text, info["error"])
                checked += 1
            if term or trunc:
                env.reset(seed=checked)
        if checked == 4:
            break
    assert checked == 4


def test_grammar_automaton_on_text():
    g = TurnGrammar(PAPER_TAGS, ("search", "answer"), ["<", "IS", ">", "x", "</", "query", "answer"])
    s = g.advance(g.initial, "  <IS> a < b </I </IS> ")
    assert s.phase == BEFORE_ACTION
    assert g.advance(s, "<quer").phase == BEFORE_ACTION
    s = g.advance(s, "<answer> 42 </answe")
    assert s.phase == IN_ACTION and s.tag == "answer" and s.buf == "</answe"
    assert g.advance(s, "r>").phase == DONE and g.advance(s, ">").phase == IN_ACTION
    assert g.advance(g.initial, "hello").phase == DEAD
    assert g.advance(g.initial, "<IS> a </IS> <info>").phase == DEAD
    assert g.advance(g.initial, "<IS> a </IS><action>").phase == DEAD  # not a role of this env


def test_off_grammar_turn_still_ends_at_a_closing_tag(tok):
    env = make(tok, grammar=False)
    env.reset(seed=0)
    assert env.action_masks().all()
    ids = tok("oops <query> secret </query>", add_special_tokens=False)["input_ids"]
    for t in ids:
        _, _, _, _, info = env.step(t)
    assert info["turn_done"] and info["turn_tokens"] == len(ids) and not info["valid"]


def test_bad_token_is_a_clear_error(tok):
    env = make(tok)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        env.step(len(tok) + 1)


@pytest.mark.filterwarnings("ignore:.*different from the unwrapped version")
def test_multi_objective_qa_as_a_token_mdp(tok):
    import gymnasium as gym

    import mem1_gym  # noqa: F401  (registers the envs)

    def qa() -> TokenMDPEnv:
        text_env = gym.make("mem1_gym/MultiObjectiveQA-v0", n_objectives=2)
        return TokenMDPEnv(text_env, tok, max_length=4096, max_turn_tokens=256)

    gym_check_env(qa(), skip_render_check=True)
    sb3_check_env(qa())
    env = qa()
    env.reset(seed=3)
    reward = 0.0
    while True:
        for t in tok(env.unwrapped.oracle_action(), add_special_tokens=False)["input_ids"]:
            assert env.action_masks()[t]
            _, r, term, trunc, info = env.step(t)
            reward += r
        assert info["turn_done"] and info["valid"]
        if term or trunc:
            break
    assert reward == 2.0


def test_fast_masks_equal_brute_force_simulation(tok):
    env = make(tok)
    g = env.grammar
    env.reset(seed=0)

    def brute(state):
        ok = np.array([
            bool(s) and not g.special[i] and not ("\ufffd" in s and state.phase in (0, BEFORE_ACTION))
            and g.advance(state, s).phase != DEAD
            for i, s in enumerate(g.token_strings)
        ])
        return ok

    text = "  <IS> a </I b <\n </IS> \n<query> c </que x </query>"
    state = g.initial
    seen = 0
    for ch in text:
        if state.phase not in (DONE, DEAD):
            assert np.array_equal(g.mask(state), brute(state)), state
            seen += 1
        state = g.advance(state, ch)
    assert state.phase == DONE and seen > 30
