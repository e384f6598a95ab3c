"""``mem1_gym/WebSearchQA-v0``: N questions answered by searching the web and opening pages.

The multi-objective QA task of :mod:`mem1_gym.qa_env`, with web tools instead of
a passage retriever. Each turn the agent writes its internal state and one action:

* ``<query> keywords </query>``: a web search; ``<info>`` lists title, URL and snippet per result;
* ``<open> URL </open>``: fetches the page over HTTP and shows its text (HTML turned into
  text with BeautifulSoup, cut to ``page_chars`` characters);
* ``<answer> a1; a2; ... </answer>``: answers all questions, in order; ends the episode.

The reward is the F1 sum over objectives (EM is reported in the metrics too).

Backends (``search=``): ``local`` (default) serves the embedded corpus as a web site
on loopback, one page per passage, shared by every env of the process; ``searxng:URL``
and ``serper[:ENV_VAR]`` use online search APIs (see :mod:`mem1_gym.web.search`).
Every fetch has a total deadline, a size limit, a content-type check and an address
policy (:mod:`mem1_gym.web.fetch`): with the local backend only the local web's address
is open; with an online one any public host, while loopback, private, link-local,
multicast and reserved addresses are refused on every hop (redirects and DNS
rebinding included) unless ``allow_private_hosts=True``. Failures reach the agent as
``<info>`` text, never as exceptions; failed searches count in ``metrics["tool_errors"]``.
"""

from __future__ import annotations

from typing import Any, Collection, Sequence

from .data import QAItem
from .protocol import ANSWER, OPEN, SEARCH, Turn, format_turn
from .qa_env import PROMPT_TEMPLATE as QA_PROMPT_TEMPLATE
from .qa_env import MultiObjectiveQAEnv
from .scoring import normalize_answer
from .turn_env import Outcome
from .web.fetch import WebError, fetch_page, truncate_text
from .web.search import SearchResult, WebSearch, make_web_search
from .web.site import LocalWebServer, acquire_local_web, release_local_web

# The QA task prompt with the web tools in place of the knowledge-base search line.
_KB_SEARCH = "<{search}> keywords </{search}> searches the knowledge base; the results come back inside <{info}> </{info}>.\n"
_WEB_TOOLS = (
    "<{search}> keywords </{search}> searches the web; each result (title, URL, snippet) comes back inside <{info}> </{info}>.\n"
    "<{open}> URL </{open}> opens a page from the results and shows its text inside <{info}> </{info}>.\n"
)
PROMPT_TEMPLATE = QA_PROMPT_TEMPLATE.replace("by searching a knowledge base.", "by searching the web and reading pages.").replace(
    _KB_SEARCH, _WEB_TOOLS
)


def format_results(results: Sequence[SearchResult]) -> str:
    """Search results as the agent sees them: numbered, with title, URL and snippet."""
    if not results:
        return "No results."
    return "\n".join(f"{i}. {r.title}\nURL: {r.url}\n{r.snippet}" for i, r in enumerate(results, 1))


