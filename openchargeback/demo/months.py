"""A sample month: ``YYYY-MM`` parsed (the samples' own range), its bounds and
the months either side."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from billing.errors import BillingError
from billing.periods import year_month


def parse_month(text: str) -> tuple[int, int]:
    """``"2026-09"`` -> ``(2026, 9)``; :class:`ValueError` for anything else."""
    try:
        year, month = year_month(text)
    except BillingError:
        year = month = 0
    if not 1970 <= year <= 9998:  # sample months start with the Unix epoch and have a next
        raise ValueError(f"{text!r} is not a month in YYYY-MM form (e.g. 2026-09)")
    return year, month


@dataclass(frozen=True)
class Month:
    year: int
    month: int

    @property
    def start(self) -> datetime:
        return datetime(self.year, self.month, 1, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        return self.next().start

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    def next(self) -> Month:
        return Month(self.year + self.month // 12, self.month % 12 + 1)

    def previous(self) -> Month:
        return Month(self.year - (self.month == 1), (self.month - 2) % 12 + 1)
