"""Storage quota reports (CSV or JSON) into TB-month :class:`~ingest.usage.records.Usage`.

:func:`read_quotas` reads one report a storage system exports (quota name,
bytes used, optionally a date and a tier per row) and returns one
``Usage(resource="storage")`` record per quota per billed day of the period,
plus a :class:`QuotaSummary`. No ORM; pricing, the free allowance and the
quota -> PI/project mapping happen later, from these records. Reading the
same file twice gives the same records.

(A little over 600 lines: the format below is the reader's specification and
stays next to the code that implements it.)

Format
    JSON if the first non-blank character is ``[`` or ``{`` (a list of
    objects, or ``{"quotas": [...]}``), otherwise CSV with a header line
    (comma-separated; a header without commas may use tabs or semicolons).
    UTF-8, with or without a BOM; gzip-compressed files are recognised by
    their magic bytes. Column names and JSON keys match case-insensitively,
    ignoring spaces, underscores and dashes:

    * quota name: ``quota_name``, ``name``, ``path`` or ``quota`` (the first
      present in that order: many exports also have a ``quota`` column that is
      the size limit, so a name or path column wins over it);
    * size: ``bytes_used``, ``used_bytes``, ``bytes`` or ``used``;
    * optional ``date`` or ``day``: ``YYYY-MM-DD``, or an ISO timestamp whose
      date part is used as written (no time-zone conversion);
    * optional ``tier``: the storage tier, i.e. the rate card's service; blank
      means ``default_tier``.

    Sizes are a whole number of bytes, or an exact decimal with a unit --
    ``B``, ``KB``, ``MB``, ``GB``, ``TB``, ``PB`` (powers of 1000) or ``KiB``,
    ``MiB``, ``GiB``, ``TiB``, ``PiB`` (powers of 1024), any case, optional
    space: ``"12.5 TB"`` is 12,500,000,000,000 bytes. The result must be a
    whole number of bytes and not negative. In JSON a size is an integer or
    such a string; a JSON number with a fraction or exponent is refused
    rather than rounded.

Semantics
    Undated report (no row has a date): one size for the whole month; every
    day of the period bills that size. A quota may appear only once.

    Dated report (daily snapshots; every row has a date): each day of the
    month bills the latest snapshot of that quota on or before that day, so
    a missing day repeats the previous snapshot. Days before a quota's first
    snapshot are not billed (the quota did not exist yet). The latest
    snapshot dated before the month is the size on day 1; snapshots after
    the month are ignored. Both are counted in the summary. To stop billing
    a deleted quota, report it with 0 bytes. A quota may have one snapshot
    per date. Each snapshot carries its own tier, so a quota moved between
    tiers bills each day under the tier of the snapshot in force that day.

    A report mixing dated and undated rows is refused.

    Each billed day yields ``Usage(resource="storage", account=<quota name>,
    service=<tier>, qos="", day=<day>, quantity=Fraction(bytes, BYTES_PER_TB *
    days_in_month), jobs=0)``; days at 0 bytes yield nothing. Records are
    sorted by (account, service, day). A quota of 12.5 TB all through March
    gives 31 records that sum to exactly ``Fraction(25, 2)`` TB-months.

Errors
    Problems a user can cause raise :class:`~ingest.focus.errors.IngestError`
    with one line naming the file, the CSV line (or the JSON item, counted
    from 1 within the list: ``item 3``) and the column or key. Row problems
    are collected and the first five shown, then ``(and N more)``; nothing
    is returned when there is any.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import zlib
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path
from typing import Any

from billing.periods import days_in_month, month_of, month_start
from ingest.focus.errors import IngestError
from ingest.focus.streams import GZIP_MAGIC
from ingest.usage.records import BYTES_PER_TB, Usage

# A quota report is a few thousand rows; this guards against gzip bombs.
MAX_REPORT_BYTES = 256 * 1024**2
MAX_ERRORS_SHOWN = 5

UNITS: dict[str, int] = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "pb": 1000**5,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
    "pib": 1024**5,
}

# Field -> accepted names (normalised), in order of preference.
FIELDS: dict[str, tuple[str, ...]] = {
    "quota": ("quotaname", "name", "path", "quota"),
    "size": ("bytesused", "usedbytes", "bytes", "used"),
    "date": ("date", "day"),
    "tier": ("tier",),
}
_KNOWN = frozenset(name for names in FIELDS.values() for name in names)
_SPELLED = {
    "quota": "quota_name, name, path or quota",
    "size": "bytes_used, used_bytes, bytes or used",
}

_SIZE_RE = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-z]*)", re.IGNORECASE)
_DATE_RE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})(?:[T ].*)?")
_NOT_BYTES = "not a whole number of bytes"


@dataclass(frozen=True)
class QuotaSummary:
    """What one report held and what it bills for the period."""

    period: str
    days: int  # days in the period month
    rows: int  # data rows (CSV) or items (JSON)
    quotas: int  # distinct quota names in the report
    quotas_billed: int  # quotas with at least one billed day
    dated: bool  # daily snapshots (True) or one size for the month
    snapshots_before_period: int
    snapshots_after_period: int
    tb_months: Fraction
    largest_quota: str  # the quota with the largest size billed on any day; "" if none
    largest_bytes: int
    tiers: tuple[str, ...]  # tiers billed, sorted

    @property
    def snapshots_outside_period(self) -> int:
        return self.snapshots_before_period + self.snapshots_after_period


@dataclass(frozen=True)
class _Row:
    position: int  # line number (CSV) or item number (JSON), for ordering
    where: str  # "line 4" / "item 3"
    quota: str
    quota_label: str | None
    size: int
    day: date | None
    date_label: str | None
    tier: str


@dataclass
class _Errors:
    name: str
    found: list[tuple[int, int, str]]

    def add(self, position: int, where: str, label: str | None, problem: str) -> None:
        place = f"{where}, {label}" if label else where
        self.found.append((position, len(self.found), f"{self.name}, {place}: {problem}"))

    def raise_any(self) -> None:
        if not self.found:
            return
        self.found.sort()
        shown = "; ".join(text for _, _, text in self.found[:MAX_ERRORS_SHOWN])
        more = len(self.found) - MAX_ERRORS_SHOWN
        raise IngestError(f"{shown} (and {more} more)" if more > 0 else shown)


def parse_size(text: str) -> int:
    """``"12.5 TB"`` -> ``12_500_000_000_000``; ``"500 GiB"`` -> ``536_870_912_000``.

    A bare number is bytes. Raises :class:`ValueError` whose message says what
    is wrong (without the value) for anything that is not a whole,
    non-negative number of bytes.
    """
    text = text.strip()
    negative = text.startswith("-")
    match = _SIZE_RE.fullmatch(text[1:].lstrip() if negative else text)
    if match is None or len(text) > 64:
        raise ValueError(_NOT_BYTES)
    number, unit = match.groups()
    multiplier = UNITS.get(unit.lower() or "b")
    if multiplier is None:
        if unit.lower().endswith("b"):
            raise ValueError(
                f"unknown unit {unit!r} (use B, KB, MB, GB, TB, PB or KiB, MiB, GiB, TiB, PiB)"
            )
        raise ValueError(_NOT_BYTES)
    if negative:
        raise ValueError("negative size")
    try:
        numerator, denominator = Decimal(number).as_integer_ratio()
    except (InvalidOperation, ValueError):
        raise ValueError(_NOT_BYTES) from None
    whole, remainder = divmod(numerator * multiplier, denominator)
    if remainder:
        raise ValueError(_NOT_BYTES)
    return whole


def read_quotas(
    path: Path, *, name: str, period: str, default_tier: str
) -> tuple[list[Usage], QuotaSummary]:
    """Read a quota report; bill ``period`` ("YYYY-MM") in TB-months.

    ``name`` is the file name shown in messages. Raises
    :class:`~ingest.focus.errors.IngestError` for anything wrong with the file.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(2)
            fh.seek(0)
            if head == GZIP_MAGIC:
                with gzip.GzipFile(fileobj=fh, mode="rb") as gz:
                    data = gz.read(MAX_REPORT_BYTES + 1)
            else:
                data = fh.read(MAX_REPORT_BYTES + 1)
    except FileNotFoundError:
        raise IngestError(f"{name}: no such file") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise IngestError(f"{name}: cannot read the file ({exc})") from None
    if len(data) > MAX_REPORT_BYTES:
        raise IngestError(f"{name}: more than {MAX_REPORT_BYTES:,} bytes; not a quota report")
    return parse_quotas(data, name=name, period=period, default_tier=default_tier)


