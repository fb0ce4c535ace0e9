"""JupyterLab and headless Chromium for the end-to-end test, each as a context manager.

The server runs the venv's own JupyterLab on 127.0.0.1 with a random port and
token, from a temporary copy of notebooks/ (outputs cleared, so everything the
test sees comes from this run and nothing in the repository is modified), with
its own config, data, runtime, settings and workspace directories (so neither
the developer's ~/.jupyter nor a previous run changes what the browser shows).
Both are stopped on the way out whatever happened: the server's whole process
tree is killed, the browser closed.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import nbformat
import psutil
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = REPO / "notebooks"
SCREENSHOTS = REPO / "build" / "e2e"
#: Set to 1 for a screenshot of every notebook; without it, only of a notebook whose test failed (a whole-notebook
#: picture took 1.0–1.4 s each, 16 per run: two per notebook; the Korean test still takes its one).
ALL_SCREENSHOTS = os.environ.get("LABKIT_E2E_SCREENSHOTS") == "1"

#: Debian's chromium (installed by scripts/setup.sh); never `playwright install`'s download.
CHROMIUM = "/usr/bin/chromium"
#: The flags measured to work on these machines (shared/notes/platform.md).  Playwright
#: adds --headless itself for headless=True and --no-sandbox for chromium_sandbox=False.
CHROMIUM_FLAGS = ["--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"]
VIEWPORT = {"width": 1280, "height": 900}

#: Offline lab: no news pop-up and no update check fetched from the internet.
NO_NEWS = {"fetchNews": "false", "checkForUpdates": False}

SERVER_START_S = 90
STOP_GRACE_S = 10


@dataclass(frozen=True)
class Lab:
    """A running JupyterLab: where it listens, its token, and the directory it serves."""

    url: str
    token: str
    root: Path

    def api(self, method: str, path: str) -> object:
        """Call the Jupyter server REST API (``path`` relative to ``/api/``); JSON or None."""
        req = urllib.request.Request(f"{self.url}api/{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def shutdown_kernels(self) -> None:
        """End every session and its kernel, so one notebook's kernel does not outlive its test."""
        for session in self.api("GET", "sessions"):  # type: ignore[union-attr]
            self.api("DELETE", f"sessions/{session['id']}")

    def open_url(self, notebook: str = "") -> str:
        """The URL that opens ``notebook`` (or just JupyterLab) in a fresh (reset) workspace, logged in by token."""
        return f"{self.url}lab{'/tree/' + notebook if notebook else ''}?token={self.token}&reset"


@dataclass(frozen=True)
class BrowserTab:
    """A page plus the console errors it collected (appended to as they happen)."""

    page: Page
    console_errors: list[str]


#: Parameters the browser runs with (the notebook's parameters cell, edited as a learner would): 04's "KVM inside
#: an emulator" boots a whole emulated AMD-V machine, which nbval's run of 04 (both editions) and
#: tests/test_nested_inside_qemu.py already do; in the browser, its console view and the skip message are what count.
#: 04b's shadow vs nested paging boots one too (nbval runs it in both editions).
#: The browser shows that the notebooks run and their widgets live in JupyterLab; what they measure inside L1
#: is nbval's (both editions) and tests/nested's: here each runs one L1 boot at most, the shortest.  So are the
#: medians of three boots per accelerator (04) and the 2 MiB sent through each NIC under TCG (04b): the browser
#: draws the same plot and tables from one boot and 1 MiB.
BROWSER_PARAMETERS = {"04_qemu": {"nested_demo": "False", "boots_per_accel": "1"},
                      "04b_memory_storage_network": {"paging_demo": "False", "net_mib": "1"},
                      "06_own_vmm": {"compare_qemu": "False"}}


