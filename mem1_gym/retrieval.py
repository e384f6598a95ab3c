"""Retrieval: the :class:`Retriever` protocol and its backends.

A retriever answers a batch of queries with the top-k passages each. Backends:

* ``bm25s`` (default): sparse BM25 via the ``bm25s`` package; the index is
  saved to disk and memory-mapped, so many env workers share one copy.
* ``rank_bm25``: the reference implementation, kept for comparison.
* ``http``: a client of a Search-R1-style retrieval server (registered by its
  own module through :func:`register_retriever_backend`).

Both local backends share one analyser (:func:`analyze`): lowercase, words of
two or more word characters, English stopwords removed, Snowball English
stemming. So they rank with the same terms and differ only in BM25 variant
(bm25s uses Lucene's idf, rank_bm25 the Okapi idf with an epsilon floor).

Hits with a score of zero (no query term in the passage) are never returned:
they would be arbitrary passages. An empty or all-stopword query therefore
returns no hits.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from .data.schema import Passage


@dataclass(frozen=True)
class Hit:
    """One retrieved passage."""

    id: str
    contents: str
    score: float


@runtime_checkable
class Retriever(Protocol):
    """Anything that answers ``search(queries, k)`` with one ranked hit list per query."""

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        """Top-``k`` hits for each query, best first."""
        ...


def format_passages(hits: Sequence[Hit], format: str = "paper") -> str:
    """Search results as the agent sees them, in an observation format of :mod:`mem1_gym.protocol`.

    ``paper``: one ``Doc i <contents>`` line per passage (``No results.`` for none).
    ``search-r1`` / ``mem1``: Search-R1's rendering: the first line of the contents is the title
    (FlashRAG's quoted title, quotes kept), the rest the text: ``Doc i(Title: <title>) <text>``
    and a newline per passage, nothing for no passage.
    """
    if format == "paper":
        if not hits:
            return "No results."
        return "\n".join(f"Doc {i} {hit.contents}" for i, hit in enumerate(hits, 1))
    if format in ("search-r1", "mem1"):
        out = []
        for i, hit in enumerate(hits, 1):
            title, _, text = hit.contents.partition("\n")
            out.append(f"Doc {i}(Title: {title}) {text}\n")
        return "".join(out)
    raise ValueError(f"unknown observation format {format!r}")


# ----------------------------------------------------------------------------- analysis

#: Bump when :func:`analyze` changes, so saved indexes are rebuilt.
ANALYZER_VERSION = "en-snowball-1"

#: Longest query text analysed, in characters. Agents write queries of a few
#: words; a runaway generation (or a pasted document) must not cost a scan of
#: megabytes per call, so the text is cut before tokenising.
MAX_QUERY_CHARS = 8192
#: Most query terms scored. BM25 scoring costs one posting-list pass per term,
#: so an unbounded query makes one call arbitrarily slow; 256 terms is far
#: beyond any useful keyword query and keeps the worst case to milliseconds.
MAX_QUERY_TERMS = 256

_WORD = re.compile(r"(?u)\b\w\w+\b")
_analyzer_lock = threading.Lock()
_analyzer_parts: tuple[frozenset[str], Callable[[list[str]], list[str]]] | None = None


def _parts() -> tuple[frozenset[str], Callable[[list[str]], list[str]]]:
    """The stopword set and the stemmer, loaded once per process."""
    global _analyzer_parts
    with _analyzer_lock:
        if _analyzer_parts is None:
            import Stemmer
            from bm25s.stopwords import STOPWORDS_EN

            _analyzer_parts = (frozenset(STOPWORDS_EN), Stemmer.Stemmer("english").stemWords)
        return _analyzer_parts


def analyze(text: str) -> list[str]:
    """The index terms of ``text``: lowercased words, stopwords dropped, stemmed."""
    stop, stem = _parts()
    return stem([w for w in _WORD.findall(text.lower()) if w not in stop])


def analyze_query(query: str) -> list[str]:
    """:func:`analyze` for a query, capped to :data:`MAX_QUERY_CHARS` / :data:`MAX_QUERY_TERMS`."""
    return analyze(query[:MAX_QUERY_CHARS])[:MAX_QUERY_TERMS]


def corpus_fingerprint(corpus: Sequence[Passage]) -> str:
    """A content hash of a corpus, for corpora that come without a fingerprint."""
    h = hashlib.sha256()
    for p in corpus:
        h.update(p.id.encode())
        h.update(b"\0")
        h.update(p.contents.encode())
        h.update(b"\1")
    return f"content-{h.hexdigest()[:16]}"


def _top_hits(corpus: Sequence[Passage], scores: np.ndarray, k: int) -> list[Hit]:
    """The ``k`` best-scoring passages with a positive score, best first (ties by corpus order)."""
    k = min(k, len(scores))
    if k <= 0:
        return []
    if k < len(scores):
        top = np.argpartition(-scores, k - 1)[:k]
    else:
        top = np.arange(len(scores))
    top = top[np.lexsort((top, -scores[top]))]
    return [Hit(corpus[i].id, corpus[i].contents, float(scores[i])) for i in top.tolist() if scores[i] > 0]


# ----------------------------------------------------------------------------- bm25s


def default_cache_dir() -> Path:
    """Root of mem1_gym's caches: ``$MEM1_CACHE_DIR`` or ``~/.cache/mem1_gym``."""
    env = os.environ.get("MEM1_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "mem1_gym"


_META = "mem1_index.json"


def _index_files(directory: Path) -> dict[str, list]:
    """``{file name: [size, sha256]}`` of an index directory's files (the meta file aside)."""
    out: dict[str, list] = {}
    for path in sorted(directory.iterdir()):
        if path.name == _META or not path.is_file():
            continue
        h = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        out[path.name] = [path.stat().st_size, h.hexdigest()]
    return out


class BM25sRetriever:
    """BM25 over a corpus with ``bm25s``; the index is built once, saved, and memory-mapped.

    The index lives in ``cache_dir`` (default ``<cache root>/bm25s/<fingerprint>``,
    cache root from :func:`default_cache_dir`). It is written to a temporary
    directory next to it and renamed into place, so a concurrent process sees
    either no index or a whole one; when two processes build at once, the
    first rename wins and the other uses the winner's index.

    The meta file records each index file's size and SHA-256 at build; opening
    checks them (hashing costs about a second per GB of index), so a truncated,
    altered or missing file is never loaded: the index is rebuilt, atomically,
    in its place.

    Attributes:
        built: True when this instance built the index, False when it loaded a saved one.
        index_dir: where the index is stored.
    """

    def __init__(self, corpus: Sequence[Passage], cache_dir: str | os.PathLike | None = None, fingerprint: str | None = None):
        """Load the saved index for ``corpus`` or build it.

        Args:
            corpus: the passages; hits refer to them by position.
            cache_dir: the index directory itself (overrides the default location).
            fingerprint: identifies the corpus content; computed from it when None.
        """
        if len(corpus) == 0:
            raise ValueError("cannot index an empty corpus")
        self.corpus = corpus
        fingerprint = fingerprint or corpus_fingerprint(corpus)
        self.index_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "bm25s" / fingerprint
        self._meta = {"analyzer": ANALYZER_VERSION, "num_docs": len(corpus), "fingerprint": fingerprint}
        self.built = False
        if not self._valid():
            self._build()
        try:
            self._load()
        except Exception:  # noqa: BLE001 - an index that verifies but does not load (another bm25s version)
            if self.built:
                raise
            self._build()
            self._load()

    def _valid(self) -> bool:
        """Whether ``index_dir`` holds a finished, intact index for this corpus and analyser."""
        try:
            meta = json.loads((self.index_dir / _META).read_text())
            if not isinstance(meta, dict) or not isinstance(meta.get("files"), dict):
                return False
            files = meta.pop("files")
            return meta == self._meta and _index_files(self.index_dir) == files
        except (OSError, ValueError):
            return False

    def _build(self) -> None:
        """Index the corpus into a temporary directory, then rename it into place."""
        import bm25s

        vocab: dict[str, int] = {}
        ids: list[list[int]] = []
        for p in self.corpus:
            ids.append([vocab.setdefault(t, len(vocab)) for t in analyze(p.contents)])
        model = bm25s.BM25()
        model.index((ids, vocab), show_progress=False)
        del ids
        try:
            self.index_dir.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{self.index_dir.name}.tmp-", dir=self.index_dir.parent))
        except OSError as exc:
            raise OSError(
                f"cannot write the bm25s index under {self.index_dir.parent} ({exc.strerror or exc}); "
                "set MEM1_CACHE_DIR to a writable directory"
            ) from None
        try:
            model.save(tmp, show_progress=False)
            # The meta file is written last: its presence marks a finished index, its
            # sizes and hashes let a later open tell an intact index from a damaged one.
            (tmp / _META).write_text(json.dumps({**self._meta, "files": _index_files(tmp)}))
            self._install(tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.built = True

    def _install(self, tmp: Path) -> None:
        """Rename a finished index into place, replacing a stale one; lose gracefully to a concurrent winner."""
        try:
            os.rename(tmp, self.index_dir)
            return
        except OSError:
            pass  # the directory exists: a concurrent build won, or a stale index is there
        if self._valid():
            return  # a concurrent process installed the same index; use theirs
        stale = self.index_dir.with_name(f".{self.index_dir.name}.stale-{os.getpid()}")
        try:
            os.rename(self.index_dir, stale)
        except OSError:
            pass  # another process moved it first
        try:
            os.rename(tmp, self.index_dir)
        except OSError:
            if not self._valid():
                raise
        shutil.rmtree(stale, ignore_errors=True)

    def _load(self) -> None:
        """Memory-map the saved index."""
        import bm25s

        self._model = bm25s.BM25.load(self.index_dir, mmap=True, show_progress=False, verbosity=0)
        self._vocab: dict[str, int] = self._model.vocab_dict

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        """Top-``k`` passages for each query (fewer when fewer passages contain a query term)."""
        results = []
        for query in queries:
            ids = [self._vocab[t] for t in analyze_query(query) if t in self._vocab]
            if not ids or k <= 0:
                results.append([])
                continue
            scores = self._model.get_scores_from_ids(ids)
            results.append(_top_hits(self.corpus, scores, k))
        return results


# ----------------------------------------------------------------------------- rank_bm25


class RankBM25Retriever:
    """The reference: ``rank_bm25.BM25Okapi`` over the same analysed terms, in memory, rebuilt each time."""

    def __init__(self, corpus: Sequence[Passage]):
        """Index ``corpus`` (kept in memory; nothing is saved)."""
        from rank_bm25 import BM25Okapi

        if len(corpus) == 0:
            raise ValueError("cannot index an empty corpus")
        self.corpus = corpus
        self._model = BM25Okapi([analyze(p.contents) for p in corpus])

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        """Top-``k`` passages for each query (fewer when fewer passages contain a query term)."""
        results = []
        for query in queries:
            terms = analyze_query(query)
            if not terms or k <= 0:
                results.append([])
                continue
            results.append(_top_hits(self.corpus, np.asarray(self._model.get_scores(terms)), k))
        return results


# ----------------------------------------------------------------------------- registry

#: A backend factory: (spec, corpus, fingerprint, **options) -> Retriever. ``spec`` is the
#: full string the user gave (e.g. ``http://127.0.0.1:8000``), so a backend can
#: read its own parameters from it; ``options`` are the keyword options of
#: :func:`make_retriever` (e.g. ``timeout``/``retries`` of the http backend).
RetrieverFactory = Callable[..., Retriever]

#: Backend name -> factory. A spec selects a backend by exact name, or by its
#: URL scheme (the part before ``://``), so ``register_retriever_backend("http", ...)``
#: serves every ``http://host:port`` spec.
RETRIEVER_BACKENDS: dict[str, RetrieverFactory] = {
    "bm25s": lambda spec, corpus, fingerprint: BM25sRetriever(corpus, fingerprint=fingerprint),
    "rank_bm25": lambda spec, corpus, fingerprint: RankBM25Retriever(corpus),
}

_cache: dict[tuple[str, str, tuple], Retriever] = {}
_cache_lock = threading.Lock()


def register_retriever_backend(name: str, factory: RetrieverFactory) -> None:
    """Add (or replace) a retrieval backend under ``name`` (an exact spec or a URL scheme)."""
    RETRIEVER_BACKENDS[name] = factory


def _backend_for(spec: str) -> RetrieverFactory:
    """The factory a spec selects, with a clear error for unknown specs."""
    if spec in RETRIEVER_BACKENDS:
        return RETRIEVER_BACKENDS[spec]
    scheme = spec.split("://", 1)[0] if "://" in spec else None
    if scheme in RETRIEVER_BACKENDS:
        return RETRIEVER_BACKENDS[scheme]
    known = ", ".join(sorted(RETRIEVER_BACKENDS))
    raise ValueError(f"unknown retriever {spec!r}; known backends: {known} (URL backends are selected by scheme)")


def make_retriever(spec: str | Retriever, corpus: Sequence[Passage], fingerprint: str | None = None, **options: Any) -> Retriever:
    """The retriever ``spec`` names, over ``corpus``; cached per process by (spec, fingerprint, options).

    Args:
        spec: a backend name (``bm25s``, ``rank_bm25``, a registered URL scheme's
            ``scheme://...``) or a ready :class:`Retriever`, returned as is.
        corpus: the passages to search.
        fingerprint: identifies the corpus content; computed from it when None.
        options: backend options, e.g. ``timeout=``/``retries=`` for ``http://`` servers.

    Raises:
        ValueError: an unknown backend, or options the backend does not take.
    """
    if not isinstance(spec, str):
        if isinstance(spec, Retriever):
            return spec
        raise TypeError(f"retriever must be a backend name or a Retriever, got {type(spec).__name__}")
    factory = _backend_for(spec)
    key = (spec, fingerprint or corpus_fingerprint(corpus), tuple(sorted(options.items())))
    with _cache_lock:
        if key not in _cache:
            try:
                _cache[key] = factory(spec, corpus, key[1], **options)
            except TypeError:
                if not options:
                    raise
                raise ValueError(f"the {spec!r} retriever takes no options {sorted(options)}") from None
        return _cache[key]


def clear_retriever_cache() -> None:
    """Forget the per-process retrievers (tests; after rebuilding a corpus under the same fingerprint)."""
    with _cache_lock:
        _cache.clear()

