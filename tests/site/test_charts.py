"""The SVG charts: escaped, well-formed, exact geometry, accessible; no database needed."""

from __future__ import annotations

import itertools
import re
import xml.etree.ElementTree as ET
from decimal import Decimal
from pathlib import Path

import pytest
from django.template.loader import render_to_string

from openchargeback import charts
from openchargeback.money import format_money

NS = "{http://www.w3.org/2000/svg}"
D = Decimal
HOSTILE = "<script>alert('x')</script> & \"quoted\""
TEMPLATE = "admin/openchargeback/chart.html"


def parse(chart: charts.Chart) -> ET.Element:
    """The chart's SVG as XML (raises if it is not well-formed)."""
    return ET.fromstring(str(chart.svg))  # noqa: S314 - our own markup, not untrusted input


def num(element: ET.Element, name: str) -> Decimal:
    return Decimal(element.attrib[name])


def by_class(root: ET.Element, name: str) -> list[ET.Element]:
    return [e for e in root.iter() if name in e.attrib.get("class", "").split()]


def area(root: ET.Element) -> ET.Element:
    (rect,) = by_class(root, "ocb-chart-area")
    return rect


def segments(root: ET.Element, period: str, kind: str) -> list[ET.Element]:
    (bar,) = (
        g
        for g in root.iter(f"{NS}g")
        if g.get("data-period") == period and g.get("data-kind") == kind
    )
    return sorted(by_class(bar, "ocb-chart-seg"), key=lambda r: num(r, "y"))


def zero_line(root: ET.Element) -> ET.Element:
    (line,) = by_class(root, "ocb-chart-zero")
    return line


def texts(root: ET.Element, name: str) -> list[str]:
    return ["".join(e.itertext()) for e in by_class(root, name)]


def history(values: dict[str, list[tuple[str, str]]]) -> dict[str, list[tuple[Decimal, Decimal]]]:
    return {name: [(D(a), D(b)) for a, b in pairs] for name, pairs in values.items()}


def all_charts() -> list[charts.Chart]:
    return [
        charts.period_bars(
            ["2026-07", "2026-08"],
            history({"aws": [("10", "8"), ("12", "9")], "hpc": [("5", "2"), ("-3", "-3")]}),
            format_money,
            "History",
        ),
        charts.hbars([("genomics", D("12.5")), ("astro", D("-2"))], format_money, "Top"),
        charts.trend(["2026-07", "2026-08"], [D(3), D(4)], [D(2), D(1)], format_money, "Trend"),
    ]


# --- escaping and well-formedness -------------------------------------------------


def test_hostile_labels_are_escaped_and_the_svg_is_well_formed_xml() -> None:
    bars = charts.period_bars(
        ["2026-08"], {HOSTILE: [(D(2), D(1))], "aws": [(D(1), D(1))]}, format_money, HOSTILE
    )
    rows = charts.hbars([(HOSTILE, D(5)), ("a & b", D(1))], format_money, HOSTILE)
    for chart in (bars, rows):
        assert "<script" not in str(chart.svg)
        root = parse(chart)  # raises if the markup is not well-formed
        assert root.find(f"{NS}title").text == HOSTILE  # type: ignore[union-attr]
    assert HOSTILE in [t.text for t in parse(bars).iter(f"{NS}title")]  # legend tooltip
    assert texts(parse(rows), "ocb-chart-label")[1] == "a & b"
    html = render_to_string(TEMPLATE, {"chart": rows})
    assert "<script>" not in html
    assert "&lt;script&gt;" in html


def test_the_chart_module_never_uses_binary_floating_point() -> None:
    source = Path(charts.__file__).read_text(encoding="utf-8")
    assert "float(" not in source


@pytest.mark.parametrize("chart", all_charts(), ids=["period_bars", "hbars", "trend"])
def test_coordinates_are_exact_decimals_with_at_most_one_place(chart: charts.Chart) -> None:
    root = parse(
        charts.period_bars(
            ["2026-08", "2026-09"],
            history(
                {
                    "aws": [("1234.567891234", "1000.000000001"), ("0.333333333", "0")],
                    "hpc": [("987.654321987", "-12.345678912"), ("33.333333333", "1")],
                }
            ),
            format_money,
            "Digits",
        )
    )
    for svg in (root, parse(chart)):
        found = 0
        for element in list(svg.iter())[1:]:  # the root's width is its viewBox's
            for name in ("x", "y", "width", "height", "x1", "x2", "y1", "y2"):
                if name in element.attrib:
                    value = element.attrib[name]
                    assert re.fullmatch(r"-?\d+(\.\d)?", value), (element.tag, name, value)
                    found += 1
        assert found > 10