def copy_cleared(src: Path, dst: Path) -> None:
    """Copy the notebooks (no outputs, execution counts or saved widget state; BROWSER_PARAMETERS) and the glossary."""
    dst.mkdir()
    for path in sorted(src.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
            if "parameters" in cell.metadata.get("tags", []):
                for name, value in BROWSER_PARAMETERS.get(path.stem, {}).items():
                    cell.source, found = re.subn(rf"(?m)^{name} = \S+", f"{name} = {value}", cell.source)
                    assert found == 1, f"{path.name}'s parameters cell has no `{name} = …` line"
        nb.metadata.pop("widgets", None)
        nbformat.write(nb, dst / path.name)
    for page in src.glob("*.md"):  # the glossary, which the notebooks link to
        shutil.copy(page, dst / page.name)


def lab_environment(base: Path, locale: str | None = None) -> dict[str, str]:
    """Environment for a hermetic server: private Jupyter dirs, the no-news setting and the UI language.

    ``locale`` (e.g. ``ko_KR``) is what a learner picks in Settings → Language;
    it needs that language pack installed (scripts/setup.sh installs the Korean one).
    """
    dirs = {name: base / name for name in ("config", "data", "runtime", "settings", "workspaces")}
    for path in dirs.values():
        path.mkdir()
    settings = {("apputils-extension", "notification"): NO_NEWS}
    if locale:
        settings["translation-extension", "plugin"] = {"locale": locale}
    for (extension, plugin), values in settings.items():
        path = dirs["settings"] / "@jupyterlab" / extension / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    return {**os.environ,
            "JUPYTER_CONFIG_DIR": str(dirs["config"]), "JUPYTER_DATA_DIR": str(dirs["data"]),
            "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]), "JUPYTERLAB_SETTINGS_DIR": str(dirs["settings"]),
            "JUPYTERLAB_WORKSPACES_DIR": str(dirs["workspaces"])}


def wait_until_serving(proc: subprocess.Popen, runtime: Path, token: str, log: Path) -> str:
    """The server's URL once ``/api/status`` answers; fails with the server log if it never does.

    ``--port=0`` lets the OS pick a free port; the server writes the one it got to
    ``jpserver-<pid>.json`` in its runtime dir.
    """
    info = runtime / f"jpserver-{proc.pid}.json"
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"JupyterLab exited with {proc.returncode} at start:\n{log.read_text()[-3000:]}")
        if info.exists():
            try:
                url = json.loads(info.read_text())["url"]
                urllib.request.urlopen(urllib.request.Request(
                    f"{url}api/status", headers={"Authorization": f"token {token}"}), timeout=5).close()
                return url
            except (ValueError, KeyError, OSError):  # file half-written, or not listening yet
                pass
        time.sleep(0.2)
    pytest.fail(f"JupyterLab did not answer within {SERVER_START_S} s:\n{log.read_text()[-3000:]}")


def stop_process_tree(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group (it then shuts its kernels down), SIGKILL what is left.

    Kernels run in sessions of their own (jupyter_client starts them with
    start_new_session), so they are collected as descendants before the signal.
    """
    try:
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    _, alive = psutil.wait_procs(tree, timeout=STOP_GRACE_S)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(alive, timeout=STOP_GRACE_S)
    proc.wait(timeout=STOP_GRACE_S)
    assert not alive, f"processes survived SIGKILL: {alive}"


@contextmanager
def running_lab(base: Path, locale: str | None = None) -> Iterator[Lab]:
    """JupyterLab serving a cleared copy of notebooks/ from ``base``, its UI in ``locale``; stopped on the way out."""
    root = base / "notebooks"
    copy_cleared(NOTEBOOK_DIR, root)
    env = lab_environment(base, locale)
    token = secrets.token_hex(24)
    env["JUPYTER_TOKEN"] = token  # in the environment, not on the command line (ps shows that)
    root_flag = ["--allow-root"] if os.geteuid() == 0 else []
    log = base / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", "--port=0",
             "--ServerApp.port_retries=0", f"--ServerApp.root_dir={root}", *root_flag],
            cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
    try:
        url = wait_until_serving(proc, Path(env["JUPYTER_RUNTIME_DIR"]), token, log)
        yield Lab(url=url, token=token, root=root)
    finally:
        stop_process_tree(proc)


@contextmanager
def headless_chromium() -> Iterator[Browser]:
    """Debian's Chromium driven by Playwright; closed, with Playwright's driver, on the way out."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `bash scripts/setup.sh` (it installs Debian's chromium)")
    pw = sync_playwright().start()
    try:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     chromium_sandbox=False, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()
    finally:
        pw.stop()


