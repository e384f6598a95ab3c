"""``webshop_env/WebShopBrowser-v0``: WebShop played in a real headless Chromium.

The env serves the site with :class:`~webshop_env.server.WebShopServer` (its
own, on a free loopback port, or one shared by many envs) and drives it with
Selenium: ``search[q]`` types ``q`` into the search box and submits the form,
``click[label]`` clicks the link or button of that label. Observations are read
from the browser's page source with the same code as the in-process env
(:func:`~webshop_env.extract.read_page`), and actions are checked by the same
rules (:func:`~webshop_env.engine.resolve_action`), so both envs give the same
text observations and rewards for the same actions.

Needs the Debian packages ``chromium`` and ``chromium-driver``
(``/usr/bin/chromium``, ``/usr/bin/chromedriver``); without them the
constructor raises :class:`BrowserUnavailable` saying what to install.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .engine import StepResult, observe, resolve_action
from .env import ShopEnvBase, step_info
from .expert import expert_action
from .extract import PageView, read_page
from .pages import with_notice
from .routes import Route, RouteError, parse_path
from .server import WebShopServer
from .site import Site, SiteConfig, shared_site

#: Chromium switches: headless, no sandbox (containers), and nothing that phones home.
CHROMIUM_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--disable-dev-shm-usage",
)
_DEFAULT_CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
_DEFAULT_DRIVER = ("/usr/bin/chromedriver",)
#: Finds the clickable element whose normalised, lower-cased text is the label (page order).
_FIND_CLICKABLE_JS = """
const label = arguments[0];
for (const el of document.querySelectorAll('a.btn, a.product-link, button.btn, a')) {
  const text = el.textContent.split(/\\s+/).filter(Boolean).join(' ').toLowerCase();
  if (text === label && el.getAttribute('href')) { return el; }
}
return null;
"""


class BrowserUnavailable(RuntimeError):
    """Chromium or chromedriver is missing (the message says what to install)."""


def find_browser(chromium_path: str | None = None, chromedriver_path: str | None = None) -> tuple[str, str]:
    """Paths of the Chromium binary and chromedriver; :class:`BrowserUnavailable` when either is missing."""

    def pick(given: str | None, defaults: tuple[str, ...], name: str) -> str | None:
        candidates = [given] if given else [*defaults, shutil.which(name) or ""]
        return next((c for c in candidates if c and Path(c).is_file()), None)

    chromium = pick(chromium_path, _DEFAULT_CHROMIUM, "chromium")
    driver = pick(chromedriver_path, _DEFAULT_DRIVER, "chromedriver")
    missing = [n for n, p in (("chromium", chromium), ("chromedriver", driver)) if p is None]
    if missing:
        raise BrowserUnavailable(
            f"WebShopBrowser-v0 needs {' and '.join(missing)}, not found"
            f"{' at ' + (chromium_path or chromedriver_path or '') if chromium_path or chromedriver_path else ''}. "
            "Install them with: apt-get install chromium chromium-driver "
            "(or pass chromium_path= / chromedriver_path=)."
        )
    assert chromium is not None and driver is not None
    return chromium, driver


class WebShopBrowserEnv(ShopEnvBase):
    """WebShop through a headless Chromium (see the module docstring).

    Takes the arguments of :class:`~webshop_env.env.WebShopEnv`; its catalog arguments
    (``num_products``, ``catalog_path``, ``goal_split``, ``catalog_seed``, ...) are the fields of
    :class:`~webshop_env.site.SiteConfig`. Further:

    Args:
        server: a running :class:`~webshop_env.server.WebShopServer` to share, or the base URL
            of one (then goals are drawn by index and the server maps them onto its split).
        chromium_path: the Chromium binary (default ``/usr/bin/chromium``).
        chromedriver_path: chromedriver (default ``/usr/bin/chromedriver``).
        page_timeout: seconds to wait for a page to load.
    """

    def __init__(
        self,
        observation_mode: str = "text",
        max_steps: int = 20,
        seed: int | None = None,
        site: Site | None = None,
        server: WebShopServer | str | None = None,
        chromium_path: str | None = None,
        chromedriver_path: str | None = None,
        page_timeout: float = 20.0,
        render_mode: str | None = None,
        **catalog: Any,
    ):
        super().__init__(observation_mode, max_steps, seed, render_mode)
        chromium, driver_path = find_browser(chromium_path, chromedriver_path)
        self.page_timeout = float(page_timeout)
        self._own_server: WebShopServer | None = None
        # The catalog, when this process has it: the oracle reads the goal from it.
        self.site: Site | None = None
        if isinstance(server, str):
            self.base_url, self.num_goals = server.rstrip("/"), None
        else:
            if server is None:
                site = site or shared_site(SiteConfig(**catalog))
                server = self._own_server = WebShopServer(site).start()
            self.base_url, self.num_goals = server.url, len(server.site.goals)
            self.site = server.site
        self._profile = tempfile.mkdtemp(prefix="webshop-chromium-")
        try:
            self.driver = self._start_driver(chromium, driver_path)
        except Exception:
            self._release()
            raise
        self.goal_text = ""
        self.done = False
        self.notice = ""
        self.html = ""
        self.view: PageView = read_page("")
        self.route = Route.search("none")

    def _start_driver(self, chromium: str, driver_path: str) -> Any:
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for arg in (*CHROMIUM_ARGS, f"--user-data-dir={self._profile}"):
            options.add_argument(arg)
        try:
            driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
        except WebDriverException as err:
            raise BrowserUnavailable(f"could not start Chromium with {driver_path}: {err.msg or err}") from None
        driver.set_page_load_timeout(self.page_timeout)
        return driver

    # -- Gymnasium API ----------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """Open a fresh session's search page for a goal drawn like :class:`~webshop_env.env.WebShopEnv` does."""
        index = self._draw_goal(seed, options, self.num_goals)
        # A session per episode keeps envs sharing one server apart; it is drawn from the seeded
        # generator so that reset(seed=s) gives the same URLs (Gymnasium's determinism check).
        session = f"b{int(self.np_random.integers(2**48)):012x}_{index}"
        self._navigate(lambda: self.driver.get(self.base_url + Route.search(session).path()))
        self.goal_text = self.view.instruction
        self.done, self.notice = False, ""
        if self.render_mode == "human":
            self.render()
        return self._observation(), self._info(StepResult(True))

    def step(self, action: Any) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Carry out ``search[...]``/``click[...]`` in the browser; bad actions are refused like in-process."""
        if not self.html:
            raise RuntimeError("call reset() before step()")
        return self._finish_step(self._act(action), self.done)

    def _act(self, action: Any) -> StepResult:
        if self.done:
            return self._refuse("Invalid action: the purchase is done; the episode has ended.")
        resolved = resolve_action(action, self.view, self.route)
        if isinstance(resolved, str):
            return self._refuse(resolved)
        from selenium.webdriver.common.by import By

        if resolved.verb == "search":
            box = self.driver.find_element(By.ID, "search_input")
            # Set through JS: chromedriver cannot type characters outside the BMP (emoji).
            self.driver.execute_script("arguments[0].value = arguments[1];", box, resolved.argument)
            button = self.driver.find_element(By.ID, "search-button")
        else:
            button = self.driver.execute_script(_FIND_CLICKABLE_JS, resolved.argument)
            if button is None:
                return self._refuse(f"Invalid action: {resolved.argument!r} is not clickable on this page.")
        self._navigate(button.click)
        if self.driver.find_elements(By.ID, "error"):
            message = self.view.text
            self._navigate(self.driver.back)
            return self._refuse(f"Invalid action: the site refused it ({message}).")
        self.notice = ""
        reward_el = read_reward(self.html)
        if reward_el is not None:
            self.done = True
            return StepResult(True, reward=reward_el[0], done=True, breakdown=reward_el[1])
        return StepResult(True)

    def _navigate(self, go: Any) -> None:
        """Run ``go`` (a click or ``get``), wait for the new page, and read it."""
        from selenium.common.exceptions import StaleElementReferenceException, TimeoutException, WebDriverException
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        old = self.driver.find_element(By.TAG_NAME, "html")

        def old_page_gone(_: Any) -> bool:
            # Selenium's staleness_of only knows StaleElementReferenceException; while the old
            # document is being torn down Chromium may instead answer "Node with given id does
            # not belong to the document" (seen about once in five notebook runs): gone as well.
            try:
                old.is_enabled()
            except StaleElementReferenceException:
                return True
            except WebDriverException as err:
                if "does not belong to the document" in str(err):
                    return True
                raise
            return False

        go()
        # Poll often: the default (0.5 s) would dominate a local page load.
        wait = WebDriverWait(self.driver, self.page_timeout, poll_frequency=0.01)
        try:
            wait.until(old_page_gone)
            wait.until(lambda d: d.execute_script("return document.readyState") == "complete")
        except TimeoutException:
            raise RuntimeError(f"the WebShop page did not load within {self.page_timeout:.0f} s ({self.base_url})") from None
        self.html = self.driver.page_source
        self.view = read_page(self.html)
        try:
            self.route = parse_path(urlsplit(self.driver.current_url).path)
        except RouteError:
            self.route = Route.search("none")

    def oracle_action(self) -> str:
        """The expert's next action, read from the page in the browser (needs an in-process server)."""
        if self.site is None:
            raise RuntimeError(f"oracle_action() needs the catalog; this env drives a remote server at {self.base_url}")
        if not self.html:
            raise RuntimeError("call reset() before oracle_action()")
        goal = self.site.goals[self.goal_index]
        return expert_action(self.site, goal, self.route, self.view) or "click[buy now]"

    def _refuse(self, message: str) -> StepResult:
        self.notice = message
        return StepResult(False, message=message)

    def _observation(self) -> str:
        html = with_notice(self.html, self.notice) if self.notice else self.html
        view = read_page(html) if self.notice else self.view
        return observe(html, view, self.route.path(), self.observation_mode)

    def _info(self, result: StepResult) -> dict[str, Any]:
        return step_info(self.view, self.route, self.goal_text, self.goal_index, self.steps, result)

    def _release(self) -> None:
        if self._own_server is not None:
            self._own_server.close()
            self._own_server = None
        shutil.rmtree(self._profile, ignore_errors=True)

    def close(self) -> None:
        """Quit Chromium, stop the env's own server, delete the browser profile."""
        driver = getattr(self, "driver", None)
        if driver is not None:
            try:
                driver.quit()
            finally:
                self.driver = None
        self._release()


def read_reward(html: str) -> tuple[float, dict[str, Any]] | None:
    """The reward and breakdown a done page carries, or None for any other page."""
    from bs4 import BeautifulSoup

    el = BeautifulSoup(html, "html.parser").find(id="reward")
    if el is None:
        return None
    return float(el["data-reward"]), json.loads(str(el.get("data-breakdown") or "{}"))
