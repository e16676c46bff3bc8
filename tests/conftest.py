"""Shared fixtures."""

import os

import pytest

from rlvr_dynamics.book import browser

MISSING_BROWSER = f"no Chromium for the browser tests: {browser.INSTALL_HINT}"


def browser_required() -> bool:
    """Set by .ci/run after installing Chromium: there a missing browser fails the tests."""
    return os.environ.get("RLVR_REQUIRE_BROWSER") == "1"


def pytest_collection_modifyitems(config, items):
    """Without Chromium, mark every browser test skipped (pytest folds marked skips of one file
    into one summary line saying how to install it)."""
    if browser.find_chromium() is not None or browser_required():
        return
    for item in items:
        if "chromium" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.skip(reason=MISSING_BROWSER))


@pytest.fixture(scope="session")
def chromium():
    """Debian's Chromium for the browser tests; missing, it is a failure where RLVR_REQUIRE_BROWSER=1."""
    path = browser.find_chromium()
    if path is None:
        if browser_required():
            pytest.fail(MISSING_BROWSER + " (RLVR_REQUIRE_BROWSER=1: CI must run them)")
        pytest.skip(MISSING_BROWSER)
    return path
