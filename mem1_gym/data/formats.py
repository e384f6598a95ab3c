"""Loaders for the file formats of the MEM1 / Search-R1 / FlashRAG ecosystem.

* FlashRAG questions: JSONL (one object per line) or a JSON array of objects
  with ``question``, ``golden_answers`` (a list of strings, or one string),
  and an optional ``id``.
* MEM1 / Search-R1 training parquet: ``prompt`` (a chat list of
  ``{role, content}`` or plain text; the question is read from its last
  ``Question:`` line, else the whole user text) and
  ``reward_model.ground_truth.target`` (the gold answers).
* Corpus JSONL (FlashRAG / Search-R1 ``wiki-18``): ``id`` and ``contents``,
  whose first line is the quoted title and the rest the text.

Every loader reads the whole file or raises one :class:`DataFormatError`
naming the file, the line or row, and what was wrong.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .schema import Passage, QADataset, QAItem
from .splits import split_train_test


class DataFormatError(ValueError):
    """A data file is malformed; the message names the file, the line/row, and the problem."""

    def __init__(self, path: str | os.PathLike, where: str, problem: str):
        """Build the message ``<path>, <where>: <problem>``."""
        self.path = os.fspath(path)
        self.where = where
        self.problem = problem
        super().__init__(f"{self.path}, {where}: {problem}")


def _json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of a JSONL file."""
    try:
        fh = open(path, "rb")  # bytes, so a decoding error is pinned to its line
    except OSError as exc:
        raise DataFormatError(path, "open", exc.strerror or str(exc)) from None
    with fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataFormatError(path, f"line {lineno}", f"not UTF-8 text ({exc.reason})") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataFormatError(path, f"line {lineno}", f"invalid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(obj, dict):
                raise DataFormatError(path, f"line {lineno}", f"expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


def _json_records(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(location, object) for a ``.jsonl`` file (per line) or a ``.json`` array (per element)."""
    if path.suffix.lower() == ".jsonl":
        for lineno, obj in _json_lines(path):
            yield f"line {lineno}", obj
        return
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DataFormatError(path, "open", exc.strerror or str(exc)) from None
    except UnicodeDecodeError as exc:
        raise DataFormatError(path, f"byte {exc.start}", f"not UTF-8 text ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise DataFormatError(path, f"line {exc.lineno}", f"invalid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(data, list):
        raise DataFormatError(path, "line 1", f"expected a JSON array of question objects, got {type(data).__name__}")
    for i, obj in enumerate(data):
        if not isinstance(obj, dict):
            raise DataFormatError(path, f"element {i}", f"expected a JSON object, got {type(obj).__name__}")
        yield f"element {i}", obj


def _answers(value: Any, path: Path, where: str, field: str) -> tuple[str, ...]:
    """Gold answers from a string or a list of strings; at least one non-empty."""
    if isinstance(value, str):
        value = [value]
    elif isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, (list, tuple)) or not all(isinstance(a, (str, int, float)) for a in value):
        raise DataFormatError(path, where, f"{field!r} must be a string or a list of strings, got {value!r:.80}")
    answers = tuple(str(a).strip() for a in value if str(a).strip())
    if not answers:
        raise DataFormatError(path, where, f"{field!r} has no non-empty answer")
    return answers


def load_flashrag_questions(path: str | os.PathLike) -> list[QAItem]:
    """Questions from a FlashRAG ``.jsonl`` (or ``.json`` array) file.

    Raises:
        DataFormatError: bad JSON, a missing/empty ``question``, bad ``golden_answers``, a duplicate ``id``.
    """
    path = Path(path)
    items: list[QAItem] = []
    seen: set[str] = set()
    for where, obj in _json_records(path):
        question = obj.get("question")
        if not isinstance(question, str) or not question.strip():
            raise DataFormatError(path, where, "missing or empty 'question' (a string)")
        if "golden_answers" not in obj:
            raise DataFormatError(path, where, "missing 'golden_answers'")
        answers = _answers(obj["golden_answers"], path, where, "golden_answers")
        qid = str(obj["id"]) if obj.get("id") is not None else f"{path.stem}-{len(items)}"
        if qid in seen:
            raise DataFormatError(path, where, f"duplicate id {qid!r}")
        seen.add(qid)
        items.append(QAItem(qid, question.strip(), answers))
    if not items:
        raise DataFormatError(path, "line 1", "no questions in file")
    return items


_QUESTION_LINE = re.compile(r"Question:[ \t]*(.+)", re.IGNORECASE)


def extract_question(prompt: Any) -> str | None:
    """The question inside a MEM1/Search-R1 prompt (chat list or text), or None.

    The question is the text after the last ``Question:`` marker on its line;
    without a marker, the whole text of the last user message.
    """
    if isinstance(prompt, np.ndarray):
        prompt = prompt.tolist()
    if isinstance(prompt, (list, tuple)):
        users = [m.get("content") for m in prompt if isinstance(m, dict) and m.get("role", "user") == "user"]
        texts = [t for t in users if isinstance(t, str)]
        if not texts:
            return None
        prompt = texts[-1]
    if not isinstance(prompt, str):
        return None
    found = _QUESTION_LINE.findall(prompt)
    question = (found[-1] if found else prompt).strip()
    return question or None


def load_mem1_parquet(path: str | os.PathLike) -> list[QAItem]:
    """Questions from a MEM1 / Search-R1 parquet (``prompt``, ``reward_model.ground_truth.target``).

    Raises:
        DataFormatError: unreadable parquet, missing columns, a row without question or target.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise DataFormatError(path, "file", f"not a readable parquet file ({exc})") from None
    for column in ("prompt", "reward_model"):
        if column not in table.column_names:
            raise DataFormatError(path, "schema", f"missing column {column!r} (has {table.column_names})")
    has_id = "id" in table.column_names
    prompts = table.column("prompt").to_pylist()
    rewards = table.column("reward_model").to_pylist()
    ids = table.column("id").to_pylist() if has_id else [None] * len(prompts)
    items: list[QAItem] = []
    for row, (prompt, reward, rid) in enumerate(zip(prompts, rewards, ids)):
        where = f"row {row}"
        question = extract_question(prompt)
        if question is None:
            raise DataFormatError(path, where, "'prompt' holds no user text to read a question from")
        truth = reward.get("ground_truth") if isinstance(reward, dict) else None
        # parquet structs give every row every field, so an absent target reads as None
        if not isinstance(truth, dict) or truth.get("target") is None:
            raise DataFormatError(path, where, "missing 'reward_model.ground_truth.target'")
        answers = _answers(truth["target"], path, where, "reward_model.ground_truth.target")
        items.append(QAItem(str(rid) if rid is not None else f"{path.stem}-{row}", question, answers))
    if not items:
        raise DataFormatError(path, "row 0", "no rows in file")
    return items


def parse_contents(contents: str) -> tuple[str, str]:
    """Split FlashRAG ``contents`` into (title, text): a quoted first line is the title."""
    first, _, rest = contents.partition("\n")
    title = first.strip()
    if len(title) >= 2 and title[0] == title[-1] == '"':
        return title[1:-1], rest.strip()
    return "", contents.strip()


def load_corpus_jsonl(path: str | os.PathLike) -> list[Passage]:
    """Passages from a FlashRAG / Search-R1 corpus JSONL (``id``, ``contents``).

    Raises:
        DataFormatError: bad JSON, a missing ``id`` or ``contents``, a duplicate id, an empty file.
    """
    path = Path(path)
    corpus: list[Passage] = []
    seen: set[str] = set()
    for lineno, obj in _json_lines(path):
        contents = obj.get("contents")
        if not isinstance(contents, str) or not contents.strip():
            raise DataFormatError(path, f"line {lineno}", "missing or empty 'contents' (a string)")
        if obj.get("id") is None:
            raise DataFormatError(path, f"line {lineno}", "missing 'id'")
        pid = str(obj["id"])
        if pid in seen:
            raise DataFormatError(path, f"line {lineno}", f"duplicate id {pid!r}")
        seen.add(pid)
        title, text = parse_contents(contents)
        corpus.append(Passage(pid, title, text))
    if not corpus:
        raise DataFormatError(path, "line 1", "no passages in file")
    return corpus


def file_digest(path: str | os.PathLike) -> str:
    """A content hash of a file (keys cached indexes; changes when the file does)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def load_question_file(path: str | os.PathLike, corpus_path: str | os.PathLike, *, split_seed: int = 0) -> QADataset:
    """A dataset from a question file (FlashRAG ``.jsonl``/``.json`` or MEM1 ``.parquet``) and a corpus JSONL.

    The questions are split 90/10 into train/test (deterministic in ``split_seed``);
    the file's name also serves as an ``all`` split with every question.
    """
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        items = load_mem1_parquet(path)
    else:
        items = load_flashrag_questions(path)
    corpus = load_corpus_jsonl(corpus_path)
    splits = split_train_test(items, [split_seed, len(items)])
    splits["all"] = items
    return QADataset(
        name=str(path),
        corpus=corpus,
        splits=splits,
        fingerprint=f"corpus-{file_digest(corpus_path)}",
    )
