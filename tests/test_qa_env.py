"""mem1_gym/MultiObjectiveQA-v0: Gymnasium citizenship, the oracle, scoring, bad input."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mem1_gym  # noqa: F401  (registers the envs)

ENV_ID = "mem1_gym/MultiObjectiveQA-v0"
SMALL = dict(dataset="fictional", dataset_size=300)


def make(**kwargs) -> gym.Env:
    return gym.make(ENV_ID, **{**SMALL, **kwargs})


def run_oracle(env: gym.Env, seed: int = 0) -> dict:
    env.reset(seed=seed)
    while True:
        _, _, terminated, truncated, info = env.step(env.unwrapped.oracle_action())
        if terminated or truncated:
            return info


def test_passes_gymnasium_env_checker():
    check_env(make(n_objectives=2).unwrapped, skip_render_check=True)


@pytest.mark.parametrize("memory", ["full", "mem1", "window:1", "truncate:400"])
@pytest.mark.parametrize("n", [1, 3])
def test_oracle_solves_every_objective(memory, n):
    info = run_oracle(make(n_objectives=n, memory=memory), seed=n)
    m = info["metrics"]
    assert m["em"] == n and m["f1"] == pytest.approx(n)
    assert m["turns"] >= n + 1 and m["invalid_turns"] == 0
    assert {"peak_tokens", "dependency", "turns"} <= set(m)


def test_oracle_at_32_objectives():
    env = make(n_objectives=32, memory="mem1", dataset_size=2000)
    assert run_oracle(env, seed=3)["metrics"]["em"] == 32


def test_mem1_context_stays_flat_while_full_grows():
    peaks = {}
    for memory in ("full", "mem1"):
        peaks[memory] = [run_oracle(make(n_objectives=n, memory=memory), seed=1)["metrics"]["peak_tokens"] for n in (2, 8)]
    assert peaks["full"][1] > 2.5 * peaks["full"][0]
    # mem1 grows only with the prompt (more questions) and the IS (more answers), not with turns.
    assert peaks["mem1"][1] < 0.5 * peaks["full"][1]


def test_deterministic_under_seed():
    a, b = make(n_objectives=3), make(n_objectives=3)
    obs_a, _ = a.reset(seed=7)
    obs_b, _ = b.reset(seed=7)
    assert obs_a == obs_b
    assert a.unwrapped.oracle_action() == b.unwrapped.oracle_action()
    assert a.step(a.unwrapped.oracle_action())[0] == b.step(b.unwrapped.oracle_action())[0]
    assert make(n_objectives=3).reset(seed=8)[0] != obs_a


def test_seed_kwarg_seeds_first_reset():
    assert make(seed=5).reset()[0] == make().reset(seed=5)[0]


def test_answers_scored_by_position_fewer_and_more():
    env = make(n_objectives=3)
    env.reset(seed=0)
    gold = [a[0] for a in env.unwrapped.task.answers]
    _, reward, terminated, _, info = env.step(f"<IS> x </IS><answer> {gold[0]}; nope </answer>")
    assert terminated and reward == 1.0 and info["metrics"]["em"] == 1.0
    env.reset(seed=0)
    _, reward, *_ = env.step(f"<IS> x </IS><answer> {'; '.join(gold)}; extra; more </answer>")
    assert reward == 3.0


@pytest.mark.parametrize(
    "action, fragment",
    [
        ("just text", "missing internal state"),
        ("<IS> s </IS>", "missing action"),
        ("<IS> s </IS><query>   </query>", "query is empty"),
        ("<IS> s </IS><query> " + "x" * 1_000_001 + " </query>", "characters long"),
        (None, "must be text"),
        (b"bytes", "must be text"),
        (12, "must be text"),
    ],
)
def test_bad_turns_become_info_and_count(action, fragment):
    env = make(n_objectives=1, format_penalty=0.1)
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(action)
    assert not info["valid"] and fragment in info["error"]
    assert fragment in obs
    assert info["turn"] == 1 and reward == pytest.approx(-0.1)
    assert not terminated


def test_step_after_end_is_a_message():
    env = make(n_objectives=1)
    env.reset(seed=0)
    env.step("<IS> s </IS><answer> x </answer>")
    _, reward, terminated, _, info = env.step("<IS> s </IS><answer> x </answer>")
    assert terminated and reward == 0.0 and "reset()" in info["error"]


def test_turn_limit_truncates_with_metrics():
    env = make(n_objectives=1, max_turns=2)
    env.reset(seed=0)
    env.step("<IS> s </IS><query> a </query>")
    _, _, terminated, truncated, info = env.step("<IS> s </IS><query> b </query>")
    assert truncated and not terminated and info["metrics"]["em"] == 0
    assert "turn limit" in info["new_segments"][-1]["text"]


def test_info_reports_segments_and_context():
    env = make(n_objectives=2, memory="mem1")
    _, info = env.reset(seed=0)
    assert [s["kind"] for s in info["new_segments"]] == ["prompt"] and info["visible_ids"] == [0]
    for _ in range(3):
        obs, _, _, _, info = env.step(env.unwrapped.oracle_action())
    assert [s["kind"] for s in info["new_segments"]] == ["action", "observation"]
    assert info["visible_ids"] == [0, 5, 6]
    assert info["context_tokens"] == len(obs.split())


def test_unicode_turns_are_accepted():
    env = make(n_objectives=1)
    env.reset(seed=0)
    obs, _, _, _, info = env.step("<IS> café 漢字 😀 </IS><query> Zoë's 🛒 naïve </query>")
    assert info["valid"] and env.observation_space.contains(obs)


def test_checkpoint_tags():
    env = make(n_objectives=1, tags="checkpoint")
    obs, _ = env.reset(seed=0)
    assert "<search>" in obs and "<think>" in obs
    assert run_oracle(env)["metrics"]["em"] == 1


def test_clear_errors_for_bad_kwargs():
    with pytest.raises(ValueError, match="n_objectives"):
        make(n_objectives=0)
    with pytest.raises(ValueError, match="memory policy"):
        make(memory="forget-everything")


def test_vector_envs():
    for vec in (gym.vector.SyncVectorEnv, gym.vector.AsyncVectorEnv):
        envs = vec([lambda: make(n_objectives=2) for _ in range(2)])
        obs, _ = envs.reset(seed=[1, 2])
        assert len(obs) == 2 and obs[0] != obs[1]
        obs, rewards, *_ = envs.step(["<IS> s </IS><query> anything </query>"] * 2)
        assert rewards.tolist() == [0.0, 0.0]
        envs.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.text(max_size=200), st.builds(lambda a, b, c: f"<IS>{a}</IS><{b}>{c}</{b}>", st.text(max_size=30), st.sampled_from(["query", "answer", "info", "IS", "x"]), st.text(max_size=60))), min_size=1, max_size=12))
def test_fuzz_random_actions_never_raise(actions):
    env = _FUZZ_ENV
    obs, _ = env.reset(seed=0)
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        assert env.observation_space.contains(obs)
        assert np.isfinite(reward)
        if terminated or truncated:
            assert "metrics" in info
            obs, _ = env.reset()


_FUZZ_ENV = None


@pytest.fixture(autouse=True, scope="module")
def _fuzz_env():
    global _FUZZ_ENV
    _FUZZ_ENV = make(n_objectives=2, memory="full")
    yield


def test_observation_budget_truncates_instead_of_leaving_the_space():
    env = make(n_objectives=1, memory="full", max_observation_chars=3000)
    env.reset(seed=0)
    for _ in range(20):
        obs, _, terminated, truncated, info = env.step("<IS> s </IS><query> born city year founded </query>")
        assert env.observation_space.contains(obs)
        if truncated:
            assert "max_observation_chars" in info["truncation_reason"] and "metrics" in info
            break
    assert truncated


def _flashrag_files(tmp_path):
    import json

    corpus = tmp_path / "corpus.jsonl"
    passages = [  # wiki-18 layout: the quoted title, a newline, the text (which repeats the title)
        {"id": "0", "contents": '"Evan Morris"\nEvan Morris Evan L. Morris (January 26, 1977 – July 9, 2015) was a lobbyist.'},
        {"id": "1", "contents": '"Morris Park"\nMorris Park is a neighborhood.\nIt lies in the Bronx.'},
        {"id": "2", "contents": '"Unrelated"\nNothing here.'},
    ]
    corpus.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in passages), encoding="utf-8")
    questions = tmp_path / "q.jsonl"
    questions.write_text("".join(json.dumps({"question": f"Who was Morris {i}?", "golden_answers": ["x"]}) + "\n"
                                 for i in range(10)))
    from mem1_gym.data import load_dataset

    dataset = load_dataset(str(questions), corpus=str(corpus))
    return dict(dataset=dataset, split="all", topk=2, retriever="rank_bm25")


def test_checkpoint_tags_render_passages_as_search_r1(tmp_path):
    env = gym.make(ENV_ID, tags="checkpoint", max_turns=4, **_flashrag_files(tmp_path))
    env.reset(seed=0)
    _, _, _, _, info = env.step("<think> look him up </think><search> Evan Morris lobbyist </search>")
    # Written by hand from Search-R1's _passages2string and its '<information>' wrapping.
    assert info["new_segments"][1]["text"] == (
        '\n\n<information>Doc 1(Title: "Evan Morris") Evan Morris Evan L. Morris (January 26, 1977 – July 9, 2015) '
        'was a lobbyist.\nDoc 2(Title: "Morris Park") Morris Park is a neighborhood.\nIt lies in the Bronx.'
        '</information>\n\n')


def test_format_kwarg_overrides_the_tags(tmp_path):
    files = _flashrag_files(tmp_path)
    env = gym.make(ENV_ID, tags="checkpoint", format="paper", max_turns=4, **files)
    env.reset(seed=0)
    text = env.step("<think> s </think><search> Evan Morris lobbyist </search>")[4]["new_segments"][1]["text"]
    assert text.startswith('\n<information> Doc 1 "Evan Morris"\nEvan Morris Evan L.')
    env = gym.make(ENV_ID, tags="checkpoint", format="mem1", max_turns=4, **files)
    env.reset(seed=0)
    text = env.step("<think> s </think><search> Evan Morris lobbyist </search>")[4]["new_segments"][1]["text"]
    assert text.startswith('\n\n<information>[HINT]You have 3 turns left.[/HINT]\n\nDoc 1(Title: "Evan Morris")')
    with pytest.raises(ValueError, match="observation format"):
        gym.make(ENV_ID, format="html", **files)