def parse_quotas(
    data: bytes, *, name: str, period: str, default_tier: str
) -> tuple[list[Usage], QuotaSummary]:
    """:func:`read_quotas` on the (uncompressed) bytes of a report."""
    month = _period_month(period)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if not data.strip():
        raise IngestError(f"{name}: the file is empty")
    if b"\x00" in data:
        raise IngestError(f"{name}: binary content, not a quota report")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise IngestError(f"{name}, line {line}: not UTF-8 text") from None
    errors = _Errors(name, [])
    tier = default_tier.strip()
    if text.lstrip()[:1] in ("[", "{"):
        rows, count = _json_rows(text, name, tier, errors)
    else:
        rows, count = _csv_rows(text, name, tier, errors)
    if count == 0:
        raise IngestError(f"{name}: no quota rows; nothing to convert")
    dated = _check(rows, errors)
    errors.raise_any()
    return _bill(rows, count, dated, month)


def _period_month(period: str) -> date:
    return month_start(period, error=IngestError)


def _normal(key: str) -> str:
    return re.sub(r"[\s_\-]+", "", key.strip().lstrip("\ufeff")).lower()


def _choose(normalised: dict[str, str]) -> dict[str, str]:
    """Normalised name -> original, to field -> original name (by preference)."""
    chosen: dict[str, str] = {}
    for field, accepted in FIELDS.items():
        for candidate in accepted:
            if candidate in normalised:
                chosen[field] = normalised[candidate]
                break
    return chosen


