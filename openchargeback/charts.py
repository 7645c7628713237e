"""Server-rendered SVG charts for the admin: exact amounts in, escaped SVG and a data table out.

No JavaScript, no chart library, no binary floating point: the geometry is computed
with :class:`~decimal.Decimal` and written with at most one decimal place, so the
same input always gives the same markup. Every label is escaped with
``format_html``. Colours come from CSS classes (``openchargeback/charts.css``), so
the charts follow the admin's light and dark themes. Each chart carries its data
as a table of formatted strings, which the include template
``admin/openchargeback/chart.html`` shows as the text alternative.

Negative amounts (credits) are drawn on the other side of the zero line: the
value axis always covers zero and the most negative as well as the most
positive total, and stacks of negative segments grow downwards (leftwards).

Pure: no ORM, no I/O; tested without a database.

One module: the three chart kinds share the private geometry, legend and text
measuring below; apart, each would import the others' internals.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

__all__ = [
    "EMPTY_MESSAGE",
    "PALETTE_SIZE",
    "Chart",
    "Formatter",
    "hbars",
    "nice_ticks",
    "period_bars",
    "trend",
]

Formatter = Callable[[Decimal], str]

EMPTY_MESSAGE = "No charges yet."

# Colour classes ocb-chart-c0 .. c6 in charts.css (Okabe-Ito hues, shaded per theme
# for 3:1 contrast). Series beyond these reuse the colours with a dotted overlay.
PALETTE_SIZE = 7

ZERO = Decimal(0)
ONE = Decimal(1)
TENTH = Decimal("0.1")
# Ticks never step by less than a cent: amounts are shown in cents.
MIN_STEP = Decimal("0.01")

LIST_LABEL = "List price"
BILLED_LABEL = "Billed"

_ID_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")

# Text widths are estimated (the server has no font metrics): tenths of a pixel
# per character at 12px, measured on DejaVu Sans, one of the widest fonts the
# admin's font stack falls back to, so labels fit whatever font is used.
_NARROW = set(" .,:;'|!ijlI()[]-/ft")
_WIDE = set("mwMW@%&…<>=+~^")
_FONT = 12
_TICK_FONT = 11


@dataclass(frozen=True)
class Chart:
    """One chart: SVG markup plus the same data as a table of formatted strings.

    ``rows`` is empty (and ``svg`` is an empty string) when there was nothing to
    draw; the include template then shows ``message`` instead.
    """

    id: str
    title: str
    description: str
    svg: SafeString
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    message: str = ""

    @property
    def empty(self) -> bool:
        return not self.rows


# --- public chart functions -------------------------------------------------------


def period_bars(
    periods: Sequence[str],
    series: Mapping[str, Sequence[tuple[Decimal, Decimal]]],
    fmt: Formatter,
    title: str,
    *,
    id: str | None = None,
    width: int = 800,
) -> Chart:
    """List price and billed per period, each bar stacked by source.

    ``series`` maps a source name to one ``(list, billed)`` pair per period, in
    the order of ``periods``. For each period a hatched *List price* bar stands
    next to a solid *Billed* bar; the legend names each source once.
    """
    chart_id = _chart_id(id)
    names = list(series)
    for name in names:
        if len(series[name]) != len(periods):
            raise ValueError(
                f"series {name!r} has {len(series[name])} values for {len(periods)} periods"
            )
    if not periods or not names:
        return _empty(chart_id, title, ("Period", LIST_LABEL, BILLED_LABEL))

    list_totals = [sum((series[n][i][0] for n in names), ZERO) for i in range(len(periods))]
    billed_totals = [sum((series[n][i][1] for n in names), ZERO) for i in range(len(periods))]
    headers = ["Period"]
    for name in names:
        headers += [f"{name} {LIST_LABEL.lower()}", f"{name} {BILLED_LABEL.lower()}"]
    if len(names) > 1:
        headers += [f"Total {LIST_LABEL.lower()}", f"Total {BILLED_LABEL.lower()}"]
    rows = []
    for i, period in enumerate(periods):
        row = [period]
        for name in names:
            listed, billed = series[name][i]
            row += [fmt(listed), fmt(billed)]
        if len(names) > 1:
            row += [fmt(list_totals[i]), fmt(billed_totals[i])]
        rows.append(tuple(row))

    description = _period_description(periods, list_totals, billed_totals, fmt)
    if len(names) > 1:
        shown = ", ".join(names) if len(names) <= 4 else f"{len(names)} sources"
        description += f" By source: {shown}."
    svg = _columns(
        chart_id,
        title,
        description,
        list(periods),
        [(name, list(series[name])) for name in names],
        fmt,
        width=width,
        source_legend=True,
    )
    return Chart(chart_id, title, description, svg, tuple(headers), tuple(rows))


def trend(
    periods: Sequence[str],
    list_values: Sequence[Decimal],
    billed_values: Sequence[Decimal],
    fmt: Formatter,
    title: str,
    *,
    id: str | None = None,
    width: int = 560,
) -> Chart:
    """One project's (or PI's) list price and billed per period, side by side."""
    chart_id = _chart_id(id)
    if not (len(periods) == len(list_values) == len(billed_values)):
        raise ValueError("periods, list_values and billed_values differ in length")
    headers = ("Period", LIST_LABEL, BILLED_LABEL)
    if not periods:
        return _empty(chart_id, title, headers)
    rows = tuple(
        (period, fmt(listed), fmt(billed))
        for period, listed, billed in zip(periods, list_values, billed_values, strict=True)
    )
    description = _period_description(periods, list(list_values), list(billed_values), fmt)
    pairs = list(zip(list_values, billed_values, strict=True))
    svg = _columns(
        chart_id,
        title,
        description,
        list(periods),
        [("", pairs)],
        fmt,
        width=width,
        source_legend=False,
    )
    return Chart(chart_id, title, description, svg, headers, rows)


def hbars(
    items: Sequence[tuple[str, Decimal]],
    fmt: Formatter,
    title: str,
    *,
    id: str | None = None,
    label_header: str = "Name",
    value_header: str = "Amount",
    width: int = 560,
) -> Chart:
    """Horizontal bars in the given order: label on the left, amount at the bar's end.

    The largest amount spans the plot's full width; a negative amount is drawn to
    the left of the zero line.
    """
    chart_id = _chart_id(id)
    headers = (label_header, value_header)
    if not items:
        return _empty(chart_id, title, headers)
    rows = tuple((label, fmt(value)) for label, value in items)
    largest = max(items, key=lambda item: item[1])
    total = sum((value for _, value in items), ZERO)
    count = len(items)
    description = (
        f"{count} {'entry' if count == 1 else 'entries'}; "
        f"largest {largest[0]} at {fmt(largest[1])}; total {fmt(total)}."
    )
    svg = _rows(chart_id, title, description, list(items), fmt, width=width)
    return Chart(chart_id, title, description, svg, headers, rows)


def nice_ticks(low: Decimal, high: Decimal, target: int = 5) -> list[Decimal]:
    """Round axis ticks covering zero, ``low`` and ``high``: steps of 1, 2 or 5 x 10^n.

    About ``target`` intervals; never a step below a cent. ``[0, 1]`` when there
    is no extent at all (every amount zero).
    """
    low, high = min(low, ZERO), max(high, ZERO)
    if low == high:
        high = ONE
    raw = (high - low) / target
    exponent = raw.adjusted()
    mantissa = raw.scaleb(-exponent)
    nice = next(n for n in (1, 2, 5, 10) if mantissa <= n)
    step = max(Decimal(nice).scaleb(exponent), MIN_STEP)
    first = (low / step).to_integral_value(rounding=ROUND_FLOOR) * step
    last = (high / step).to_integral_value(rounding=ROUND_CEILING) * step
    count = int((last - first) / step)
    return [_plain(first + step * i) for i in range(count + 1)]


# --- drawing ------------------------------------------------------------------------

_PLOT_HEIGHT = 220
_LEGEND_ROW = 20
_SWATCH = 12


def _columns(
    chart_id: str,
    title: str,
    description: str,
    periods: list[str],
    series: list[tuple[str, list[tuple[Decimal, Decimal]]]],
    fmt: Formatter,
    *,
    width: int,
    source_legend: bool,
) -> SafeString:
    """Per period a list price bar and a billed bar, each stacked by series."""
    # Stacks: positive segments grow up from zero, negative ones down.
    low, high = ZERO, ZERO
    for i in range(len(periods)):
        for kind in (0, 1):
            values = [pairs[i][kind] for _, pairs in series]
            high = max(high, sum((v for v in values if v > 0), ZERO))
            low = min(low, sum((v for v in values if v < 0), ZERO))
    ticks = nice_ticks(low, high)
    tick_labels = [fmt(t) for t in ticks]
    plot_left = max(_text_width(label, _TICK_FONT) for label in tick_labels) + 10
    plot_right = Decimal(width - 8)
    plot_width = plot_right - plot_left

    legend, legend_height = _legend(chart_id, series, plot_left, width, source_legend)
    plot_top = Decimal(legend_height + 14)
    plot_bottom = plot_top + _PLOT_HEIGHT
    height = plot_bottom + 26
    axis_low, axis_high = ticks[0], ticks[-1]

    def y(value: Decimal) -> Decimal:
        return _q(plot_top + (axis_high - value) * _PLOT_HEIGHT / (axis_high - axis_low))

    parts: list[SafeString] = [_defs(chart_id, len(series))]
    parts.append(
        format_html(
            '<rect class="ocb-chart-area" x="{}" y="{}" width="{}" height="{}" fill="none"/>',
            _n(plot_left),
            _n(plot_top),
            _n(plot_width),
            _n(plot_bottom - plot_top),
        )
    )
    for tick, label in zip(ticks, tick_labels, strict=True):
        parts.append(
            format_html(
                '<line class="ocb-chart-grid" x1="{}" x2="{}" y1="{}" y2="{}"/>'
                '<text class="ocb-chart-tick" x="{}" y="{}" dy="0.32em"'
                ' text-anchor="end">{}</text>',
                _n(plot_left),
                _n(plot_right),
                _n(y(tick)),
                _n(y(tick)),
                _n(plot_left - 6),
                _n(y(tick)),
                label,
            )
        )

    group = plot_width / len(periods)
    bar = min(group * Decimal("0.36"), Decimal(26))
    gap = min(group * Decimal("0.04"), Decimal(2))
    label_width = max(_text_width(p, _FONT) for p in periods) + 6
    label_every = int((label_width / group).to_integral_value(rounding=ROUND_CEILING)) or 1
    for i, period in enumerate(periods):
        centre = plot_left + group * i + group / 2
        for kind, kind_label, x in (
            (0, LIST_LABEL, centre - gap / 2 - bar),
            (1, BILLED_LABEL, centre + gap / 2),
        ):
            x0, x1 = _q(x), _q(x + bar)
            segments: list[SafeString] = []
            up, down = ZERO, ZERO
            for index, (name, pairs) in enumerate(series):
                value = pairs[i][kind]
                if value == 0:
                    continue
                if value > 0:
                    start, up = up, up + value
                    end = up
                else:
                    start, down = down, down + value
                    end = down
                top, bottom = sorted((y(start), y(end)))
                if top == bottom:
                    continue  # thinner than the drawing's resolution; still in the table
                tip = f"{period} · {name + ' · ' if name else ''}{kind_label}: {fmt(value)}"
                segments.append(
                    _segment(chart_id, index, kind, x0, top, x1 - x0, bottom - top, tip)
                )
            parts.append(
                format_html(
                    '<g class="ocb-chart-bar" data-period="{}" data-kind="{}">{}</g>',
                    period,
                    "list" if kind == 0 else "billed",
                    _join(segments),
                )
            )
        if i % label_every == 0:
            parts.append(
                format_html(
                    '<text class="ocb-chart-label" x="{}" y="{}" text-anchor="middle">{}</text>',
                    _n(centre),
                    _n(plot_bottom + 17),
                    period,
                )
            )
    parts.append(
        format_html(
            '<line class="ocb-chart-zero" x1="{}" x2="{}" y1="{}" y2="{}"/>',
            _n(plot_left),
            _n(plot_right),
            _n(y(ZERO)),
            _n(y(ZERO)),
        )
    )
    parts.append(legend)
    return _svg(chart_id, title, description, width, height, parts)


def _rows(
    chart_id: str,
    title: str,
    description: str,
    items: list[tuple[str, Decimal]],
    fmt: Formatter,
    *,
    width: int,
) -> SafeString:
    """One horizontal bar per item, label left, amount at the end of the bar."""
    row, bar, top = 24, 16, 4
    labels = [fmt(value) for _, value in items]
    name_room = min(max(_text_width(name, _FONT) for name, _ in items), Decimal(width * 2 // 5))
    right_room = max(
        (_text_width(label, _FONT) for (_, v), label in zip(items, labels, strict=True) if v >= 0),
        default=ZERO,
    )
    left_room = max(
        (_text_width(label, _FONT) for (_, v), label in zip(items, labels, strict=True) if v < 0),
        default=ZERO,
    )
    plot_left = name_room + 10 + (left_room + 6 if left_room else 0)
    plot_right = Decimal(width) - (right_room + 6 if right_room else 0) - 2
    plot_width = plot_right - plot_left
    low = min(ZERO, *(v for _, v in items))
    high = max(ZERO, *(v for _, v in items))
    span = (high - low) or ONE
    height = top * 2 + row * len(items)

    def x(value: Decimal) -> Decimal:
        return _q(plot_left + (value - low) * plot_width / span)

    zero = x(ZERO)
    parts: list[SafeString] = [
        format_html(
            '<rect class="ocb-chart-area" x="{}" y="{}" width="{}" height="{}" fill="none"/>',
            _n(plot_left),
            top,
            _n(plot_width),
            row * len(items),
        )
    ]
    for i, ((name, value), label) in enumerate(zip(items, labels, strict=True)):
        y = top + row * i
        end = x(value)
        shown = _fit(name, name_room)
        parts.append(
            format_html(
                '<g class="ocb-chart-row"><title>{}: {}</title>'
                '<text class="ocb-chart-label" x="{}" y="{}" dy="0.32em"'
                ' text-anchor="end">{}</text>'
                '<rect class="ocb-chart-seg ocb-chart-c0" x="{}" y="{}" width="{}" height="{}"'
                ' fill="currentColor"/>'
                '<text class="ocb-chart-value" x="{}" y="{}" dy="0.32em" text-anchor="{}">{}</text>'
                "</g>",
                name,
                label,
                _n(name_room),
                y + row // 2,
                shown,
                _n(min(zero, end)),
                y + (row - bar) // 2,
                _n(abs(end - zero)),
                bar,
                _n(end + 4 if value >= 0 else end - 4),
                y + row // 2,
                "start" if value >= 0 else "end",
                label,
            )
        )
    parts.append(
        format_html(
            '<line class="ocb-chart-zero" x1="{}" x2="{}" y1="{}" y2="{}"/>',
            _n(zero),
            _n(zero),
            top,
            top + row * len(items),
        )
    )
    return _svg(chart_id, title, description, width, Decimal(height), parts)


def _legend(
    chart_id: str,
    series: list[tuple[str, list[tuple[Decimal, Decimal]]]],
    left: Decimal,
    width: int,
    source_legend: bool,
) -> tuple[SafeString, int]:
    """Source swatches (if asked) then the list/billed key, wrapped into rows."""
    # (swatch, name, extra space before: the key stands apart from the sources)
    entries: list[tuple[SafeString, str, int]] = []
    if source_legend:
        for index, (name, _) in enumerate(series):
            entries.append((_swatch(chart_id, index, 1), name, 0))
    # With one series the key takes its colour; with sources it is neutral grey.
    key = None if source_legend else 0
    entries.append((_swatch(chart_id, key, 0), LIST_LABEL, 16 if source_legend else 0))
    entries.append((_swatch(chart_id, key, 1), BILLED_LABEL, 0))

    parts: list[SafeString] = []
    x, row = left, 0
    room = Decimal(width) - left
    for swatch, name, space in entries:
        shown = _fit(name, min(room - _SWATCH - 6, Decimal(180)))
        entry_width = _SWATCH + 6 + _text_width(shown, _FONT) + 16
        if x > left and x + space + entry_width > width:
            x, row = left, row + 1
        elif x > left:
            x += space
        y = 4 + row * _LEGEND_ROW
        parts.append(
            format_html(
                '<g class="ocb-chart-key" transform="translate({} {})">{}{}'
                '<text class="ocb-chart-legend" x="{}" y="{}" dy="0.32em">{}</text></g>',
                _n(x),
                y,
                format_html("<title>{}</title>", name) if shown != name else "",
                swatch,
                _SWATCH + 6,
                _SWATCH // 2,
                shown,
            )
        )
        x += entry_width
    return _join(parts), 4 + (row + 1) * _LEGEND_ROW


def _swatch(chart_id: str, index: int | None, kind: int) -> SafeString:
    """A legend square: a series colour (index) or the neutral key (None); hatched for list."""
    colour = "ocb-chart-neutral" if index is None else _colour(index)
    return _segment(
        chart_id, index, kind, ZERO, ZERO, Decimal(_SWATCH), Decimal(_SWATCH), "", colour=colour
    )


def _segment(
    chart_id: str,
    index: int | None,
    kind: int,
    x: Decimal,
    y: Decimal,
    width: Decimal,
    height: Decimal,
    tip: str,
    *,
    colour: str | None = None,
) -> SafeString:
    """One rectangle: solid for billed (kind 1), hatched and outlined for list (kind 0)."""
    colour = colour or ("ocb-chart-neutral" if index is None else _colour(index))
    role = "ocb-chart-seg" if tip else "ocb-chart-swatch"
    fill = (
        format_html("url(#{}-hatch-{})", chart_id, "n" if index is None else index % PALETTE_SIZE)
        if kind == 0
        else "currentColor"
    )
    rect = format_html(
        '<rect class="{} {} {}" x="{}" y="{}" width="{}" height="{}" fill="{}">{}</rect>',
        role,
        "ocb-chart-list" if kind == 0 else "ocb-chart-billed",
        colour,
        _n(x),
        _n(y),
        _n(width),
        _n(height),
        fill,
        format_html("<title>{}</title>", tip) if tip else "",
    )
    if index is None or index < PALETTE_SIZE:
        return rect
    # Past the palette: the same colours again, told apart by a dotted overlay.
    overlay = format_html(
        '<rect class="ocb-chart-overlay" x="{}" y="{}" width="{}" height="{}"'
        ' fill="url(#{}-dots)" pointer-events="none"/>',
        _n(x),
        _n(y),
        _n(width),
        _n(height),
        chart_id,
    )
    return _join([rect, overlay])


def _defs(chart_id: str, series_count: int) -> SafeString:
    """Hatch patterns (one per colour used, plus neutral) and the dotted overlay."""
    used: list[int | None] = [*range(min(series_count, PALETTE_SIZE)), None]
    patterns = [
        format_html(
            '<pattern id="{}-hatch-{}" class="{}" patternUnits="userSpaceOnUse" width="6"'
            ' height="6" patternTransform="rotate(45)">'
            '<rect class="ocb-chart-tint" width="6" height="6" fill="currentColor"/>'
            '<rect width="2.5" height="6" fill="currentColor"/></pattern>',
            chart_id,
            "n" if index is None else index,
            "ocb-chart-neutral" if index is None else _colour(index),
        )
        for index in used
    ]
    if series_count > PALETTE_SIZE:
        patterns.append(
            format_html(
                '<pattern id="{}-dots" patternUnits="userSpaceOnUse" width="5" height="5">'
                '<circle class="ocb-chart-knockout" cx="2.5" cy="2.5" r="1.2"/></pattern>',
                chart_id,
            )
        )
    return format_html("<defs>{}</defs>", _join(patterns))


def _svg(
    chart_id: str,
    title: str,
    description: str,
    width: int,
    height: Decimal,
    parts: Iterable[SafeString],
) -> SafeString:
    return format_html(
        '<svg xmlns="http://www.w3.org/2000/svg" class="ocb-chart-svg" viewBox="0 0 {} {}"'
        ' width="{}" preserveAspectRatio="xMinYMin meet"'
        ' role="img" aria-labelledby="{}-title {}-desc" fill="currentColor" font-size="{}">'
        '<title id="{}-title">{}</title><desc id="{}-desc">{}</desc>{}</svg>',
        width,
        _n(height),
        width,
        chart_id,
        chart_id,
        _FONT,
        chart_id,
        title,
        chart_id,
        description,
        _join(parts),
    )


# --- helpers ------------------------------------------------------------------------


def _empty(chart_id: str, title: str, headers: tuple[str, ...]) -> Chart:
    return Chart(
        chart_id, title, EMPTY_MESSAGE, format_html("{}", ""), headers, (), message=EMPTY_MESSAGE
    )


def _chart_id(value: str | None) -> str:
    """The caller's id (it prefixes ids inside the SVG and in url(#...) references)."""
    if value is None:
        return f"ocb-chart-{uuid.uuid4().hex[:10]}"
    if not _ID_RE.match(value):
        raise ValueError(f"not a usable chart id: {value!r}")
    return value


