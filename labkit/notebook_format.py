"""nbformat, imported without the one format checker that costs seconds and checks nothing in a notebook.

nbformat validates notebooks with jsonschema, and jsonschema's format checkers import ``rfc3987_syntax`` (for
the ``iri`` formats, which no notebook schema uses) when it is installed — here it is, pulled in by
jupyter-events' ``jsonschema[format-nongpl]``.  Importing it builds ~35 Earley parsers: 0.85 s of a 1.2 s
``import papermill`` on this host (``-X importtime``), 13.5 s of 20 s inside the emulated AMD-V machine
(``import papermill`` there: 20.0 s, 6.5 s after :func:`load`; jsonschema issue #1428).  Marked absent in
``sys.modules`` before the first import of nbformat, it raises ImportError, and jsonschema leaves that one
checker out, as it does wherever the package is not installed.  Every labkit path that reads or runs
notebooks (``labkit run``, the results reader) imports nbformat through :func:`load`; JupyterLab's own
server, which labkit does not import, is left as it is.
"""

from __future__ import annotations

import sys
from types import ModuleType

#: The package jsonschema imports for the ``iri`` formats (only when ``rfc3987``, the GPL one, is absent).
IRI_CHECKER = "rfc3987_syntax"


def load() -> ModuleType:
    """The nbformat module, imported (once) without :data:`IRI_CHECKER`; call it before importing papermill."""
    sys.modules.setdefault(IRI_CHECKER, None)  # type: ignore[arg-type]  # None: "not importable", by design
    import nbformat

    return nbformat
