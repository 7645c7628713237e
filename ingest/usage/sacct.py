"""Slurm accounting (``sacct --allocations --parsable2``) into daily usage. Pure.

:func:`read_sacct` reads the text of one ``sacct`` run (or several runs
concatenated) and returns :class:`~ingest.usage.records.Usage` records: CPU-hours
and GPU-hours per account, partition, QOS and local calendar day of the
billing month, plus a :class:`SacctSummary` that accounts for every line.
No ORM and no I/O beyond iterating over the given lines; pricing, account
mapping and FOCUS writing happen later, from the records.

Problems a user can cause raise :class:`~ingest.focus.errors.IngestError` with
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

The field values are parsed in :mod:`ingest.usage.sacct_values`. This module
is a little over 600 lines because the semantics above and the reading steps
that implement them (``_LineReader``, one method per step) are kept together.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from fractions import Fraction
from types import MappingProxyType

from ingest.focus.errors import IngestError
from ingest.usage.records import SECONDS_PER_HOUR, Resource, Usage
from ingest.usage.sacct_values import (
    BAD,
    DURATION_TAILS,
    MIN_SEC,
    NO_TIME,
    SECONDS_PER_DAY,
    datetime_of,
    month_bounds,
    parse_count,
    parse_elapsed,
    parse_gpus,
    seconds_of,
)

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

_MAX_ERRORS_SHOWN = 5
# The line number lives in the low bits of the duplicate-check value.
_LINE_BITS = 40
_LINE_MASK = (1 << _LINE_BITS) - 1


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
    first, following = month_bounds(period)
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
    first, following = month_bounds(period)
    rows = iter(enumerate(lines, start=1))
    order, first_line = _column_order(rows, name)
    month = _Month(first, following)
    reader = _LineReader(order, name=name, options=options, month=month)
    reader.read(itertools.chain(first_line, rows))
    if reader.errors.count:
        reader.errors.raise_()
    return month.records(), reader.summary()


def _column_order(
    rows: Iterator[tuple[int, str]], name: str
) -> tuple[tuple[str, ...], list[tuple[int, str]]]:
    """The column order, from a header on the first non-blank line (else
    :data:`FIELDS`), and that line again when it is data, to be read first."""
    for lineno, raw in rows:
        text = raw.rstrip("\r\n")
        if not text.strip():
            continue
        found = _header(text, name, lineno)
        if found is None:
            return FIELDS, [(lineno, raw)]
        return found, []
    return FIELDS, []


class _Month:
    """The billing month's sums: one flat list per (account, partition, QOS)
    group, indexed by day of the month: CPU seconds, GPU seconds, CPU jobs,
    GPU jobs. A large dict keyed by (group, day) was three times slower: its
    lookups miss the CPU cache."""

    def __init__(self, first: date, following: date) -> None:
        self.first = first
        self.lo = first.toordinal() * SECONDS_PER_DAY
        self.hi = following.toordinal() * SECONDS_PER_DAY
        self.days = (following - first).days
        self.gpu_at, self.cpu_jobs_at, self.gpu_jobs_at = self.days, 2 * self.days, 3 * self.days
        self.groups = _Groups(self.days)

    def add(self, group: int, lo: int, hi: int, cpus: int, gpus: int) -> None:
        """Add a job's CPU and GPU seconds in ``[lo, hi)`` (seconds, clipped to
        the month), split at each local midnight; each day counts the job once."""
        acc = self.groups.sums[group]
        cpu_jobs_at, gpu_at, gpu_jobs_at = self.cpu_jobs_at, self.gpu_at, self.gpu_jobs_at
        # Seconds since the period began.
        lo -= self.lo
        hi -= self.lo
        day = lo // SECONDS_PER_DAY
        if hi <= (day + 1) * SECONDS_PER_DAY:  # most jobs: within one day
            if cpus:
                acc[day] += cpus * (hi - lo)
                acc[cpu_jobs_at + day] += 1
            if gpus:
                acc[gpu_at + day] += gpus * (hi - lo)
                acc[gpu_jobs_at + day] += 1
            return
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

    def records(self) -> list[Usage]:
        """The daily sums as Usage records, by resource, account, partition, QOS and day."""
        groups = self.groups
        dates = [self.first + timedelta(days=d) for d in range(self.days)]
        ordered = sorted(range(len(groups.keys)), key=groups.keys.__getitem__)
        records: list[Usage] = []
        columns: tuple[tuple[Resource, int, int], ...] = (
            ("cpu", 0, self.cpu_jobs_at),
            ("gpu", self.gpu_at, self.gpu_jobs_at),
        )
        for resource, seconds_at, jobs_at in columns:
            for group in ordered:
                account, partition, qos = groups.keys[group]
                acc = groups.sums[group]
                for day, on in enumerate(dates):
                    seconds = acc[seconds_at + day]
                    if seconds:
                        quantity = Fraction(seconds, SECONDS_PER_HOUR)
                        jobs = acc[jobs_at + day]
                        records.append(Usage(resource, account, partition, qos, on, quantity, jobs))
        return records

    def hours(self, resource: Resource) -> Fraction:
        """The month's total of one resource, in hours."""
        seconds_at = 0 if resource == "cpu" else self.gpu_at
        total = sum(sum(acc[seconds_at : seconds_at + self.days]) for acc in self.groups.sums)
        return Fraction(total, SECONDS_PER_HOUR)


