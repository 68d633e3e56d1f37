"""Building blocks of the offline HTML reports: one page, plotly.js inlined once, sortable tables.

The page needs no network: plotly.js is embedded from the installed ``plotly`` package, the table
sorting is a few lines of inline JavaScript. Every user-supplied string (labels, paths, device
names) is HTML-escaped before it reaches the page or a chart, including hover text.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

PALETTE = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c")
UNSTABLE_COLOR = "#e6a100"
INVALID_COLOR = "#999999"
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}


def esc(v: Any) -> str:
    return html.escape("" if v is None else str(v))


def num(v: float | None, digits: int = 3) -> str:
    """A human number: ``0.0626`` → ``0.063``, ``1234.5`` → ``1235``; None → ``—``."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    if v == 0:
        return "0"
    mag = math.floor(math.log10(abs(v)))
    decimals = max(0, digits - 1 - mag)
    return f"{v:.{decimals}f}"


def percent(v: float | None, decimals: int = 1) -> str:
    """A fraction in [0, 1] as a percentage."""
    return "—" if v is None else f"{100 * v:.{decimals}f}%"


@dataclass(frozen=True)
class Cell:
    """A table cell: what is shown (already HTML) and what it sorts by."""

    html: str
    sort: float | str | None = None


def cell(v: Any, text: str | None = None) -> Cell:
    """A cell for a plain value; numbers sort numerically, ``text`` overrides what is shown."""
    if isinstance(v, Cell):
        return v
    if isinstance(v, bool):
        return Cell(esc("yes" if v else "no"), int(v))
    if isinstance(v, int):
        return Cell(esc(text if text is not None else str(v)), v)
    if isinstance(v, float):
        return Cell(esc(text if text is not None else num(v)), v)
    return Cell(esc(text if text is not None else v), None if v is None else str(v))


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    sortable: bool = True,
    row_classes: Sequence[str] | None = None,
) -> str:
    """An HTML table; with ``sortable`` a click on a header sorts by that column."""
    head = "".join(f"<th scope='col'>{esc(h)}</th>" for h in headers)
    body = []
    for i, r in enumerate(rows):
        cls = f" class='{esc(row_classes[i])}'" if row_classes and row_classes[i] else ""
        tds = []
        for v in r:
            c = cell(v)
            key = "" if c.sort is None else f" data-sort='{esc(c.sort)}'"
            tds.append(f"<td{key}>{c.html}</td>")
        body.append(f"<tr{cls}>{''.join(tds)}</tr>")
    cls = " class='sortable'" if sortable else ""
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def kv_table(rows: Sequence[tuple[str, Any]]) -> str:
    """Two columns, field and value (not sortable)."""
    return table(["field", "value"], [[k, v] for k, v in rows], sortable=False)


def figure(fig: Any) -> str:
    """A plotly figure as a ``<div>`` (plotly.js itself is inlined once by `page`)."""
    fig.update_layout(
        template="plotly_white",
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
        hoverlabel={"align": "left"},
        font={"family": "system-ui, sans-serif", "size": 13},
    )
    return (
        "<div class='figure'>"
        + fig.to_html(full_html=False, include_plotlyjs=False, config=PLOTLY_CONFIG)
        + "</div>"
    )


CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1280px;padding:0 1em;color:#222}
h1{margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ddd;padding-bottom:.2em}
.sub{color:#555;margin-top:0}
table{border-collapse:collapse;margin:.8em 0;font-size:14px}
td,th{border:1px solid #d0d0d0;padding:4px 8px;text-align:right;vertical-align:top}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
table.sortable th{cursor:pointer;user-select:none}
table.sortable th[aria-sort=ascending]::after{content:" \\25B2"}
table.sortable th[aria-sort=descending]::after{content:" \\25BC"}
tr.unstable td{background:#fff6e0}tr.invalid td{background:#f2f2f2;color:#777}
.figure{margin:.5em 0 1.2em 0}
.recommend{border:2px solid #55a868;border-radius:8px;padding:.6em 1.2em;background:#f4fbf5}
.recommend h2{border:none;margin-top:.3em}
.recommend .choice{margin:.7em 0}
.recommend .none{color:#a33}
code,pre{font-family:ui-monospace,monospace;font-size:13px}
pre{background:#f5f5f5;padding:6px 10px;overflow:auto;border-radius:4px;margin:.3em 0}
.note{color:#555;font-size:90%}
.badge{display:inline-block;padding:0 6px;border-radius:8px;font-size:85%;background:#eee}
.badge.unstable{background:#ffe3a3}.badge.invalid{background:#ddd}
"""

# Click a header to sort by it (numbers by data-sort, text otherwise); click again to reverse.
SORT_JS = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('th').forEach(function (th, col) {
    th.addEventListener('click', function () {
      var asc = th.getAttribute('aria-sort') !== 'ascending';
      table.querySelectorAll('th').forEach(function (h) { h.removeAttribute('aria-sort'); });
      th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
      function key(row) {
        var c = row.cells[col], v = c.getAttribute('data-sort');
        if (v === null) { v = c.textContent.trim(); }
        var n = Number(v);
        return v !== '' && !isNaN(n) ? n : v.toLowerCase();
      }
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = key(a), y = key(b), d;
        if (typeof x === 'number' && typeof y === 'number') { d = x - y; }
        else if (typeof x === 'number') { return -1; }
        else if (typeof y === 'number') { return 1; }
        else { d = x.localeCompare(y); }
        return asc ? d : -d;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def page(title: str, subtitle: str, body: str) -> str:
    """The whole report: one self-contained HTML document."""
    from plotly.offline import get_plotlyjs

    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{esc(title)}</title><style>{CSS}</style>"
        f"<script>{get_plotlyjs()}</script></head><body>"
        f"<h1>{esc(title)}</h1><p class='sub'>{subtitle}</p>{body}"
        f"<script>{SORT_JS}</script></body></html>"
    )
