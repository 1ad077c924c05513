"""Notebook 02's budget explorer used as a student uses it: in JupyterLab, in a real browser.

Starts JupyterLab headless on a loopback port over a scratch copy of notebook 02, opens it in
headless Chromium (Debian's package, driven by Playwright), runs all cells, changes the blocks of
stage 2 through the page and checks that the total shown equals what `python -m cifar_resnet
params` reports. Saves a screenshot of the widget to tests/artifacts/budget_explorer.png.

Run alone with: python -m pytest tests/browser
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = "02_architecture_and_parameter_budget.ipynb"
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]


def chromium_path() -> str | None:
    return os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory):
    """A JupyterLab server on 127.0.0.1 serving a scratch folder that holds a copy of notebook 02."""
    if chromium_path() is None:
        pytest.skip("browser test skipped: no Chromium found (install Debian's `chromium` package, "
                    "or set CHROMIUM_PATH)")
    pytest.importorskip("playwright.sync_api", reason="browser test skipped: `pip install playwright`")
    folder = tmp_path_factory.mktemp("lab")
    shutil.copy(ROOT / "notebooks" / NOTEBOOK, folder / NOTEBOOK)
    settings = tmp_path_factory.mktemp("lab-settings")
    # Render every cell (JupyterLab 4 leaves off-screen cells out of the page) and ask about no news.
    for plugin, values in {"notebook-extension/tracker": {"windowingMode": "none"},
                           "apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False}}.items():
        path = settings / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    port, token = free_port(), secrets.token_hex(16)
    log = open(folder / "jupyterlab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", f"--ServerApp.port={port}",
         "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={folder}",
         f"--LabApp.user_settings_dir={settings}", f"--LabApp.workspaces_dir={settings}"],
        stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"JupyterLab did not start:\n{(folder / 'jupyterlab.log').read_text()[-3000:]}")
            time.sleep(0.5)
    yield base, token, folder
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
    log.close()


def cli_total(*flags: str) -> int:
    out = subprocess.run([sys.executable, "-m", "cifar_resnet", "params", *flags, "--json"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)["total"]


def shown_total(page) -> int:
    text = page.locator(".budget-total").first.inner_text()
    return int(text.split(" parameters")[0].replace(",", ""))


def test_changing_blocks_in_the_browser_updates_the_total(jupyterlab):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect, sync_playwright

    base, token, _folder = jupyterlab
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        try:
            page.goto(f"{base}/lab/tree/{NOTEBOOK}?token={token}")
            page.locator(".jp-Notebook").first.wait_for(timeout=90_000)
            select_kernel = page.locator(".jp-Dialog").get_by_role("button", name="Select", exact=True)
            try:  # a fresh workspace asks which kernel to start: take the proposed Python 3
                select_kernel.click(timeout=15_000)
            except PlaywrightTimeout:
                pass
            expect(page.get_by_text("Python 3 (ipykernel) | Idle")).to_be_visible(timeout=90_000)
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_role("menuitem", name="Run All Cells", exact=True).click()

            total = page.locator(".budget-total").first
            total.wait_for(state="attached", timeout=180_000)
            total.scroll_into_view_if_needed()
            assert shown_total(page) == cli_total("--preset", "reference") == 4_916_284

            readout = page.locator(".widget-slider", has_text="B2 blocks").locator(".widget-readout").first
            readout.scroll_into_view_if_needed()
            readout.click()
            page.keyboard.press("Control+A")
            page.keyboard.type("6")
            page.keyboard.press("Enter")
            expected = cli_total("--blocks", "3", "6", "3", "--channels", "66", "132", "264",
                                 "--kernel", "3", "--skip-kernel", "1", "--pool", "8")
            expect(total).to_contain_text(f"{expected:,} parameters", timeout=30_000)
            assert shown_total(page) == expected == 5_544_604
            expect(total).to_contain_text("OVER")

            ARTIFACTS.mkdir(exist_ok=True)
            widget = page.locator(".budget-explorer").first
            widget.screenshot(path=str(ARTIFACTS / "budget_explorer.png"))
        except Exception:
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "browser_failure.png"), full_page=True)
            raise
        finally:
            browser.close()
