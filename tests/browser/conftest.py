"""Fixtures of the browser tests: Debian's Chromium (tools/install-browser) driven by Playwright for Python, and
a local stack whose first allowed CORS origin is the example page's own (http://localhost:<free port>).

Without Chromium these tests are skipped, and the run ends with a banner saying so (tests/conftest.py); where
HILOS_RUNNER_REQUIRE_BROWSER=1 or CI=true (.ci/run), a missing Chromium fails them instead: CI never passes
without having run them.
"""

import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local.running_stack import RunningStack
from tests.e2e.conftest import stack_of_tests

NOT_RUN = "BROWSER TESTS DID NOT RUN"
# What headless Chromium needs on this kind of machine (root, no GPU, no network beyond loopback).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_executable() -> str | None:
    """HILOS_RUNNER_CHROMIUM when set (and only it), else Debian's chromium."""
    chosen = os.environ.get("HILOS_RUNNER_CHROMIUM")
    candidates = [chosen] if chosen else [shutil.which("chromium"), "/usr/bin/chromium"]
    return next((c for c in candidates if c and Path(c).is_file() and os.access(c, os.X_OK)), None)


def browser_tests_required() -> bool:
    return os.environ.get("HILOS_RUNNER_REQUIRE_BROWSER") == "1" or os.environ.get("CI", "").lower() == "true"


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = chromium_executable()
    if path is None:
        reason = f"{NOT_RUN}: no Chromium (run tools/install-browser as root, or set HILOS_RUNNER_CHROMIUM)"
        if browser_tests_required():
            pytest.fail(f"{reason}; required here (HILOS_RUNNER_REQUIRE_BROWSER=1 or CI=true)")
        pytest.skip(reason)
    return path


@pytest.fixture(scope="module")
def browser(chromium_path: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    # Module scope, not session: while Playwright's sync API is started, its event loop counts as running in
    # this thread, and the other tests of this worker (Powertools' batch processing) must not see one.
    with sync_playwright() as playwright:
        # Playwright starts it with a fresh profile (user data dir) of its own, removed afterwards.
        chromium = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    tab = context.new_page()
    tab.set_default_timeout(30_000)
    yield tab
    context.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def web_stack(chromium_path: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    """A local stack with a fast status sync (runs reach COMPLETED in seconds) whose one allowed origin is the
    example page's, so the page calls the API across origins exactly as a deployed frontend would."""
    port = free_port()
    origin = f"http://localhost:{port}"
    args = (
        f"--web-port={port}",
        "--sync-interval=1",
        "--progression=per_read",
        "--visibility-timeout=10",
        "--parameter-overrides",
        f"CorsAllowedOrigins={origin}",
        "WorkerBatchingWindowSeconds=0",
    )
    with stack_of_tests(tmp_path_factory.mktemp("browser-stack"), *args) as stack:
        assert stack.info["web_url"] == f"{origin}/"
        yield stack
