"""Own data end to end: ``corpus=`` wherever ``dataset=`` goes (env kwargs, ``mem1 eval``, train YAML),
and dataset caches keyed on file content, not on the path."""

from __future__ import annotations

import json
import os

import gymnasium as gym
import pytest

import mem1_gym  # noqa: F401  (registers the ids)
from mem1_gym.data import load_dataset

CITIES = ["Zorakex", "Halmirk", "Brilotath", "Kepunorn", "Fenlisk", "Ostravel"]


@pytest.fixture()
def own_files(tmp_path):
    """A FlashRAG questions JSONL and corpus JSONL: one passage per question holds its answer."""
    questions, corpus = tmp_path / "questions.jsonl", tmp_path / "corpus.jsonl"
    with questions.open("w") as fh:
        for i, city in enumerate(CITIES):
            fh.write(json.dumps({"id": f"q{i}", "question": f"Where was inventor number {i} of the valve born?",
                                 "golden_answers": [city]}) + "\n")
    with corpus.open("w") as fh:
        for i, city in enumerate(CITIES):
            fh.write(json.dumps({"id": f"d{i}", "contents": f'"Inventor {i}"\nInventor number {i} of the valve was born in {city}.'}) + "\n")
    return str(questions), str(corpus)


def _oracle_em(env: gym.Env, seed: int) -> float:
    env.reset(seed=seed)
    while True:
        _, _, term, trunc, info = env.step(env.unwrapped.oracle_action())
        if term or trunc:
            return info["metrics"]["em"]


@pytest.mark.parametrize("env_id", ["mem1_gym/MultiObjectiveQA-v0", "mem1_gym/WebSearchQA-v0"])
def test_corpus_env_kwarg(own_files, env_id):
    questions, corpus = own_files
    env = gym.make(env_id, dataset=questions, corpus=corpus, split="all", n_objectives=3)
    try:
        assert len(env.unwrapped.dataset.corpus) == 6 and len(env.unwrapped.items) == 6
        assert _oracle_em(env, seed=0) == 3.0
        _, info = env.reset(seed=1)
        _, _, _, _, info = env.step("<IS> x </IS><query> inventor number 2 valve </query>")
        assert "born in Brilotath" in info["tool_result"]["result"]  # inventor 2's passage
    finally:
        env.close()
    with pytest.raises(ValueError, match="corpus="):
        gym.make(env_id, dataset=questions)


def test_mem1_eval_env_kwargs_take_a_corpus(own_files, tmp_path, capsys):
    from mem1_agent.cli import main
    from mem1_agent.evaluate import read_results

    questions, corpus = own_files
    kwargs = json.dumps({"dataset": questions, "corpus": corpus, "split": "all"})
    code = main(["eval", "--policy", "oracle", "--envs", "mem1_gym/MultiObjectiveQA-v0", "--memory", "mem1",
                 "--objectives", "2", "--seeds", "0", "--episodes", "2", "--env-kwargs", kwargs,
                 "--out", str(tmp_path / "eval"), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    (row,) = read_results(tmp_path / "eval" / "results.csv")
    assert float(row["em"]) == 2.0 and float(row["tool_errors"]) == 0.0


def test_train_yaml_env_section_takes_a_corpus(own_files, tmp_path):
    from mem1_agent.config import load_config
    from mem1_agent.train import make_text_env

    questions, corpus = own_files
    path = tmp_path / "train.yaml"
    path.write_text(
        "env:\n  id: mem1_gym/MultiObjectiveQA-v0\n  split: train\n"
        f"  kwargs:\n    n_objectives: 2\n    dataset: {questions}\n    corpus: {corpus}\n"
    )
    cfg = load_config(path)
    env = make_text_env(cfg.env)
    assert env.unwrapped.dataset.name == questions and len(env.unwrapped.items) == 5  # 90% of 6, rounded
    assert _oracle_em(env, seed=0) == 2.0


def test_edited_files_are_read_again(own_files):
    questions, corpus = own_files
    first = load_dataset(questions, corpus=corpus)
    assert load_dataset(questions, corpus=corpus) is first  # unchanged: cached
    st = os.stat(questions)
    with open(questions) as fh:
        lines = fh.readlines()
    # Same size and mtime after the edit: only the content tells the two apart.
    with open(questions, "w") as fh:
        fh.writelines(lines[:-1] + [lines[-1].replace("Ostravel", "Ostravex")])
    os.utime(questions, ns=(st.st_atime_ns, st.st_mtime_ns))
    second = load_dataset(questions, corpus=corpus)
    assert second is not first and second.split("all")[-1].answers == ("Ostravex",)
    with open(corpus, "a") as fh:
        fh.write(json.dumps({"id": "d-new", "contents": '"New"\nA new passage.'}) + "\n")
    third = load_dataset(questions, corpus=corpus)
    assert len(third.corpus) == 7 and third.fingerprint != second.fingerprint
