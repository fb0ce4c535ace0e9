"""The Korean edition as a Korean learner sees it: JupyterLab in Korean, Hangul drawn as letters.

A headless browser draws missing glyphs as identical boxes ("tofu"), and a
screenshot full of boxes still "passes" a text comparison.  So the test asks
the page itself: it draws two different Hangul syllables and a code point no
font has, in the notebook's own font, and compares the pixels.  Without a
Korean font (scripts/setup.sh installs fonts-nanum) all three come out the
same box.  The screenshot goes to build/e2e/ko-01_kernel.png.  Then the
glossary link of both editions' notebook 01 opens the glossary in JupyterLab
(it lives in notebooks/, inside the lab's root: a link out of it would not open).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from lab_harness import (
    NOTEBOOK_DIR,
    SCREENSHOTS,
    browser_tab,
    headless_chromium,
    running_lab,
    screenshot_whole_notebook,
)
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.e2e

#: Draw each string in the font of ``el`` on a canvas; the pictures as data URLs (equal URL = equal pixels).
GLYPHS_JS = """([el, texts]) => {
    const family = getComputedStyle(el).fontFamily;
    return texts.map(text => {
        const canvas = document.createElement('canvas');
        canvas.width = 96; canvas.height = 64;
        const ctx = canvas.getContext('2d');
        ctx.font = `40px ${family}`;
        ctx.fillText(text, 4, 48);
        return canvas.toDataURL();
    });
}"""


def open_glossary(page: Page, link: str) -> None:
    """Click the notebook's glossary link: the glossary opens in JupyterLab, in a tab of its own, rendered
    (setup makes Markdown Preview the viewer of .md files: its table, not the source's | pipes)."""
    page.get_by_role("link", name=link).first.click()
    expect(page.locator(".lm-TabBar-tab", has_text="glossary.md")).to_be_visible()
    expect(page.locator(".jp-RenderedMarkdown th", has_text="what it means here")).to_be_visible()


def test_korean_notebook_in_korean_jupyterlab_shows_hangul(tmp_path: Path) -> None:
    with running_lab(tmp_path, locale="ko_KR") as lab, headless_chromium() as browser:
        saved = lab.root / "ko" / "01_kernel.ipynb"  # where the edition is, so that its links resolve
        saved.parent.mkdir()
        shutil.copy(NOTEBOOK_DIR / "ko" / "01_kernel.ipynb", saved)  # as committed, with its outputs
        try:
            with browser_tab(browser) as t:
                t.page.goto(lab.open_url("ko/01_kernel.ipynb"))
                # the language pack: JupyterLab's own menu bar speaks Korean
                expect(t.page.get_by_role("menuitem", name="파일", exact=True)).to_be_visible()
                heading = t.page.locator(".jp-RenderedMarkdown h1").first
                expect(heading).to_contain_text("커널")
                ga, keo, blank, tofu = t.page.evaluate(GLYPHS_JS, [heading.element_handle(),
                                                                   ["가", "커", "", "\U0010fffd"]])
                SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                screenshot_whole_notebook(t.page, SCREENSHOTS / "ko-01_kernel.png")
                open_glossary(t.page, "용어집 · glossary")  # ../glossary.md: inside the lab's root
            with browser_tab(browser) as t:  # and from the English edition: glossary.md, next to it
                t.page.goto(lab.open_url("01_kernel.ipynb"))
                open_glossary(t.page, "glossary · 용어집")
        finally:
            lab.shutdown_kernels()
    assert ga != blank, "the browser drew nothing for Hangul"
    boxes = ga == keo or tofu in (ga, keo)  # compared as booleans: the data URLs are long
    assert not boxes, "Hangul is drawn as missing-glyph boxes: install a Korean font (sudo apt-get install fonts-nanum)"
