"""Headless Chromium from Debian's packages (``chromium``, ``chromium-driver``), driven by
selenium through the driver path given here, so Selenium Manager never downloads a browser or
driver. The browser may reach loopback only: every other host name resolves to nothing.

Where Chromium is missing the browser tests skip, unless KENSA_REQUIRE_BROWSER=1 (CI sets it
after installing the packages), where they fail.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("KENSA_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = (os.environ.get("KENSA_CHROMEDRIVER") or shutil.which("chromedriver")
          or "/usr/bin/chromedriver")
REQUIRE = os.environ.get("KENSA_REQUIRE_BROWSER") == "1"
ARTIFACTS = Path(os.environ.get("KENSA_TEST_ARTIFACTS", "test-artifacts"))


def need_browser() -> None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing = "the selenium package (pip install -e '.[test]')"
    else:
        if Path(CHROMIUM).exists() and Path(DRIVER).exists():
            return
        missing = f"{CHROMIUM} and {DRIVER} (apt-get install chromium chromium-driver)"
    if REQUIRE:
        pytest.fail(f"a browser is required here (KENSA_REQUIRE_BROWSER=1) but {missing} "
                    "is missing")
    pytest.skip(f"no browser: {missing} is missing")


def chrome(width: int = 1366, height: int = 768):
    """A headless Chromium that can reach 127.0.0.1 and nothing else."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager: never fetch anything
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}", "--no-first-run",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--disable-background-networking", "--disable-component-update"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)


def offsite_requests(driver) -> list[str]:
    """Every resource the current page loaded from anywhere but loopback."""
    urls = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
        ".concat([location.href])")
    return [u for u in urls if not u.startswith(("http://127.0.0.1", "data:", "blob:"))]


def screenshot(driver, name: str, width: int, height: int) -> Path:
    """Saves the page at ``width`` x ``height`` as ``ARTIFACTS/name-WxH.png``."""
    driver.set_window_size(width, height)
    # the window's frame takes some of it: grow the window until the page itself has that size
    extra_w, extra_h = driver.execute_script(
        "return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight]")
    if extra_w or extra_h:
        driver.set_window_size(width + extra_w, height + extra_h)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}-{width}x{height}.png"
    assert driver.save_screenshot(str(path))
    return path
