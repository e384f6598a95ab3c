"""What an agent sees of a page: visible text, clickables, and the search bar.

One function, :func:`read_page`, turns HTML into a :class:`PageView` with
BeautifulSoup. The in-process engine applies it to the HTML it rendered and
the browser env to the page source Chromium returns, so both report the same
text observations and available actions (WebShop's rules: visible strings
joined with ``[SEP]``; clickables are the lower-cased labels of buttons,
product links and option values).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from bs4 import BeautifulSoup, Comment, NavigableString, Tag

#: Strings under these tags are not visible (WebShop's ``tag_visible``).
_INVISIBLE_PARENTS = frozenset({"style", "script", "head", "title", "meta", "[document]", "noscript"})
#: Clicking this label of the search page is not an action (``search[...]`` is).
SEARCH_BUTTON = "search"


@dataclass(frozen=True)
class PageView:
    """The agent-facing reading of one page.

    Attributes:
        text: visible strings joined with `` [SEP] ``.
        text_rich: one visible string a line, buttons as ``[button] x [button_]``,
            selected options as ``[clicked button] x [clicked button_]``.
        has_search_bar: whether the page has the search input.
        links: lower-cased clickable label -> link target (path), in page order.
        instruction: the instruction text shown in the page header.
    """

    text: str
    text_rich: str
    has_search_bar: bool
    links: dict[str, str] = field(default_factory=dict)
    instruction: str = ""

    @property
    def clickables(self) -> list[str]:
        """Clickable labels as WebShop lists them (the search button included when present)."""
        return ([SEARCH_BUTTON] if self.has_search_bar else []) + list(self.links)

    def available_actions(self) -> dict[str, object]:
        """``{"has_search_bar": bool, "clickables": [...]}`` as in WebShop's ``get_available_actions``."""
        return {"has_search_bar": self.has_search_bar, "clickables": self.clickables}


def _visible(node: NavigableString) -> bool:
    if isinstance(node, Comment):
        return False
    parent = node.parent
    return parent is not None and parent.name not in _INVISIBLE_PARENTS


def _clickable(node: NavigableString) -> Tag | None:
    """The link or button a visible string belongs to, if any."""
    for parent in node.parents:
        if not isinstance(parent, Tag) or parent.name == "body":
            return None
        classes = parent.get("class") or []
        if parent.name in ("a", "button") or "btn" in classes or "product-link" in classes:
            return parent
    return None


@lru_cache(maxsize=1024)
def read_page(html: str) -> PageView:
    """Read ``html`` the way the agent sees it (see :class:`PageView`).

    Cached: episodes revisit the same pages (search page, results, items), and parsing
    dominates a step. Treat the returned view as read-only.
    """
    soup = BeautifulSoup(html, "html.parser")
    plain: list[str] = []
    rich: list[str] = []
    links: dict[str, str] = {}
    for node in soup.find_all(string=True):
        if not _visible(node):
            continue
        text = " ".join(node.split())
        if not text:
            continue
        plain.append(text)
        target = _clickable(node)
        if target is None:
            rich.append(text)
            continue
        if "selected" in (target.get("class") or []):
            rich.append(f"[clicked button] {text} [clicked button_]")
        else:
            rich.append(f"[button] {text} [button_]")
        href = target.get("href")
        if href and text.lower() not in links:
            links[text.lower()] = str(href)
    header = soup.find(id="instruction-text")
    instruction = ""
    if header is not None:
        strings = [" ".join(s.split()) for s in header.find_all(string=True)]
        instruction = " ".join(s for s in strings if s and s != "Instruction:")
    return PageView(
        text=" [SEP] ".join(plain),
        text_rich="\n".join(rich),
        has_search_bar=soup.find(id="search_input") is not None,
        links=links,
        instruction=instruction,
    )
