"""Keyword search over the catalog: BM25 (bm25s) on the text WebShop indexes, cached on disk.

WebShop indexes each product as ``title + description + first bullet point + options`` (options
as ``"name: v1, v2, and name2: ..."``), lower-cased, in a Lucene index searched through pyserini
(Java). Here the same documents go into a bm25s index with Lucene's default BM25 parameters
(k1=0.9, b=0.4, as pyserini uses), English stop words and Snowball stemming. The index is built
once per catalog content (keyed by :attr:`Catalog.fingerprint`) into a temporary folder and
renamed into place, so concurrent processes never see half an index; later processes
memory-map it.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import shutil
import tempfile
import unicodedata
from pathlib import Path

import bm25s
import numpy as np
import Stemmer

from webshop_env.catalog import Catalog
from webshop_env.schema import Product

logger = logging.getLogger(__name__)

#: How many results WebShop's search returns.
SEARCH_RETURN_N = 50
#: Bumped whenever the document text, tokenisation or BM25 parameters change.
INDEX_VERSION = 1
BM25_K1, BM25_B = 0.9, 0.4
# Longer queries are cut here: BM25 over thousands of terms is slow and never useful.
_MAX_QUERY_CHARS = 2000
_META = "webshop_index.json"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def default_cache_dir() -> Path:
    """``$WEBSHOP_CACHE_DIR``, else ``~/.cache/webshop_env``."""
    env = os.environ.get("WEBSHOP_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "webshop_env"


def product_document(product: Product) -> str:
    """The text WebShop indexes for ``product`` (lower-cased)."""
    option_text = ", and ".join(f"{name}: {', '.join(values)}" for name, values in product.options.items())
    first_bullet = product.bullet_points[0] if product.bullet_points else ""
    return " ".join([product.title, product.description, first_bullet, option_text]).lower()


def _new_tokenizer() -> bm25s.tokenization.Tokenizer:
    return bm25s.tokenization.Tokenizer(lower=True, stopwords="en", stemmer=Stemmer.Stemmer("english"))


def _clean_query(query: object) -> str:
    """A query any tokenizer accepts: text, bounded, NFKC, no lone surrogates."""
    text = query if isinstance(query, str) else str(query)
    text = text[:_MAX_QUERY_CHARS].encode("utf-8", "replace").decode("utf-8")
    return unicodedata.normalize("NFKC", text)


class SearchEngine:
    """BM25 search over a :class:`Catalog`; :meth:`search` returns asins, best first.

    ``cache_dir`` (default :func:`default_cache_dir`) holds one index folder per catalog
    fingerprint; ``use_cache=False`` builds in memory only. ``built`` tells whether this instance
    built the index (``False``: loaded from the cache).
    """

    def __init__(self, catalog: Catalog, cache_dir: str | Path | None = None, *, use_cache: bool = True) -> None:
        self.catalog = catalog
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        self.index_dir = self.cache_dir / f"bm25s-v{INDEX_VERSION}-{_UNSAFE.sub('_', catalog.fingerprint)}"
        self.built = False
        self._tokenizer = _new_tokenizer()
        self._stopwords = frozenset(self._tokenizer.stopwords or ())
        self._stem = functools.lru_cache(maxsize=1 << 16)(Stemmer.Stemmer("english").stemWord)
        self._retriever: bm25s.BM25 | None = None
        if len(catalog) == 0:
            return
        if use_cache and self._load():
            return
        self._build()
        if use_cache:
            self._save()

    # ----------------------------------------------------------------- index
    def _build(self) -> None:
        docs = (product_document(p) for p in self.catalog)
        ids = self._tokenizer.tokenize(docs, update_vocab=True, return_as="ids", show_progress=False,
                                       length=len(self.catalog))
        retriever = bm25s.BM25(k1=BM25_K1, b=BM25_B)
        retriever.index(self._tokenizer.to_tokenized_tuple(ids), show_progress=False)
        self._retriever = retriever
        self.built = True

    def _load(self) -> bool:
        meta_path = self.index_dir / _META
        if not meta_path.is_file():
            return False
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if meta.get("fingerprint") != self.catalog.fingerprint or meta.get("num_docs") != len(self.catalog):
                raise ValueError("index does not match the catalog")
            self._retriever = bm25s.BM25.load(str(self.index_dir), mmap=True, show_progress=False)
            self._tokenizer.load_vocab(str(self.index_dir))
            self._tokenizer.load_stopwords(str(self.index_dir))
        except Exception as exc:  # a damaged cache is rebuilt, never fatal
            logger.warning("search index at %s unusable (%s); rebuilding", self.index_dir, exc)
            self._retriever = None
            self._tokenizer = _new_tokenizer()
            return False
        return True

    def _save(self) -> None:
        """Write the index to a temporary folder, then rename it into place (atomic)."""
        assert self._retriever is not None
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=self.cache_dir))
        except OSError as exc:
            logger.warning("cannot write search index cache in %s (%s); keeping it in memory", self.cache_dir, exc)
            return
        try:
            self._retriever.save(str(tmp), show_progress=False)
            self._tokenizer.save_vocab(str(tmp))
            self._tokenizer.save_stopwords(str(tmp))
            meta = {"fingerprint": self.catalog.fingerprint, "num_docs": len(self.catalog),
                    "index_version": INDEX_VERSION}
            (tmp / _META).write_text(json.dumps(meta), encoding="utf-8")
            if self.index_dir.exists():  # a damaged index we could not load, or a concurrent builder
                if (self.index_dir / _META).is_file() and self._is_valid(self.index_dir):
                    shutil.rmtree(tmp, ignore_errors=True)
                    return
                shutil.rmtree(self.index_dir, ignore_errors=True)
            os.replace(tmp, self.index_dir)
        except OSError as exc:
            logger.warning("could not cache the search index in %s (%s)", self.index_dir, exc)
            shutil.rmtree(tmp, ignore_errors=True)

    def _is_valid(self, folder: Path) -> bool:
        try:
            meta = json.loads((folder / _META).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return meta.get("fingerprint") == self.catalog.fingerprint and meta.get("num_docs") == len(self.catalog)

    # ---------------------------------------------------------------- search
    def query_token_ids(self, query: object) -> list[int]:
        """Vocabulary ids of the query's (stemmed, non-stop-word) terms that occur in the catalog.

        Same splitting, stop words and stemming as the indexed documents, but read-only: unlike
        the bm25s tokenizer it never records unseen query words, so a long-running site does not
        grow its vocabulary with whatever agents type.
        """
        tok = self._tokenizer
        stem_to_sid = tok.stem_to_sid
        ids = []
        for word in tok.splitter(_clean_query(query).lower()):
            if word in self._stopwords:
                continue
            sid = stem_to_sid.get(self._stem(word))
            if sid is not None:
                ids.append(sid)
        return ids

    def search(self, query: object, top_k: int = SEARCH_RETURN_N) -> list[str]:
        """Asins of the ``top_k`` best-matching products (only those sharing a term), best first.

        Ties keep catalog order. Never raises on odd input: an empty or unmatched query gives ``[]``.
        """
        if self._retriever is None or top_k <= 0:
            return []
        ids = self.query_token_ids(query)
        if not ids:
            return []
        scores = self._retriever.get_scores_from_ids(ids)
        hits = np.flatnonzero(scores > 0)
        if hits.size > top_k:
            # Partial selection first: only the candidates that can make the top k get sorted.
            kth = np.partition(scores[hits], hits.size - top_k)[hits.size - top_k]
            hits = hits[scores[hits] >= kth]
        order = np.lexsort((hits, -scores[hits]))[:top_k]
        asins = self.catalog.asins
        return [asins[int(i)] for i in hits[order]]
