"""Shared fixtures."""

import os

import pytest

from rlvr_dynamics import browser


@pytest.fixture(scope="session")
def chromium():
    """Debian's Chromium for the browser tests. Where it is missing the tests are skipped with one
    line saying how to install it — unless RLVR_REQUIRE_BROWSER=1 (set by .ci/run after installing
    it), where a missing browser fails instead of passing silently."""
    path = browser.find_chromium()
    if path is None:
        message = f"no Chromium for the browser tests: {browser.INSTALL_HINT}"
        if os.environ.get("RLVR_REQUIRE_BROWSER") == "1":
            pytest.fail(message + " (RLVR_REQUIRE_BROWSER=1: CI must run them)")
        pytest.skip(message)
    return path