#: How long an ``expect(...)`` assertion waits unless told (Playwright's default is 5 s): beside the suite's other
#: workers JupyterLab once took longer to draw its menu bar (run 42, the Korean one).  Page actions: 60 s.
EXPECT_TIMEOUT_MS = 30_000
expect.set_options(timeout=EXPECT_TIMEOUT_MS)


@contextmanager
def browser_tab(browser: Browser) -> Iterator[BrowserTab]:
    """A page in a fresh browser context that records console errors and uncaught exceptions."""
    context = browser.new_context(viewport=VIEWPORT)
    try:
        page = context.new_page()
        page.set_default_timeout(60_000)  # 2 shared cores: JupyterLab's first load can be slow
        errors: list[str] = []
        page.on("console", lambda msg: errors.append(f"console.{msg.type}: {msg.text}")
                if msg.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
        yield BrowserTab(page, errors)
    finally:
        context.close()


def screenshot_whole_notebook(page: Page, path: Path) -> None:
    """Grow the window until the notebook needs no scrolling, take one picture of it, and shrink it back.

    The notebook scrolls inside its own panel, so a "full page" screenshot would
    only show the first screen.  Chromium caps an image at 16384 px.
    """
    scroller = "document.querySelector('.jp-NotebookPanel .jp-WindowedPanel-outer')"
    hidden = page.evaluate(f"() => {{ const s = {scroller}; return s ? s.scrollHeight - s.clientHeight : 0; }}")
    size = page.viewport_size or VIEWPORT
    page.set_viewport_size({"width": size["width"], "height": min(16_000, size["height"] + hidden)})
    page.evaluate(f"() => {scroller}?.scrollTo(0, 0)")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        page.screenshot(path=path)
    finally:
        page.set_viewport_size(size)  # the page may serve the next notebook


def menu(page: Page, top: str, item: str) -> None:
    """Choose ``item`` from JupyterLab's menu ``top`` (e.g. File → Close All Tabs), as a learner clicks it."""
    page.get_by_role("menuitem", name=top, exact=True).click()
    page.get_by_role("menuitem", name=item, exact=True).click()


def open_from_path(page: Page, path: str) -> None:
    """File → Open from Path… in the JupyterLab already loaded in ``page``: the notebook opens in a tab of it.

    Loading JupyterLab itself (its scripts, then the whole interface) took ~4.5 s of Chromium's CPU time per
    page here; opening a notebook in the loaded one ~2 s.  So one page serves a module's notebooks in turn.
    """
    menu(page, "File", "Open from Path…")
    box = page.locator(".jp-Dialog input")
    box.fill(path)
    box.press("Enter")


NO_NOTEBOOK_OPEN = "!document.querySelector('.jp-NotebookPanel')"


def close_all_tabs(page: Page) -> None:
    """File → Close All Tabs, discarding what the learner left unsaved, until no notebook is open."""
    menu(page, "File", "Close All Tabs")
    page.wait_for_function(f"() => {NO_NOTEBOOK_OPEN} || document.querySelector('.jp-Dialog')", polling=200)
    if page.locator(".jp-Dialog").count():  # "Save your work": a poke or a re-run left the notebook changed
        page.locator(".jp-Dialog button", has_text="Discard").click()
        page.wait_for_function(f"() => {NO_NOTEBOOK_OPEN}", polling=200)
