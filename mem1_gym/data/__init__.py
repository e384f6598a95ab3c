"""Datasets: corpora and questions (embedded generators, loaders, the N-objective composer).

:func:`load_dataset` is the single entry point environments use::

    load_dataset()                                   # fictional world, seed 0, 2,000 passages
    load_dataset("fictional", seed=3, size=100_000)
    load_dataset("wiki-vital")                       # 10,033 Wikipedia summaries
    load_dataset("nq_test.jsonl", corpus="wiki.jsonl")   # FlashRAG questions + corpus
    load_dataset("train.parquet", corpus="wiki.jsonl")   # MEM1 parquet + corpus

Splits (``dataset.split(name)``, the env's ``split=``):

* ``train`` / ``test``: disjoint, a seeded 90/10 split of the questions
  (:func:`~mem1_gym.data.splits.split_train_test`; ``split_seed`` picks another one). For the
  fictional world the seed also involves the world's seed and size, so every world has its own.
* ``all`` (question files only): every question of the file, in file order, e.g. to evaluate
  on a test file you made yourself.

The corpus is shared by all splits: only the questions are split.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from .compose import MultiObjectiveTask, compose_tasks, format_questions, sample_task
from .fictional import FictionalWorld, generate_world
from .formats import DataFormatError
from .schema import Passage, QADataset, QAItem

#: Passages in the default fictional world.
DEFAULT_FICTIONAL_SIZE = 2_000


def load_dataset(
    spec: str | os.PathLike | QADataset = "fictional",
    *,
    seed: int = 0,
    size: int | None = None,
    split_seed: int = 0,
    corpus: str | os.PathLike | None = None,
) -> QADataset:
    """Load or generate a dataset; cached per process (vector envs build several envs at once).

    Files are cached by content, not by name: the cache key holds each file's size, inode and
    modification/change times (ns), and the question file's SHA-256, so a file edited (or
    replaced) in place is read again.

    Args:
        spec: ``"fictional"``, ``"wiki-vital"``, a path to FlashRAG questions
            (``.jsonl``/``.json``) or a MEM1 ``.parquet``, or a :class:`QADataset` (returned as is).
        seed: world seed (fictional only).
        size: number of passages (fictional only; default 2,000).
        split_seed: seed of the train/test split where the dataset makes one.
        corpus: corpus JSONL (``id``, ``contents``) for question files.

    Raises:
        ValueError: unknown spec, or arguments that do not apply to it.
        DataFormatError: a malformed file (names the file and line/row).
    """
    if isinstance(spec, QADataset):
        return spec
    if not isinstance(spec, (str, os.PathLike)):
        raise TypeError(f"dataset must be a name, a path or a QADataset, got {type(spec).__name__}")
    spec = os.fspath(spec)
    corpus_key = os.path.abspath(os.fspath(corpus)) if corpus is not None else None
    stamp: tuple = ()
    if spec == "fictional":
        size = size or DEFAULT_FICTIONAL_SIZE  # one cache entry for the default, named or not
    elif spec != "wiki-vital":
        spec = os.path.abspath(spec)
        stamp = (_file_stamp(spec), _file_stamp(corpus_key))
    return _load_cached(spec, seed, size, split_seed, corpus_key, stamp)


def _file_stamp(path: str | None) -> tuple:
    """What identifies a file's content for the cache: size, inode, mtime and ctime (ns). ctime changes on
    every write and cannot be set back (unlike mtime), so an edit is seen without hashing the file."""
    if path is None:
        return ()
    try:
        st = os.stat(path)
    except OSError:
        return ()  # the loader reports the missing file
    return (st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)


@functools.lru_cache(maxsize=16)
def _load_cached(spec: str, seed: int, size: int | None, split_seed: int, corpus: str | None, stamp: tuple) -> QADataset:
    """:func:`load_dataset` on normalised, hashable arguments (``stamp`` keys the files' content)."""
    if spec == "fictional":
        if corpus is not None:
            raise ValueError("the fictional dataset generates its own corpus; do not pass corpus=")
        return generate_world(seed, size, split_seed=split_seed)
    if size is not None:
        raise ValueError(f"size= applies only to the fictional dataset, not {spec!r}")
    if spec == "wiki-vital":
        from .wiki import load_wiki_vital

        return load_wiki_vital(split_seed=split_seed)
    suffix = Path(spec).suffix.lower()
    if suffix not in (".jsonl", ".json", ".parquet"):
        raise ValueError(
            f"unknown dataset {spec!r}: expected 'fictional', 'wiki-vital', a QADataset, "
            "or a path ending in .jsonl/.json (FlashRAG) or .parquet (MEM1)"
        )
    if not os.path.exists(spec):
        raise ValueError(f"dataset file not found: {spec}")
    if corpus is None:
        raise ValueError(f"dataset {spec!r} has questions only; pass corpus=<corpus .jsonl> to search over")
    from .formats import load_question_file

    return load_question_file(spec, corpus, split_seed=split_seed)


__all__ = [
    "DEFAULT_FICTIONAL_SIZE",
    "DataFormatError",
    "FictionalWorld",
    "MultiObjectiveTask",
    "Passage",
    "QADataset",
    "QAItem",
    "compose_tasks",
    "format_questions",
    "generate_world",
    "load_dataset",
    "sample_task",
]
