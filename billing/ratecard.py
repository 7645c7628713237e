"""Which sources the site's own rate card prices. Reads only.

Their difference from list price is an *institutional subsidy*; every other
source is a provider's export, whose difference is the *provider discount*
(:func:`billing.basis.difference_kind`, docs/decisions/0006-cost-basis.md).
Billing cannot tell which is which: the app that prices usage by the rate
card (ingest: the Slurm and storage converters) registers how, from its
AppConfig.ready(), as the statements and journals apps register their
finalize checks (docs/decisions/0004-app-boundaries.md).
"""

from __future__ import annotations

from collections.abc import Callable

RateCardFinder = Callable[[], frozenset[str]]
RATE_CARD_FINDERS: dict[str, RateCardFinder] = {}


def register_rate_card_finder(name: str, finder: RateCardFinder) -> None:
    """Add a way to find rate-card sources (ingest registers its converters')."""
    RATE_CARD_FINDERS[name] = finder


def rate_card_sources() -> frozenset[str]:
    """Slugs of the sources priced by the rate card, by every registered finder."""
    found: frozenset[str] = frozenset()
    for finder in RATE_CARD_FINDERS.values():
        found |= finder()
    return found
