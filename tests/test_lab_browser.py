"""Notebook 01's gate explorer where researchers use it: JupyterLab in a real (headless) Chromium.

Starts JupyterLab on a free local port with a token, serving a temporary copy of notebook 01; opens it in
the system Chromium through Playwright (nothing is downloaded); runs all cells from the Run menu; drags the
tau slider, unticks a gate, types an admissible and then an inadmissible g'(z); checks that the figure
changes, that the refused g' names its property, and that no cell shows an error; then shuts the server
down. Skipped, with the reason, when no Chromium is installed (Debian: apt-get install chromium) unless
SAPO_REQUIRE_BROWSER=1 (CI sets it once it has installed one). SAPO_SCREENSHOT=<path.png> keeps the
screenshot of the explorer (the README's is docs/img/gate_explorer.png):

    SAPO_SCREENSHOT=docs/img/gate_explorer.png .venv/bin/python -m pytest -q tests/test_lab_browser.py
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "01_gate_properties.ipynb"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
TIMEOUT_MS = 90_000

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _skip(reason: str):
    """Skip with `reason`, or fail when the environment promises a browser (SAPO_REQUIRE_BROWSER=1)."""
    if os.environ.get("SAPO_REQUIRE_BROWSER") == "1":
        pytest.fail(f"SAPO_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium() -> str:
    """The system Chromium ($SAPO_CHROMIUM, else the first of BROWSERS on PATH) and Playwright, else skip."""
    path = os.environ.get("SAPO_CHROMIUM") or next(filter(None, map(shutil.which, BROWSERS)), None)
    if not path or not os.access(path, os.X_OK):
        _skip(f"no Chromium found (looked for $SAPO_CHROMIUM and {', '.join(BROWSERS)} on PATH); "
              "Debian: apt-get install chromium chromium-driver")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _skip("playwright is not installed (it is in requirements/lock.txt)")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, token: str) -> dict:
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


@pytest.fixture(scope="module")
def lab(chromium, tmp_path_factory):
    """A JupyterLab server on a temporary copy of notebook 01: (base url, token, log path); shut down after."""
    root = tmp_path_factory.mktemp("lab")
    shutil.copy(REPO_ROOT / "notebooks" / NOTEBOOK, root / NOTEBOOK)  # the source is never run in place
    port, token = _free_port(), os.urandom(16).hex()
    env = {**os.environ, "SAPO_FIGURES_DIR": str(root / "figures"), "SAPO_RUNS_DIR": str(root / "runs"),
           "JUPYTER_PREFER_ENV_PATH": "1", "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
           "JUPYTER_CONFIG_DIR": str(root / "config"), "JUPYTER_DATA_DIR": str(root / "data")}  # no user config
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           f"--LabServerApp.workspaces_dir={root / 'workspaces'}",
           f"--LabServerApp.user_settings_dir={root / 'settings'}",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LabApp.news_url=None"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = root / "server.log"
    with open(log, "w") as out:
        server = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                pytest.fail(f"JupyterLab exited with {server.returncode}:\n{log.read_text()[-3000:]}")
            try:
                _get(f"{base}/api/status", token)
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not answer within 120 s:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
        yield base, token, log
    finally:
        try:  # the server shuts its kernels down (and they their g' worker)
            request = urllib.request.Request(f"{base}/api/shutdown", method="POST",
                                             headers={"Authorization": f"token {token}"})
            urllib.request.urlopen(request, timeout=10).close()
            server.wait(timeout=30)
        except (urllib.error.URLError, ConnectionError, TimeoutError, subprocess.TimeoutExpired):
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        try:  # anything the server started and left behind (its own process group)
            os.killpg(server.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _figure_src(page) -> str:
    return page.locator(".sapo-explorer .sapo-figure img").get_attribute("src")


def _wait_for_new_figure(page, old_src: str) -> str:
    """Wait until the explorer shows a figure other than `old_src`; return the new one."""
    page.wait_for_function("old => { const img = document.querySelector('.sapo-explorer .sapo-figure img');"
                           " return img !== null && img.src !== old; }", arg=old_src, timeout=TIMEOUT_MS)
    return _figure_src(page)


def test_gate_explorer_in_jupyterlab(chromium, lab, tmp_path):
    from playwright.sync_api import sync_playwright

    base, token, log = lab
    screenshot = Path(os.environ.get("SAPO_SCREENSHOT") or tmp_path / "gate_explorer.png")

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True,
                                    args=["--disable-dev-shm-usage", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        try:
            page.goto(f"{base}/lab/tree/{NOTEBOOK}?token={token}")
            page.wait_for_selector(".jp-NotebookPanel .jp-Cell")
            page.locator(".jp-StatusBar-Widget", has_text="| Idle").first.wait_for()  # the kernel is up

            # Run > Run All Cells, as a researcher would
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
            page.wait_for_selector(".sapo-explorer .sapo-figure img", state="attached")
            page.locator(".sapo-explorer").scroll_into_view_if_needed()
            no_news = page.get_by_role("button", name="No", exact=True)  # JupyterLab's news prompt, if shown
            if no_news.count():
                no_news.first.click()
            first = _figure_src(page)
            assert first.startswith("data:image/png;base64,")

            # drag the tau slider to the right: the figure and the readout change
            readout = page.locator(".sapo-explorer .sapo-tau .widget-readout")
            tau_before = readout.inner_text()
            handle = page.locator(".sapo-explorer .sapo-tau .noUi-handle")
            handle.scroll_into_view_if_needed()
            box = handle.bounding_box()
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] / 2 + 15, box["y"] + box["height"] / 2, steps=5)
            page.mouse.up()
            after_tau = _wait_for_new_figure(page, first)
            assert readout.inner_text() != tau_before

            # untick erf: redrawn without it
            page.locator(".sapo-explorer .sapo-gate-erf input[type=checkbox]").click()
            after_gate = _wait_for_new_figure(page, after_tau)
            assert "erf" not in page.locator(".sapo-explorer .sapo-halfmax").inner_text().split()

            # an admissible g' of one's own is drawn, with its row in the tables
            box_gprime = page.locator(".sapo-explorer .sapo-gprime input")
            box_gprime.fill("1 / (1 + z**2) ** 2")
            box_gprime.press("Enter")
            _wait_for_new_figure(page, after_gate)
            assert "g'(z) = 1 / (1 + z**2) ** 2" in page.locator(".sapo-explorer .sapo-halfmax").inner_text()
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.locator(".sapo-explorer").screenshot(path=str(screenshot))

            # an inadmissible g' names the failed property and its evidence instead of a plot
            box_gprime.fill("2 / (1 + z**2)")
            box_gprime.press("Enter")
            page.wait_for_selector(".sapo-explorer .sapo-figure :text('not admissible')", state="attached")
            refused = page.locator(".sapo-explorer .sapo-figure").inner_text()
            assert "(ii)" in refused and "global maximum, equal to 1" in refused and "must equal 1" in refused
            assert page.locator(".sapo-explorer .sapo-figure img").count() == 0

            # no cell shows an error or anything on stderr
            errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
            assert errors.count() == 0, errors.all_inner_texts()
            assert "Traceback" not in page.locator(".jp-NotebookPanel").inner_text()
        except Exception as err:  # keep what the browser showed, for the report
            page.screenshot(path=str(tmp_path / "failure.png"))
            text = page.locator("body").inner_text()[-4000:]
            raise AssertionError(f"{err}\n--- page (screenshot {tmp_path / 'failure.png'}) ---\n{text}\n"
                                 f"--- server log ---\n{log.read_text()[-3000:]}") from err
        finally:
            browser.close()
    assert screenshot.stat().st_size > 10_000, log
