"""The page-graph state machine: ``search[...]`` and ``click[...]`` over the rendered site.

An :class:`Engine` plays one session in-process: its state is the current
:class:`~webshop_env.routes.Route`; a click follows the link the rendered page
holds under that label (so the graph is exactly the site's: search -> results
-> item -> Description/Features/Reviews -> done), and a search goes to the
first results page of the query. :func:`resolve_action` holds WebShop's action
rules and is shared with the browser env, which carries the same resolved
action out on the real site.

Bad actions never raise: the result says why, the page stays, and the
observation shows the reason as a notice above the page.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Literal

from .extract import SEARCH_BUTTON, PageView, read_page
from .pages import with_notice
from .routes import MAX_QUERY_CHARS, Route, RouteError, parse_path
from .schema import Goal
from .site import RenderedPage, Site

ObservationMode = Literal["html", "text", "text_rich", "url"]
OBSERVATION_MODES: tuple[str, ...] = ("html", "text", "text_rich", "url")
#: Longest action string considered at all (longer ones are refused without parsing).
MAX_ACTION_CHARS = 2000
_ACTION_RE = re.compile(r"^\s*([A-Za-z_]+)\s*\[(.*)\]\s*$", re.DOTALL)
#: Unicode categories refused in an action: controls, format (e.g. bidi overrides), surrogates,
#: private use, unassigned.
_ODD_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})


@dataclass(frozen=True)
class Resolved:
    """A valid action, resolved against the current page.

    Attributes:
        verb: ``search`` or ``click``.
        argument: the lower-cased query or clickable label.
        target: the path the action leads to (a results page, or the clicked link).
    """

    verb: str
    argument: str
    target: str


def _odd_character(text: str) -> str | None:
    for ch in text:
        # The zero-width joiner (Cf) is ordinary inside emoji sequences.
        if ch != "\u200d" and unicodedata.category(ch) in _ODD_CATEGORIES:
            return f"U+{ord(ch):04X}"
    return None


def resolve_action(action: Any, view: PageView, route: Route) -> Resolved | str:
    """Resolve ``action`` on the page read as ``view`` at ``route``; a string says why it is invalid.

    WebShop's rules: ``verb[argument]``, the argument lower-cased; ``search`` only where
    there is a search bar; ``click`` only on a label the page offers (buttons, product ids,
    option values), never on the search button itself.
    """
    if not isinstance(action, str):
        return f"Invalid action: an action is a string such as search[query] or click[label], got {type(action).__name__}."
    if len(action) > MAX_ACTION_CHARS:
        return f"Invalid action: the action is {len(action)} characters long; the limit is {MAX_ACTION_CHARS}."
    odd = _odd_character(action.replace("\n", " ").replace("\t", " "))
    if odd is not None:
        return f"Invalid action: it contains the control or unassigned character {odd}."
    m = _ACTION_RE.match(action)
    if m is None:
        shown = action.strip()[:60]
        return f"Invalid action {shown!r}: write search[query] or click[label]."
    verb, argument = m.group(1).lower(), " ".join(m.group(2).split()).lower()
    if verb == "search":
        if not view.has_search_bar:
            return "Invalid action: there is no search bar on this page; click[back to search] first."
        if not argument:
            return "Invalid action: the search query is empty."
        if len(argument) > MAX_QUERY_CHARS:
            return f"Invalid action: the search query is {len(argument)} characters long; the limit is {MAX_QUERY_CHARS}."
        return Resolved("search", argument, route.results(keywords=argument, page=1).path())
    if verb == "click":
        if argument == SEARCH_BUTTON and view.has_search_bar:
            return "Invalid action: to search, write search[query]."
        target = view.links.get(argument)
        if target is None:
            shown = ", ".join(view.clickables[:25])
            return f"Invalid action: {argument[:60]!r} is not clickable on this page. Clickables: {shown}."
        return Resolved("click", argument, target)
    return f"Invalid action: unknown action {verb!r}; use search[query] or click[label]."


def observe(page_html: str, view: PageView, path: str, mode: str) -> str:
    """The observation of a page in ``mode`` (``html``, ``text``, ``text_rich`` or ``url``)."""
    if mode == "html":
        return page_html
    if mode == "text":
        return view.text
    if mode == "text_rich":
        return view.text_rich
    if mode == "url":
        return path
    raise ValueError(f"observation_mode must be one of {OBSERVATION_MODES}, got {mode!r}")


@dataclass
class StepResult:
    """What one action did.

    Attributes:
        valid: whether the action was carried out.
        message: why it was refused ('' when valid).
        reward: the purchase reward (0 unless Buy Now was clicked).
        done: whether the purchase ended the episode.
        breakdown: the reward's parts on purchase.
    """

    valid: bool
    message: str = ""
    reward: float = 0.0
    done: bool = False
    breakdown: dict[str, Any] | None = None


class Engine:
    """One in-process session of the site, playing ``goal``.

    Args:
        site: renders the pages.
        goal: the goal the session plays.
        session: the session id shown in URLs.
    """

    def __init__(self, site: Site, goal: Goal, session: str = "fixed_0"):
        self.site = site
        self.goal = goal
        self.session = session
        self.page: RenderedPage = site.render(Route.search(session), goal)
        self.view: PageView = read_page(self.page.html)
        self.notice = ""
        self.done = False

    @property
    def route(self) -> Route:
        """The current page."""
        return self.page.route

    def step(self, action: Any) -> StepResult:
        """Carry out one ``search[...]``/``click[...]`` action; never raises on bad input."""
        if self.done:
            return self._refuse("Invalid action: the purchase is done; the episode has ended.")
        resolved = resolve_action(action, self.view, self.route)
        if isinstance(resolved, str):
            return self._refuse(resolved)
        try:
            page = self.site.render(parse_path(resolved.target), self.goal)
        except RouteError as err:
            # Links come from the site itself, so this is a site bug, reported rather than raised.
            return self._refuse(f"Invalid action: the page could not be opened ({err.message}).")
        self.page, self.view, self.notice = page, read_page(page.html), ""
        if page.reward is not None:
            self.done = True
            return StepResult(True, reward=page.reward, done=True, breakdown=page.breakdown)
        return StepResult(True)

    def _refuse(self, message: str) -> StepResult:
        self.notice = message
        return StepResult(False, message=message)

    def observation(self, mode: str) -> str:
        """The current page in observation ``mode``, with the last refusal (if any) as a notice."""
        if not self.notice:
            return observe(self.page.html, self.view, self.route.path(), mode)
        html = with_notice(self.page.html, self.notice)
        return observe(html, read_page(html), self.route.path(), mode)

    def available_actions(self) -> dict[str, Any]:
        """``{"has_search_bar": bool, "clickables": [...]}`` of the current page."""
        return self.view.available_actions()
