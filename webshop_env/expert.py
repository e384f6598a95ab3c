"""An expert shopper that knows the goal: the action that leads to buying the target.

:func:`expert_action` reads the current page (its :class:`~webshop_env.extract.PageView`
and :class:`~webshop_env.routes.Route`) and the goal, and returns the next
WebShop action: search, page through the results to the goal's product, open
it, select each goal option, Buy Now. It reads hidden task data (the goal's
asin and options), so it is for oracle actions, tests and demonstrations.
"""

from __future__ import annotations

from .extract import PageView
from .routes import Route
from .schema import Goal
from .site import Site


def expert_query(site: Site, goal: Goal) -> str:
    """The first of instruction, query and product title whose top-k results hold the target."""
    for text in (goal.instruction_text, goal.query, goal.product_title):
        query = " ".join(text.lower().split())
        if query and goal.asin in site.search(query):
            return query
    return " ".join(goal.product_title.lower().split())


def expert_action(site: Site, goal: Goal, route: Route, view: PageView) -> str:
    """The next action toward buying ``goal``'s product with its options ('' once bought)."""
    target = goal.asin.lower()
    if route.kind == "done":
        return ""
    if route.kind == "search":
        return f"search[{expert_query(site, goal)}]"
    if route.kind == "results":
        if target in view.links:
            return f"click[{target}]"
        asins = [a.lower() for a in site.search(route.keywords)]
        if target in asins:
            wanted_page = asins.index(target) // site.per_page + 1
            if wanted_page > route.page and "next >" in view.links:
                return "click[next >]"
            if wanted_page < route.page and "< prev" in view.links:
                return "click[< prev]"
        return "click[back to search]"
    if route.kind == "sub_page" or route.asin.lower() != target:
        return "click[< prev]"
    selected = {v.lower() for v in route.options.values()}
    for value in goal.goal_options.values():
        label = value.lower()
        if label not in selected and label in view.links:
            return f"click[{label}]"
    return "click[buy now]"
