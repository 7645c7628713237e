"""Slurm accounting (``sacct --allocations --parsable2``) into daily usage. Pure.

:func:`read_sacct` reads the text of one ``sacct`` run (or several runs
concatenated) and returns :class:`~ingest.usage.records.Usage` records: CPU-hours
and GPU-hours per account, partition, QOS and local calendar day of the
billing month, plus a :class:`SacctSummary` that accounts for every line.
No ORM and no I/O beyond iterating over the given lines; pricing, account
mapping and FOCUS writing happen later, from the records.

Problems a user can cause raise :class:`~ingest.focus.parsers.IngestError` with
one line naming the file, the line and the field; up to five are shown,
and nothing is returned when there is any.

Semantics, in the order a line is looked at:

* Lines are ``|``-separated; one trailing ``|`` (``--parsable``) is
  tolerated. Blank lines are ignored. If the first non-blank line holds
  the field names (any order, any case, extra columns allowed) it gives the
  column order, otherwise the order is :data:`FIELDS`. The same header
  repeated later (two runs concatenated) is skipped.
* Job steps (``123.batch``, ``123.0``: output without ``--allocations``)
  are counted in ``job_steps`` and skipped: the allocation line already
  holds the whole job, billing its steps too would count it twice.
* A line repeated exactly (same JobID, same text) counts once
  (``duplicate_lines``); the same JobID with other values is an error.
* The state's first word decides (``CANCELLED by 1234`` is ``CANCELLED``).
  States outside ``billable_states``, unknown ones included, are counted in
  ``skipped_by_state``; so are FAILED jobs shorter than
  ``failed_min_seconds``. Only billable lines are checked further.
* A job uses its allocation during ``[Start, Start + Elapsed)`` (Elapsed
  leaves out time suspended); End is only checked and reported. Only the
  part inside the period counts (naive local time, as sacct prints it),
  split at each local midnight. Jobs that ran for zero seconds, or on zero
  CPUs and GPUs, are counted in ``jobs_without_usage``; jobs that ran
  entirely outside the month in ``jobs_outside_period``.
* CPU usage is AllocCPUS x seconds; GPU usage is the GPU count in AllocTRES
  x seconds (the untyped ``gres/gpu=N`` when present, otherwise the sum of
  the typed ``gres/gpu:TYPE=N``). Each record sums one resource for one
  (account, partition, QOS, day); ``jobs`` counts the jobs in it.

Every non-blank line other than a header ends up in exactly one of
``jobs_billed``, ``skipped_by_state``, ``jobs_outside_period``,
``jobs_without_usage``, ``job_steps`` and ``duplicate_lines``.

Seconds are whole integers until the end; each record's quantity is one
exact :class:`~fractions.Fraction` of hours.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from fractions import Fraction
from types import MappingProxyType

from ingest.focus.parsers import IngestError
from ingest.usage.records import SECONDS_PER_HOUR, Resource, Usage

FIELDS = (
    "JobID",
    "Account",
    "Partition",
    "QOS",
    "AllocCPUS",
    "AllocTRES",
    "Elapsed",
    "Start",
    "End",
    "State",
)
SACCT_FORMAT = ",".join(FIELDS)
# sacct prints timestamps as SLURM_TIME_FORMAT says; "standard" is the ISO
# form read here. Whoever runs sacct_command() sets this in its environment.
SACCT_ENV: Mapping[str, str] = MappingProxyType({"SLURM_TIME_FORMAT": "standard"})

DEFAULT_BILLABLE_STATES = ("COMPLETED", "TIMEOUT", "OUT_OF_MEMORY", "FAILED")
DEFAULT_FAILED_MIN_SECONDS = 5 * 60

SECONDS_PER_DAY = 86_400
_MAX_ERRORS_SHOWN = 5
# Start/End values sacct prints for a time it does not have.
_NO_TIME = frozenset({"Unknown", "None", ""})
# Cache entry for a value that did not parse.
_BAD = -1
# The line number lives in the low bits of the duplicate-check value.
_LINE_BITS = 40
# ":MM:SS" -> seconds: the tail of timestamps and durations, checked and
# converted in one lookup.
_MIN_SEC = {f":{m:02d}:{s:02d}": m * 60 + s for m in range(60) for s in range(60)}
# Durations also come as a bare "MM:SS" (older sacct, under an hour). Only a
# five-character value can match these keys, since the lookup is of the last
# six characters.
_DURATION_TAILS = _MIN_SEC | {key[1:]: value for key, value in _MIN_SEC.items()}


@dataclass(frozen=True)
class SacctOptions:
    """What is billable. ``failed_min_seconds`` applies to FAILED jobs only."""

    billable_states: frozenset[str]
    failed_min_seconds: int

    def __post_init__(self) -> None:
        if self.failed_min_seconds < 0:
            raise ValueError("failed_min_seconds must not be negative")
        # sacct prints states in capitals; accept the option in any case.
        object.__setattr__(
            self, "billable_states", frozenset(s.strip().upper() for s in self.billable_states)
        )

    @classmethod
    def default(cls) -> SacctOptions:
        return cls(
            billable_states=frozenset(DEFAULT_BILLABLE_STATES),
            failed_min_seconds=DEFAULT_FAILED_MIN_SECONDS,
        )


@dataclass(frozen=True)
class SacctSummary:
    """What happened to each line; hours are the totals of the records.

    ``lines`` counts the non-blank lines other than headers.
    ``first_start`` / ``last_end`` span the billed jobs, unclipped (End as
    sacct printed it, or Start + Elapsed when it printed none).
    """

    lines: int = 0
    jobs_billed: int = 0
    skipped_by_state: dict[str, int] = field(default_factory=dict)
    jobs_outside_period: int = 0
    jobs_without_usage: int = 0
    job_steps: int = 0
    duplicate_lines: int = 0
    cpu_hours: Fraction = Fraction(0)
    gpu_hours: Fraction = Fraction(0)
    first_start: datetime | None = None
    last_end: datetime | None = None


def sacct_command(period: str) -> list[str]:
    """The argv that writes period ``YYYY-MM`` in the format :func:`read_sacct` reads.

    Without ``--state``, ``--starttime``/``--endtime`` select every job that
    was eligible or running at some moment in the window, not only the jobs
    that started in it (sacct(1), DEFAULT TIME WINDOW and the ``--state``
    note). So a job that started on the last evening of the previous month
    and ended in this one is listed, with its true Start and Elapsed, and so
    is one that runs on into the next month. :func:`read_sacct` bills only
    the part of each job inside the month, so consecutive months bill every
    second once and the same output can be re-read for either month; jobs
    that were listed but ran wholly outside the month (eligible in the window,
    started after it) are only counted. ``--truncate`` is not used: clipping
    here keeps the file a faithful copy of the accounting data.

    States are filtered when reading, not with ``--state`` (which would
    change the window's meaning to "in this state during the window").
    Run it after the month has ended, with :data:`SACCT_ENV` in the
    environment and the cluster's time zone, since sacct prints local time.
    Jobs still running then show as RUNNING, which is not billable by
    default: their part of the ended month is only billed if RUNNING is
    added to the billable states (its Elapsed is the time run so far).
    """
    first, following = _month(period)
    return [
        "sacct",
        "--allocations",
        "--parsable2",
        "--noheader",
        "--allusers",
        "--starttime",
        f"{first.isoformat()}T00:00:00",
        "--endtime",
        f"{following.isoformat()}T00:00:00",
        "--format",
        SACCT_FORMAT,
    ]


def read_sacct(
    lines: Iterable[str], *, name: str, period: str, options: SacctOptions
) -> tuple[list[Usage], SacctSummary]:
    """Daily CPU and GPU usage in ``period`` (``YYYY-MM``) from sacct output.

    ``name`` is the file name used in error messages. Records are sorted by
    resource, account, service (partition), QOS and day.
    """
    first, following = _month(period)
    period_lo = first.toordinal() * SECONDS_PER_DAY
    period_hi = following.toordinal() * SECONDS_PER_DAY
    errors = _Errors(name)

    rows = iter(enumerate(lines, start=1))
    order: tuple[str, ...] = FIELDS
    first_line: list[tuple[int, str]] = []
    for lineno, raw in rows:
        text = raw.rstrip("\r\n")
        if not text.strip():
            continue
        found = _header(text, name, lineno)
        if found is None:
            first_line.append((lineno, raw))
        else:
            order = found
        break

    ncols = len(order)
    i_job = order.index("JobID")
    i_account = order.index("Account")
    i_partition = order.index("Partition")
    i_qos = order.index("QOS")
    i_cpus = order.index("AllocCPUS")
    i_tres = order.index("AllocTRES")
    i_elapsed = order.index("Elapsed")
    i_start = order.index("Start")
    i_end = order.index("End")
    i_state = order.index("State")

    billable = options.billable_states
    failed_min = options.failed_min_seconds

    # Values repeat a lot across jobs; parse each distinct one once. Times
    # are split into a head that repeats ("2025-03-04T10", "1-02") and the
    # ":MM:SS" tail, looked up in a fixed table; whole values would miss.
    state_cache: dict[str, str] = {}
    cpu_cache: dict[str, int] = {}
    gpu_cache: dict[str, int] = {}
    hour_cache: dict[str, int] = {}  # "YYYY-MM-DDTHH" -> seconds
    elapsed_cache: dict[str, int] = {}  # "HH", "D-HH" or "" (MM:SS) -> seconds
    min_sec = _MIN_SEC
    duration_tails = _DURATION_TAILS

    # JobID -> hash(text) << _LINE_BITS | line number. Equal 64-bit hashes
    # stand for equal text: keeping every line to compare would cost ~200 MB
    # for a million lines.
    seen: dict[str, int] = {}
    line_mask = (1 << _LINE_BITS) - 1
    # Sums live in one flat list per (account, partition, QOS) group, indexed
    # by day of the month: CPU seconds, GPU seconds, CPU jobs, GPU jobs. A
    # large dict keyed by (group, day) was three times slower: its lookups
    # miss the CPU cache.
    days = (following - first).days
    gpu_at, cpu_jobs_at, gpu_jobs_at = days, 2 * days, 3 * days
    groups = _Groups(days)
    group_of = groups.index
    sums = groups.sums
    skipped: dict[str, int] = {}
    n_lines = n_billed = n_outside = n_no_usage = n_steps = n_duplicates = 0
    first_start, last_end = period_hi, -1  # billed jobs start before period_hi
    error = errors.add

    for lineno, raw in itertools.chain(first_line, rows):
        text = raw.rstrip("\r\n")
        if not text:
            continue
        parts = text.split("|")
        if len(parts) != ncols:
            if len(parts) == ncols + 1 and not parts[-1]:
                parts.pop()
                text = text[:-1]
            elif len(parts) == 1 and not text.strip():
                continue
            else:
                n_lines += 1
                errors.add_line(
                    lineno, f"expected {ncols} fields separated by '|', found {len(parts)}"
                )
                continue
        jobid = parts[i_job]
        # Slurm job ids start with a digit; a header repeated by concatenating
        # two runs is skipped.
        if not jobid[:1].isdigit() and (again := _header(text, name, lineno)) is not None:
            if again == order:
                continue
            n_lines += 1
            errors.add_line(lineno, "a header with other columns than the first one")
            continue
        n_lines += 1
        if "." in jobid:
            n_steps += 1
            continue
        if not jobid.strip():
            error(lineno, "JobID", "empty", jobid)
            continue
        digest = hash(text)
        previous = seen.get(jobid)
        if previous is not None:
            if previous >> _LINE_BITS == digest:
                n_duplicates += 1
            else:
                errors.add_line(
                    lineno,
                    f"JobID {jobid} appears twice with different values: "
                    f"lines {previous & line_mask} and {lineno}",
                )
            continue
        seen[jobid] = (digest << _LINE_BITS) | lineno

        raw_state = parts[i_state]
        state = state_cache.get(raw_state)
        if state is None:
            words = raw_state.split(None, 1)
            state = state_cache[raw_state] = words[0].upper() if words else ""
        if not state:
            error(lineno, "State", "empty", raw_state)
            continue
        if state not in billable:
            skipped[state] = skipped.get(state, 0) + 1
            continue

        raw_elapsed = parts[i_elapsed]
        tail = duration_tails.get(raw_elapsed[-6:])
        head = None if tail is None else elapsed_cache.get(raw_elapsed[:-6])
        if head is not None and tail is not None:
            elapsed = head + tail
        else:
            elapsed = _parse_elapsed(raw_elapsed)
            if elapsed != _BAD and tail is not None:
                elapsed_cache[raw_elapsed[:-6]] = elapsed - tail
        if elapsed == _BAD:
            error(lineno, "Elapsed", "not a duration", raw_elapsed)
            continue
        if state == "FAILED" and elapsed < failed_min:
            skipped[state] = skipped.get(state, 0) + 1
            continue
        if not elapsed:
            n_no_usage += 1
            continue

        raw_start = parts[i_start]
        head = hour_cache.get(raw_start[:13])
        tail = min_sec.get(raw_start[13:])
        if head is not None and tail is not None:
            start = head + tail
        else:
            start = _seconds(raw_start, hour_cache)
        if start == _BAD:
            if raw_start.strip() in _NO_TIME:
                error(lineno, "Start", "no start time for a job that ran", raw_start)
            else:
                error(lineno, "Start", "not a timestamp (YYYY-MM-DDTHH:MM:SS)", raw_start)
            continue
        raw_end = parts[i_end]
        head = hour_cache.get(raw_end[:13])
        tail = min_sec.get(raw_end[13:])
        if head is not None and tail is not None:
            end = head + tail
        elif raw_end.strip() in _NO_TIME:
            end = start + elapsed
        else:
            end = _seconds(raw_end, hour_cache)
            if end == _BAD:
                error(lineno, "End", "not a timestamp (YYYY-MM-DDTHH:MM:SS)", raw_end)
                continue
        if end < start:
            error(lineno, "End", "before Start", raw_end)
            continue

        raw_cpus = parts[i_cpus]
        cpus = cpu_cache.get(raw_cpus)
        if cpus is None:
            cpus = cpu_cache[raw_cpus] = _parse_count(raw_cpus)
        if cpus == _BAD:
            error(lineno, "AllocCPUS", "not a whole number", raw_cpus)
            continue
        raw_tres = parts[i_tres]
        gpus = 0  # most jobs: a substring test is cheaper than a lookup
        if "gres/gpu" in raw_tres:
            counted = gpu_cache.get(raw_tres)
            if counted is None:
                counted = gpu_cache[raw_tres] = _parse_gpus(raw_tres)
            gpus = counted
        if gpus == _BAD:
            error(lineno, "AllocTRES", "GPU count is not a whole number", raw_tres)
            continue

        lo = start if start > period_lo else period_lo
        hi = start + elapsed
        if hi > period_hi:
            hi = period_hi
        if hi <= lo:
            n_outside += 1
            continue
        if not cpus and not gpus:
            n_no_usage += 1
            continue
        group_key = (parts[i_account], parts[i_partition], parts[i_qos])
        group = group_of.get(group_key)
        if group is None:
            group = groups.add(group_key)
        if group == _BAD:
            column = "Account" if not group_key[0].strip() else "Partition"
            value = group_key[0] if column == "Account" else group_key[1]
            error(lineno, column, "empty for a billable job", value)
            continue

        n_billed += 1
        if start < first_start:
            first_start = start
        if end > last_end:
            last_end = end
        acc = sums[group]
        # Seconds since the period began, split at each midnight.
        lo -= period_lo
        hi -= period_lo
        day = lo // SECONDS_PER_DAY
        if hi <= (day + 1) * SECONDS_PER_DAY:  # most jobs: within one day
            if cpus:
                acc[day] += cpus * (hi - lo)
                acc[cpu_jobs_at + day] += 1
            if gpus:
                acc[gpu_at + day] += gpus * (hi - lo)
                acc[gpu_jobs_at + day] += 1
            continue
        while lo < hi:
            midnight = (day + 1) * SECONDS_PER_DAY
            upto = hi if hi < midnight else midnight
            if cpus:
                acc[day] += cpus * (upto - lo)
                acc[cpu_jobs_at + day] += 1
            if gpus:
                acc[gpu_at + day] += gpus * (upto - lo)
                acc[gpu_jobs_at + day] += 1
            lo = upto
            day += 1

    if errors.count:
        errors.raise_()

    dates = [first + timedelta(days=d) for d in range(days)]
    ordered = sorted(range(len(groups.keys)), key=groups.keys.__getitem__)
    records: list[Usage] = []
    totals = {"cpu": 0, "gpu": 0}
    columns: tuple[tuple[Resource, int, int], ...] = (
        ("cpu", 0, cpu_jobs_at),
        ("gpu", gpu_at, gpu_jobs_at),
    )
    for resource, seconds_at, jobs_at in columns:
        for group in ordered:
            account, partition, qos = groups.keys[group]
            acc = sums[group]
            for day, on in enumerate(dates):
                seconds = acc[seconds_at + day]
                if seconds:
                    totals[resource] += seconds
                    quantity = Fraction(seconds, SECONDS_PER_HOUR)
                    jobs = acc[jobs_at + day]
                    records.append(Usage(resource, account, partition, qos, on, quantity, jobs))
    summary = SacctSummary(
        lines=n_lines,
        jobs_billed=n_billed,
        skipped_by_state=dict(sorted(skipped.items())),
        jobs_outside_period=n_outside,
        jobs_without_usage=n_no_usage,
        job_steps=n_steps,
        duplicate_lines=n_duplicates,
        cpu_hours=Fraction(totals["cpu"], SECONDS_PER_HOUR),
        gpu_hours=Fraction(totals["gpu"], SECONDS_PER_HOUR),
        first_start=_datetime(first_start) if n_billed else None,
        last_end=_datetime(last_end) if n_billed else None,
    )
    return records, summary


class _Errors:
    """The first few problems as one-line messages, and how many there were."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.shown: list[str] = []
        self.count = 0

    def add(self, lineno: int, column: str, problem: str, value: str) -> None:
        self.count += 1
        if len(self.shown) < _MAX_ERRORS_SHOWN:
            self.shown.append(
                f"{self.name}, line {lineno}, field {column}: {problem}: {value[:40]!r}"
            )

    def add_line(self, lineno: int, message: str) -> None:
        self.count += 1
        if len(self.shown) < _MAX_ERRORS_SHOWN:
            self.shown.append(f"{self.name}, line {lineno}: {message}")

    def raise_(self) -> None:
        more = self.count - len(self.shown)
        raise IngestError("; ".join(self.shown) + (f" (and {more} more)" if more > 0 else ""))


def _header(text: str, name: str, lineno: int) -> tuple[str, ...] | None:
    """The column order if ``text`` is a header line, else None."""
    names = text.removesuffix("|").split("|")
    lowered = [n.strip().lower() for n in names]
    if "jobid" not in lowered:
        return None  # JobID is never the text "JobID" in a data line
    canonical = {f.lower(): f for f in FIELDS}
    order = tuple(canonical.get(n, n) for n in lowered)
    missing = [f for f in FIELDS if f not in order]
    repeated = sorted({f for f in FIELDS if order.count(f) > 1})
    if missing:
        raise IngestError(f"{name}, line {lineno}: header lacks field(s) {', '.join(missing)}")
    if repeated:
        raise IngestError(f"{name}, line {lineno}: header repeats field(s) {', '.join(repeated)}")
    return order


def _month(period: str) -> tuple[date, date]:
    """First day of ``period`` and of the month after it."""
    text = period.strip()
    year, dash, month = text.partition("-")
    if not (dash and len(year) == 4 and len(month) == 2 and _digits(year) and _digits(month)):
        raise IngestError(f"period {period!r} is not a month in the form YYYY-MM")
    y, m = int(year), int(month)
    if not 1 <= m <= 12 or y < 1:
        raise IngestError(f"period {period!r} is not a month in the form YYYY-MM")
    return date(y, m, 1), (date(y + 1, 1, 1) if m == 12 else date(y, m + 1, 1))


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _parse_count(text: str) -> int:
    text = text.strip()
    return int(text) if _digits(text) else _BAD


def _parse_elapsed(text: str) -> int:
    """Seconds in a Slurm duration, or ``_BAD``.

    sacct prints ``[D-]HH:MM:SS`` (older releases ``MM:SS`` and ``MM:SS.mmm``);
    Slurm's own duration syntax also has ``D-HH`` and ``D-HH:MM``, read the
    same way here. Elapsed is kept in whole seconds, so a fraction is dropped.
    """
    text = text.strip()
    days = -1
    if "-" in text:
        head, _, text = text.partition("-")
        if not _digits(head):
            return _BAD
        days = int(head)
        parts = text.split(":")
        if len(parts) > 3:
            return _BAD
        parts += ["00"] * (3 - len(parts))
    else:
        parts = text.split(":")
        if len(parts) == 2:
            parts.insert(0, "0")
        elif len(parts) != 3:
            return _BAD
    hours, minutes, seconds = parts
    seconds, dot, fraction = seconds.partition(".")
    if dot and not _digits(fraction):
        return _BAD
    if not (_digits(hours) and _digits(minutes) and _digits(seconds)):
        return _BAD
    h, m, s = int(hours), int(minutes), int(seconds)
    if m > 59 or s > 59 or (days >= 0 and h > 23):
        return _BAD
    return ((max(days, 0) * 24 + h) * 60 + m) * 60 + s


def _parse_gpus(text: str) -> int:
    """GPUs in an AllocTRES list, or ``_BAD`` if a GPU count is not a number."""
    untyped = -1
    typed = 0
    for item in text.split(","):
        key, _, value = item.strip().partition("=")
        if key == "gres/gpu":
            if not _digits(value):
                return _BAD
            untyped = int(value)
        elif key.startswith("gres/gpu:"):
            if not _digits(value):
                return _BAD
            typed += int(value)
    return untyped if untyped >= 0 else typed


class _Groups:
    """(account, partition, QOS) groups, each with its flat list of daily sums.

    ``index`` maps the fields as printed to a group; values that differ only
    in surrounding blanks share one. ``_BAD`` marks an empty account or
    partition.
    """

    def __init__(self, days: int) -> None:
        self.days = days
        self.index: dict[tuple[str, str, str], int] = {}
        self.keys: list[tuple[str, str, str]] = []
        self.sums: list[list[int]] = []
        self._by_key: dict[tuple[str, str, str], int] = {}

    def add(self, raw: tuple[str, str, str]) -> int:
        account, partition, qos = (value.strip() for value in raw)
        key = (account, partition, qos)
        if not account or not partition:
            group = _BAD
        elif key in self._by_key:
            group = self._by_key[key]
        else:
            group = self._by_key[key] = len(self.keys)
            self.keys.append(key)
            self.sums.append([0] * (4 * self.days))
        self.index[raw] = group
        return group


def _seconds(text: str, hour_cache: dict[str, int]) -> int:
    """``YYYY-MM-DDTHH:MM:SS`` -> seconds since 0001-01-01 (naive), or ``_BAD``.

    Remembers the value of the text's date and hour in ``hour_cache``.
    """
    text = text.strip()
    # The length and separators keep fromisoformat to this one form (it also
    # reads time zones, fractions and week dates).
    if len(text) != 19 or text[10] != "T" or text[13] != ":" or text[16] != ":":
        return _BAD
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return _BAD
    hour = moment.toordinal() * SECONDS_PER_DAY + moment.hour * 3600
    tail = _MIN_SEC.get(text[13:])
    if tail is None:
        return _BAD
    hour_cache[text[:13]] = hour
    return hour + tail


def _datetime(seconds: int) -> datetime:
    days, rest = divmod(seconds, SECONDS_PER_DAY)
    return datetime.combine(date.fromordinal(days), datetime.min.time()) + timedelta(seconds=rest)