# --- geometry -----------------------------------------------------------------------


def test_hbars_largest_spans_the_plot_width_and_half_spans_half() -> None:
    chart = charts.hbars(
        [("big", D("200.00")), ("half", D("100.00")), ("quarter", D("50.00"))],
        format_money,
        "Top",
    )
    root = parse(chart)
    plot = area(root)
    big, half, quarter = by_class(root, "ocb-chart-seg")
    assert num(big, "x") == num(plot, "x") == num(half, "x")
    assert num(big, "width") == num(plot, "width")
    assert abs(num(half, "width") * 2 - num(plot, "width")) <= D("0.2")
    assert abs(num(quarter, "width") * 4 - num(plot, "width")) <= D("0.4")


def test_period_bars_top_tick_value_spans_the_plot_height_and_half_spans_half() -> None:
    chart = charts.period_bars(["2026-08"], history({"aws": [("1000", "500")]}), str, "T")
    root = parse(chart)
    plot = area(root)
    (listed,) = segments(root, "2026-08", "list")
    (billed,) = segments(root, "2026-08", "billed")
    assert texts(root, "ocb-chart-tick")[-1] == "1000"
    assert num(listed, "y") == num(plot, "y")
    assert num(listed, "height") == num(plot, "height")
    assert num(billed, "height") * 2 == num(plot, "height")
    assert num(billed, "y") + num(billed, "height") == num(plot, "y") + num(plot, "height")


def test_stacked_segments_add_up_to_the_bar() -> None:
    values = {
        "aws": [("333.33", "111.11")],
        "azure": [("123.457", "98.76")],
        "hpc": [("10.01", "250")],
        "empty": [("0", "0")],
        "tiny": [("0.001", "0.001")],
    }
    chart = charts.period_bars(["2026-08"], history(values), str, "Stacks")
    root = parse(chart)
    plot = area(root)
    ticks = [D(t) for t in texts(root, "ocb-chart-tick")]
    zero_y = num(zero_line(root), "y1")
    for kind, column in (("list", 0), ("billed", 1)):
        parts = segments(root, "2026-08", kind)
        assert len(parts) == 3  # zero and sub-pixel amounts draw nothing
        for upper, lower in itertools.pairwise(parts):
            assert num(upper, "y") + num(upper, "height") == num(lower, "y")
        assert num(parts[-1], "y") + num(parts[-1], "height") == zero_y
        total = sum(D(v[0][column]) for v in values.values())
        expected = total * num(plot, "height") / (ticks[-1] - ticks[0])
        assert abs(sum(num(p, "height") for p in parts) - expected) <= D("0.1")


@pytest.mark.parametrize(
    ("low", "high"),
    [
        ("0", "870"),
        ("0", "1000"),
        ("-800", "33600.25"),
        ("0", "0.003"),
        ("0", "0"),
        ("-12.5", "0"),
        ("0", "123456789.123456789"),
    ],
)
def test_ticks_are_nice_round_numbers_covering_the_range(low: str, high: str) -> None:
    ticks = charts.nice_ticks(D(low), D(high))
    step = ticks[1] - ticks[0]
    assert all(b - a == step for a, b in itertools.pairwise(ticks))
    mantissa = step.scaleb(-step.adjusted())
    assert mantissa in (1, 2, 5)
    assert step >= D("0.01")
    assert ticks[0] <= min(D(low), D(0))
    assert ticks[-1] >= max(D(high), D(0))
    assert ticks[-1] > ticks[0]
    assert 0 in ticks
    assert 2 <= len(ticks) <= 12
    assert all(t % step == 0 for t in ticks)


def test_axis_ticks_in_the_chart_are_the_nice_ticks_formatted() -> None:
    chart = charts.period_bars(
        ["2026-07", "2026-08"], history({"aws": [("870", "600"), ("20", "10")]}), str, "T"
    )
    assert texts(parse(chart), "ocb-chart-tick") == ["0", "200", "400", "600", "800", "1000"]


# --- legend, table, description ----------------------------------------------------------


def test_legend_lists_each_source_once_then_the_list_and_billed_key() -> None:
    chart = charts.period_bars(
        ["2026-06", "2026-07", "2026-08"],
        history(
            {
                "aws": [("1", "1"), ("2", "1"), ("3", "2")],
                "hpc": [("1", "0"), ("0", "0"), ("4", "4")],
            }
        ),
        format_money,
        "T",
    )
    assert texts(parse(chart), "ocb-chart-legend") == ["aws", "hpc", "List price", "Billed"]


