"""The values in a line of sacct output, parsed: the billing month's bounds,
whole counts, Slurm durations, timestamps (naive local time, in seconds
since 0001-01-01) and the GPU count of an AllocTRES list. Pure; each parser
returns :data:`BAD` for a value it cannot read (the caller names the field).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from billing import periods
from ingest.focus.errors import IngestError

SECONDS_PER_DAY = 86_400
# Start/End values sacct prints for a time it does not have.
NO_TIME = frozenset({"Unknown", "None", ""})
# Cache entry for a value that did not parse.
BAD = -1
# ":MM:SS" -> seconds: the tail of timestamps and durations, checked and
# converted in one lookup.
MIN_SEC = {f":{m:02d}:{s:02d}": m * 60 + s for m in range(60) for s in range(60)}
# Durations also come as a bare "MM:SS" (older sacct, under an hour). Only a
# five-character value can match these keys, since the lookup is of the last
# six characters.
DURATION_TAILS = MIN_SEC | {key[1:]: value for key, value in MIN_SEC.items()}


def month_bounds(period: str) -> tuple[date, date]:
    """First day of ``period`` and of the month after it (an IngestError if
    ``period`` is not a month: :mod:`billing.periods`)."""
    return periods.month_bounds(period, error=IngestError)


def digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def parse_count(text: str) -> int:
    text = text.strip()
    return int(text) if digits(text) else BAD


def parse_elapsed(text: str) -> int:
    """Seconds in a Slurm duration, or ``BAD``.

    sacct prints ``[D-]HH:MM:SS`` (older releases ``MM:SS`` and ``MM:SS.mmm``);
    Slurm's own duration syntax also has ``D-HH`` and ``D-HH:MM``, read the
    same way here. Elapsed is kept in whole seconds, so a fraction is dropped.
    """
    text = text.strip()
    days = -1
    if "-" in text:
        head, _, text = text.partition("-")
        if not digits(head):
            return BAD
        days = int(head)
        parts = text.split(":")
        if len(parts) > 3:
            return BAD
        parts += ["00"] * (3 - len(parts))
    else:
        parts = text.split(":")
        if len(parts) == 2:
            parts.insert(0, "0")
        elif len(parts) != 3:
            return BAD
    hours, minutes, seconds = parts
    seconds, dot, fraction = seconds.partition(".")
    if dot and not digits(fraction):
        return BAD
    if not (digits(hours) and digits(minutes) and digits(seconds)):
        return BAD
    h, m, s = int(hours), int(minutes), int(seconds)
    if m > 59 or s > 59 or (days >= 0 and h > 23):
        return BAD
    return ((max(days, 0) * 24 + h) * 60 + m) * 60 + s


def parse_gpus(text: str) -> int:
    """GPUs in an AllocTRES list, or ``BAD`` if a GPU count is not a number."""
    untyped = -1
    typed = 0
    for item in text.split(","):
        key, _, value = item.strip().partition("=")
        if key == "gres/gpu":
            if not digits(value):
                return BAD
            untyped = int(value)
        elif key.startswith("gres/gpu:"):
            if not digits(value):
                return BAD
            typed += int(value)
    return untyped if untyped >= 0 else typed


def seconds_of(text: str, hour_cache: dict[str, int]) -> int:
    """``YYYY-MM-DDTHH:MM:SS`` -> seconds since 0001-01-01 (naive), or ``BAD``.

    Remembers the value of the text's date and hour in ``hour_cache``.
    """
    text = text.strip()
    # The length and separators keep fromisoformat to this one form (it also
    # reads time zones, fractions and week dates).
    if len(text) != 19 or text[10] != "T" or text[13] != ":" or text[16] != ":":
        return BAD
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return BAD
    hour = moment.toordinal() * SECONDS_PER_DAY + moment.hour * 3600
    tail = MIN_SEC.get(text[13:])
    if tail is None:
        return BAD
    hour_cache[text[:13]] = hour
    return hour + tail


def datetime_of(seconds: int) -> datetime:
    days, rest = divmod(seconds, SECONDS_PER_DAY)
    return datetime.combine(date.fromordinal(days), datetime.min.time()) + timedelta(seconds=rest)
