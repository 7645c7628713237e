"""The money type: exact amounts, one rounding function, one formatter.

Amounts are :class:`decimal.Decimal` in Python and integer *nano-units*
(1e-9 of the currency unit) in the database, so they are exact on SQLite
(which stores ``DecimalField`` as a float) and on PostgreSQL alike, and
``SUM()`` is an exact integer sum on both. See
``docs/decisions/0001-money.md``.

Nothing here touches Django or the database; it is pure and tested as such.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal, InvalidOperation

__all__ = [
    "CENT",
    "NANO",
    "NANOS_PER_UNIT",
    "ROUNDING_MODE",
    "MoneyError",
    "currency_symbol",
    "format_money",
    "from_nanos",
    "money_str",
    "parse_money",
    "parse_nanos",
    "round_money",
    "to_nanos",
]

NANOS_PER_UNIT = 10**9
NANO = Decimal("0.000000001")
CENT = Decimal("0.01")

# The one rounding mode for amounts shown to people and booked to the ledger:
# half away from zero ("commercial rounding"), applied only by round_money()
# at the statement line (period x PI x project x source x service).
ROUNDING_MODE = ROUND_HALF_UP

# Storage quantum: a cost finer than 1e-9 (e.g. float noise in an export
# such as 0.00036383999999999996) is brought to the nearest nano-unit with
# banker's rounding, which has no bias over many rows. Ingest counts and
# reports every such value; it is not a money rounding in the sense above.
_STORAGE_ROUNDING = ROUND_HALF_EVEN

# int64 bounds: the largest amount one database value can hold.
_MAX_NANOS = 2**63 - 1


class MoneyError(ValueError):
    """A string is not a finite decimal amount, or it does not fit."""


def parse_money(text: str) -> Decimal:
    """Parse a decimal string (``"1,234.50"`` is *not* accepted) exactly."""
    try:
        value = Decimal(text.strip())
    except (InvalidOperation, AttributeError, ArithmeticError):
        raise MoneyError(f"not a number: {text!r}") from None
    if not value.is_finite():
        raise MoneyError(f"not a finite number: {text!r}")
    return value


def parse_nanos(text: str) -> tuple[int, bool]:
    """Parse a decimal string straight to nano-units.

    Returns ``(nanos, rounded)`` where ``rounded`` says the text carried
    non-zero digits beyond 1e-9 that were rounded half-even. This is the hot
    path of ingest, so plain ``[-+]digits[.digits]`` is handled with string
    operations and anything else (exponents) goes through ``Decimal``.
    """
    s = text.strip()
    body = s[1:] if s[:1] in "+-" else s
    whole, dot, frac = body.partition(".")
    if (
        (whole or frac)
        and (not whole or (whole.isdigit() and whole.isascii()))
        and (not frac or (frac.isdigit() and frac.isascii()))
        and (dot or frac == "")
    ):
        nanos = int(whole or "0") * NANOS_PER_UNIT + int(frac[:9].ljust(9, "0"))
        rounded = False
        if len(frac) > 9:
            extra = frac[9:]
            if extra.strip("0"):
                # Half-even on the magnitude (symmetric, so the sign can follow).
                rounded = True
                first, rest = extra[0], extra[1:].strip("0")
                if first > "5" or (first == "5" and (rest or nanos % 2 == 1)):
                    nanos += 1
        if s[:1] == "-":
            nanos = -nanos
        if abs(nanos) > _MAX_NANOS:
            raise MoneyError(f"amount too large: {text!r}")
        return nanos, rounded
    value = parse_money(s)
    if value.adjusted() > 18:
        raise MoneyError(f"amount too large: {text!r}")
    scaled = value.scaleb(9)
    nanos = int(scaled.to_integral_value(rounding=_STORAGE_ROUNDING))
    if abs(nanos) > _MAX_NANOS:
        raise MoneyError(f"amount too large: {text!r}")
    return nanos, scaled != nanos


def to_nanos(value: Decimal | int) -> int:
    """Exact conversion to nano-units; refuses values finer than 1e-9."""
    if isinstance(value, float):  # pragma: no cover - guarded by type checkers too
        raise TypeError("money must never be a float")
    scaled = Decimal(value) * NANOS_PER_UNIT
    if scaled != scaled.to_integral_value():
        raise MoneyError(f"{value} has more precision than 1e-9")
    nanos = int(scaled)
    if abs(nanos) > _MAX_NANOS:
        raise MoneyError(f"amount too large: {value}")
    return nanos


def from_nanos(nanos: int) -> Decimal:
    """Nano-units to an exact Decimal with at least two decimal places."""
    whole, frac = divmod(abs(int(nanos)), NANOS_PER_UNIT)
    digits = str(frac).rjust(9, "0").rstrip("0").ljust(2, "0")
    return Decimal(f"{'-' if nanos < 0 else ''}{whole}.{digits}")


def money_str(value: Decimal) -> str:
    """An exact plain-notation string (never ``8E-7``) for JSON and CSV."""
    return format(value, "f")


def round_money(value: Decimal) -> Decimal:
    """Round to cents with :data:`ROUNDING_MODE`. The only money rounding."""
    return value.quantize(CENT, rounding=ROUNDING_MODE)


_SYMBOLS = {
    "USD": "$",
    "CAD": "CA$",
    "AUD": "A$",
    "NZD": "NZ$",
    "EUR": "€",
    "GBP": "£",
    "JPY": "¥",
    "CHF": "CHF ",
    "SEK": "kr ",
    "NOK": "kr ",
    "DKK": "kr ",
    "INR": "₹",
    "CNY": "CN¥",
    "KRW": "₩",
    "BRL": "R$",
    "MXN": "MX$",
    "ZAR": "R ",
    "SGD": "S$",
    "HKD": "HK$",
}


def currency_symbol(code: str) -> str:
    """The symbol shown before amounts for an ISO 4217 code (code + space if unknown)."""
    code = code.upper()
    return _SYMBOLS.get(code, f"{code} ")


def format_money(
    value: Decimal,
    *,
    currency: str = "USD",
    thousands: str = ",",
    decimal_point: str = ".",
    places: int = 2,
    symbol: str | None = None,
) -> str:
    """Format an amount for people: ``-$1,234.56``.

    ``places=2`` rounds with :func:`round_money`; amounts that were already
    rounded pass through unchanged. Use only at the edges (PDF, admin, CLI).
    """
    if places == 2:
        amount = round_money(value)
    else:
        amount = value.quantize(Decimal(1).scaleb(-places), rounding=ROUNDING_MODE)
    sign = "-" if amount < 0 else ""
    whole, _, frac = f"{abs(amount):f}".partition(".")
    groups: list[str] = []
    while len(whole) > 3:
        groups.insert(0, whole[-3:])
        whole = whole[:-3]
    groups.insert(0, whole)
    text = thousands.join(groups)
    if places:
        text += decimal_point + frac.ljust(places, "0")
    prefix = currency_symbol(currency) if symbol is None else symbol
    return f"{sign}{prefix}{text}"
