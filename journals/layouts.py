"""Journal layouts: the built-in columns of detail / summary / gl, and custom
templates whose columns are Django templates.

A template is rendered by an engine of its own: no context processors, no
template loaders, only the built-in tags and filters, and a context holding
nothing but the journal line (``entry``), ``period``, ``line`` (its number)
and ``currency`` (the code, e.g. USD). It can reach no setting, secret or
model.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.template import Context, Engine, Template, TemplateSyntaxError
from django.template.loader_tags import ExtendsNode, IncludeNode

from journals.builders import Entry, Journal

_ENGINE = Engine(autoescape=False, debug=False, libraries={}, builtins=None, loaders=[])


@dataclass(frozen=True)
class Column:
    header: str
    template: Template | None  # None: built-in column read from `value`
    number: bool = False
    value: str = ""  # built-in: Entry attribute

    def cell(self, entry: Entry, period: str, line: int, currency: str = "") -> str | Decimal:
        if self.template is None:
            return _value(entry, self.value)
        context = {"entry": entry, "period": period, "line": line, "currency": currency}
        try:
            text = self.template.render(Context(context, autoescape=False)).strip()
        except Exception as exc:  # a template error is the template author's to fix
            raise ValueError(f"column {self.header!r}: {type(exc).__name__}: {exc}") from None
        if self.number:
            try:
                return Decimal(text.replace(",", "")) if text else ""
            except ArithmeticError:
                raise ValueError(f"column {self.header!r}: {text!r} is not a number") from None
        return text


def _value(entry: Entry, name: str) -> str | Decimal:
    value = getattr(entry, name)
    if value is None:
        return ""
    return value if isinstance(value, Decimal) else str(value)


def parse_columns(text: str) -> list[Column]:
    """``Header | {{ template }} [| number]`` per line; blank lines are skipped."""
    columns = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        header, sep, rest = raw.partition("|")
        if not sep or not header.strip():
            raise ValueError(f"line {number}: write 'Header | {{{{ entry.field }}}}'")
        template, is_number = rest, False
        head, _, tail = rest.rpartition("|")
        if head and tail.strip() == "number":
            template, is_number = head, True
        try:
            compiled = _ENGINE.from_string(template.strip())
        except TemplateSyntaxError as exc:
            raise ValueError(f"line {number} ({header.strip()}): {exc}") from None
        if any(compiled.nodelist.get_nodes_by_type(t) for t in (IncludeNode, ExtendsNode)):
            raise ValueError(
                f"line {number} ({header.strip()}): include and extends are not allowed"
            )
        columns.append(Column(header.strip(), compiled, is_number))
    if not columns:
        raise ValueError("a template needs at least one column")
    return columns


_BUILTIN: dict[str, list[tuple[str, str, bool]]] = {
    "detail": [
        ("period", "period", False),
        ("charge_id", "charge_id", False),
        ("kind", "kind", False),
        ("source", "source", False),
        ("pi_email", "pi_email", False),
        ("project_id", "project_id", False),
        ("fund_org", "fund_org", False),
        ("account", "account", False),
        ("reference_1", "reference_1", False),
        ("reference_2", "reference_2", False),
        ("description", "description", False),
        ("original_currency", "original_currency", False),
        ("original_amount", "original_amount", True),
        ("exchange_rate", "exchange_rate", False),
        ("amount", "signed", True),
    ],
    "summary": [
        ("period", "period", False),
        ("pi_email", "pi_email", False),
        ("project_id", "project_id", False),
        ("fund_org", "fund_org", False),
        ("account", "account", False),
        ("description", "description", False),
        ("amount", "signed", True),
    ],
    "gl": [
        ("period", "period", False),
        ("fund_org", "fund_org", False),
        ("fund", "fund", False),
        ("orgn", "orgn", False),
        ("account", "account", False),
        ("description", "description", False),
        ("debit", "debit", True),
        ("credit", "credit", True),
        ("source", "source", False),
    ],
}


def builtin_columns(format: str) -> list[Column]:
    return [Column(h, None, n, v) for h, v, n in _BUILTIN[format]]


@dataclass
class Table:
    headers: list[str]
    number_columns: set[int]
    rows: Iterator[list[Any]]


def table(journal: Journal, columns: list[Column], *, currency: str = "") -> Table:
    """Rows of cells (str or Decimal) for the writers."""

    def rows() -> Iterator[list[Any]]:
        for line, entry in enumerate(journal.entries, start=1):
            yield [c.cell(entry, journal.period, line, currency) for c in columns]

    return Table(
        headers=[c.header for c in columns],
        number_columns={i for i, c in enumerate(columns) if c.number},
        rows=rows(),
    )
