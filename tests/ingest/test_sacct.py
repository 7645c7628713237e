"""Reading sacct output into daily CPU and GPU usage (ingest.usage.sacct). Pure: no database."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.focus.errors import IngestError
from ingest.usage.records import Usage
from ingest.usage.sacct import (
    DEFAULT_BILLABLE_STATES,
    FIELDS,
    SACCT_FORMAT,
    SacctOptions,
    SacctSummary,
    read_sacct,
    sacct_command,
)

NAME = "sacct-2025-03.txt"


def job(
    jobid: str,
    *,
    account: str = "chem",
    partition: str = "cpu",
    qos: str = "normal",
    cpus: str = "1",
    tres: str = "billing=1,cpu=1,mem=4G,node=1",
    elapsed: str = "01:00:00",
    start: str = "2025-03-10T08:00:00",
    end: str = "Unknown",
    state: str = "COMPLETED",
) -> str:
    """One line of `sacct --parsable2 --noheader --format SACCT_FORMAT`."""
    values = {
        "JobID": jobid,
        "Account": account,
        "Partition": partition,
        "QOS": qos,
        "AllocCPUS": cpus,
        "AllocTRES": tres,
        "Elapsed": elapsed,
        "Start": start,
        "End": end,
        "State": state,
    }
    return "|".join(values[f] for f in FIELDS) + "\n"


def read(
    lines: list[str], period: str = "2025-03", options: SacctOptions | None = None
) -> tuple[list[Usage], SacctSummary]:
    return read_sacct(lines, name=NAME, period=period, options=options or SacctOptions.default())


def error_of(lines: list[str], period: str = "2025-03") -> str:
    with pytest.raises(IngestError) as caught:
        read(lines, period)
    message = str(caught.value)
    assert "\n" not in message
    return message


def accounted(summary: SacctSummary) -> int:
    """Lines the summary says something about: every line, exactly once."""
    return (
        summary.jobs_billed
        + sum(summary.skipped_by_state.values())
        + summary.jobs_outside_period
        + summary.jobs_without_usage
        + summary.job_steps
        + summary.duplicate_lines
    )


def test_two_node_job_is_split_at_local_midnight() -> None:
    # 2 nodes x 36 CPUs for 1 day 2 h 30 min from midnight: 24 h x 72 = 1728
    # CPU-hours on the first day and 2.5 h x 72 = 180 on the second.
    line = job(
        "1001",
        cpus="72",
        tres="billing=72,cpu=72,mem=500G,node=2",
        elapsed="1-02:30:00",
        start="2025-03-10T00:00:00",
        end="2025-03-11T02:30:00",
    )
    records, summary = read([line])
    assert records == [
        Usage("cpu", "chem", "cpu", "normal", date(2025, 3, 10), Fraction(1728), 1),
        Usage("cpu", "chem", "cpu", "normal", date(2025, 3, 11), Fraction(180), 1),
    ]
    assert summary.cpu_hours == 1908
    assert summary.gpu_hours == 0
    assert summary.jobs_billed == 1
    assert summary.first_start == datetime(2025, 3, 10)
    assert summary.last_end == datetime(2025, 3, 11, 2, 30)


def test_gpu_job_gives_gpu_hours_and_cpu_hours() -> None:
    # 4 typed A100s and 16 CPUs for 2 h 15 min: 4 x 2.25 = 9 GPU-hours and
    # 16 x 2.25 = 36 CPU-hours.
    line = job(
        "2001",
        partition="gpu",
        cpus="16",
        tres="billing=16,cpu=16,gres/gpu:a100=4,mem=256G,node=1",
        elapsed="02:15:00",
        start="2025-03-12T10:00:00",
        end="2025-03-12T12:15:00",
        state="TIMEOUT",
    )
    records, summary = read([line])
    assert records == [
        Usage("cpu", "chem", "gpu", "normal", date(2025, 3, 12), Fraction(36), 1),
        Usage("gpu", "chem", "gpu", "normal", date(2025, 3, 12), Fraction(9), 1),
    ]
    assert (summary.cpu_hours, summary.gpu_hours) == (36, 9)


@pytest.mark.parametrize(
    ("tres", "gpus"),
    [
        # Slurm lists both the typed and the untyped count: the untyped one is the total.
        ("cpu=8,gres/gpu:a100=2,gres/gpu:v100=2,gres/gpu=4,node=1", 4),
        ("cpu=8,gres/gpu:a100=2,gres/gpu:v100=1,node=1", 3),
        ("cpu=8,gres/gpu=2,gres/gpumem=80G,gres/gpuutil=100,node=1", 2),
        ("cpu=8,mem=32G,node=1", 0),
        ("", 0),
    ],
)
def test_gpu_count_comes_from_alloc_tres(tres: str, gpus: int) -> None:
    _, summary = read([job("1", cpus="8", tres=tres, elapsed="00:30:00")])
    assert summary.gpu_hours == Fraction(gpus, 2)
    assert summary.cpu_hours == 4


def test_job_across_month_end_is_billed_in_each_month_for_its_own_part() -> None:
    # 8 CPUs from Jan 31 23:00 for 3 h: 1 h in January, 2 h in February.
    line = job(
        "3001",
        cpus="8",
        elapsed="03:00:00",
        start="2025-01-31T23:00:00",
        end="2025-02-01T02:00:00",
    )
    january, in_january = read([line], "2025-01")
    february, in_february = read([line], "2025-02")
    assert january == [Usage("cpu", "chem", "cpu", "normal", date(2025, 1, 31), Fraction(8), 1)]
    assert february == [Usage("cpu", "chem", "cpu", "normal", date(2025, 2, 1), Fraction(16), 1)]
    assert in_january.jobs_billed == in_february.jobs_billed == 1
    # The summary shows the whole job, not only the billed part.
    assert in_february.first_start == datetime(2025, 1, 31, 23)
    assert in_february.last_end == datetime(2025, 2, 1, 2)


@pytest.mark.parametrize(
    ("elapsed", "seconds"),
    [
        ("45:30", 45 * 60 + 30),  # MM:SS
        ("02:05:07", 2 * 3600 + 5 * 60 + 7),  # HH:MM:SS
        ("3-04:05:06", 3 * 86400 + 4 * 3600 + 5 * 60 + 6),  # D-HH:MM:SS
        (" 2:05:07", 2 * 3600 + 5 * 60 + 7),  # older sacct pads the hour
        ("05:07.000", 5 * 60 + 7),  # older sacct, under an hour
        ("1-02", 26 * 3600),  # Slurm's D-HH
        ("1-02:30", 26 * 3600 + 30 * 60),  # Slurm's D-HH:MM
    ],
)
def test_elapsed_formats(elapsed: str, seconds: int) -> None:
    line = job("1", cpus="2", elapsed=elapsed, start="2025-03-01T00:00:00")
    _, summary = read([line])
    assert summary.cpu_hours == Fraction(2 * seconds, 3600)


def test_durations_sharing_a_head_are_each_read_whole() -> None:
    # The reader remembers "02", "1-02" and "" (MM:SS) as heads; each tail
    # still counts.
    lines = [
        job("1", elapsed="02:00:00"),
        job("2", elapsed="02:30:15"),
        job("3", elapsed="1-02:00:00", start="2025-03-01T00:00:00"),
        job("4", elapsed="1-02:00:01", start="2025-03-01T00:00:00"),
        job("5", elapsed="45:30"),
        job("6", elapsed="05:00"),
    ]
    _, summary = read(lines)
    assert summary.cpu_hours == Fraction(7200 + 9015 + 93600 + 93601 + 2730 + 300, 3600)


@pytest.mark.parametrize("elapsed", ["00:00:00", "0:00"])
def test_zero_elapsed_is_no_usage(elapsed: str) -> None:
    records, summary = read([job("1", elapsed=elapsed, start="Unknown")])
    assert records == []
    assert summary.jobs_without_usage == 1
    assert summary.first_start is None
    assert summary.last_end is None


def test_states_decide_what_is_billed() -> None:
    lines = [
        job("1", state="COMPLETED", elapsed="01:00:00"),
        job("2", state="CANCELLED", elapsed="03:00:00"),
        job("3", state="CANCELLED by 0", elapsed="02:00:00"),
        job("4", state="FAILED", elapsed="00:04:00"),
        job("5", state="FAILED", elapsed="00:06:00"),
        job("6", state="RUNNING", elapsed="05:00:00"),
        job("7", state="OUT_OF_ME+", elapsed="05:00:00"),
        job("8", state="OUT_OF_MEMORY", elapsed="00:01:00"),
    ]
    records, summary = read(lines)
    # COMPLETED 60 min + FAILED 6 min + OUT_OF_MEMORY 1 min, one CPU each.
    assert records == [
        Usage("cpu", "chem", "cpu", "normal", date(2025, 3, 10), Fraction(67, 60), 3)
    ]
    assert summary.skipped_by_state == {
        "CANCELLED": 2,
        "FAILED": 1,
        "OUT_OF_ME+": 1,
        "RUNNING": 1,
    }
    assert summary.jobs_billed == 3
    assert summary.lines == accounted(summary) == 8


def test_failed_threshold_and_states_are_options() -> None:
    lines = [
        job("1", state="FAILED", elapsed="00:04:00"),
        job("2", state="CANCELLED by 1234", elapsed="00:30:00"),
        job("3", state="COMPLETED", elapsed="01:00:00"),
    ]
    options = SacctOptions(billable_states=frozenset({"failed", "cancelled"}), failed_min_seconds=0)
    _, summary = read(lines, options=options)
    assert summary.cpu_hours == Fraction(34, 60)
    assert summary.skipped_by_state == {"COMPLETED": 1}
    assert set(SacctOptions.default().billable_states) == set(DEFAULT_BILLABLE_STATES)
    assert SacctOptions.default().failed_min_seconds == 300


def test_negative_failed_threshold_is_refused() -> None:
    with pytest.raises(ValueError, match="failed_min_seconds"):
        SacctOptions(billable_states=frozenset({"COMPLETED"}), failed_min_seconds=-1)


def test_failed_job_of_exactly_the_threshold_is_billed() -> None:
    _, summary = read([job("1", state="FAILED", elapsed="00:05:00")])
    assert summary.jobs_billed == 1
    assert summary.cpu_hours == Fraction(1, 12)


def test_header_in_another_order_with_extra_columns() -> None:
    header = "State|Elapsed|User|JobID|QOS|AllocTRES|Partition|End|AllocCPUS|Start|Account\n"
    line = (
        "COMPLETED|00:30:00|alice|77|long|cpu=4,gres/gpu=1|gpu|Unknown|4|2025-03-05T12:00:00|bio\n"
    )
    records, summary = read([header, line])
    assert records == [
        Usage("cpu", "bio", "gpu", "long", date(2025, 3, 5), Fraction(2), 1),
        Usage("gpu", "bio", "gpu", "long", date(2025, 3, 5), Fraction(1, 2), 1),
    ]
    assert summary.lines == 1


def test_header_in_lower_case_and_repeated_header_is_skipped() -> None:
    header = "|".join(FIELDS).lower() + "\n"
    lines = [header, job("1"), "|".join(FIELDS) + "\n", header, job("2")]
    _, summary = read(lines)
    assert summary.jobs_billed == 2
    assert summary.lines == 2


def test_header_missing_a_field_is_an_error() -> None:
    header = "JobID|Account|Partition|QOS|AllocCPUS|AllocTRES|Start|End|State\n"
    assert error_of([header, job("1")]) == f"{NAME}, line 1: header lacks field(s) Elapsed"


def test_header_in_the_middle_with_other_columns_is_an_error() -> None:
    other = "|".join(reversed(FIELDS)) + "\n"
    assert error_of([job("1"), other, job("2")]) == (
        f"{NAME}, line 2: a header with other columns than the first one"
    )


def test_header_naming_a_field_twice_is_an_error() -> None:
    header = "|".join(FIELDS) + "|state\n"
    assert error_of([header]) == f"{NAME}, line 1: header repeats field(s) State"


def test_exact_duplicate_lines_count_once() -> None:
    line = job("42", cpus="4", elapsed="01:00:00")
    # The second run was written with --parsable: a trailing "|".
    records, summary = read([line, job("43"), line, line.rstrip("\n") + "|\n"])
    assert summary.duplicate_lines == 2
    assert records == [Usage("cpu", "chem", "cpu", "normal", date(2025, 3, 10), Fraction(5), 2)]
    assert summary.lines == accounted(summary) == 4


def test_same_jobid_with_other_values_is_an_error() -> None:
    lines = [job("123"), job("124"), "\n", job("123", elapsed="02:00:00")]
    assert error_of(lines) == (
        f"{NAME}, line 4: JobID 123 appears twice with different values: lines 1 and 4"
    )


def test_bad_elapsed_names_file_line_and_field() -> None:
    lines = [job("1"), job("2", elapsed="1-2:x")]
    assert error_of(lines) == f"{NAME}, line 2, field Elapsed: not a duration: '1-2:x'"


@pytest.mark.parametrize(
    "elapsed",
    ["02:61:00", "1-24:00:00", "0-25:00:00", "01:00:60", "75:00", "INVALID", "", "-01:00:00"],
)
def test_impossible_durations_are_errors(elapsed: str) -> None:
    message = error_of([job("1", elapsed="02:00:00"), job("2", elapsed=elapsed)])
    assert message == f"{NAME}, line 2, field Elapsed: not a duration: {elapsed!r}"


def test_bad_alloc_cpus_names_file_line_and_field() -> None:
    assert error_of([job("1", cpus="x12")]) == (
        f"{NAME}, line 1, field AllocCPUS: not a whole number: 'x12'"
    )


def test_bad_gpu_count_names_the_field() -> None:
    assert error_of([job("1", tres="cpu=1,gres/gpu=two")]) == (
        f"{NAME}, line 1, field AllocTRES: GPU count is not a whole number: 'cpu=1,gres/gpu=two'"
    )


def test_missing_field_is_an_error() -> None:
    short = job("1").replace("|normal", "")
    assert error_of([job("2"), short]) == (
        f"{NAME}, line 2: expected 10 fields separated by '|', found 9"
    )


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"account": " "}, "field Account: empty for a billable job: ' '"),
        ({"partition": ""}, "field Partition: empty for a billable job: ''"),
        ({"start": "Unknown"}, "field Start: no start time for a job that ran: 'Unknown'"),
        (
            {"start": "2025-03-10 08:00:00"},
            "field Start: not a timestamp (YYYY-MM-DDTHH:MM:SS): '2025-03-10 08:00:00'",
        ),
        (
            {"start": "2025-02-30T08:00:00"},
            "field Start: not a timestamp (YYYY-MM-DDTHH:MM:SS): '2025-02-30T08:00:00'",
        ),
        (
            {"end": "2025-03-10T07:59:59"},
            "field End: before Start: '2025-03-10T07:59:59'",
        ),
        ({"end": "soon"}, "field End: not a timestamp (YYYY-MM-DDTHH:MM:SS): 'soon'"),
        ({"state": ""}, "field State: empty: ''"),
        ({"jobid": ""}, "field JobID: empty: ''"),
    ],
)
def test_field_errors(kwargs: dict[str, str], expected: str) -> None:
    values = {"jobid": "9"} | kwargs
    assert error_of([job(**values)]) == f"{NAME}, line 1, {expected}"


def test_empty_account_of_a_skipped_job_is_not_an_error() -> None:
    _, summary = read([job("1", account="", state="CANCELLED by 0", cpus="?")])
    assert summary.skipped_by_state == {"CANCELLED": 1}


def test_errors_are_collected_and_nothing_is_returned() -> None:
    lines = [job(str(n), cpus="many") for n in range(1, 8)]
    message = error_of(lines)
    shown = [f"{NAME}, line {n}, field AllocCPUS: not a whole number: 'many'" for n in range(1, 6)]
    assert message == "; ".join(shown) + " (and 2 more)"


def test_jobs_of_one_account_partition_qos_and_day_make_one_record() -> None:
    lines = [
        job("1", cpus="4", elapsed="00:30:00", start="2025-03-03T01:00:00"),
        job("2", cpus="2", elapsed="01:15:00", start="2025-03-03T09:00:00"),
        job("3", cpus="1", elapsed="00:00:36", start="2025-03-03T23:00:00"),
        job("4", qos="long", cpus="1", elapsed="01:00:00", start="2025-03-03T01:00:00"),
        job("5", account="bio", cpus="1", elapsed="01:00:00", start="2025-03-04T01:00:00"),
        job("6", cpus="3", elapsed="01:00:00", start="2025-03-02T01:00:00"),
    ]
    records, summary = read(lines)
    # chem/cpu/normal on Mar 3: 4 x 0.5 + 2 x 1.25 + 1 x 0.01 = 4.51 CPU-hours.
    assert records == [
        Usage("cpu", "bio", "cpu", "normal", date(2025, 3, 4), Fraction(1), 1),
        Usage("cpu", "chem", "cpu", "long", date(2025, 3, 3), Fraction(1), 1),
        Usage("cpu", "chem", "cpu", "normal", date(2025, 3, 2), Fraction(3), 1),
        Usage("cpu", "chem", "cpu", "normal", date(2025, 3, 3), Fraction(451, 100), 3),
    ]
    assert summary.cpu_hours == Fraction(951, 100)


def test_account_partition_and_qos_are_stripped_but_keep_their_case() -> None:
    lines = [
        job("1", account=" Chem ", partition="CPU "),
        job("2", account="Chem", partition="CPU"),
    ]
    records, _ = read(lines)
    assert records == [Usage("cpu", "Chem", "CPU", "normal", date(2025, 3, 10), Fraction(2), 2)]


def test_job_entirely_outside_the_period_is_counted_not_billed() -> None:
    lines = [
        job("1", start="2025-02-27T10:00:00", elapsed="02:00:00"),
        # Ends exactly at the period's first midnight: nothing inside.
        job("2", start="2025-02-28T23:00:00", elapsed="01:00:00"),
        job("3", start="2025-04-01T00:00:00", elapsed="01:00:00"),
        job("4", start="2025-03-31T23:30:00", elapsed="01:00:00"),
    ]
    records, summary = read(lines)
    assert summary.jobs_outside_period == 3
    assert records == [Usage("cpu", "chem", "cpu", "normal", date(2025, 3, 31), Fraction(1, 2), 1)]


def test_job_steps_are_skipped_so_jobs_are_not_counted_twice() -> None:
    lines = [
        job("500"),
        job("500.batch"),
        job("500.extern"),
        job("500.0"),
        job("501_7"),
        job("502+1"),
    ]
    _, summary = read(lines)
    assert summary.job_steps == 3
    assert summary.jobs_billed == 3
    assert summary.lines == accounted(summary) == 6


def test_blank_lines_are_ignored_and_lines_keep_their_numbers() -> None:
    lines = ["\n", "   \n", job("1"), "\r\n", job("2", cpus="-1")]
    assert error_of(lines) == f"{NAME}, line 5, field AllocCPUS: not a whole number: '-1'"
    records, summary = read(["\n", job("1").replace("\n", "\r\n"), "\n"])
    assert summary.lines == 1
    assert records[0].quantity == 1


def test_end_unknown_uses_start_plus_elapsed() -> None:
    _, summary = read([job("1", end="Unknown", elapsed="1-00:00:00", start="2025-03-30T12:00:00")])
    assert summary.last_end == datetime(2025, 3, 31, 12)


def test_zero_cpus_and_gpus_is_no_usage() -> None:
    records, summary = read([job("1", cpus="0", tres="")])
    assert records == []
    assert summary.jobs_without_usage == 1


def test_empty_input_gives_no_records() -> None:
    records, summary = read([])
    assert records == []
    assert summary == SacctSummary()


def test_output_is_sorted_by_resource_account_service_qos_day() -> None:
    gpu = "cpu=2,gres/gpu=1"
    lines = [
        job("1", account="zoo", partition="gpu", cpus="2", tres=gpu, start="2025-03-02T00:00:00"),
        job("2", account="art", partition="gpu", cpus="2", tres=gpu, start="2025-03-09T00:00:00"),
        job("3", account="art", partition="gpu", cpus="2", tres=gpu, start="2025-03-01T00:00:00"),
        job("4", account="art", partition="a", qos="z", start="2025-03-01T00:00:00"),
    ]
    records, _ = read(lines)
    keys = [(u.resource, u.account, u.service, u.qos, u.day.day) for u in records]
    assert keys == [
        ("cpu", "art", "a", "z", 1),
        ("cpu", "art", "gpu", "normal", 1),
        ("cpu", "art", "gpu", "normal", 9),
        ("cpu", "zoo", "gpu", "normal", 2),
        ("gpu", "art", "gpu", "normal", 1),
        ("gpu", "art", "gpu", "normal", 9),
        ("gpu", "zoo", "gpu", "normal", 2),
    ]


@pytest.mark.parametrize("period", ["2025-3", "2025-13", "March", "2025-03-01", ""])
def test_period_must_be_a_month(period: str) -> None:
    with pytest.raises(IngestError, match="is not a month in the form YYYY-MM"):
        read([job("1")], period)
    with pytest.raises(IngestError, match="is not a month in the form YYYY-MM"):
        sacct_command(period)


def test_sacct_command_asks_for_the_whole_month_in_the_read_format() -> None:
    assert sacct_command("2025-12") == [
        "sacct",
        "--allocations",
        "--parsable2",
        "--noheader",
        "--allusers",
        "--starttime",
        "2025-12-01T00:00:00",
        "--endtime",
        "2026-01-01T00:00:00",
        "--format",
        "JobID,Account,Partition,QOS,AllocCPUS,AllocTRES,Elapsed,Start,End,State",
    ]
    assert SACCT_FORMAT.split(",") == list(FIELDS)


@settings(max_examples=150, deadline=None)
@given(
    start=st.datetimes(min_value=datetime(2025, 1, 20), max_value=datetime(2025, 3, 10)),
    elapsed=st.integers(min_value=1, max_value=40 * 86400),
    cpus=st.integers(min_value=1, max_value=128),
)
def test_consecutive_months_bill_every_second_once(
    start: datetime, elapsed: int, cpus: int
) -> None:
    start = start.replace(microsecond=0)
    days, rest = divmod(elapsed, 86400)
    text = f"{days}-{rest // 3600:02d}:{rest // 60 % 60:02d}:{rest % 60:02d}"
    line = job("1", cpus=str(cpus), elapsed=text, start=start.isoformat())
    total = Fraction(0)
    seen_days: list[date] = []
    for period in ("2024-12", "2025-01", "2025-02", "2025-03", "2025-04", "2025-05"):
        records, summary = read([line], period)
        total += summary.cpu_hours
        seen_days += [u.day for u in records]
        assert all(u.day.strftime("%Y-%m") == period for u in records)
        assert all(0 < u.quantity <= cpus * 24 for u in records)
    assert total == Fraction(cpus * elapsed, 3600)
    end = start + timedelta(seconds=elapsed)
    assert seen_days[0] == start.date()
    assert seen_days[-1] == (end - timedelta(seconds=1)).date()