# --- CSV ---------------------------------------------------------------------


def _csv_rows(text: str, name: str, default_tier: str, errors: _Errors) -> tuple[list[_Row], int]:
    first = next((line for line in text.splitlines() if line.strip()), "")
    delimiter = ","
    if "," not in first:
        delimiter = "\t" if "\t" in first else ";" if ";" in first else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    records = _records(reader, name)
    first_record = next(records, None)
    if first_record is None:
        raise IngestError(f"{name}: the file is empty")
    header_line, header = first_record
    labels = [cell.strip().lstrip("\ufeff").strip() for cell in header]
    by_normal: dict[str, str] = {}
    index: dict[str, int] = {}
    for i, label in enumerate(labels):
        key = _normal(label)
        if key in by_normal and key in _KNOWN:
            raise IngestError(
                f"{name}, line {header_line}: columns {index[key] + 1} ({by_normal[key]}) "
                f"and {i + 1} ({label}) are the same column"
            )
        by_normal[key] = label
        index[key] = i
    chosen = _choose(by_normal)
    for field in ("quota", "size"):
        if field not in chosen:
            what = "quota name" if field == "quota" else "size"
            raise IngestError(
                f"{name}, line {header_line}: no {what} column ({_SPELLED[field]}); "
                f"the header has {', '.join(labels)}"
            )
    columns = {field: index[_normal(label)] for field, label in chosen.items()}
    rows: list[_Row] = []
    count = 0
    for line, record in records:
        count += 1
        where = f"line {line}"
        if len(record) > len(labels):
            errors.add(
                line,
                where,
                None,
                f"{len(record)} fields, but the header has {len(labels)} "
                "(quote values that contain the delimiter)",
            )
            continue
        cells = record + [""] * (len(labels) - len(record))
        values: dict[str, tuple[str | None, Any]] = {
            field: (f"column {chosen[field]}", cells[i].strip()) for field, i in columns.items()
        }
        row = _row(line, where, values, default_tier, errors)
        if row is not None:
            rows.append(row)
    return rows, count


def _records(reader: Any, name: str) -> Iterator[tuple[int, list[str]]]:
    """(first physical line, fields) for each non-blank record."""
    end = 0
    try:
        for record in reader:
            start, end = end + 1, reader.line_num
            if any(cell.strip() for cell in record):
                yield start, record
    except csv.Error as exc:
        raise IngestError(f"{name}, line {reader.line_num}: not valid CSV ({exc})") from None


# --- JSON --------------------------------------------------------------------


def _no_constant(value: str) -> Any:
    raise ValueError(f"{value} is not a number")


