"""Headless Chromium (Debian's /usr/bin/chromium, driven by its /usr/bin/chromedriver) for the
report's browser tests and benchmark. Nothing here downloads a browser: without the Debian
packages, ``start`` raises BrowserUnavailable and the tests skip saying so."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1000",
)


class BrowserUnavailable(RuntimeError):
    pass


@contextmanager
def chromium(profile_dir: Path | None = None) -> Iterator[Any]:
    """A selenium WebDriver on a fresh profile; quits it (and removes the profile) after."""
    try:
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:  # pragma: no cover - selenium is in the test extra
        raise BrowserUnavailable(f"selenium is not installed: {exc}") from exc
    for exe in (CHROMIUM, CHROMEDRIVER):
        if not Path(exe).exists():
            raise BrowserUnavailable(
                f"{exe} is missing: apt-get install chromium chromium-driver (.ci/run does)"
            )
    own = profile_dir is None
    profile = profile_dir or Path(tempfile.mkdtemp(prefix="wanrecipe-chromium-"))
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    except WebDriverException as exc:
        raise BrowserUnavailable(f"Chromium did not start: {exc.msg}") from exc
    try:
        yield driver
    finally:
        driver.quit()
        if own:
            shutil.rmtree(profile, ignore_errors=True)


def open_page(driver: Any, path: Path) -> dict[str, float]:
    """Load ``path`` from file:// and return its Navigation Timing entry (milliseconds)."""
    driver.get(path.resolve().as_uri())
    for _ in range(200):
        if driver.execute_script("return document.readyState") == "complete":
            break
        time.sleep(0.05)
    entry = driver.execute_script(
        "return JSON.stringify(performance.getEntriesByType('navigation')[0])"
    )
    return dict(json.loads(entry))


def console_errors(driver: Any) -> list[dict[str, Any]]:
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def load_all_images(driver: Any) -> list[dict[str, Any]]:
    """Scroll every <img> into view (lazy ones load), wait for each to finish, and return
    ``{src, naturalWidth, complete}`` for all."""
    driver.execute_script(
        "document.querySelectorAll('img').forEach(function (i) { i.loading = 'eager'; });"
    )
    script = (
        "return Array.prototype.map.call(document.querySelectorAll('img'), function (i) {"
        " return {src: (i.getAttribute('src') || '').slice(0, 60), complete: i.complete,"
        " naturalWidth: i.naturalWidth, visible: !!i.offsetParent}; });"
    )
    images: list[dict[str, Any]] = driver.execute_script(script)
    for _ in range(200):
        images = driver.execute_script(script)
        if all(i["complete"] for i in images):
            break
        time.sleep(0.05)
    return images
