"""MoneyField: a Decimal in Python, exact integer nano-units in the database."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db import models
from django.db.models.expressions import Combinable

from openchargeback.money import from_nanos, to_nanos

if TYPE_CHECKING:  # set Decimal, get Decimal (django-stubs' generic field types)
    _MoneyBase = models.BigIntegerField[Decimal | int | str | Combinable, Decimal]
else:
    _MoneyBase = models.BigIntegerField


class MoneyField(_MoneyBase):
    """An exact amount stored as ``BIGINT`` nano-units (1e-9 of the currency unit).

    ``SUM()`` over it is an integer sum on SQLite and a ``numeric`` sum on
    PostgreSQL, so aggregates are exact on both; values come back as
    :class:`~decimal.Decimal`. Assigning a float raises ``TypeError``.
    """

    description = "Exact money amount (stored as integer nano-units)"
    if TYPE_CHECKING:  # what a lookup (filter(billed_cost=...)) takes, for django-stubs;
        # a Decimal as well as IntegerField's str | int
        _pyi_lookup_exact_type: Decimal | int | str  # type: ignore[assignment]

    def from_db_value(
        self,
        value: Any,
        expression: Any,  # noqa: ARG002 - Django's Field API
        connection: Any,  # noqa: ARG002 - Django's Field API
    ) -> Decimal | None:
        if value is None:
            return None
        # int() also covers PostgreSQL, whose SUM(bigint) returns numeric.
        return from_nanos(int(value))

    def to_python(self, value: Any) -> Decimal | None:
        if value is None or isinstance(value, Decimal):
            return value
        if isinstance(value, float):
            raise TypeError("money must never be a float")
        return Decimal(str(value))

    def get_prep_value(self, value: Any) -> int | None:
        if value is None:
            return None
        if isinstance(value, float):
            raise TypeError("money must never be a float")
        if hasattr(value, "resolve_expression"):
            return value
        return to_nanos(Decimal(value) if isinstance(value, str) else value)

    def formfield(self, **kwargs: Any) -> Any:  # type: ignore[override]
        from django import forms

        options: dict[str, Any] = {"decimal_places": 9, "max_digits": 19, **kwargs}
        return models.Field.formfield(self, form_class=forms.DecimalField, **options)

    def get_db_prep_value(
        self,
        value: Any,
        connection: Any,  # noqa: ARG002 - Django's Field API, which passes it by name in places
        prepared: bool = False,
    ) -> Any:
        if not prepared:
            value = self.get_prep_value(value)
        return value


class JSONTextField(models.JSONField):
    """A JSONField without SQLite's per-row ``CHECK (JSON_VALID(...))``.

    Charges are written in bulk by ingest, which produces the JSON itself with
    ``json.dumps``; the check would re-parse every value (about a third of the
    insert time on SQLite). PostgreSQL's ``jsonb`` validates by type anyway.
    """

    def db_check(self, connection: Any) -> None:  # noqa: ARG002 - Django's Field API
        return None