def _json_rows(text: str, name: str, default_tier: str, errors: _Errors) -> tuple[list[_Row], int]:
    try:
        # Decimal, not float: a fractional number is refused below, never rounded.
        document = json.loads(text, parse_float=Decimal, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise IngestError(
            f"{name}, line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg})"
        ) from None
    except ValueError as exc:
        raise IngestError(f"{name}: not valid JSON ({exc})") from None
    items = document
    if isinstance(document, dict):
        keys = {_normal(str(key)): key for key in document}
        if "quotas" not in keys or not isinstance(document[keys["quotas"]], list):
            raise IngestError(f'{name}: a JSON object needs a "quotas" list')
        items = document[keys["quotas"]]
    if not isinstance(items, list):
        raise IngestError(f"{name}: JSON must be a list of quotas or an object with a quota list")
    rows: list[_Row] = []
    for number, item in enumerate(items, start=1):
        where = f"item {number}"
        if not isinstance(item, dict):
            errors.add(number, where, None, f"not an object: {_show(item)}")
            continue
        by_normal: dict[str, str] = {}
        clash = False
        for key in item:
            normal = _normal(str(key))
            if normal in by_normal and normal in _KNOWN:
                errors.add(number, where, None, f"keys {by_normal[normal]} and {key} clash")
                clash = True
            by_normal[normal] = str(key)
        if clash:
            continue
        values: dict[str, tuple[str | None, Any]] = {
            field: (f"key {key}", item[key]) for field, key in _choose(by_normal).items()
        }
        # Name the key in the mixed dated/undated error even where it is absent.
        values.setdefault("date", ("key date", None))
        row = _row(number, where, values, default_tier, errors)
        if row is not None:
            rows.append(row)
    return rows, len(items)


def _show(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# --- rows --------------------------------------------------------------------


def _row(
    position: int,
    where: str,
    values: dict[str, tuple[str | None, Any]],
    default_tier: str,
    errors: _Errors,
) -> _Row | None:
    """A validated row, or None after recording its problems."""
    before = len(errors.found)

    quota = ""
    quota_label, raw_quota = values.get("quota", (None, None))
    if "quota" not in values:
        errors.add(position, where, None, f"no quota name (key {_SPELLED['quota']})")
    elif isinstance(raw_quota, int) and not isinstance(raw_quota, bool):
        quota = str(raw_quota)
    elif isinstance(raw_quota, str) and raw_quota.strip():
        quota = raw_quota.strip()
    elif raw_quota is None or raw_quota == "" or isinstance(raw_quota, str):
        errors.add(position, where, quota_label, "empty quota name")
    else:
        errors.add(position, where, quota_label, f"not a quota name: {_show(raw_quota)}")

    size = 0
    size_label, raw_size = values.get("size", (None, None))
    if "size" not in values:
        errors.add(position, where, None, f"no size (key {_SPELLED['size']})")
    elif raw_size is None or (isinstance(raw_size, str) and not raw_size.strip()):
        errors.add(position, where, size_label, "empty size; give 0 for an empty quota")
    elif isinstance(raw_size, bool):
        errors.add(position, where, size_label, f"{_NOT_BYTES}: {_show(raw_size)}")
    elif isinstance(raw_size, int):
        if raw_size < 0:
            errors.add(position, where, size_label, f"negative size: {raw_size}")
        size = raw_size
    elif isinstance(raw_size, Decimal):
        errors.add(
            position,
            where,
            size_label,
            "a JSON number with a fraction or exponent; give bytes as an integer, "
            f'or a string with a unit such as "12.5 TB": {raw_size}',
        )
    elif isinstance(raw_size, str):
        try:
            size = parse_size(raw_size)
        except ValueError as exc:
            errors.add(position, where, size_label, f"{exc}: {raw_size.strip()[:40]!r}")
    else:
        errors.add(position, where, size_label, f"{_NOT_BYTES}: {_show(raw_size)}")

    day: date | None = None
    date_label, raw_date = values.get("date", (None, None))
    if isinstance(raw_date, str) and raw_date.strip():
        day = _parse_date(raw_date.strip())
        if day is None:
            errors.add(
                position,
                where,
                date_label,
                f"not a date (YYYY-MM-DD or an ISO timestamp): {raw_date.strip()[:40]!r}",
            )
    elif raw_date is not None and not isinstance(raw_date, str):
        errors.add(position, where, date_label, f"not a date: {_show(raw_date)}")

    tier = default_tier
    tier_label, raw_tier = values.get("tier", (None, None))
    if isinstance(raw_tier, str) and raw_tier.strip():
        tier = raw_tier.strip()
    elif raw_tier is not None and not isinstance(raw_tier, str):
        errors.add(position, where, tier_label, f"not a tier name: {_show(raw_tier)}")
    elif not tier:
        errors.add(position, where, tier_label, "no storage tier, and no default tier is set")

    if len(errors.found) > before:
        return None
    return _Row(position, where, quota, quota_label, size, day, date_label, tier)


def _parse_date(text: str) -> date | None:
    match = _DATE_RE.fullmatch(text)
    if match is None:
        return None
    try:
        day = date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
        if len(text) > 10:
            datetime.fromisoformat(text)  # the time part must be a time, too
    except ValueError:
        return None
    return day


def _also(where: str) -> str:
    return where if where.startswith("item") else f"on {where}"


def _check(rows: Sequence[_Row], errors: _Errors) -> bool:
    """Refuse mixed and duplicate rows; True when the report is dated."""
    if not rows:
        return False
    first = rows[0]
    odd = next((row for row in rows if (row.day is None) != (first.day is None)), None)
    if odd is not None:
        if odd.day is None:
            problem = f"no date, but {first.where} has one"
        else:
            problem = f"a date, but {first.where} has none"
        errors.add(
            odd.position,
            odd.where,
            odd.date_label,
            f"{problem}; give every row a date (daily snapshots) or none (one size for the month)",
        )
        return False
    seen: dict[tuple[str, date | None], _Row] = {}
    for row in rows:
        earlier = seen.setdefault((row.quota, row.day), row)
        if earlier is row:
            continue
        if row.day is None:
            errors.add(
                row.position,
                row.where,
                row.quota_label,
                f"quota {row.quota!r} is also {_also(earlier.where)}",
            )
        else:
            errors.add(
                row.position,
                row.where,
                row.date_label,
                f"a second snapshot of quota {row.quota!r} for {row.day.isoformat()} "
                f"(the first is {_also(earlier.where)})",
            )
    return first.day is not None


# --- billing days ------------------------------------------------------------


def _bill(
    rows: Sequence[_Row], count: int, dated: bool, month: date
) -> tuple[list[Usage], QuotaSummary]:
    days = days_in_month(month_of(month))
    last = month + timedelta(days=days - 1)
    snapshots: dict[str, list[_Row]] = defaultdict(list)
    for row in rows:
        snapshots[row.quota].append(row)
    before = after = 0
    usages: list[Usage] = []
    largest = ("", 0)
    for quota, quota_rows in snapshots.items():
        in_force: _Row | None = None
        on_day: dict[date, _Row] = {}
        if not dated:
            in_force = quota_rows[0]
        for row in sorted(quota_rows, key=lambda r: r.day or month):
            if row.day is None:
                continue
            if row.day < month:
                before += 1
                in_force = row  # sorted, so the latest before the month wins
            elif row.day > last:
                after += 1
            else:
                on_day[row.day] = row
        for offset in range(days):
            day = month + timedelta(days=offset)
            in_force = on_day.get(day, in_force)
            if in_force is None or in_force.size == 0:
                continue
            usages.append(
                Usage(
                    resource="storage",
                    account=quota,
                    service=in_force.tier,
                    qos="",
                    day=day,
                    quantity=Fraction(in_force.size, BYTES_PER_TB * days),
                    jobs=0,
                )
            )
            if (in_force.size, largest[0]) > (largest[1], quota):
                largest = (quota, in_force.size)
    usages.sort(key=lambda u: (u.account, u.service, u.day))
    summary = QuotaSummary(
        period=month_of(month),
        days=days,
        rows=count,
        quotas=len(snapshots),
        quotas_billed=len({u.account for u in usages}),
        dated=dated,
        snapshots_before_period=before,
        snapshots_after_period=after,
        tb_months=sum((u.quantity for u in usages), Fraction(0)),
        largest_quota=largest[0],
        largest_bytes=largest[1],
        tiers=tuple(sorted({u.service for u in usages})),
    )
    return usages, summary
