"""The lab as students use it: every notebook run in JupyterLab, in a real (headless) browser.

For each notebook in notebooks/, in order, one test opens it (File → Open
from Path…) in the one JupyterLab page of this module, runs all cells from the
Run menu, waits for the kernel, and then asserts what a student would see:

- every code cell ran and none shows an error;
- every ipywidgets view rendered as a live widget — not "Loading widget...",
  not "Error displaying widget", not the text repr JupyterLab falls back to
  when the widget manager is missing;
- the labkit views listed for the notebook in ``EXPECTED`` are on screen, and
  its ``Poke``s work: moving a slider or pressing a button goes to the kernel
  and comes back as a changed drawing;
- the browser console logged no error;

A second test opens each notebook as committed — saved outputs, not trusted,
no cell run, as a learner first sees it — and asserts that no output shows a
widget's repr (``ApartmentPlanner(children=(…``): a saved widget shows as a
widget or as its static picture (build/e2e/<notebook>-as-saved.png, when it
fails or is asked for).

A screenshot of a notebook whose test failed goes to build/e2e/<notebook>.png
(of every notebook with ``LABKIT_E2E_SCREENSHOTS=1``).  A new notebook needs one ``EXPECTED`` entry; the test says so.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from lab_harness import (
    ALL_SCREENSHOTS,
    NOTEBOOK_DIR,
    SCREENSHOTS,
    BrowserTab,
    Lab,
    browser_tab,
    close_all_tabs,
    headless_chromium,
    open_from_path,
    running_lab,
    screenshot_whole_notebook,
)
from playwright.sync_api import Browser, Locator, Page, expect
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeout

pytestmark = pytest.mark.e2e

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
RUN_TIMEOUT_MS = 300_000  # the whole notebook; CI machines have 2 shared cores
RENDER_TIMEOUT_MS = 30_000  # widget views appear shortly after their output arrives
ROUND_TRIP_TIMEOUT_MS = 30_000  # browser -> kernel -> browser after one input
#: How often a wait re-evaluates its condition in the page.  Playwright's default is every animation frame
#: (~60 times a second), and these conditions query every cell of the notebook; measured over this module,
#: Chromium's renderer took 80.5 s of CPU time with that and 77.6 s with 200 ms (most of it is JupyterLab
#: loading: see lab_harness.open_from_path).
POLL_MS = 200


#: What an input does to a control, as a student would do it.
ACTIONS: dict[str, Callable[[Locator], None]] = {
    # One step right on an ipywidgets slider (noUiSlider handle, keyboard).
    "slide": lambda control: control.locator(".noUi-handle").press("ArrowRight"),
    # A button (e.g. an exit stepper's "step").
    "click": lambda control: control.click(),
}


@dataclass(frozen=True)
class Poke:
    """One input to an interactive view and the part of the view that must then change.

    ``view`` is a CSS selector of the view's container (a class the widget adds
    with ``add_class``, e.g. ``.labkit-apartments``); ``control`` and ``watch``
    are Playwright selectors inside it.  ``watch`` must be something only the
    kernel redraws (not the control itself, which the browser updates alone).
    ``shows`` is text the watched part must contain afterwards ("" = any change).
    """

    view: str
    control: str
    action: str
    watch: str
    shows: str = ""

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown action {self.action!r}; one of {sorted(ACTIONS)}")

    def __str__(self) -> str:
        return f"{self.action} {self.control!r} in {self.view}"


@dataclass(frozen=True)
class Expected:
    """A notebook's labkit views that must be visible after Run All, and its pokes."""

    views: tuple[str, ...]
    pokes: tuple[Poke, ...] = ()


def slider(label: str) -> str:
    """The ipywidgets slider whose description is ``label``."""
    return f".widget-slider:has(.widget-label:text-is('{label}'))"


APARTMENTS = ".labkit-apartments"
DRAWING = ".widget-html-content"  # the planner's HTML drawing, redrawn by the kernel

