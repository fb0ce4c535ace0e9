"""A static picture beside every live widget, for wherever the widget cannot be drawn.

A saved notebook stores a widget output as a model id plus a text repr.  Until
a widget manager has the model (before the first run, in a viewer without
ipywidgets, in a diff), a reader would see ``ApartmentPlanner(children=(…``.
:class:`StaticFallback` puts a real picture in the same output instead: the
view's current drawing as ``text/html``, and a readable ``text/plain``.
JupyterLab still prefers the live widget wherever it can show it.
"""

from __future__ import annotations

import html
import re

import ipywidgets as w


def html_to_text(markup: str) -> str:
    """The words of an HTML fragment, one line per block, for the text/plain fallback."""
    blocks = re.sub(r"(?i)<(br|/div|/tr|/p|/li|/h\d)\b[^>]*>", "\n", markup)
    text = html.unescape(re.sub(r"<[^>]+>", " ", blocks))
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


class StaticFallback:
    """Mixin for an ipywidgets view: its output also carries :meth:`static_html` and :meth:`static_text`."""

    def static_html(self) -> str:
        """The view as it is drawn now, as plain HTML (no kernel needed to show it)."""
        raise NotImplementedError

    def static_text(self) -> str:
        """The view in words, for text-only viewers."""
        return html_to_text(self.static_html())

    def _repr_mimebundle_(self, **kwargs: object) -> dict:
        data = super()._repr_mimebundle_(**kwargs)  # type: ignore[misc]
        data["text/html"] = self.static_html()
        data["text/plain"] = self.static_text()
        return data


class StaticHTML(StaticFallback, w.HTML):
    """An HTML widget whose saved output shows its HTML even where no widget manager runs."""

    def static_html(self) -> str:
        return self.value
