"""Tables as the book shows them (rlvr_dynamics.book.tables): numbers formatted by hand-checked rules,
no unlabelled row numbers, HTML escaped and deterministic, a compact aligned text for nbval."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from rlvr_dynamics.book import tables
from rlvr_dynamics.book.results import ClaimLog


@pytest.mark.parametrize("value, expected", [
    (True, "yes"), (np.bool_(False), "no"), (None, "—"), (math.nan, "—"), (math.inf, "∞"), (-math.inf, "−∞"),
    (7, "7"), (np.int64(9999), "9999"), (12345, "12 345"), (0.0, "0"), (np.float64(0.5), "0.5"),
    (3.14159265, "3.142"), (-2.5, "−2.5"), (1234.5678, "1235"), (1e-7, "1.00e−07"), (2.5e5, "250 000"),
    (16384.0, "16 384"), (12345.5, "1.23e+04"), (2.5e7, "2.50e+07"),
    ([0.5, np.float64(2.0)], "0.5, 2"), ("text", "text"), (np.str_("s"), "s"),
])
def test_format_value_by_hand(value, expected):
    assert tables.format_value(value) == expected


def test_format_value_with_a_spec_or_fewer_digits():
    assert tables.format_value(0.123456, spec=".2f") == "0.12"
    assert tables.format_value(-0.5, spec=".3f") == "−0.500"
    assert tables.format_value(np.float64(2 / 3), digits=2) == "0.67"
    assert tables.format_value(5, spec="03d") == "005"
    assert tables.format_value(0.25, spec=lambda v: f"{v:.0%}") == "25%"
    assert "np.float64" not in tables.format_value(np.float64(1.5))


def test_frame_table_drops_an_unlabelled_row_number_but_keeps_labels():
    frame = pd.DataFrame({"G": [2, 10], "slope": [np.float64(-1.23456), 0.5]})
    table = tables.frame_table(frame)
    assert table.columns == ("G", "slope") and table.rows == (("2", "−1.235"), ("10", "0.5"))
    assert table.numeric == (True, True) and not table.row_header
    named = tables.frame_table(frame.set_index("G"))
    assert named.columns == ("G", "slope") and named.rows[0] == ("2", "−1.235") and named.row_header
    labelled = tables.frame_table(pd.DataFrame({"x": [1.0]}, index=["first row"]))
    assert labelled.columns == ("", "x") and labelled.rows == (("first row", "1"),)
    filtered = tables.frame_table(frame.set_axis([1, 5]))  # row numbers left by a filter: still not shown
    assert filtered.columns == ("G", "slope") and not filtered.row_header
    forced = tables.frame_table(frame, index=True)
    assert forced.rows[1] == ("1", "10", "0.5")


def test_frame_table_formats_columns_series_mappings_and_multi_columns():
    frame = pd.DataFrame({"a": [0.123456], "b": [0.5], "n": [3]})
    table = tables.frame_table(frame, float_format=".2f", formats={"b": ".1%"})
    assert table.rows == (("0.12", "50.0%", "3"),)
    with pytest.raises(ValueError, match="does not have"):
        tables.frame_table(frame, formats={"missing": ".2f"})
    series = tables.frame_table(pd.Series({"converged": 0.25, "stuck": 0.5}))
    assert series.columns == ("", "value") and series.rows == (("converged", "0.25"), ("stuck", "0.5"))
    mapping = tables.frame_table({"ρ": -0.75})
    assert mapping.rows == (("ρ", "−0.75"),)
    wide = pd.DataFrame({("accuracy", "GRPO"): [0.5], ("accuracy", "GRPO-N"): [0.25]})
    assert tables.frame_table(wide).columns == ("accuracy · GRPO", "accuracy · GRPO-N")


def test_html_is_escaped_deterministic_and_wrapped_and_text_aligned():
    table = tables.Table(("name", "value"), (("<b>&", "1"), ("long name", "12.5")), (False, True),
                         caption="a <caption>", note="n")
    html = table._repr_html_()
    assert html == table.html()  # no generated ids: two executions give the same output
    assert html.startswith(f'<div class="{tables.WRAPPER_CLASS}">') and f'<table class="{tables.TABLE_CLASS}">' in html
    assert "&lt;b&gt;&amp;" in html and "<caption>a &lt;caption&gt;</caption>" in html and "<b>" not in html
    assert '<td data-label="value" class="num">12.5</td>' in html and '<th scope="col" class="num">value</th>' in html
    header = tables.Table(("switch_median",), (("1",),)).html()
    assert '<th scope="col">switch_<wbr>median</th>' in header  # a header may wrap at its underscores
    assert repr(table).splitlines() == ["a <caption>", "name       value", "<b>&           1",
                                        "long name   12.5", "n"]
    with pytest.raises(ValueError, match="2 cells for 3 columns"):
        tables.Table(("a", "b", "c"), (("1", "2"),))
    with pytest.raises(ValueError, match="numeric"):
        tables.Table(("a",), (("1",),), numeric=(True, False))
    with pytest.raises(ValueError, match="text_order"):
        tables.Table(("a", "b"), (("1", "2"),), text_order=(0, 0))


def test_claims_table_shows_every_claim_and_marks_a_broken_one():
    log = ClaimLog()
    log.check("an identity | with *markup*", [1e-13, 1.0])
    log.check("a finding that breaks", [-0.25, 2.0], enforced=False)
    table = tables.claims_table(log.claims)
    assert table.columns == ("claim", "holds", "worst margin", "cases", "enforced")
    assert table.rows == (("an identity | with *markup*", "✓ yes", "1.0e−13", "2", "yes"),
                          ("a finding that breaks", "✗ no", "−0.25", "2", "no"))
    assert table.row_classes == ("claim-holds", "claim-fails")
    html = table.html()
    assert f'class="{tables.TABLE_CLASS} {tables.CLAIMS_CLASS}"' in html
    assert '<tr class="claim-fails"><td data-label="claim" class="claim-text">a finding that breaks</td>' in html
    assert "2 claims checked, 1 hold, 1 enforced" in html
    text = repr(table).splitlines()  # the claim text last: short lines
    assert text[0].split() == ["holds", "worst", "margin", "cases", "enforced", "claim"]
    assert text[2].startswith("✗ no") and text[2].endswith("a finding that breaks")


def test_parameters_table_says_which_values_come_from_the_preset():
    table = tables.parameters_table({"preset": "ci", "seed": 3, "steps": 10, "rate": 0.5}, {"steps": 10, "rate": 0.1},
                                    caption="Parameters of this run")
    assert table.rows == (("preset", "ci", ""), ("seed", "3", ""), ("steps", "10", "preset"), ("rate", "0.5", "set"))
    assert tables.PARAMETERS_CLASS in table.classes and table.row_header
