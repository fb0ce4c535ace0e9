"""Plots of the table: a sweep (one panel per driven result) and a class (one panel per result, by host kind).

Every panel has one metric, so one unit on its axis; medians carry the
spread of the repeats as error bars; a parameter that spans decades gets a
log axis.  Texts follow :func:`labkit.i18n.use` (Korean in a Hangul font).
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

from labkit.i18n import _
from labkit.results.context import HOST_KINDS
from labkit.results.declaration import Declaration, meaning
from labkit.results.table import PARAM, medians, per_host

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

#: Fonts with Hangul, in order of preference (fonts-nanum on Debian/Ubuntu).
HANGUL_FONTS = ("NanumGothic", "NanumBarunGothic", "Noto Sans CJK KR", "UnDotum")


def _pyplot(lang: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    use_font_for(lang)
    return plt


def use_font_for(lang: str) -> None:
    """Let matplotlib draw ``lang``'s letters: for Korean, a Hangul font first (else every syllable is a box)."""
    import matplotlib.pyplot as plt
    from matplotlib import font_manager

    if lang == "ko":
        have = {f.name for f in font_manager.fontManager.ttflist}
        hangul = [name for name in HANGUL_FONTS if name in have]
        plt.rcParams["font.family"] = [*hangul, "DejaVu Sans"]
        plt.rcParams["axes.unicode_minus"] = False  # Nanum has no U+2212 minus


def _axes(plt, panels: int, width: float = 4.2, height: float = 3.4):
    cols = min(panels, 3)
    rows = math.ceil(panels / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows + 0.6), squeeze=False)
    for ax in axes.flat[panels:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:panels])


def _ylabel(result: str, unit: str, info_meaning: dict[str, str], lang: str) -> str:
    text = meaning(info_meaning, lang, result)
    return f"{text} ({unit})" if unit else text


def _title(label: str) -> str:
    """A panel's title: what it shows and its unit, in the learner's language (not the result's id)."""
    return textwrap.fill(label, 38)


def spans_decades(values: list[float]) -> bool:
    """Positive values whose largest is at least 100× the smallest: a log axis shows them evenly."""
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return len(numbers) > 1 and min(numbers) > 0 and max(numbers) / min(numbers) >= 100


def sweep_panels(table: pd.DataFrame, parameter: str, declarations: dict[str, Declaration]) -> list[tuple[str, str]]:
    """(notebook, result) of each panel of a sweep: results the notebook declares ``parameter`` drives, if recorded."""
    recorded = set(zip(table["notebook"], table["result"]))
    return [(d.notebook, r) for d in declarations.values() for r in d.drives(parameter) if (d.notebook, r) in recorded]


def sweep(table: pd.DataFrame, parameter: str, declarations: dict[str, Declaration], path: Path,
          lang: str = "en") -> Path:
    """One panel per result the swept parameter drives (only notebooks that declare it), medians ± spread."""
    column = PARAM + parameter
    stats = medians(table, ["notebook", column])
    panels = [(declarations[name], result) for name, result in sweep_panels(table, parameter, declarations)]
    if not panels:
        from labkit.errors import InvalidOptionError

        raise InvalidOptionError(f"the sweep over {parameter!r} recorded no result it drives (did every run fail?)",
                                 "see the executed notebooks in the output folder")
    plt = _pyplot(lang)
    fig, axes = _axes(plt, len(panels))
    values = sorted(table[column].dropna().unique().tolist(), key=_order)
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    for ax, (decl, result) in zip(axes, panels):
        rows = stats[(stats["notebook"] == decl.notebook) & (stats["result"] == result)]
        rows = rows.sort_values(column, key=lambda s: s.map(_order))
        xs = rows[column].tolist() if numeric else [str(v) for v in rows[column]]
        low, high = rows["median"] - rows["low"], rows["high"] - rows["median"]
        ax.errorbar(xs, rows["median"], yerr=[low, high], fmt="o-" if numeric else "o", capsize=4)  # no line
        # between categories (accel=kvm,tcg): nothing lies between them
        info = decl.results.get(result)
        label = _ylabel(result, decl.unit(result), info.meaning if info else {}, lang)
        ax.set_ylabel(decl.unit(result) or label)
        ax.set_title(_title(label) + f"\n({decl.notebook})", fontsize="medium")
        ax.set_xlabel(parameter)
        if numeric and spans_decades(values):
            ax.set_xscale("log")
        if (rows["low"] >= 0).all():
            ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    what = meaning(next(d.parameters[parameter].meaning for d, _r in panels), lang, parameter)
    runs = int(stats["n"].max())
    fig.suptitle(_("Sweep of {parameter}: {meaning}").format(parameter=parameter, meaning=what) + "\n"
                 + _("median of {n} runs per point; bars: lowest to highest").format(n=runs), fontsize="medium")
    return _save(plt, fig, path)


def by_host_kind(table: pd.DataFrame, path: Path, results: list[str] | None = None,
                 declarations: dict[str, Declaration] | None = None, lang: str = "en") -> Path:
    """One panel per result: each host's median as a dot, the distribution per host kind as a box."""
    plt = _pyplot(lang)
    hosts = per_host(table)
    names = results or sorted(hosts["result"].unique())
    if not names:
        from labkit.errors import InvalidOptionError

        raise InvalidOptionError("the result files hold no numeric result to plot", "merge files of successful runs")
    fig, axes = _axes(plt, len(names), width=4.6)
    kinds = [k for k in HOST_KINDS if (hosts["host_kind"] == k).any()]
    for ax, name in zip(axes, names):
        mine = hosts[hosts["result"] == name]
        groups = [mine[mine["host_kind"] == k]["median"].tolist() for k in kinds]
        shown = [i for i, g in enumerate(groups) if g]
        ax.boxplot([groups[i] for i in shown], positions=shown, widths=0.5, showfliers=False)
        for i in shown:  # each machine a dot, in its kind's colour in every panel
            jitter = [i + 0.12 * ((j % 5) - 2) / 2 for j in range(len(groups[i]))]
            ax.plot(jitter, groups[i], "o", alpha=0.75, markersize=5, color=f"C{i}")
        labels = [textwrap.fill(_(HOST_KINDS[k]), 9) for k in kinds]  # short lines: five kinds side by side
        ax.set_xticks(range(len(kinds)), [f"{label}\n(n={len(groups[i])})" for i, label in enumerate(labels)],
                      fontsize="small")
        unit = mine["unit"].iloc[0] if len(mine) else ""
        info = next((d.results[name] for d in (declarations or {}).values() if name in d.results), None)
        label = _ylabel(name, unit, info.meaning if info else {}, lang)
        ax.set_ylabel(unit or label)
        ax.set_title(_title(label), fontsize="medium")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3, axis="y")
    machines = hosts[["label", "host_kind", "cpu_model", "kernel"]].drop_duplicates().shape[0]
    fig.suptitle(_("{hosts} machines by kind of KVM: each dot is one machine's median").format(hosts=machines),
                 fontsize="medium")
    return _save(plt, fig, path)


def _order(value: object) -> tuple[int, float, str]:
    """Numbers in numeric order first, then text: sweep values as the learner would read them."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def _save(plt, fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
