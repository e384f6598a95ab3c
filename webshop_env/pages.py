"""HTML pages of the WebShop site, rendered from one set of templates.

The in-process engine and the HTTP server both call these functions, so the
text an agent reads is the same whether it steps :class:`~webshop_env.env.WebShopEnv`
or drives the real site with a browser. Templates live in
``webshop_env/templates/`` and use :class:`string.Template` syntax; every value
substituted into them is HTML-escaped here (templates only ever receive
escaped text or fragments these functions built).
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from html import escape
from importlib import resources
from string import Template
from typing import Any, Iterable, Mapping, Sequence

from .routes import MAX_QUERY_CHARS, SUB_PAGES, Route

#: Where the agent-facing notice (e.g. "Invalid action ...") goes in a page.
NOTICE_MARKER = "<!-- notice -->"


@lru_cache(maxsize=None)
def _template(name: str) -> Template:
    text = resources.files("webshop_env").joinpath("templates", name).read_text(encoding="utf-8")
    return Template(text.strip())


def _fill(template: str, **values: Any) -> str:
    """Render ``template``: plain values are escaped, :class:`Markup` is inserted as is."""
    return _template(template).substitute(
        {k: (v.html if isinstance(v, Markup) else escape(str(v))) for k, v in values.items()}
    )


class Markup:
    """An HTML fragment built by this module (already escaped)."""

    __slots__ = ("html",)

    def __init__(self, html: str):
        self.html = html

    @classmethod
    def join(cls, parts: Iterable["Markup"], sep: str = "\n") -> "Markup":
        """Concatenate fragments."""
        return cls(sep.join(p.html for p in parts))


def _page(instruction: str, body: Markup) -> str:
    return _fill("base.html", instruction=instruction, body=body) + "\n"


def _button(href: str, label: str) -> Markup:
    return Markup(_fill("nav_button.html", href=href, label=label))


def price_label(product: Any) -> str:
    """How a product's price is shown: its catalog price text, else ``$x.xx``."""
    text = str(getattr(product, "price_text", "") or "").strip()
    return text if text else f"${float(product.price):.2f}"


def _rating(product: Any) -> str:
    rating = getattr(product, "rating", None)
    if rating is None or rating == "":
        return "N.A."
    return str(rating)


# -- pages ----------------------------------------------------------------------


def render_search(route: Route, instruction: str) -> str:
    """The search page: instruction and a search box that posts to the session's index."""
    body = _fill("search.html", action=route.path(), max_query=MAX_QUERY_CHARS)
    return _page(instruction, Markup(body))


def render_results(
    route: Route, instruction: str, products: Sequence[Any], total: int, per_page: int
) -> str:
    """A results page: Back to Search, < Prev / Next >, and ``products`` (this page's slice)."""
    last_page = max(1, -(-total // per_page))
    prev = _button(route.results(page=route.page - 1).path(), "< Prev") if route.page > 1 else Markup("")
    nxt = _button(route.results(page=route.page + 1).path(), "Next >") if route.page < last_page else Markup("")
    rows = Markup.join(
        Markup(_fill("result_row.html", href=route.item(p.asin, {}).path(), asin=p.asin, title=p.title, price=price_label(p)))
        for p in products
    )
    body = _fill(
        "results.html", back=Route.search(route.session).path(), page=route.page, total=total,
        prev=prev, next=nxt, rows=rows,
    )
    return _page(instruction, Markup(body))


def _item_nav(route: Route, prev: Route) -> dict[str, str]:
    return {"back": Route.search(route.session).path(), "prev": prev.path()}


def render_item(route: Route, instruction: str, product: Any) -> str:
    """An item page: option buttons by option name, title, price, rating, sub-page buttons, Buy Now."""
    groups = []
    for name, values in (product.options or {}).items():
        buttons = Markup.join(
            (
                Markup(_fill(
                    "option_button.html", href=route.with_option(name, v).path(), value=v,
                    selected=" selected" if route.options.get(name) == v else "",
                ))
                for v in values
            ),
            sep=" ",
        )
        groups.append(Markup(_fill("option_group.html", name=name, buttons=buttons)))
    subs = Markup.join((_button(route.sub(s).path(), s) for s in SUB_PAGES), sep=" ")
    body = _fill(
        "item.html", **_item_nav(route, route.results()), option_groups=Markup.join(groups), title=product.title,
        price=price_label(product), rating=_rating(product), sub_buttons=subs, buy=route.done().path(),
    )
    return _page(instruction, Markup(body))


def _review_html(review: Any) -> Markup:
    if isinstance(review, Mapping):
        parts = [
            f'<div class="review-{escape(str(k))}">{escape(str(v))}</div>'
            for k, v in review.items()
            if v not in (None, "")
        ]
        return Markup('<li class="review">' + "".join(parts) + "</li>")
    return Markup(f'<li class="review">{escape(str(review))}</li>')


def render_sub_page(route: Route, instruction: str, product: Any) -> str:
    """A Description, Features or Reviews page of an item, with < Prev back to the item."""
    if route.sub_page == "Description":
        text = str(getattr(product, "description", "") or "")
        content = Markup(f"<p>{escape(text)}</p>" if text.strip() else "")
    elif route.sub_page == "Features":
        points = list(getattr(product, "bullet_points", None) or [])
        content = Markup("<ul>" + "".join(f"<li>{escape(str(p))}</li>" for p in points) + "</ul>")
    else:
        reviews = list(getattr(product, "reviews", None) or [])
        content = Markup("<ul>" + "".join(_review_html(r).html for r in reviews) + "</ul>")
    body = _fill("sub_page.html", **_item_nav(route, route.item()), kind=route.sub_page.lower(), content=content)
    return _page(instruction, Markup(body))


def render_done(route: Route, instruction: str, product: Any, reward: float, breakdown: Mapping[str, Any]) -> str:
    """The purchase page: what was bought and its reward (exact value and breakdown in data attributes)."""
    options = Markup("".join(f"<li>{escape(k)}: {escape(v)}</li>" for k, v in route.options.items()))
    body = _fill(
        "done.html", asin=product.asin, title=product.title, options=options, reward=f"{reward:.4f}",
        reward_exact=repr(float(reward)), breakdown=json.dumps(dict(breakdown), sort_keys=True, default=str),
    )
    return _page(instruction, Markup(body))


def render_error(status: int, message: str, session: str | None = None, instruction: str = "") -> str:
    """An error page (4xx) with a way back to the search page when the session is known."""
    home = Route.search(session).path() if session else "/"
    return _page(instruction, Markup(_fill("error.html", status=status, message=message, home=home)))


def with_notice(html: str, message: str) -> str:
    """``html`` with an agent-facing notice (e.g. why an action was refused) shown first in the body."""
    notice = f'<div class="notice" id="notice">{escape(message)}</div>'
    if NOTICE_MARKER in html:
        return html.replace(NOTICE_MARKER, notice, 1)
    # A browser's serialisation may have moved the marker; fall back to the body tag.
    m = re.search(r"<body[^>]*>", html)
    return html[: m.end()] + notice + html[m.end():] if m else notice + html
