"""Tables as a reader reads them: HTML tables for the book, a compact text for nbval.

A chapter shows a table with :meth:`rlvr_dynamics.book.chapter.Chapter.table` (any pandas
DataFrame), its claims with :func:`claims_table` (displayed by ``chapter.finish()``) and the values
its run used with :func:`parameters_table` (displayed by ``Chapter.start``). Each is a
:class:`Table`: Jupyter shows its ``text/html`` (``_repr_html_``: a ``<table>`` inside a
``<div class="book-table-wrapper">`` that scrolls sideways rather than spilling out of the column;
its classes are styled by ``book/_static/chapter.css``) and keeps its ``text/plain`` (``repr``): the
same cells as aligned text, deterministic, which nbval compares between two executions. Numbers are
formatted once, here (:func:`format_value`): no ``np.float64(...)``, no unlabelled 0, 1, 2 index,
no 160-character ``to_string`` line.
"""

from __future__ import annotations

import html
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

TABLE_CLASS = "book-table"
"""Class of every table a chapter displays (``book/_static/chapter.css``)."""
CLAIMS_CLASS = "claims-table"
"""Class of a chapter's table of claims (``chapter.finish()``)."""
PARAMETERS_CLASS = "run-parameters"
"""Class of the table of the values a run used (``Chapter.start``)."""
WRAPPER_CLASS = "book-table-wrapper"
"""Class of the ``<div>`` around every table: it scrolls sideways when the table is wider than the page."""

Formatter = str | Callable[[Any], str]