class WebSearchQAEnv(MultiObjectiveQAEnv):
    """Multi-objective QA with web search and page opening (see the module docstring).

    Args:
        search: ``"local"`` (default), ``"searxng:http://host:port"``, ``"serper"``/``"serper:ENV_VAR"``,
            or a :class:`~mem1_gym.web.search.WebSearch` instance.
        page_chars: an opened page's text is cut to this many characters.
        fetch_timeout: total seconds per fetch (a search request, or opening a page with its
            redirects): a server that drips its answer cannot hold a step longer.
        max_page_bytes: larger page bodies are cut before parsing.
        open_hosts: ``host`` / ``host:port`` values pages may be opened from; by default the local
            web's address with the local backend, any public host with an online one. An IP
            literal (or ``localhost``) listed here may be private: naming it is the opt-in.
        allow_private_hosts: let the agent open loopback, private, link-local and other
            non-public addresses (off by default: an agent, or a page it reads, could otherwise
            reach services of the machine or its network, such as cloud metadata).
        max_turns: by default ``5 * n_objectives + 2`` (a search and an open per hop, two hops each, and slack).
        qa_kwargs: :class:`~mem1_gym.qa_env.MultiObjectiveQAEnv`'s arguments (``memory``, ``dataset``,
            ``split``, ``retriever``, ``topk``, ``tags``, ``format_penalty``, ``dataset_seed``, ...).
    """

    roles = (SEARCH, OPEN, ANSWER)
    prompt_template = PROMPT_TEMPLATE

    def __init__(
        self,
        n_objectives: int = 1,
        search: str | WebSearch = "local",
        page_chars: int = 1_500,
        fetch_timeout: float = 10.0,
        max_page_bytes: int = 1 << 20,
        open_hosts: Collection[str] | None = None,
        allow_private_hosts: bool = False,
        max_turns: int | None = None,
        **qa_kwargs: Any,
    ):
        if page_chars < 1 or fetch_timeout <= 0 or max_page_bytes < 1:
            raise ValueError("page_chars and max_page_bytes must be positive, fetch_timeout > 0")
        if max_turns is None and isinstance(n_objectives, int):
            max_turns = 5 * n_objectives + 2
        super().__init__(n_objectives=n_objectives, max_turns=max_turns, **qa_kwargs)
        retriever = qa_kwargs.get("retriever", "bm25s")
        self.page_chars = int(page_chars)
        self.fetch_timeout = float(fetch_timeout)
        self.max_page_bytes = int(max_page_bytes)
        self.allow_private_hosts = bool(allow_private_hosts)
        self.site: LocalWebServer | None = None
        if search == "local":
            key = (self.dataset.name, self.dataset.fingerprint, retriever if isinstance(retriever, str) else id(retriever))
            self.site = acquire_local_web(key, lambda: (self.dataset.corpus, self.retriever))
            self.open_hosts: Collection[str] | None = {self.site.netloc} if open_hosts is None else set(open_hosts)
        else:
            self.open_hosts = None if open_hosts is None else set(open_hosts)
        self.web_search = make_web_search(
            search, local_base_url=self.site.url if self.site else None, timeout=self.fetch_timeout
        )
        #: normalised query -> the results it got (the oracle opens pages from them)
        self._results: dict[str, list[SearchResult]] = {}
        self._opened: list[str] = []

    # -- TurnEnv hooks ----------------------------------------------------------

    def _new_task(self) -> str:
        prompt = super()._new_task()  # draws the task, clears the answer state, formats prompt_template
        self._results = {}
        self._opened = []
        return prompt

    def _execute(self, turn: Turn) -> Outcome:
        assert turn.argument is not None
        if turn.role == SEARCH:
            return self._web_search(turn.argument)
        if turn.role == OPEN:
            return self._open(turn.argument)
        outcome = super()._execute(turn)
        outcome.reward = self._f1  # web search QA is rewarded by F1 (EM stays in the metrics)
        return outcome

    def _task_metrics(self) -> dict[str, float]:
        return {**super()._task_metrics(), "searches": float(len(self._searched)), "pages_opened": float(len(self._opened))}

    # -- tools ------------------------------------------------------------------

    def _refuse(self, message: str) -> Outcome:
        return Outcome(info=f"Invalid turn: {message}", valid=False, reward=-self.format_penalty)

    def _web_search(self, query: str) -> Outcome:
        if not query:
            return self._refuse("the query is empty; write search keywords.")
        if len(query) > self.max_query_chars:
            return self._refuse(f"the query is {len(query)} characters long; the limit is {self.max_query_chars}.")
        try:
            results = self.web_search.search(query, self.topk)
        except WebError as err:
            self.tool_errors += 1
            return Outcome(info=f"Search failed: {err}", extra={"search_error": str(err)})
        except Exception as err:  # a pluggable backend may fail in its own way; the agent hears about it
            self.tool_errors += 1
            message = f"{type(err).__name__}: {err}"
            return Outcome(info=f"Search failed: {message}", extra={"search_error": message})
        key = normalize_answer(query)
        self._searched.add(key)
        self._results[key] = results
        return Outcome(info=format_results(results), extra={"urls": [r.url for r in results]})

    def _resolve(self, target: str) -> str:
        target = target.strip().strip("<>\"'")
        if target.startswith("/") and self.site is not None:
            return self.site.url + target  # a path on the local web
        return target

    def _open(self, target: str) -> Outcome:
        if not target:
            return self._refuse("the URL is empty; copy a URL from the search results.")
        url = self._resolve(target)
        try:
            page = fetch_page(
                url,
                timeout=self.fetch_timeout,
                max_bytes=self.max_page_bytes,
                allowed_hosts=self.open_hosts,
                allow_private=self.allow_private_hosts,
            )
        except WebError as err:
            return Outcome(info=f"Could not open the page: {err}", extra={"open_error": str(err)})
        self._opened.append(url)
        header = f"Page: {page.title}\nURL: {page.url}\n" if page.title else f"URL: {page.url}\n"
        text = truncate_text(page.text, self.page_chars) if page.text else "(the page has no text)"
        return Outcome(info=header + text, extra={"url": page.url})

    # -- oracle -----------------------------------------------------------------

    def _target(self, item: QAItem, hop: int, results: Sequence[SearchResult]) -> str | None:
        """The page an expert opens for a hop.

        On the local web, a dataset that records each hop's gold passage (the fictional
        world does) names the page. Otherwise: on the last hop the first result whose
        title or snippet holds the answer, on earlier hops the top result.
        """
        gold = getattr(self.dataset, "gold_passages", {}).get(item.id, ())
        if self.site is not None and hop < len(gold) and gold[hop] in self.site.pages:
            return self.site.url_of(gold[hop])
        if not results:
            return None
        if hop == len(self._gold_queries(item)) - 1:
            golds = [normalize_answer(a) for a in item.answers]
            for result in results:
                text = normalize_answer(f"{result.title} {result.snippet}")
                if any(g and g in text for g in golds):
                    return result.url
        return results[0].url

    def _next_step(self) -> tuple[int, str, str] | None:
        """(objective index, role, argument) of the first hop not yet searched and opened."""
        assert self.task is not None
        for i, item in enumerate(self.task.items):
            for hop, query in enumerate(self._gold_queries(item)):
                results = self._results.get(normalize_answer(query))
                if results is None:
                    return i, SEARCH, query
                url = self._target(item, hop, results)
                if url is not None and url not in self._opened:
                    return i, OPEN, url
        return None

    def oracle_action(self) -> str:
        """Search each hop's gold query, open the right page, record answers in the IS, answer when all are known."""
        if self.task is None:
            raise RuntimeError("call reset() before oracle_action()")
        step = self._next_step()
        current = step[0] if step is not None else len(self.task.items)
        known = [
            f"Q{i}: {item.answers[0] if i - 1 < current else 'unknown'}" for i, item in enumerate(self.task.items, 1)
        ]
        if step is None:
            answer = "; ".join(item.answers[0] for item in self.task.items)
            return format_turn("All answers found. " + "; ".join(known), ANSWER, answer, self.tags)
        _, role, argument = step
        plan = f"Next: {'search' if role == SEARCH else 'open'} {argument}"
        return format_turn("; ".join(known) + ". " + plan, role, argument, self.tags)

    # -- lifecycle --------------------------------------------------------------

    def close(self) -> None:
        """Release the shared local web server (the last env of the process stops it)."""
        if self.site is not None:
            release_local_web(self.site)
            self.site = None
        super().close()

    def task_info(self) -> dict[str, Any]:
        """The hidden task, plus the pages opened so far."""
        return {**super().task_info(), "opened": list(self._opened)}