#: One entry per notebook (file stem).  To add one: the CSS class of each labkit
#: view it shows, and a Poke per interactive control.
EXPECTED: dict[str, Expected] = {
    "01_kernel": Expected(views=(".labkit-host-card",)),  # the card is static: nothing to poke
    "02_hypervisor_types": Expected(
        views=(APARTMENTS, ".labkit-building", ".labkit-type-stacks", ".labkit-host-card", ".labkit-stack"),
        pokes=(Poke(APARTMENTS, slider("guests"), "slide", DRAWING, shows="flat 4"),  # parameters: guests = 3
               Poke(APARTMENTS, slider("vCPUs each"), "slide", DRAWING),
               Poke(APARTMENTS, slider("MiB each"), "slide", DRAWING))),
    "03_kvm": Expected(
        views=(".labkit-exit-stepper",),
        pokes=(Poke(".labkit-exit-stepper", "button:has-text('Step')", "click", ".labkit-exit-state",
                    shows="KVM_EXIT_"),)),
    "03b_kvm_cpu_modes": Expected(views=()),  # assembly, registers and checks: no widget
    # output only: the guest's console as it boots, and the console of the guest inside the emulated
    # AMD-V machine (or why that section did not run here)
    "04_qemu": Expected(views=(".labkit-console", ".labkit-nested-console")),
    "04b_memory_storage_network": Expected(views=()),  # disks, a network and an address walk, printed: no widget
    # The lesson's guest is torn down in section 11 (its dashboard then shows it gone, buttons off); the
    # guest of section 12 stays running after Run All: its dashboard (the live one) pauses it for real.
    "05_libvirt": Expected(
        views=(".labkit-virt", ".labkit-virt-live"),
        pokes=(Poke(".labkit-virt-live", "button:has-text('pause')", "click",
                    ".labkit-virt-view .widget-html-content", shows="paused"),)),
    # output only: the console of the guest labkit's own VMM boots (inside the emulated AMD-V machine here)
    "06_own_vmm": Expected(views=(".labkit-vmm-console",)),
}


# Fixtures live here, not in a tests/e2e/conftest.py: a second conftest module would
# shadow tests/conftest.py for the modules that do `from conftest import ...`.

@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """One JupyterLab for every notebook of the module (quick: one start-up), always stopped."""
    with running_lab(tmp_path_factory.mktemp("jupyterlab")) as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with headless_chromium() as chromium:
        yield chromium


@pytest.fixture(scope="module")
def screenshots() -> Path:
    """build/e2e/, emptied of an earlier run's pictures (a renamed notebook's would linger)."""
    for old in SCREENSHOTS.glob("*.png"):
        old.unlink()
    return SCREENSHOTS


@pytest.fixture(scope="module")
def app(browser: Browser, lab: Lab) -> Iterator[BrowserTab]:
    """One JupyterLab page for the module: each test opens its notebook in it (File → Open from Path…) and
    closes it afterwards, as a learner goes from notebook to notebook (see lab_harness.open_from_path)."""
    with browser_tab(browser) as t:
        t.page.goto(lab.open_url())
        expect(t.page.get_by_role("menuitem", name="File", exact=True)).to_be_visible()
        yield t


@pytest.fixture
def tab(app: BrowserTab, lab: Lab, screenshots: Path, request: pytest.FixtureRequest) -> Iterator[BrowserTab]:
    """The module's page, its console errors from this test only; afterwards its screenshot when the test failed
    (that is when it helps; pytest runs the code after ``yield`` whatever the outcome) or when asked
    (``ALL_SCREENSHOTS``), every tab closed and every kernel shut down.  A page that cannot close its tabs
    (a test failed half-way through a dialog) is loaded afresh, so the next notebook starts clean."""
    failed = request.session.testsfailed
    app.console_errors.clear()
    try:
        yield app
        if ALL_SCREENSHOTS or request.session.testsfailed > failed:
            screenshot_whole_notebook(app.page, screenshots / f"{request.node.callspec.id}.png")
    finally:
        try:
            close_all_tabs(app.page)
        except PlaywrightError:
            app.page.goto(lab.open_url())
        lab.shutdown_kernels()


def open_notebook(page: Page, path: str) -> None:
    """Open ``path`` in the JupyterLab of ``page`` and wait until its kernel is connected and idle.

    The execution indicator says "idle" before any kernel exists, so the
    toolbar's kernel name must also have left "No Kernel".
    """
    open_from_path(page, path)
    page.wait_for_function(
        """() => {
            const bar = document.querySelector('.jp-NotebookPanel-toolbar');
            const name = bar?.querySelector('.jp-Toolbar-kernelName')?.textContent.trim();
            return bar?.querySelector('.jp-Notebook-ExecutionIndicator')?.dataset.status === 'idle'
                && name && name !== 'No Kernel';
        }""", polling=POLL_MS)


PROMPTS_JS = "[...document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell .jp-InputPrompt')].map(p => p.textContent)"