def test_trend_legend_has_only_the_list_and_billed_key() -> None:
    chart = charts.trend(["2026-08"], [D(2)], [D(1)], format_money, "T")
    assert texts(parse(chart), "ocb-chart-legend") == ["List price", "Billed"]


def test_table_rows_are_the_input_with_formatted_amounts() -> None:
    chart = charts.period_bars(
        ["2026-07", "2026-08"],
        history({"aws": [("1234.5", "1000"), ("10", "9.999")], "hpc": [("1", "1"), ("2", "1")]}),
        format_money,
        "T",
    )
    assert chart.headers == (
        "Period",
        "aws list price",
        "aws billed",
        "hpc list price",
        "hpc billed",
        "Total list price",
        "Total billed",
    )
    assert chart.rows == (
        ("2026-07", "$1,234.50", "$1,000.00", "$1.00", "$1.00", "$1,235.50", "$1,001.00"),
        ("2026-08", "$10.00", "$10.00", "$2.00", "$1.00", "$12.00", "$11.00"),
    )
    items = [("genomics", D("18234.555")), ("astro", D("-3"))]
    bars = charts.hbars(items, format_money, "T", label_header="Project", value_header="Billed")
    assert bars.headers == ("Project", "Billed")
    assert bars.rows == (("genomics", "$18,234.56"), ("astro", "-$3.00"))
    line = charts.trend(["2026-08"], [D("2.5")], [D("1.25")], format_money, "T")
    assert line.rows == (("2026-08", "$2.50", "$1.25"),)


def test_description_summarises_the_latest_period_and_the_range() -> None:
    chart = charts.trend(
        ["2026-07", "2026-08"], [D(1000), D(2000)], [D(500), D("1234")], format_money, "T"
    )
    assert chart.description == (
        "Billed $1,234.00 of list $2,000.00 in 2026-08."
        " 2026-07 to 2026-08: billed $1,734.00 of list $3,000.00."
    )
    root = parse(chart)
    assert root.find(f"{NS}desc").text == chart.description  # type: ignore[union-attr]


def test_svg_is_an_image_labelled_by_its_title_and_description() -> None:
    for chart in all_charts():
        root = parse(chart)
        assert root.get("role") == "img"
        title, desc = root.get("aria-labelledby", "").split()
        assert root.find(f"{NS}title").get("id") == title  # type: ignore[union-attr]
        assert root.find(f"{NS}desc").get("id") == desc  # type: ignore[union-attr]
        assert root.get("viewBox", "").startswith("0 0 ")
        # its width in px, no more (charts.css lets a narrow column shrink it)
        assert root.get("width") == root.get("viewBox", "").split()[2]
        assert "style" not in root.attrib  # no inline style (Content-Security-Policy)


def test_long_labels_are_cut_with_an_ellipsis_but_stay_whole_in_tooltip_and_table() -> None:
    name = "Department of Atmospheric and Oceanic Sciences, climate ensemble runs 2026"
    chart = charts.hbars([(name, D(10)), ("short", D(5))], format_money, "T")
    root = parse(chart)
    shown = texts(root, "ocb-chart-label")[0]
    assert shown.endswith("…")
    assert name.startswith(shown[:-1])
    tooltips = [t.text for t in root.iter(f"{NS}title")]
    assert f"{name}: $10.00" in tooltips
    assert chart.rows[0][0] == name


def test_more_sources_than_colours_reuse_the_colours_with_a_pattern() -> None:
    values = {f"s{i}": [(D(i + 1), D(i + 1))] for i in range(charts.PALETTE_SIZE + 2)}
    root = parse(charts.period_bars(["2026-08"], values, format_money, "T"))
    classes = [s.get("class", "") for s in segments(root, "2026-08", "billed")]
    assert len(classes) == charts.PALETTE_SIZE + 2
    overlays = by_class(root, "ocb-chart-overlay")
    # two bars + the two legend swatches past the palette
    assert len(overlays) == 2 * 2 + 2
    assert texts(root, "ocb-chart-legend")[: charts.PALETTE_SIZE + 2] == list(values)


# --- empty, negative, ids --------------------------------------------------------------