def format_value(value: Any, digits: int = 4, spec: Formatter | None = None) -> str:
    """One cell as text: ``yes``/``no`` for a bool, an integer as is (thousands separated from
    10 000), a float with ``digits`` significant digits (scientific below 10⁻³ and from 10⁴), ``—``
    for NaN or None, ``∞`` for infinities; an integral float from 10⁴ to 10⁷ reads as an integer;
    NumPy scalars are read as Python numbers (never ``np.float64(…)``). ``spec`` — a format
    specification like ``".3f"`` or a function — overrides the rule for numbers; sequences are
    joined with ", "."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)) and getattr(value, "ndim", 0) == 0:
        value = value.item()  # NumPy / torch scalar → Python
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(format_value(v, digits, spec) for v in value)
    if callable(spec):
        return str(spec(value))
    if isinstance(value, numbers.Integral):
        return format(value, spec) if spec else (f"{value:,}".replace(",", " ") if abs(value) >= 10_000 else str(value))
    if isinstance(value, numbers.Real):
        value = float(value)
        if math.isnan(value):
            return "—"
        if math.isinf(value):
            return "∞" if value > 0 else "−∞"
        if spec:
            return format(value, spec).replace("-", "−") if value < 0 else format(value, spec)
        if value == 0:
            return "0"
        if value.is_integer() and 1e4 <= abs(value) < 1e7:  # a count or a power of two stored as a float
            return format_value(int(value), digits)
        text = f"{value:.{digits}g}" if 1e-3 <= abs(value) < 1e4 else f"{value:.{max(digits - 2, 1)}e}"
        return text.replace("-", "−")
    return str(value)


@dataclass(frozen=True)
class Table:
    """A table of formatted cells.

    Attributes:
        columns: the column headers.
        rows: one tuple of cell texts per row (already formatted).
        numeric: per column, whether it is right-aligned (numbers).
        caption: shown above the table (HTML ``<caption>``) and first in the text.
        classes: CSS classes of the ``<table>`` besides :data:`TABLE_CLASS`.
        row_header: whether the first column labels the rows (``<th scope="row">``).
        row_classes: an optional CSS class per row (e.g. ``claim-fails``).
        column_classes: an optional CSS class per column (e.g. ``claim-text``).
        note: a short line shown under the table and last in the text.
        text_order: the order of the columns in the text (default: as in HTML); a long text column
            put last keeps the text's lines short.
    """

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    numeric: tuple[bool, ...] = ()
    caption: str = ""
    classes: tuple[str, ...] = ()
    row_header: bool = False
    row_classes: tuple[str, ...] = ()
    column_classes: tuple[str, ...] = ()
    note: str = ""
    text_order: tuple[int, ...] = ()

    def __post_init__(self):
        for row in self.rows:
            if len(row) != len(self.columns):
                raise ValueError(f"a row has {len(row)} cells for {len(self.columns)} columns: {row!r}")
        for name, values in (("numeric", self.numeric), ("column_classes", self.column_classes)):
            if values and len(values) != len(self.columns):
                raise ValueError(f"{name} has {len(values)} entries for {len(self.columns)} columns")
        if self.text_order and sorted(self.text_order) != list(range(len(self.columns))):
            raise ValueError(f"text_order {self.text_order} is not an order of the {len(self.columns)} columns")
        if self.row_classes and len(self.row_classes) != len(self.rows):
            raise ValueError(f"row_classes has {len(self.row_classes)} entries for {len(self.rows)} rows")

    def _cell_class(self, column: int) -> str:
        names = []
        if self.numeric and self.numeric[column]:
            names.append("num")
        if self.column_classes and self.column_classes[column]:
            names.append(self.column_classes[column])
        return f' class="{" ".join(names)}"' if names else ""

    def html(self) -> str:
        """The table as HTML (deterministic: no generated ids)."""
        classes = " ".join((TABLE_CLASS, *self.classes))
        out = [f'<div class="{WRAPPER_CLASS}">', f'<table class="{classes}">']
        if self.caption:
            out.append(f"<caption>{html.escape(self.caption)}</caption>")
        head = "".join(f'<th scope="col"{self._cell_class(i)}>{_breakable(name)}</th>'
                       for i, name in enumerate(self.columns))
        out += ["<thead>", f"<tr>{head}</tr>", "</thead>", "<tbody>"]
        for r, row in enumerate(self.rows):
            row_class = self.row_classes[r] if self.row_classes else ""
            cells = []
            for i, cell in enumerate(row):
                tag = "th" if self.row_header and i == 0 else "td"
                scope = ' scope="row"' if tag == "th" else ""
                label = f' data-label="{html.escape(self.columns[i])}"' if tag == "td" else ""
                cells.append(f"<{tag}{scope}{label}{self._cell_class(i)}>{html.escape(cell)}</{tag}>")
            out.append((f'<tr class="{row_class}">' if row_class else "<tr>") + "".join(cells) + "</tr>")
        out += ["</tbody>", "</table>"]
        if self.note:
            out.append(f'<p class="book-table-note">{html.escape(self.note)}</p>')
        out.append("</div>")
        return "\n".join(out)

    def text(self) -> str:
        """The table as aligned plain text (``text/plain``: what nbval compares)."""
        order = self.text_order or tuple(range(len(self.columns)))
        widths = [max([len(self.columns[i])] + [len(row[i]) for row in self.rows]) for i in range(len(self.columns))]

        def line(cells: Sequence[str]) -> str:
            parts = [cells[i].rjust(widths[i]) if self.numeric and self.numeric[i] else cells[i].ljust(widths[i])
                     for i in order]
            return "  ".join(parts).rstrip()

        lines = [self.caption] if self.caption else []
        lines += [line(self.columns), *(line(row) for row in self.rows)]
        if self.note:
            lines.append(self.note)
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return self.html()

    def __repr__(self) -> str:
        return self.text()


def _breakable(name: str) -> str:
    """A column header, escaped, that may wrap after an underscore (``switch_<wbr>median``): a header
    never makes its column wider than its numbers need."""
    return html.escape(name).replace("_", "_<wbr>")


def _column_name(name: Any) -> str:
    if isinstance(name, tuple):
        return " · ".join(str(part) for part in name if str(part) != "")
    return "" if name is None else str(name)


def frame_table(frame, *, caption: str = "", index: bool | None = None, digits: int = 4,
                formats: Mapping[str, Formatter] | None = None, float_format: Formatter | None = None,
                classes: Sequence[str] = ()) -> Table:
    """A pandas DataFrame (or a Series, or a mapping: one row per key) as a :class:`Table`.

    ``index``: whether the index becomes the first column; by default only when it carries labels
    (a named index, or an unnamed one of texts): an unnamed integer index — row numbers, 0, 1, 2 or
    those left by a filter — is never shown. Cells are formatted by :func:`format_value` with
    ``digits`` significant digits, or by ``float_format`` for every float column, or by
    ``formats[column]``."""
    import pandas as pd

    if isinstance(frame, Mapping):
        frame = pd.Series(dict(frame))
    if isinstance(frame, pd.Series):
        frame = frame.to_frame("value" if frame.name is None else frame.name)
    formats = dict(formats or {})
    unknown = set(formats) - {_column_name(c) for c in frame.columns}
    if unknown:
        raise ValueError(f"formats names columns the table does not have: {sorted(unknown)}")
    if index is None:  # labels: a named index, or one of texts; never bare row numbers (0, 1, 2 or 1, 5, 9)
        index = any(name is not None for name in frame.index.names) or not pd.api.types.is_integer_dtype(
            frame.index.dtype)
    columns = [_column_name(c) for c in frame.columns]
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
               for c in frame.columns]
    rows = []
    for label, values in zip(frame.index, frame.itertuples(index=False, name=None), strict=True):
        cells = [format_value(v, digits, formats.get(name, float_format if isinstance(v, float) else None))
                 for name, v in zip(columns, values, strict=True)]
        if index:
            cells.insert(0, format_value(label, digits) if not isinstance(label, tuple)
                         else " · ".join(format_value(part, digits) for part in label))
        rows.append(tuple(cells))
    if index:
        columns.insert(0, " · ".join(str(n) for n in frame.index.names if n is not None))
        numeric.insert(0, False)
    return Table(tuple(columns), tuple(rows), tuple(numeric), caption, tuple(classes), row_header=bool(index))


def claims_table(claims: Sequence[Any]) -> Table:
    """A chapter's claims (:class:`rlvr_dynamics.book.results.Claim`): claim · holds · worst margin ·
    cases · enforced, with a summary line (how many hold, how many are enforced)."""
    rows, row_classes = [], []
    for claim in claims:
        rows.append((claim.claim, "✓ yes" if claim.holds else "✗ no", format_value(claim.worst_margin, 3),
                     format_value(claim.n_checked), "yes" if claim.enforced else "no"))
        row_classes.append("claim-holds" if claim.holds else "claim-fails")
    held = sum(c.holds for c in claims)
    enforced = sum(c.enforced for c in claims)
    note = (f"{len(claims)} claims checked, {held} hold, {enforced} enforced (an enforced claim that breaks fails "
            "the build; the others are recorded). A worst margin ≥ 0 means that the claim holds in every case "
            "checked (in its own units).")
    return Table(("claim", "holds", "worst margin", "cases", "enforced"), tuple(rows),
                 (False, False, True, True, False), classes=(CLAIMS_CLASS,), row_classes=tuple(row_classes),
                 column_classes=("claim-text", "", "", "", ""), note=note, text_order=(1, 2, 3, 4, 0))


def parameters_table(values: Mapping[str, Any], preset_values: Mapping[str, Any], caption: str = "") -> Table:
    """The values a run used, one row per parameter: name · value · source (``preset`` when a chapter
    parameter has its preset's value, ``set`` when it was given explicitly; blank for the common
    parameters)."""
    rows = []
    for name, value in values.items():
        source = ("preset" if preset_values[name] == value else "set") if name in preset_values else ""
        rows.append((name, format_value(value), source))
    return Table(("parameter", "value", "from"), tuple(rows), caption=caption, classes=(PARAMETERS_CLASS,),
                 row_header=True)