def run_all_cells(page: Page) -> None:
    """Run > Run All Cells, then wait until no cell is queued or running and the kernel is idle.

    After an error JupyterLab drops the queued cells, so "all cells numbered"
    would never come; the assertions on the saved notebook tell what happened.
    """
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    page.wait_for_function(f"() => {PROMPTS_JS}.some(p => /\\[(\\*|\\d+)\\]/.test(p))", polling=POLL_MS)
    page.wait_for_function(
        f"""() => !{PROMPTS_JS}.some(p => p.includes('*'))
            && document.querySelector('.jp-NotebookPanel-toolbar .jp-Notebook-ExecutionIndicator')
                       ?.dataset.status === 'idle'""",
        timeout=RUN_TIMEOUT_MS, polling=POLL_MS)


def save_and_read(page: Page, path: Path) -> nbformat.NotebookNode:
    """Save from the browser (Ctrl+S) and read back what JupyterLab wrote: the run's own record."""
    with page.expect_response(lambda r: r.request.method == "PUT"
                              and r.url.split("?")[0].endswith(f"/api/contents/{path.name}")) as saved:
        page.keyboard.press("Control+s")
    assert saved.value.ok, f"saving {path.name} failed: HTTP {saved.value.status}"
    return nbformat.read(path, as_version=4)


def first_line(cell: nbformat.NotebookNode) -> str:
    return next((line for line in cell.source.splitlines() if not line.startswith("#")), "")[:70]


def code_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if c.cell_type == "code"]


def cell_problems(nb: nbformat.NotebookNode) -> list[str]:
    """Cells that did not run, and cells with an error output."""
    problems = []
    for n, cell in enumerate(code_cells(nb), 1):
        errors = [o for o in cell.outputs if o.output_type == "error"]
        for err in errors:
            problems.append(f"code cell {n} ({first_line(cell)!r}): {err.ename}: {err.evalue}")
        if cell.execution_count is None and not errors:
            problems.append(f"code cell {n} ({first_line(cell)!r}) did not run")
    return problems


#: Per code cell in the page, per output: "widget" for a live widget view, else what it shows.
OUTPUTS_JS = """() => [...document.querySelectorAll('.jp-NotebookPanel .jp-CodeCell')].map(cell =>
    [...cell.querySelectorAll('.jp-OutputArea-output')].map(out =>
        out.querySelector('.jupyter-widgets') && !out.querySelector('.jupyter-widgets-error-widget')
            && !/^(Loading widget|Error displaying widget)/.test(out.textContent.trim())
        ? 'widget' : out.textContent.trim().slice(0, 120)))"""


#: What a widget's repr looks like in an output (``Name(children=(IntSlider(…``, ``HTML(value="…``).
WIDGET_REPR = re.compile(r"\b[A-Z]\w*\((children|value|layout|description)=")


def repr_problems(page: Page) -> list[str]:
    """Outputs on the page that show a widget's text repr instead of a widget or a picture."""
    return [f"code cell {n}: {text!r}" for n, outs in enumerate(page.evaluate(OUTPUTS_JS), 1)
            for text in outs if text != "widget" and WIDGET_REPR.search(text)]


def widget_problems(page: Page, nb: nbformat.NotebookNode) -> list[str]:
    """Widget outputs of the saved run that the page does not show as live widgets.

    Waits (up to RENDER_TIMEOUT_MS) for views still loading, then compares cell by cell.
    """
    expected = [sum(WIDGET_MIME in o.get("data", {}) for o in c.outputs) for c in code_cells(nb)]
    try:
        page.wait_for_function(
            f"want => ({OUTPUTS_JS})().every((outs, i) => outs.filter(o => o === 'widget').length >= want[i])",
            arg=expected, timeout=RENDER_TIMEOUT_MS, polling=POLL_MS)
    except PlaywrightTimeout:  # reported below, with what the page shows instead
        pass
    shown = page.evaluate(OUTPUTS_JS)
    if len(shown) != len(expected):
        return [f"the page shows {len(shown)} code cells, the saved notebook has {len(expected)}"]
    return [f"code cell {n} ({first_line(cell)!r}): {want} widget view(s) expected, "
            f"{outs.count('widget')} rendered; it shows {[o for o in outs if o != 'widget']}"
            for n, (cell, want, outs) in enumerate(zip(code_cells(nb), expected, shown), 1)
            if outs.count("widget") < want]