def test_empty_input_renders_a_message_not_an_empty_svg() -> None:
    empties = [
        charts.period_bars([], {}, format_money, "History"),
        charts.period_bars(["2026-08"], {}, format_money, "History"),
        charts.hbars([], format_money, "Top"),
        charts.trend([], [], [], format_money, "Trend"),
    ]
    for chart in empties:
        assert chart.empty
        assert chart.svg == ""
        assert chart.message == charts.EMPTY_MESSAGE == "No charges yet."
        html = render_to_string(TEMPLATE, {"chart": chart})
        assert "No charges yet." in html
        assert "<svg" not in html
        assert "<table" not in html


def test_credits_are_drawn_below_the_zero_line_and_shown_exactly_in_the_table() -> None:
    chart = charts.period_bars(
        ["2026-07", "2026-08"],
        history({"aws": [("100", "80"), ("50", "40")], "credit": [("0", "0"), ("-30.125", "-30")]}),
        str,
        "T",
    )
    root = parse(chart)
    zero_y = num(zero_line(root), "y1")
    ticks = [D(t) for t in texts(root, "ocb-chart-tick")]
    assert ticks[0] <= D("-30.125")
    assert 0 in ticks
    positive, negative = segments(root, "2026-08", "list")
    assert num(positive, "y") + num(positive, "height") == zero_y
    assert num(negative, "y") == zero_y
    assert num(negative, "height") > 0
    assert chart.rows[1][3] == "-30.125"


def test_hbars_negative_amount_is_drawn_left_of_the_zero_line() -> None:
    chart = charts.hbars([("aws", D(300)), ("credit", D(-100))], format_money, "Subsidy")
    root = parse(chart)
    plot = area(root)
    zero_x = num(zero_line(root), "x1")
    positive, negative = by_class(root, "ocb-chart-seg")
    assert num(negative, "x") == num(plot, "x")
    assert num(negative, "x") + num(negative, "width") == zero_x == num(positive, "x")
    assert num(positive, "x") + num(positive, "width") == num(plot, "x") + num(plot, "width")
    assert abs(num(negative, "width") * 3 - num(positive, "width")) <= D("0.3")
    values = by_class(root, "ocb-chart-value")
    assert [v.get("text-anchor") for v in values] == ["start", "end"]
    assert chart.rows[1] == ("credit", "-$100.00")


def test_all_zero_amounts_still_draw_an_axis() -> None:
    chart = charts.period_bars(["2026-08"], history({"aws": [("0", "0")]}), str, "T")
    root = parse(chart)
    assert texts(root, "ocb-chart-tick")[0] == "0"
    assert segments(root, "2026-08", "billed") == []


def test_ids_are_unique_per_chart_and_prefix_every_internal_reference() -> None:
    first, second = (
        charts.hbars([("a", D(1))], format_money, "T"),
        charts.hbars([("a", D(1))], format_money, "T"),
    )
    assert first.id != second.id
    chart = charts.period_bars(
        ["2026-08"],
        history({"aws": [("2", "1")], "hpc": [("1", "1")]}),
        format_money,
        "T",
        id="chart-history",
    )
    svg = str(chart.svg)
    root = parse(chart)
    ids = [e.get("id", "") for e in root.iter() if e.get("id")]
    assert len(ids) == len(set(ids))
    assert all(i.startswith("chart-history-") for i in ids)
    assert set(re.findall(r"url\(#([^)]+)\)", svg)) <= set(ids)
    assert chart.id == "chart-history"
    with pytest.raises(ValueError, match="chart id"):
        charts.hbars([("a", D(1))], format_money, "T", id='x" onload="alert(1)')


def test_series_lengths_must_match_the_periods() -> None:
    with pytest.raises(ValueError, match="2 periods"):
        charts.period_bars(["2026-07", "2026-08"], history({"aws": [("1", "1")]}), str, "T")
    with pytest.raises(ValueError, match="differ in length"):
        charts.trend(["2026-08"], [D(1)], [], str, "T")


# --- the include template -----------------------------------------------------------


def test_template_renders_the_svg_and_an_accessible_data_table() -> None:
    chart = charts.hbars(
        [("genomics", D(10))], format_money, "Top projects", id="chart-top", label_header="Project"
    )
    html = render_to_string(TEMPLATE, {"chart": chart})
    assert str(chart.svg) in html
    assert "<details" in html
    assert "<summary>Data table</summary>" in html
    assert "<caption>Top projects</caption>" in html
    assert '<th scope="col">Project</th>' in html
    assert '<th scope="row">genomics</th><td>$10.00</td>' in html
