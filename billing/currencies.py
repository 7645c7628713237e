"""Currency codes, exchange rates and the conversion of amounts: pure, no ORM.

A rate is exact decimal text: how many home-currency units one unit of the
foreign currency is worth (1.0850 for EUR when the home currency is USD).
A converted amount is ``original x rate`` rounded once, to the nano-unit,
half-even: the storage quantum of openchargeback.money, so the conversion
adds no rounding of its own at cent level (statements still round once, per
statement line). See docs/decisions/0007-currencies.md.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation

from openchargeback.money import MoneyError, format_money, from_nanos, to_nanos

# Active ISO 4217 codes (2024), without the precious metals and testing codes
# (XAU, XAG, XPD, XPT, XDR, XSU, XUA, XBA-XBD, XTS, XXX): nothing is billed in them.
_CODES = """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV
    BRL BSD BTN BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE
    CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD
    HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD
    KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV
    MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB
    RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT
    TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV WST XAF
    XCD XCG XOF XPF YER ZAR ZMW ZWG ZWL
"""
ISO_4217 = frozenset(_CODES.split())

RATE_MAX_PLACES = 12
RATE_MAX_LENGTH = 40
_CODE = re.compile(r"^[A-Za-z]{3}$")
# Wide enough for any int64 nano amount times any rate that fits 40 characters.
_EXACT = Context(prec=80)


class CurrencyError(ValueError):
    """A currency code or rate people typed is not usable: one line."""


def parse_currency(text: str, *, home: str) -> str:
    """'eur ' -> 'EUR'; refuses malformed and unknown codes and the home currency."""
    code = text.strip()
    if not _CODE.match(code):
        raise CurrencyError(f"{text!r} is not a currency code (three letters, e.g. EUR)")
    code = code.upper()
    if code not in ISO_4217:
        raise CurrencyError(f"{code} is not an ISO 4217 currency code")
    if code == home.upper():
        raise CurrencyError(
            f"{code} is the home currency; only other currencies need an exchange rate"
        )
    return code


def parse_rate(text: str) -> str:
    """An exchange rate as exact decimal text ('1.0850'); refuses non-numbers,
    zero and negative rates, and more than RATE_MAX_PLACES decimal places."""
    raw = text.strip()
    try:
        value = Decimal(raw)
    except (InvalidOperation, ArithmeticError):
        raise CurrencyError(f"rate {text!r} is not a number (write e.g. 1.0850)") from None
    if not value.is_finite():
        raise CurrencyError(f"rate {text!r} is not a finite number")
    if value <= 0:
        raise CurrencyError(f"rate {raw} must be above zero")
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int)  # finite
    if -exponent > RATE_MAX_PLACES:
        raise CurrencyError(f"rate {raw} has more than {RATE_MAX_PLACES} decimal places")
    canonical = format(value, "f")
    if len(canonical) > RATE_MAX_LENGTH:
        raise CurrencyError(f"rate {raw} is too long")
    return canonical


def same_rate(a: str, b: str) -> bool:
    """Two rate texts with the same value ('1.085' and '1.0850')."""
    return bool(a) and bool(b) and Decimal(a) == Decimal(b)


def convert(amount: Decimal, rate: str) -> Decimal:
    """`amount` (foreign currency) in the home currency: amount x rate, rounded
    half-even to the nano-unit (the only rounding a conversion does)."""
    nanos = to_nanos(amount)
    converted = _EXACT.multiply(Decimal(nanos), Decimal(rate))
    result = int(converted.to_integral_value(rounding=ROUND_HALF_EVEN))
    if abs(result) > 2**63 - 1:
        raise MoneyError(f"{amount} at {rate} is too large")
    return from_nanos(result)


def describe(
    amount: Decimal,
    currency: str,
    rate: str,
    home: str,
    *,
    thousands: str = ",",
    decimal_point: str = ".",
) -> str:
    """'EUR 100.00 at 1.0850 USD/EUR' (the original amount rounded for display)."""
    shown = format_money(
        amount, symbol=f"{currency} ", thousands=thousands, decimal_point=decimal_point
    )
    return f"{shown} at {rate} {home}/{currency}"


__all__ = [
    "ISO_4217",
    "CurrencyError",
    "convert",
    "describe",
    "parse_currency",
    "parse_rate",
    "same_rate",
]