def assert_widgets_visible(page: Page, views: tuple[str, ...]) -> None:
    """Every widget output, and every expected labkit view, can be scrolled to and seen."""
    outputs = page.locator(".jp-NotebookPanel .jp-OutputArea-output:has(.jupyter-widgets)")
    for i in range(outputs.count()):
        outputs.nth(i).scroll_into_view_if_needed()
        expect(outputs.nth(i)).to_be_visible()
    for view in views:
        found = page.locator(view)
        expect(found, f"labkit view {view} is not on the page").not_to_have_count(0)
        found.first.scroll_into_view_if_needed()
        expect(found.first, f"labkit view {view} is not visible").to_be_visible()


def poke(page: Page, p: Poke) -> None:
    """Operate one control and wait for the kernel's redraw of the watched part."""
    view = page.locator(p.view)
    expect(view, f"{p}: view not found exactly once").to_have_count(1)
    control, watched = view.locator(p.control), view.locator(p.watch)
    expect(control, f"{p}: control not found exactly once").to_have_count(1)
    expect(watched, f"{p}: watched part {p.watch!r} not found exactly once").to_have_count(1)
    before = watched.inner_html()
    control.scroll_into_view_if_needed()
    ACTIONS[p.action](control)
    try:
        page.wait_for_function("([el, before]) => el.innerHTML !== before",
                               arg=[watched.element_handle(), before], timeout=ROUND_TRIP_TIMEOUT_MS,
                               polling=POLL_MS)
    except PlaywrightTimeout:
        pytest.fail(f"{p}: {p.watch!r} did not change within {ROUND_TRIP_TIMEOUT_MS // 1000} s")
    if p.shows:
        expect(watched, f"{p}: {p.watch!r} should now show {p.shows!r}").to_contain_text(p.shows)


@pytest.mark.parametrize("notebook", sorted(NOTEBOOK_DIR.glob("*.ipynb")), ids=lambda p: p.stem)
def test_notebook_in_jupyterlab(notebook: Path, lab: Lab, tab: BrowserTab) -> None:
    wanted = EXPECTED.get(notebook.stem)
    assert wanted is not None, (
        f"{notebook.name} has no entry in EXPECTED ({__file__}): add "
        f"'{notebook.stem}': Expected(views=(<CSS class of each labkit view>,), "
        f"pokes=(Poke(<view>, <control>, 'slide'|'click', <part that must change>),))")
    page = tab.page
    open_notebook(page, notebook.name)
    run_all_cells(page)
    saved = save_and_read(page, lab.root / notebook.name)
    assert not (problems := cell_problems(saved)), "cells failed:\n" + "\n".join(problems)
    assert not (problems := widget_problems(page, saved)), "widgets not rendered:\n" + "\n".join(
        problems + [f"browser console: {e}" for e in tab.console_errors])
    assert_widgets_visible(page, wanted.views)
    for p in wanted.pokes:
        poke(page, p)
    # No filter: a clean run logs only console.debug lines.  Should benign noise appear
    # (e.g. from a new extension), filter it here by exact text, saying why it is benign.
    assert not tab.console_errors, "browser console errors:\n" + "\n".join(tab.console_errors)


#: Notebooks whose saved widgets still show their repr (strict: the mark goes when they no longer do).
#: 03-05's views now carry static pictures (labkit.widgets.static) too.
REPR_STILL_SAVED: set[str] = set()


@pytest.mark.parametrize("notebook", [
    pytest.param(p, marks=pytest.mark.xfail(strict=True, reason="widgets without a static picture yet (issue 14)"))
    if p.stem in REPR_STILL_SAVED else p for p in sorted(NOTEBOOK_DIR.glob("*.ipynb"))], ids=lambda p: p.stem)
def test_saved_notebook_shows_no_widget_repr(notebook: Path, lab: Lab, tab: BrowserTab, screenshots: Path) -> None:
    saved = lab.root / f"as-saved-{notebook.name}"
    shutil.copy(notebook, saved)  # with its outputs and widget state, untrusted: a fresh clone
    try:
        open_notebook(tab.page, saved.name)
        tab.page.wait_for_timeout(2000)  # let saved widget state restore, where it will
        problems = repr_problems(tab.page)
        if ALL_SCREENSHOTS or problems:
            screenshot_whole_notebook(tab.page, screenshots / f"{notebook.stem}-as-saved.png")
        assert not problems, "widget reprs in the saved notebook:\n" + "\n".join(problems)
    finally:
        saved.unlink()
