"""A seeded synthetic catalog with the schema and flavour of the WebShop Amazon scrape.

Product ``i`` of a catalog is a pure function of ``(seed, i)``: it draws from its own random
stream (:func:`webshop_env.seeding.stable_rng`), so any product can be generated on demand, in
any order, in any process, and a 1,000,000-product catalog needs no more memory than the
products actually looked at. The five WebShop categories (beauty, electronics, fashion, food,
furniture) each hold several product kinds with a category path, a search query, attribute pool,
option sets and a price band; titles are brand + adjectives + noun + attributes.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from webshop_env.pricing import price_tag, representative_price
from webshop_env.schema import Product
from webshop_env.seeding import stable_rng

#: Bumped whenever generation changes, so cached search indexes of old catalogs are not reused.
GENERATOR_VERSION = 1

_SEP = " › "


@dataclass(frozen=True)
class ProductKind:
    """A kind of product: the noun in its title, its search query, category path and pools."""

    noun: str
    query: str
    path: tuple[str, ...]
    adjectives: tuple[str, ...]
    attributes: tuple[str, ...]
    option_names: tuple[str, ...]
    price_band: tuple[float, float]


# Option value pools, keyed by the option name as it appears on the item page. Colours mix plain
# names with WebShop-style compound ones ("navy blue", "black forest") so colour normalisation
# matters for the reward.
OPTION_VALUES: dict[str, dict[str, tuple[str, ...]]] = {
    "color": {
        "apparel": ("black", "white", "navy blue", "heather grey", "burgundy", "olive green", "light pink",
                    "khaki", "royal blue", "charcoal", "red", "beige"),
        "home": ("espresso", "walnut", "white", "black", "grey", "natural wood", "rustic brown", "navy",
                 "light grey", "cream", "teal", "gold"),
        "device": ("black", "white", "silver", "space gray", "rose gold", "midnight blue", "red", "green"),
        "beauty": ("natural beige", "light ivory", "warm sand", "cocoa", "rose", "coral", "berry",
                   "nude", "black", "brown"),
    },
    "size": {
        "apparel": ("x-small", "small", "medium", "large", "x-large", "xx-large", "3x-large"),
        "shoe": ("6", "6.5", "7", "7.5", "8", "8.5", "9", "9.5", "10", "11", "12"),
        "bed": ("twin", "full", "queen", "king", "california king"),
        "volume": ("1 fl oz (pack of 1)", "1.7 fl oz (pack of 1)", "3.4 fl oz (pack of 1)",
                   "8 fl oz (pack of 2)", "16 fl oz (pack of 1)"),
        "food": ("12 ounce (pack of 1)", "1.5 ounce (pack of 12)", "8 ounce (pack of 6)",
                 "2 pound (pack of 1)", "24 count (pack of 1)", "4.5 ounce (pack of 4)"),
        "furniture": ("24 inch", "30 inch", "36 inch", "48 inch", "60 inch", "small", "large"),
    },
    "flavor name": {
        "food": ("chocolate", "vanilla", "sea salt", "peanut butter", "strawberry", "original",
                 "honey roasted", "cinnamon", "salted caramel", "variety pack", "lemon", "mango"),
    },
    "scent": {
        "beauty": ("lavender", "unscented", "coconut", "eucalyptus mint", "rose", "citrus", "vanilla",
                   "fresh cotton", "sandalwood"),
    },
    "style": {
        "device": ("wifi", "wifi + cellular", "bundle", "standard", "pro", "with case"),
        "furniture": ("modern", "farmhouse", "mid-century", "industrial", "classic", "contemporary"),
        "apparel": ("classic fit", "slim fit", "relaxed fit", "short sleeve", "long sleeve"),
    },
    "capacity": {
        "device": ("32gb", "64gb", "128gb", "256gb", "512gb", "1tb"),
    },
    "item package quantity": {
        "any": ("1", "2", "3", "4", "6", "10", "12"),
    },
}

_BEAUTY_ATTR = ("long lasting", "paraben free", "cruelty free", "travel size", "sensitive skin", "natural ingredients",
                "easy apply", "alcohol free", "fine lines", "dry skin", "high quality", "non toxic", "vegan")
_ELEC_ATTR = ("high definition", "fast charging", "easy install", "noise cancelling", "water resistant",
              "wireless bluetooth", "long battery life", "usb port", "high speed", "plug play", "easy use",
              "heavy duty", "dual band")
_FASHION_ATTR = ("machine wash", "slim fit", "long sleeve", "moisture wicking", "hand wash", "button closure",
                 "quality materials", "elastic waistband", "non slip", "rubber sole", "relaxed fit", "daily wear",
                 "polyester cotton")
_FOOD_ATTR = ("gluten free", "non gmo", "sugar free", "low carb", "keto friendly", "plant based", "ready eat",
              "high protein", "certified organic", "individually wrapped", "dairy free", "natural flavors",
              "artificial colors")
_FURN_ATTR = ("easy assemble", "solid wood", "storage space", "easy clean", "living room", "space saving",
              "heavy duty", "wood frame", "mid century", "high density", "dining room", "metal legs",
              "assembly required")


def _kinds() -> dict[str, tuple[ProductKind, ...]]:
    """The product kinds per top-level category (built once at import)."""
    b, e, f, fd, fu = ("Beauty & Personal Care", "Electronics", "Clothing, Shoes & Jewelry",
                       "Grocery & Gourmet Food", "Home & Kitchen")
    K = ProductKind
    return {
        "beauty": (
            K("face moisturizer", "face moisturizer", (b, "Skin Care", "Face", "Creams & Moisturizers"),
              ("hydrating", "daily", "lightweight", "night", "anti-aging"), _BEAUTY_ATTR,
              ("size", "scent"), (8, 60)),
            K("lipstick", "lipstick", (b, "Makeup", "Lips", "Lipstick"), ("matte", "creamy", "velvet", "satin"),
              _BEAUTY_ATTR, ("color", "item package quantity"), (5, 35)),
            K("shampoo", "shampoo", (b, "Hair Care", "Shampoo & Conditioner", "Shampoos"),
              ("volumizing", "clarifying", "moisturizing", "herbal"), _BEAUTY_ATTR, ("size", "scent"), (6, 40)),
            K("foundation", "foundation makeup", (b, "Makeup", "Face", "Foundation"),
              ("liquid", "full coverage", "dewy", "mineral"), _BEAUTY_ATTR, ("color", "size"), (9, 55)),
            K("body lotion", "body lotion", (b, "Skin Care", "Body", "Moisturizers", "Lotions"),
              ("soothing", "rich", "shea", "whipped"), _BEAUTY_ATTR, ("scent", "size"), (5, 30)),
        ),
        "electronics": (
            K("headphones", "wireless headphones", (e, "Headphones, Earbuds & Accessories", "Headphones"),
              ("over-ear", "foldable", "studio", "sport"), _ELEC_ATTR, ("color", "style"), (18, 250)),
            K("tablet", "tablet", (e, "Computers & Accessories", "Tablets"), ("10 inch", "portable", "kids"),
              _ELEC_ATTR, ("capacity", "color"), (70, 600)),
            K("charger", "usb charger", (e, "Accessories & Supplies", "Chargers & Adapters"),
              ("compact", "dual port", "wall", "travel"), _ELEC_ATTR, ("color", "item package quantity"), (8, 45)),
            K("security camera", "security camera", (e, "Camera & Photo", "Video Surveillance", "Cameras"),
              ("indoor", "outdoor", "1080p", "night vision"), _ELEC_ATTR, ("style", "item package quantity"),
              (25, 200)),
            K("bluetooth speaker", "bluetooth speaker", (e, "Portable Audio & Video", "Speakers"),
              ("portable", "waterproof", "mini", "party"), _ELEC_ATTR, ("color",), (15, 180)),
        ),
        "fashion": (
            K("t-shirt", "mens t-shirt", (f, "Men", "Clothing", "Shirts", "T-Shirts"),
              ("crew neck", "graphic", "cotton", "athletic"), _FASHION_ATTR, ("color", "size"), (8, 35)),
            K("running shoes", "womens running shoes", (f, "Women", "Shoes", "Athletic", "Running"),
              ("lightweight", "breathable", "cushioned", "trail"), _FASHION_ATTR, ("color", "size"), (30, 140)),
            K("dress", "womens dress", (f, "Women", "Clothing", "Dresses", "Casual"),
              ("floral", "summer", "maxi", "wrap"), _FASHION_ATTR, ("color", "size"), (18, 80)),
            K("jeans", "mens jeans", (f, "Men", "Clothing", "Jeans"), ("straight leg", "stretch", "slim", "vintage"),
              _FASHION_ATTR, ("color", "size"), (20, 90)),
            K("hoodie", "hoodie", (f, "Women", "Clothing", "Fashion Hoodies & Sweatshirts"),
              ("oversized", "fleece", "pullover", "zip up"), _FASHION_ATTR, ("color", "size", "style"), (15, 60)),
        ),
        "food": (
            K("protein bar", "protein bars", (fd, "Snack Foods", "Bars", "Protein Bars"),
              ("chewy", "crunchy", "low sugar", "whey"), _FOOD_ATTR, ("flavor name", "size"), (10, 45)),
            K("coffee beans", "whole bean coffee", (fd, "Beverages", "Coffee, Tea & Cocoa", "Coffee", "Whole Coffee Beans"),
              ("dark roast", "medium roast", "single origin", "espresso"), _FOOD_ATTR, ("size", "flavor name"), (9, 40)),
            K("trail mix", "trail mix snack", (fd, "Snack Foods", "Nuts & Seeds", "Trail Mix"),
              ("roasted", "sweet", "savory", "mixed"), _FOOD_ATTR, ("flavor name", "size"), (6, 30)),
            K("herbal tea", "herbal tea bags", (fd, "Beverages", "Coffee, Tea & Cocoa", "Tea", "Herbal"),
              ("caffeine free", "calming", "organic", "loose"), _FOOD_ATTR, ("flavor name", "item package quantity"),
              (4, 25)),
            K("pasta sauce", "pasta sauce", (fd, "Pantry Staples", "Sauces", "Pasta Sauces"),
              ("tomato", "marinara", "garlic", "homestyle"), _FOOD_ATTR, ("size",), (3, 20)),
        ),
        "furniture": (
            K("coffee table", "coffee table", (fu, "Furniture", "Living Room Furniture", "Tables", "Coffee Tables"),
              ("rustic", "round", "lift top", "glass"), _FURN_ATTR, ("color", "size"), (45, 350)),
            K("office chair", "office chair", (fu, "Furniture", "Home Office Furniture", "Chairs"),
              ("ergonomic", "mesh", "swivel", "high back"), _FURN_ATTR, ("color", "style"), (60, 400)),
            K("bed frame", "bed frame", (fu, "Furniture", "Bedroom Furniture", "Beds, Frames & Bases", "Bed Frames"),
              ("platform", "metal", "upholstered", "low profile"), _FURN_ATTR, ("size", "color"), (90, 600)),
            K("bookshelf", "bookshelf", (fu, "Furniture", "Home Office Furniture", "Bookcases"),
              ("5 tier", "ladder", "corner", "open"), _FURN_ATTR, ("color", "style"), (35, 260)),
            K("shoe rack", "shoe rack", (fu, "Storage & Organization", "Clothing & Closet Storage", "Shoe Organizers"),
              ("stackable", "bamboo", "entryway", "narrow"), _FURN_ATTR, ("color", "item package quantity"),
              (15, 90)),
        ),
    }


KINDS = _kinds()
CATEGORIES: tuple[str, ...] = tuple(KINDS)

# Which value pool of an option each category draws from (falls back to the pool's "any").
_POOL_FOR = {
    ("beauty", "size"): "volume", ("beauty", "color"): "beauty", ("beauty", "scent"): "beauty",
    ("electronics", "color"): "device", ("electronics", "style"): "device", ("electronics", "capacity"): "device",
    ("fashion", "color"): "apparel", ("fashion", "style"): "apparel",
    ("food", "size"): "food", ("food", "flavor name"): "food",
    ("furniture", "color"): "home", ("furniture", "size"): "furniture", ("furniture", "style"): "furniture",
    # Kinds whose sizes differ from the rest of their category.
    ("running shoes", "size"): "shoe", ("bed frame", "size"): "bed",
}

_BRAND_HEADS = ("Lum", "Ver", "Nor", "Kal", "Ast", "Bel", "Cor", "Dra", "Eli", "Fen", "Gal", "Hal", "Ivo", "Jun",
                "Kes", "Lor", "Mav", "Nex", "Oro", "Pel", "Quin", "Ros", "Sol", "Tav", "Ul", "Val", "Wex", "Zan")
_BRAND_TAILS = ("ora", "ix", "ara", "ex", "ion", "ova", "is", "ent", "aro", "ium", "ella", "o", "tek", "wood",
                "ly", "ana", "era", "on", "ux", "ia")
_INSTRUCTION_OPENERS = ("i need", "i am looking for", "i want", "i'm looking for", "find me", "i would like")
_REVIEW_TITLES = {5: "Love it", 4: "Pretty good", 3: "It's okay", 2: "Not great", 1: "Disappointed"}


def brand_name(rng: random.Random) -> str:
    """A made-up brand, e.g. ``"Solova"``."""
    return rng.choice(_BRAND_HEADS) + rng.choice(_BRAND_TAILS)


def synthetic_asin(index: int) -> str:
    """The asin of product ``index``: ``"S"`` + 9 digits (10 characters, like a real asin)."""
    return f"S{index:09d}"


def synthetic_index(asin: str) -> int | None:
    """The product index encoded in a synthetic asin, or ``None`` if ``asin`` is not one."""
    if len(asin) != 10 or asin[0] != "S" or not asin[1:].isdigit():
        return None
    return int(asin[1:])


def _article(phrase: str) -> str:
    return "an" if phrase[:1] in "aeiou" else "a"


def _price(rng: random.Random, band: tuple[float, float]) -> float:
    # Log-uniform inside the band, then a retail ending (.99/.49/.95): most items are cheap.
    raw = math.exp(rng.uniform(math.log(band[0]), math.log(band[1])))
    return round(max(1.0, math.floor(raw)) + rng.choice((0.99, 0.49, 0.95, 0.0)), 2)


def generate_product(seed: int, index: int) -> Product:
    """Product ``index`` of the synthetic catalog with ``seed`` (pure, deterministic)."""
    rng = stable_rng("webshop-synthetic", GENERATOR_VERSION, seed, index)
    asin = synthetic_asin(index)
    category = CATEGORIES[rng.randrange(len(CATEGORIES))]
    kind = rng.choice(KINDS[category])
    brand = brand_name(rng)
    adjectives = rng.sample(kind.adjectives, k=rng.randint(1, 2))
    attributes = rng.sample(kind.attributes, k=rng.randint(3, 5))
    instruction_attributes = attributes[: rng.randint(1, min(3, len(attributes)))]

    options: dict[str, list[str]] = {}
    n_options = rng.choice((0, 1, 1, 2, 2, 2))
    for name in rng.sample(kind.option_names, k=min(n_options, len(kind.option_names))):
        pools = OPTION_VALUES[name]
        pool = pools.get(_POOL_FOR.get((kind.noun, name)) or _POOL_FOR.get((category, name), "any")) or next(iter(pools.values()))
        values = rng.sample(pool, k=rng.randint(2, min(4, len(pool))))
        if name == "size" and all(v.replace(".", "").isdigit() for v in values):
            values.sort(key=float)  # shoe sizes read in order on the page
        options[name] = values

    low = _price(rng, kind.price_band)
    if options and rng.random() < 0.25:
        high = round(low * rng.uniform(1.2, 2.5), 2)
        pricing = [low, high]
    else:
        pricing = [low]
    # Same derivations as a loaded record, so save() + load() reproduces the product exactly.
    price, price_text = representative_price(asin, pricing), price_tag(pricing)

    attr_words = ", ".join(a.title() for a in attributes[:2])
    title = f"{brand} {' '.join(a.title() for a in adjectives)} {kind.noun.title()} - {attr_words}"
    descriptor = " ".join(adjectives)
    description = (
        f"The {brand} {descriptor} {kind.noun} is made for everyday use. "
        f"It is {', '.join(attributes[:-1])} and {attributes[-1]}. "
        f"Designed in the {kind.path[-1].lower()} line, it is a favourite for anyone shopping for "
        f"{_article(kind.query)} {kind.query}."
    )
    bullets = [f"{a.upper()}: this {kind.noun} is {a}, tested by our quality team." for a in attributes]
    bullets.insert(0, f"{descriptor.upper()} {kind.noun.upper()} by {brand}, backed by a 30-day guarantee.")
    reviews = []
    for _ in range(rng.choice((0, 1, 2, 3))):
        score = rng.choice((5, 5, 4, 4, 3, 2, 1))
        reviews.append({
            "title": _REVIEW_TITLES[score],
            "score": score,
            "body": f"{_REVIEW_TITLES[score]}. The {kind.noun} is {rng.choice(attributes)} as described.",
        })
    opener = rng.choice(_INSTRUCTION_OPENERS)
    wanted = " ".join(instruction_attributes)
    instruction_text = f"{opener} {_article(wanted)} {wanted} {kind.noun}"
    return Product(
        asin=asin,
        title=title,
        category=category,
        product_category=_SEP.join(kind.path),
        query=kind.query,
        description=description,
        bullet_points=bullets,
        price=price,
        pricing=pricing,
        price_text=price_text,
        options=options,
        attributes=list(attributes),
        rating=round(rng.uniform(2.5, 5.0), 1),
        reviews=reviews,
        image_url="",
        option_to_image={v: None for values in options.values() for v in values},
        instruction_text=instruction_text,
        instruction_attributes=list(instruction_attributes),
    )
