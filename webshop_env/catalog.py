"""The product catalog: synthetic (lazy, seeded) or loaded from the original WebShop JSON files.

The loader reads the files of the WebShop release (``items_shuffle*.json`` product records,
``items_ins_v2*.json`` attributes and instructions keyed by asin, ``items_human_ins.json``
crowd-written instructions) and derives the same fields as the WebShop engine: title,
description, bullet points, one price or a ``[low, high]`` range (``$100.0`` when the record
has none), lower-cased options with ``/`` shown as `` | ``, option images, attributes, the
lower-cased query, the first image. Records without a usable asin (``"nan"``, longer than 10
characters) and repeated asins are dropped, as WebShop does. A file that is not what it should
be raises one :class:`CatalogError` naming the file and, for a bad record, its index.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, overload

from webshop_env.pricing import MISSING_PRICE, parse_pricing, price_tag, representative_price
from webshop_env.schema import Product
from webshop_env.synthetic import GENERATOR_VERSION, generate_product, synthetic_asin, synthetic_index

#: Bumped whenever derived fields change, so fingerprints (and cached indexes) change with them.
LOADER_VERSION = 1
_MAX_ASIN_LEN = 10


class CatalogError(ValueError):
    """A catalog file is missing, not valid JSON, or holds a record of the wrong shape."""

    def __init__(self, path: str | Path, message: str, index: int | str | None = None) -> None:
        self.path = str(path)
        self.index = index
        where = f"{self.path}" if index is None else f"{self.path} (record {index})"
        super().__init__(f"{where}: {message}")


def _read_json(path: str | Path) -> tuple[Any, bytes]:
    """The parsed JSON of ``path`` and its raw bytes (for the fingerprint)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CatalogError(path, f"cannot read file ({exc.strerror or exc})") from None
    try:
        return json.loads(data), data
    except UnicodeDecodeError as exc:
        raise CatalogError(path, f"not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise CatalogError(path, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None


def _require(cond: bool, path: str | Path, index: int | str, message: str) -> None:
    if not cond:
        raise CatalogError(path, message, index)


def _text(value: Any, path: str | Path, index: int | str, field: str) -> str:
    """A string field (``None`` counts as empty), or a clear error."""
    if value is None:
        return ""
    _require(isinstance(value, str), path, index, f"field {field!r} must be a string, got {type(value).__name__}")
    return value


def _options(raw: Any, path: str | Path, index: int) -> tuple[dict[str, list[str]], dict[str, str | None]]:
    """WebShop's options and option images from ``customization_options``."""
    options: dict[str, list[str]] = {}
    images: dict[str, str | None] = {}
    if not raw:
        return options, images
    _require(isinstance(raw, dict), path, index, "field 'customization_options' must be an object")
    for name, contents in raw.items():
        if contents is None:
            continue
        _require(isinstance(contents, list), path, index, f"option {name!r} must be a list")
        values = []
        for content in contents:
            ok = isinstance(content, dict) and isinstance(content.get("value"), str)
            _require(ok, path, index, f"option {name!r} has an entry without a string 'value'")
            value = content["value"].strip().replace("/", " | ").lower()
            values.append(value)
            images[value] = content.get("image")
        options[name.lower()] = values
    return options, images


def _reviews(raw: Any, path: str | Path, index: int) -> list[dict[str, Any]]:
    """Reviews as ``{"title", "score", "body"}`` (WebShop renames ``stars``/``review``)."""
    if not raw:
        return []
    _require(isinstance(raw, list), path, index, "field 'Reviews' must be a list")
    out = []
    for review in raw:
        _require(isinstance(review, dict), path, index, "a review must be an object")
        out.append({
            "title": review.get("title", ""),
            "score": review.get("score", review.get("stars", "")),
            "body": review.get("body", review.get("review", "")),
        })
    return out


def _record_to_product(
    record: Any,
    index: int,
    path: str | Path,
    attributes: dict[str, Any],
    human: dict[str, Any],
    reviews: dict[str, tuple[list[Any], Any]],
) -> Product | None:
    """The :class:`Product` of one product record, or ``None`` when WebShop would drop it."""
    _require(isinstance(record, dict), path, index, f"a product record must be an object, got {type(record).__name__}")
    asin = record.get("asin")
    if not isinstance(asin, str) or asin == "nan" or not asin or len(asin) > _MAX_ASIN_LEN:
        return None
    _require("name" in record, path, index, "missing field 'name'")
    title = _text(record["name"], path, index, "name")

    pricing_raw = record.get("pricing")
    if isinstance(pricing_raw, list) and all(isinstance(p, (int, float)) for p in pricing_raw):
        pricing = [float(p) for p in pricing_raw[:2]]
    elif isinstance(pricing_raw, list) and all(isinstance(p, str) for p in pricing_raw):
        pricing = parse_pricing("".join(pricing_raw))
    else:
        pricing = parse_pricing(_text(pricing_raw, path, index, "pricing"))
    if not pricing:
        pricing = [MISSING_PRICE]

    bullets_raw = record.get("small_description")
    if isinstance(bullets_raw, list):
        _require(all(isinstance(b, str) for b in bullets_raw), path, index, "'small_description' must hold strings")
        bullets = list(bullets_raw)
    else:
        bullets = [_text(bullets_raw, path, index, "small_description")]
    if not bullets:
        bullets = [""]

    options, option_to_image = _options(record.get("customization_options"), path, index)
    images = record.get("images") or []
    _require(isinstance(images, list), path, index, "field 'images' must be a list")
    extra = attributes.get(asin) or {}
    rev, rating = reviews.get(asin, (record.get("Reviews", record.get("reviews")),
                                     record.get("Rating", record.get("average_rating", "N.A."))))
    return Product(
        asin=asin,
        title=title,
        category=_text(record.get("category"), path, index, "category"),
        product_category=_text(record.get("product_category"), path, index, "product_category"),
        query=_text(record.get("query"), path, index, "query").lower().strip(),
        description=_text(record.get("full_description"), path, index, "full_description"),
        bullet_points=bullets,
        price=representative_price(asin, pricing),
        pricing=pricing,
        price_text=price_tag(pricing),
        options=options,
        attributes=list(extra.get("attributes") or []),
        rating=rating if rating is not None else "N.A.",
        reviews=_reviews(rev, path, index),
        image_url=str(images[0]) if images else "",
        option_to_image=option_to_image,
        instruction_text=extra.get("instruction"),
        instruction_attributes=list(extra.get("instruction_attributes") or []),
        human_instructions=list(human.get(asin) or []),
    )


def _keyed_file(path: str | Path, entry_type: type, what: str) -> tuple[dict[str, Any], bytes]:
    """A JSON object keyed by asin whose values are all of ``entry_type``."""
    data, raw = _read_json(path)
    if not isinstance(data, dict):
        raise CatalogError(path, f"expected a JSON object keyed by asin, got {type(data).__name__}")
    json_name = {dict: "an object", list: "a list"}[entry_type]
    for asin, entry in data.items():
        _require(isinstance(entry, entry_type), path, asin, f"{what} must be {json_name}")
    return data, raw


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _check_attributes(data: dict[str, Any], path: str | Path) -> None:
    for asin, entry in data.items():
        for key in ("attributes", "instruction_attributes"):
            _require(entry.get(key) is None or _is_str_list(entry[key]), path, asin, f"{key!r} must be a list of strings")
        _require(entry.get("instruction") is None or isinstance(entry["instruction"], str), path, asin,
                 "'instruction' must be a string")


def _check_human(data: dict[str, Any], path: str | Path) -> None:
    for asin, entries in data.items():
        for entry in entries:
            ok = isinstance(entry, dict) and isinstance(entry.get("instruction"), str)
            _require(ok, path, asin, "each human instruction must be an object with a string 'instruction'")
            _require(_is_str_list(entry.get("instruction_attributes") or []), path, asin,
                     "'instruction_attributes' must be a list of strings")
            _require(isinstance(entry.get("instruction_options") or [], (list, dict)), path, asin,
                     "'instruction_options' must be a list or an object")


def _reviews_file(path: str | Path) -> tuple[dict[str, tuple[list[Any], Any]], bytes]:
    data, raw = _read_json(path)
    if not isinstance(data, list):
        raise CatalogError(path, f"expected a JSON list of review records, got {type(data).__name__}")
    out = {}
    for i, entry in enumerate(data):
        _require(isinstance(entry, dict) and isinstance(entry.get("asin"), str), path, i,
                 "a review record must be an object with a string 'asin'")
        out[entry["asin"]] = (entry.get("reviews") or [], entry.get("average_rating", "N.A."))
    return out, raw


@contextlib.contextmanager
def _no_gc_pauses() -> Iterator[None]:
    """Pause the cyclic garbage collector while building millions of acyclic objects.

    Parsing and deriving records allocates only acyclic containers, yet each allocation burst
    triggers a full collection over the ever-growing heap; pausing it makes loading several
    times faster on large files.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class _SyntheticAsins(Sequence[str]):
    """The asins of a synthetic catalog, computed on access (no million-string list)."""

    def __init__(self, size: int) -> None:
        self._size = size

    def __len__(self) -> int:
        return self._size

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> list[str]: ...

    def __getitem__(self, i: int | slice) -> str | list[str]:
        if isinstance(i, slice):
            return [synthetic_asin(j) for j in range(*i.indices(self._size))]
        if i < 0:
            i += self._size
        if not 0 <= i < self._size:
            raise IndexError(i)
        return synthetic_asin(i)


class Catalog:
    """Products by asin, in a stable order.

    Build one with :meth:`synthetic`, :meth:`load` or :meth:`from_products`. A synthetic catalog
    generates products on access (a small LRU cache keeps recent ones), so its size costs no
    memory; a loaded one holds its products in a list. ``fingerprint`` identifies the content
    (the search index cache is keyed by it).
    """

    _CACHE_SIZE = 4096

    def __init__(self, products: list[Product] | None, fingerprint: str, *,
                 synthetic: tuple[int, int] | None = None, name: str = "catalog") -> None:
        """Prefer the classmethods; ``synthetic`` is ``(num_products, seed)`` for a lazy catalog."""
        self.fingerprint = fingerprint
        self.name = name
        self._synthetic = synthetic
        self._cache: OrderedDict[int, Product] = OrderedDict()
        if synthetic is not None:
            self._products: list[Product] = []
            self._index: dict[str, int] = {}
            self._asins: Sequence[str] = _SyntheticAsins(synthetic[0])
        else:
            self._products = list(products or [])
            self._index = {}
            for i, p in enumerate(self._products):
                if p.asin in self._index:
                    raise ValueError(f"duplicate asin {p.asin!r} at positions {self._index[p.asin]} and {i}")
                self._index[p.asin] = i
            self._asins = [p.asin for p in self._products]

    # ----------------------------------------------------------------- construction
    @classmethod
    def synthetic(cls, num_products: int = 1000, seed: int = 0) -> Catalog:
        """A seeded synthetic catalog of ``num_products`` products (generated lazily)."""
        if num_products < 0:
            raise ValueError(f"num_products must be >= 0, got {num_products}")
        fp = f"synthetic-v{GENERATOR_VERSION}-n{num_products}-s{seed}"
        return cls(None, fp, synthetic=(int(num_products), int(seed)), name=f"synthetic-{num_products}-seed{seed}")

    @classmethod
    def from_products(cls, products: Sequence[Product], name: str = "custom") -> Catalog:
        """A catalog over given products (asins must be unique); fingerprinted by content."""
        digest = hashlib.sha256()
        for p in products:
            digest.update(json.dumps(p.to_dict(), sort_keys=True, default=str).encode("utf-8"))
        return cls(list(products), f"products-v{LOADER_VERSION}-{digest.hexdigest()[:24]}", name=name)

    @classmethod
    def load(
        cls,
        products_path: str | Path,
        attributes_path: str | Path | None = None,
        human_instructions_path: str | Path | None = None,
        limit: int | None = None,
        reviews_path: str | Path | None = None,
    ) -> Catalog:
        """Load the original WebShop files; ``limit`` keeps the first ``limit`` records, as WebShop does.

        Raises :class:`CatalogError` naming the file (and record) for anything malformed.
        """
        with _no_gc_pauses():
            return cls._load(products_path, attributes_path, human_instructions_path, limit, reviews_path)

    @classmethod
    def _load(cls, products_path: str | Path, attributes_path: str | Path | None,
              human_instructions_path: str | Path | None, limit: int | None,
              reviews_path: str | Path | None) -> Catalog:
        records, raw = _read_json(products_path)
        if not isinstance(records, list):
            raise CatalogError(products_path, f"expected a JSON list of product records, got {type(records).__name__}")
        digest = hashlib.sha256(raw)
        attributes: dict[str, Any] = {}
        human: dict[str, Any] = {}
        reviews: dict[str, tuple[list[Any], Any]] = {}
        if attributes_path is not None:
            attributes, raw_attr = _keyed_file(attributes_path, dict, "an attributes entry")
            _check_attributes(attributes, attributes_path)
            digest.update(raw_attr)
        if human_instructions_path is not None:
            human, raw_human = _keyed_file(human_instructions_path, list, "a human instructions entry")
            _check_human(human, human_instructions_path)
            digest.update(raw_human)
        if reviews_path is not None:
            reviews, raw_rev = _reviews_file(reviews_path)
            digest.update(raw_rev)
        if limit is not None:
            records = records[:limit]
        products: list[Product] = []
        seen: set[str] = set()
        for i, record in enumerate(records):
            product = _record_to_product(record, i, products_path, attributes, human, reviews)
            if product is None or product.asin in seen:
                continue
            seen.add(product.asin)
            products.append(product)
        fp = f"webshop-v{LOADER_VERSION}-{digest.hexdigest()[:24]}-l{limit}"
        return cls(products, fp, name=Path(products_path).name)

    # ---------------------------------------------------------------- access
    def __len__(self) -> int:
        return len(self._asins)

    @property
    def asins(self) -> Sequence[str]:
        """All asins in catalog order."""
        return self._asins

    @property
    def is_synthetic(self) -> bool:
        """Whether products are generated on access."""
        return self._synthetic is not None

    def index_of(self, asin: str) -> int | None:
        """Position of ``asin`` in the catalog, or ``None``."""
        if self._synthetic is not None:
            i = synthetic_index(asin) if isinstance(asin, str) else None
            return i if i is not None and i < self._synthetic[0] else None
        return self._index.get(asin)

    def at(self, index: int) -> Product:
        """The product at position ``index``."""
        if self._synthetic is None:
            return self._products[index]
        n, seed = self._synthetic
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(index)
        cached = self._cache.get(index)
        if cached is not None:
            self._cache.move_to_end(index)
            return cached
        product = generate_product(seed, index)
        self._cache[index] = product
        if len(self._cache) > self._CACHE_SIZE:
            self._cache.popitem(last=False)
        return product

    def __contains__(self, asin: object) -> bool:
        return isinstance(asin, str) and self.index_of(asin) is not None

    def __getitem__(self, asin: str) -> Product:
        i = self.index_of(asin)
        if i is None:
            raise KeyError(asin)
        return self.at(i)

    def get(self, asin: str, default: Product | None = None) -> Product | None:
        """The product with ``asin``, or ``default``."""
        i = self.index_of(asin)
        return default if i is None else self.at(i)

    def __iter__(self) -> Iterator[Product]:
        """Products in catalog order (synthetic ones generated one at a time, not cached)."""
        if self._synthetic is None:
            yield from self._products
            return
        n, seed = self._synthetic
        for i in range(n):
            yield generate_product(seed, i)

    def __repr__(self) -> str:
        return f"Catalog({self.name!r}, {len(self)} products, fingerprint={self.fingerprint!r})"

    # ------------------------------------------------------------------ export
    def save(self, products_path: str | Path, attributes_path: str | Path | None = None,
             human_instructions_path: str | Path | None = None) -> None:
        """Write the catalog in the original WebShop file format (what :meth:`load` reads back).

        Prices are written as WebShop pricing strings, so a range's drawn price is re-drawn (by
        asin, hence identically) on load; reviews and rating stay inside the records.
        """
        records, attrs, human = [], {}, {}
        for p in self:
            pricing = " - ".join(f"${x}" for x in p.pricing)
            records.append({
                "asin": p.asin, "name": p.title, "category": p.category, "query": p.query,
                "product_category": p.product_category, "full_description": p.description,
                "small_description": p.bullet_points, "pricing": pricing,
                "customization_options": {
                    name: [{"value": v, "image": p.option_to_image.get(v)} for v in values]
                    for name, values in p.options.items()
                },
                "images": [p.image_url] if p.image_url else [],
                "Rating": p.rating, "Reviews": p.reviews,
            })
            attrs[p.asin] = {"attributes": p.attributes, "instruction": p.instruction_text,
                             "instruction_attributes": p.instruction_attributes}
            if p.human_instructions:
                human[p.asin] = p.human_instructions
        _write_json(products_path, records)
        if attributes_path is not None:
            _write_json(attributes_path, attrs)
        if human_instructions_path is not None:
            _write_json(human_instructions_path, human)


def _write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` to ``path`` atomically (a crash never leaves half a file)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    tmp.replace(path)
