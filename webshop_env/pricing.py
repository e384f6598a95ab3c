"""Prices as WebShop derives them: parse a pricing string, the page's price tag, the purchase price."""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

from webshop_env.seeding import stable_rng

#: Price WebShop assumes for a record without one.
MISSING_PRICE = 100.0


def parse_pricing(text: str) -> list[float]:
    """Prices in a WebShop pricing string: ``"$12.99"`` -> ``[12.99]``; a range gives two.

    Each ``$``-separated part keeps only digits and dots; parts that leave no number are
    skipped (the original engine would crash on them), and at most two prices are kept.
    """
    prices: list[float] = []
    for part in text.split("$")[1:]:
        digits = re.sub(r"[^\d.]", "", part)
        try:
            prices.append(float(Decimal(digits)))
        except InvalidOperation:
            continue
    return prices[:2]


def price_tag(pricing: Sequence[float]) -> str:
    """The price as the item page shows it (WebShop's ``Price``): ``$12.99`` or ``$10.0 to $20.0``."""
    if not pricing:
        return f"${MISSING_PRICE}"
    if len(pricing) == 1:
        return f"${pricing[0]}"
    return f"${pricing[0]} to ${pricing[1]}"


def representative_price(asin: str, pricing: Sequence[float]) -> float:
    """The price a purchase of ``asin`` costs: the single price, or a draw inside the range.

    WebShop draws ``uniform(low, high)`` for a range with the process-global RNG; here the draw
    is keyed by the asin so every process (and every catalog order) agrees on it.
    """
    if not pricing:
        return MISSING_PRICE
    if len(pricing) == 1:
        return float(pricing[0])
    low, high = float(pricing[0]), float(pricing[1])
    return round(stable_rng("webshop-price", asin).uniform(low, high), 2)