class _LineReader:
    """Reads sacct lines one at a time into a :class:`_Month`, counting what
    happens to each line (the :class:`SacctSummary`) and collecting errors.

    Each step below takes the line a step further or says why it stops
    there (counted, or an error); values that repeat across jobs are parsed
    once. Times are split into a head that repeats ("2025-03-04T10", "1-02")
    and the ":MM:SS" tail, looked up in a fixed table; whole values would miss.
    """

    def __init__(
        self, order: tuple[str, ...], *, name: str, options: SacctOptions, month: _Month
    ) -> None:
        self.order = order
        self.name = name
        self.ncols = len(order)
        self.i_job = order.index("JobID")
        self.i_account = order.index("Account")
        self.i_partition = order.index("Partition")
        self.i_qos = order.index("QOS")
        self.i_cpus = order.index("AllocCPUS")
        self.i_tres = order.index("AllocTRES")
        self.i_elapsed = order.index("Elapsed")
        self.i_start = order.index("Start")
        self.i_end = order.index("End")
        self.i_state = order.index("State")
        self.billable = options.billable_states
        self.failed_min = options.failed_min_seconds
        self.month = month
        self.errors = _Errors(name)
        self.state_cache: dict[str, str] = {}
        self.cpu_cache: dict[str, int] = {}
        self.gpu_cache: dict[str, int] = {}
        self.hour_cache: dict[str, int] = {}  # "YYYY-MM-DDTHH" -> seconds
        self.elapsed_cache: dict[str, int] = {}  # "HH", "D-HH" or "" (MM:SS) -> seconds
        # JobID -> hash(text) << _LINE_BITS | line number. Equal 64-bit hashes
        # stand for equal text: keeping every line to compare would cost ~200 MB
        # for a million lines.
        self.seen: dict[str, int] = {}
        self.skipped: dict[str, int] = {}
        self.n_lines = self.n_billed = self.n_outside = self.n_no_usage = 0
        self.n_steps = self.n_duplicates = 0
        self.first_start, self.last_end = month.hi, -1  # billed jobs start before the month ends

    def read(self, numbered: Iterable[tuple[int, str]]) -> None:
        """Each (line number, line), through the steps until one stops it."""
        fields, new_job, billable_state = self._fields, self._new_job, self._billable_state
        elapsed_of, times_of, allocation_of, bill = (
            self._elapsed,
            self._times,
            self._allocation,
            self._bill,
        )
        i_job, i_state, i_elapsed = self.i_job, self.i_state, self.i_elapsed
        i_start, i_end, i_cpus, i_tres = self.i_start, self.i_end, self.i_cpus, self.i_tres
        i_account, i_partition, i_qos = self.i_account, self.i_partition, self.i_qos
        for lineno, raw in numbered:
            split = fields(lineno, raw)
            if split is None:
                continue
            parts, text = split
            if not new_job(lineno, parts[i_job], text):
                continue
            state = billable_state(lineno, parts[i_state])
            if state is None:
                continue
            elapsed = elapsed_of(lineno, parts[i_elapsed], state)
            if elapsed is None:
                continue
            times = times_of(lineno, parts[i_start], parts[i_end], elapsed)
            if times is None:
                continue
            allocation = allocation_of(lineno, parts[i_cpus], parts[i_tres])
            if allocation is None:
                continue
            group = (parts[i_account], parts[i_partition], parts[i_qos])
            bill(lineno, group, times, elapsed, allocation)

    def _fields(self, lineno: int, raw: str) -> tuple[list[str], str] | None:
        """The line's fields and text; None for a blank line, a repeated header
        or one with the wrong number of fields (an error)."""
        text = raw.rstrip("\r\n")
        if not text:
            return None
        parts = text.split("|")
        ncols = self.ncols
        if len(parts) != ncols:
            if len(parts) == ncols + 1 and not parts[-1]:
                parts.pop()
                text = text[:-1]
            elif len(parts) == 1 and not text.strip():
                return None
            else:
                self.n_lines += 1
                self.errors.add_line(
                    lineno, f"expected {ncols} fields separated by '|', found {len(parts)}"
                )
                return None
        # Slurm job ids start with a digit; a header repeated by concatenating
        # two runs is skipped.
        if (
            not parts[self.i_job][:1].isdigit()
            and (again := _header(text, self.name, lineno)) is not None
        ):
            if again == self.order:
                return None
            self.n_lines += 1
            self.errors.add_line(lineno, "a header with other columns than the first one")
            return None
        self.n_lines += 1
        return parts, text

    def _new_job(self, lineno: int, jobid: str, text: str) -> bool:
        """Whether the line is a job allocation not seen before: job steps and
        exact repeats are counted, an empty or reused JobID is an error."""
        if "." in jobid:
            self.n_steps += 1
            return False
        if not jobid.strip():
            self.errors.add(lineno, "JobID", "empty", jobid)
            return False
        digest = hash(text)
        previous = self.seen.get(jobid)
        if previous is not None:
            if previous >> _LINE_BITS == digest:
                self.n_duplicates += 1
            else:
                self.errors.add_line(
                    lineno,
                    f"JobID {jobid} appears twice with different values: "
                    f"lines {previous & _LINE_MASK} and {lineno}",
                )
            return False
        self.seen[jobid] = (digest << _LINE_BITS) | lineno
        return True

    def _billable_state(self, lineno: int, raw_state: str) -> str | None:
        """The state's first word if it is billable; other states are counted."""
        state = self.state_cache.get(raw_state)
        if state is None:
            words = raw_state.split(None, 1)
            state = self.state_cache[raw_state] = words[0].upper() if words else ""
        if not state:
            self.errors.add(lineno, "State", "empty", raw_state)
            return None
        if state not in self.billable:
            self.skipped[state] = self.skipped.get(state, 0) + 1
            return None
        return state

    def _elapsed(self, lineno: int, raw_elapsed: str, state: str) -> int | None:
        """Seconds the job ran; None for a FAILED job too short to bill or a
        job that ran for no time (both counted), or an unreadable value."""
        tail = DURATION_TAILS.get(raw_elapsed[-6:])
        head = None if tail is None else self.elapsed_cache.get(raw_elapsed[:-6])
        if head is not None and tail is not None:
            elapsed = head + tail
        else:
            elapsed = parse_elapsed(raw_elapsed)
            if elapsed != BAD and tail is not None:
                self.elapsed_cache[raw_elapsed[:-6]] = elapsed - tail
        if elapsed == BAD:
            self.errors.add(lineno, "Elapsed", "not a duration", raw_elapsed)
            return None
        if state == "FAILED" and elapsed < self.failed_min:
            self.skipped[state] = self.skipped.get(state, 0) + 1
            return None
        if not elapsed:
            self.n_no_usage += 1
            return None
        return elapsed

    def _times(
        self, lineno: int, raw_start: str, raw_end: str, elapsed: int
    ) -> tuple[int, int] | None:
        """(start, end) in seconds; End defaults to Start + Elapsed when sacct
        printed none, and must not be before Start."""
        hour_cache = self.hour_cache
        head = hour_cache.get(raw_start[:13])
        tail = MIN_SEC.get(raw_start[13:])
        if head is not None and tail is not None:
            start = head + tail
        else:
            start = seconds_of(raw_start, hour_cache)
        if start == BAD:
            if raw_start.strip() in NO_TIME:
                self.errors.add(lineno, "Start", "no start time for a job that ran", raw_start)
            else:
                self.errors.add(lineno, "Start", "not a timestamp (YYYY-MM-DDTHH:MM:SS)", raw_start)
            return None
        head = hour_cache.get(raw_end[:13])
        tail = MIN_SEC.get(raw_end[13:])
        if head is not None and tail is not None:
            end = head + tail
        elif raw_end.strip() in NO_TIME:
            end = start + elapsed
        else:
            end = seconds_of(raw_end, hour_cache)
            if end == BAD:
                self.errors.add(lineno, "End", "not a timestamp (YYYY-MM-DDTHH:MM:SS)", raw_end)
                return None
        if end < start:
            self.errors.add(lineno, "End", "before Start", raw_end)
            return None
        return start, end

    def _allocation(self, lineno: int, raw_cpus: str, raw_tres: str) -> tuple[int, int] | None:
        """(CPUs, GPUs) the job was allocated."""
        cpus = self.cpu_cache.get(raw_cpus)
        if cpus is None:
            cpus = self.cpu_cache[raw_cpus] = parse_count(raw_cpus)
        if cpus == BAD:
            self.errors.add(lineno, "AllocCPUS", "not a whole number", raw_cpus)
            return None
        gpus = 0  # most jobs: a substring test is cheaper than a lookup
        if "gres/gpu" in raw_tres:
            counted = self.gpu_cache.get(raw_tres)
            if counted is None:
                counted = self.gpu_cache[raw_tres] = parse_gpus(raw_tres)
            gpus = counted
        if gpus == BAD:
            self.errors.add(lineno, "AllocTRES", "GPU count is not a whole number", raw_tres)
            return None
        return cpus, gpus

    def _bill(
        self,
        lineno: int,
        group_key: tuple[str, str, str],
        times: tuple[int, int],
        elapsed: int,
        allocation: tuple[int, int],
    ) -> None:
        """Add the part of the job inside the month to its group; jobs wholly
        outside it, or on no CPU and no GPU, are only counted."""
        month = self.month
        start, end = times
        cpus, gpus = allocation
        lo = start if start > month.lo else month.lo
        hi = start + elapsed
        if hi > month.hi:
            hi = month.hi
        if hi <= lo:
            self.n_outside += 1
            return
        if not cpus and not gpus:
            self.n_no_usage += 1
            return
        groups = month.groups
        group = groups.index.get(group_key)
        if group is None:
            group = groups.add(group_key)
        if group == BAD:
            column = "Account" if not group_key[0].strip() else "Partition"
            value = group_key[0] if column == "Account" else group_key[1]
            self.errors.add(lineno, column, "empty for a billable job", value)
            return
        self.n_billed += 1
        if start < self.first_start:
            self.first_start = start
        if end > self.last_end:
            self.last_end = end
        month.add(group, lo, hi, cpus, gpus)

    def summary(self) -> SacctSummary:
        """What happened to each line, with the month's CPU and GPU hours."""
        billed = self.n_billed
        return SacctSummary(
            lines=self.n_lines,
            jobs_billed=billed,
            skipped_by_state=dict(sorted(self.skipped.items())),
            jobs_outside_period=self.n_outside,
            jobs_without_usage=self.n_no_usage,
            job_steps=self.n_steps,
            duplicate_lines=self.n_duplicates,
            cpu_hours=self.month.hours("cpu"),
            gpu_hours=self.month.hours("gpu"),
            first_start=datetime_of(self.first_start) if billed else None,
            last_end=datetime_of(self.last_end) if billed else None,
        )


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


class _Groups:
    """(account, partition, QOS) groups, each with its flat list of daily sums.

    ``index`` maps the fields as printed to a group; values that differ only
    in surrounding blanks share one. ``BAD`` marks an empty account or
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
            group = BAD
        elif key in self._by_key:
            group = self._by_key[key]
        else:
            group = self._by_key[key] = len(self.keys)
            self.keys.append(key)
            self.sums.append([0] * (4 * self.days))
        self.index[raw] = group
        return group