def _period_description(
    periods: Sequence[str], listed: list[Decimal], billed: list[Decimal], fmt: Formatter
) -> str:
    text = f"Billed {fmt(billed[-1])} of list {fmt(listed[-1])} in {periods[-1]}."
    if len(periods) > 1:
        text += (
            f" {periods[0]} to {periods[-1]}: billed {fmt(sum(billed, ZERO))}"
            f" of list {fmt(sum(listed, ZERO))}."
        )
    return text


def _colour(index: int) -> str:
    return f"ocb-chart-c{index % PALETTE_SIZE}"


def _join(parts: Iterable[SafeString]) -> SafeString:
    return format_html_join("", "{}", ((part,) for part in parts))


def _q(value: Decimal) -> Decimal:
    """A coordinate: exact, to a tenth of a pixel."""
    return value.quantize(TENTH, rounding=ROUND_HALF_UP)


def _n(value: Decimal | int) -> str:
    """A coordinate as SVG text: ``12``, ``12.5``, never ``12.50`` or ``-0``."""
    q = _q(Decimal(value))
    return str(int(q)) if q == q.to_integral_value() else f"{q:f}"


def _plain(value: Decimal) -> Decimal:
    """``2E+2`` as ``200``: tick values stay in plain notation."""
    return value.quantize(ONE) if value == value.to_integral_value() else value


def _char_width(char: str) -> int:
    if char in _NARROW:
        return 42
    if char in _WIDE:
        return 115
    if char.isupper():
        return 86
    if char.isdigit():
        return 77
    return 74


def _text_width(text: str, size: int) -> Decimal:
    """Estimated rendered width in pixels (generous, so labels do not collide)."""
    tenths = sum(_char_width(c) for c in text)
    return (Decimal(tenths) * size / (10 * _FONT)).to_integral_value(rounding=ROUND_CEILING)


def _fit(text: str, room: Decimal) -> str:
    """``text`` cut with an ellipsis to fit ``room`` pixels (the full text goes in a tooltip)."""
    if _text_width(text, _FONT) <= room:
        return text
    budget = room * 10 - _char_width("…")
    used = 0
    for cut, char in enumerate(text):
        used += _char_width(char)
        if used > budget:
            return text[:cut].rstrip() + "…"
    return text
