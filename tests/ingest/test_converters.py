"""Slurm and storage usage into charges, end to end through the commands:
hand-computed examples, unmapped accounts, re-runs, and one statement with
cloud, HPC and storage lines."""

from __future__ import annotations

import csv
import json
from datetime import date
from decimal import Decimal
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import Sum

from billing.audit import Actor
from billing.models import PI, BillingPeriod, Charge, Project, Source
from billing.review import charges_review
from billing.services import period_close
from ingest.focus.services import file_import
from ingest.models import Import
from ingest.usage.mappings import account_mapping_create
from ingest.usage.rates import rate_create
from statements.models import Statement
from statements.services import statements_generate
from tests.conftest import focus_row, write_focus

pytestmark = pytest.mark.django_db

SETUP = Actor(name="setup", channel="cli")
SACCT_FIELDS = "JobID|Account|Partition|QOS|AllocCPUS|AllocTRES|Elapsed|Start|End|State"


def job(
    job_id: str,
    *,
    account: str = "chem",
    partition: str = "standard",
    cpus: int = 1,
    tres: str = "",
    elapsed: str = "01:00:00",
    start: str = "2025-03-10T00:00:00",
    end: str = "Unknown",
    state: str = "COMPLETED",
) -> str:
    tres = tres or f"cpu={cpus},node=1"
    return "|".join(
        (job_id, account, partition, "normal", str(cpus), tres, elapsed, start, end, state)
    )


def sacct_file(tmp_path: Path, *lines: str, name: str = "sacct.txt") -> Path:
    path = tmp_path / name
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def rate(resource: str, service: str, list_rate: str, **terms: Any) -> None:
    rate_create(
        actor=SETUP,
        resource=resource,
        service=service,
        qos="",
        effective_from=terms.pop("effective_from", date(2024, 1, 1)),
        list_rate=Decimal(list_rate),
        **{key: Decimal(value) for key, value in terms.items()},
    )


def project(code: str, pi: str = "ada@example.edu", fund_org: str = "NSF-CHE-2025") -> Project:
    owner, _ = PI.objects.get_or_create(email=pi)
    return Project.objects.create(project_id=code, pi=owner, default_fund_org=fund_org)


def mapped(kind: str, name: str, code: str, **kwargs: Any) -> Project:
    found = Project.objects.filter(project_id=code).first() or project(code, **kwargs)
    account_mapping_create(actor=SETUP, kind=kind, name=name, project=found)
    return found


def run(command: str, *args: str) -> dict[str, Any]:
    out = StringIO()
    call_command(command, *args, "--json", stdout=out)
    return json.loads(out.getvalue())


def totals(**filters: Any) -> tuple[Decimal, Decimal]:
    sums = Charge.objects.filter(**filters).aggregate(
        lst=Sum("list_cost"), billed=Sum("billed_cost")
    )
    return sums["lst"], sums["billed"]


# --- Hand-computed examples -----------------------------------------------------------


def test_a_two_node_job_of_a_day_and_a_half_at_a_cent_with_a_quarter_subsidised(
    tmp_path: Path,
) -> None:
    """2 nodes x 36 CPUs x 26.5 h = 1,908 CPU-hours: list $19.08, 25% off: $14.31."""
    rate("cpu", "standard", "0.01", subsidy_percent="25")
    mapped("slurm", "chem", "chem-101")
    path = sacct_file(
        tmp_path,
        job("1001", cpus=72, tres="billing=72,cpu=72,mem=500G,node=2", elapsed="1-02:30:00"),
    )

    report = run("slurm_usage", "--period", "2025-03", "--sacct-file", str(path), "--ingest")

    assert report["import"]["charges_created"] == 2  # 24 h on the 10th, 2.5 h on the 11th
    assert totals() == (Decimal("19.08"), Decimal("14.31"))
    days = dict(
        Charge.objects.values_list("charge_period_start__day", "consumed_quantity").order_by()
    )
    assert days == {10: "1728", 11: "180"}
    charge = Charge.objects.first()
    assert charge is not None
    assert charge.pi is not None
    assert charge.project is not None
    assert (charge.pi.email, charge.project.project_id, charge.fund_org) == (
        "ada@example.edu",
        "chem-101",
        "NSF-CHE-2025",
    )
    assert charge.review_state == Charge.ReviewState.APPROVED
    assert charge.source.slug == "hpc"


def test_gpu_hours_are_priced_apart_from_the_cpu_hours_of_the_same_job(tmp_path: Path) -> None:
    """8 CPUs and 4 A100s for 2 h 15 min: 18 CPU-hours at $0.02, 9 GPU-hours at $0.50 half off."""
    rate("cpu", "gpu", "0.02")
    rate("gpu", "gpu", "0.50", subsidy_percent="50")
    mapped("slurm", "chem", "chem-101")
    path = sacct_file(
        tmp_path,
        job(
            "2001", partition="gpu", cpus=8, tres="cpu=8,gres/gpu:a100=4,node=1", elapsed="02:15:00"
        ),
    )

    run("slurm_usage", "--period", "2025-03", "--sacct-file", str(path), "--ingest")

    assert totals(consumed_unit="CPU-hours") == (Decimal("0.36"), Decimal("0.36"))
    assert totals(consumed_unit="GPU-hours") == (Decimal("4.50"), Decimal("2.25"))
    services = set(Charge.objects.values_list("service_name", flat=True))
    assert services == {"Slurm CPU-hours (gpu)", "Slurm GPU-hours (gpu)"}


def test_a_job_across_new_year_is_split_between_the_two_months(tmp_path: Path) -> None:
    """31 Jan 23:00 -> 1 Feb 02:00 on 10 CPUs at $0.10: 10 CPU-hours in January, 20 in February."""
    rate("cpu", "standard", "0.10")
    mapped("slurm", "chem", "chem-101")
    path = sacct_file(
        tmp_path,
        job(
            "3001",
            cpus=10,
            elapsed="03:00:00",
            start="2025-01-31T23:00:00",
            end="2025-02-01T02:00:00",
        ),
    )

    run("slurm_usage", "--period", "2025-01", "--sacct-file", str(path), "--ingest")
    run("slurm_usage", "--period", "2025-02", "--sacct-file", str(path), "--ingest")

    assert totals(period__period="2025-01") == (Decimal("1.00"), Decimal("1.00"))
    assert totals(period__period="2025-02") == (Decimal("2.00"), Decimal("2.00"))
    assert Import.objects.filter(status=Import.Status.IMPORTED).count() == 2


def test_a_rate_change_on_the_fifteenth_bills_each_day_at_its_rate(tmp_path: Path) -> None:
    """4 CPUs, 14th 22:00 -> 15th 02:00: 8 CPU-hours at $0.01, then 8 at $0.02."""
    rate("cpu", "standard", "0.01")
    rate("cpu", "standard", "0.02", effective_from=date(2025, 3, 15))
    mapped("slurm", "chem", "chem-101")
    path = sacct_file(
        tmp_path,
        job("4001", cpus=4, elapsed="04:00:00", start="2025-03-14T22:00:00"),
    )

    run("slurm_usage", "--period", "2025-03", "--sacct-file", str(path), "--ingest")

    assert totals(charge_period_start__day=14) == (Decimal("0.08"), Decimal("0.08"))
    assert totals(charge_period_start__day=15) == (Decimal("0.16"), Decimal("0.16"))
    assert totals() == (Decimal("0.24"), Decimal("0.24"))


def test_storage_of_twelve_and_a_half_tb_with_one_free_at_five_dollars_half_subsidised(
    tmp_path: Path,
) -> None:
    """12.5 TB x $5 = $62.50 list; (12.5 - 1) TB x $5 x 50% = $28.75 billed."""
    rate("storage", "standard", "5", free_allowance="1", subsidy_percent="50")
    mapped("storage", "/projects/chem", "chem-101")
    quotas = tmp_path / "quotas.csv"
    quotas.write_text("path,bytes_used\n/projects/chem,12.5 TB\n", encoding="utf-8")

    report = run("storage_usage", "--period", "2025-03", "--quotas", str(quotas), "--ingest")

    assert report["import"]["charges_created"] == 1
    assert totals() == (Decimal("62.50"), Decimal("28.75"))
    charge = Charge.objects.get()
    assert (charge.consumed_quantity, charge.consumed_unit) == ("12.5", "TB-months")
    assert charge.source.slug == "storage"
    assert charge.project is not None
    assert charge.project.project_id == "chem-101"


# --- Unmapped accounts, re-runs, what-if ------------------------------------------------


def test_unmapped_accounts_become_flagged_charges_not_dropped_usage(tmp_path: Path) -> None:
    rate("cpu", "standard", "0.01")
    mapped("slurm", "chem", "chem-101")
    path = sacct_file(
        tmp_path,
        job("5001", account="chem", cpus=2),
        job("5002", account="nobody-knows", cpus=3),
    )

    report = run("slurm_usage", "--period", "2025-03", "--sacct-file", str(path), "--ingest")

    assert report["conversion"]["unmapped"] == ["nobody-knows"]
    orphan = Charge.objects.get(sub_account_id="nobody-knows")
    assert orphan.billed_cost == Decimal("0.03")
    assert orphan.review_state == Charge.ReviewState.PENDING
    assert set(orphan.flag_reasons) == {
        "unmapped_account",
        "missing_pi",
        "missing_project",
        "missing_fund_org",
    }
    assert orphan.flag_details["unmapped_account"] == "Slurm account nobody-knows"
    assert Charge.objects.get(sub_account_id="chem").flags == 0


def test_fixing_an_unmapped_charge_clears_its_reason(tmp_path: Path) -> None:
    from billing.review import charges_fix_attribution

    rate("cpu", "standard", "0.01")
    owner = project("lab-9", pi="eve@example.edu", fund_org="NIH-GM-1")
    path = sacct_file(tmp_path, job("5101", account="lab9"))
    run("slurm_usage", "--period", "2025-03", "--sacct-file", str(path), "--ingest")

    charges_fix_attribution(
        charges=Charge.objects.all(),
        actor=SETUP,
        pi_email="eve@example.edu",
        project_id=owner.project_id,
        fund_org="NIH-GM-1",
    )

    assert Charge.objects.get().flags == 0


def test_re_running_a_month_changes_nothing_and_corrected_input_replaces_it(
    tmp_path: Path,
) -> None:
    rate("cpu", "standard", "0.01")
    mapped("slurm", "chem", "chem-101")
    mapped("slurm", "phys", "phys-7", pi="bob@example.edu", fund_org="DOE-PHY-9")
    first = sacct_file(
        tmp_path,
        job("6001", account="chem", cpus=10),
        job("6002", account="phys", cpus=20, start="2025-03-11T00:00:00"),
        job("6003", account="ghost", cpus=1, start="2025-03-12T00:00:00"),
    )
    run("slurm_usage", "--period", "2025-03", "--sacct-file", str(first), "--ingest")
    charges_review(
        charges=Charge.objects.filter(sub_account_id="ghost"),
        action="reject",
        actor=SETUP,
        note="not ours",
    )

    again = run("slurm_usage", "--period", "2025-03", "--sacct-file", str(first), "--ingest")
    assert again["import"]["status"] == "already_imported"
    assert Charge.objects.count() == 3

    late = sacct_file(
        tmp_path,
        job("6001", account="chem", cpus=10),
        job("6002", account="phys", cpus=20, start="2025-03-11T00:00:00"),
        job("6003", account="ghost", cpus=1, start="2025-03-12T00:00:00"),
        job("6004", account="phys", cpus=20, start="2025-03-20T00:00:00"),
        name="sacct-late.txt",
    )
    report = run("slurm_usage", "--period", "2025-03", "--sacct-file", str(late), "--ingest")

    assert (report["import"]["charges_created"], report["import"]["charges_removed"]) == (1, 0)
    assert totals() == (Decimal("0.51"), Decimal("0.51"))
    ghost = Charge.objects.get(sub_account_id="ghost")
    assert ghost.review_state == Charge.ReviewState.REJECTED  # the decision is kept


def test_what_if_prints_totals_per_pi_and_project_and_writes_nothing(tmp_path: Path) -> None:
    rate("cpu", "standard", "0.01", subsidy_percent="25")
    mapped("slurm", "chem", "chem-101")
    mapped("slurm", "phys", "phys-7", pi="bob@example.edu")
    path = sacct_file(
        tmp_path,
        job("7001", account="chem", cpus=72, elapsed="1-02:30:00"),
        job("7002", account="phys", cpus=100),
        job("7003", account="ghost", cpus=4),
    )
    out = StringIO()

    call_command(
        "slurm_usage", "--period", "2025-03", "--sacct-file", str(path), "--what-if", stdout=out
    )

    lines = out.getvalue().splitlines()
    assert lines[1].split() == ["PI", "Project", "List", "Subsidy", "Billed"]
    rows = [line.split() for line in lines[3:-2]]
    assert rows == [
        ["ada@example.edu", "chem-101", "$19.08", "$4.77", "$14.31"],
        ["bob@example.edu", "phys-7", "$1.00", "$0.25", "$0.75"],
        ["(unmapped)", "ghost", "$0.04", "$0.01", "$0.03"],
    ]
    assert lines[-1].split() == ["Total", "$20.12", "$5.03", "$15.09"]
    assert Charge.objects.count() == 0
    assert not BillingPeriod.objects.exists()


def test_output_writes_a_focus_file_the_ingest_command_reads_as_is(tmp_path: Path) -> None:
    rate("storage", "standard", "5", free_allowance="1", subsidy_percent="50")
    mapped("storage", "/projects/chem", "chem-101")
    quotas = tmp_path / "quotas.json"
    quotas.write_text(json.dumps([{"quota": "/projects/chem", "bytes": "12.5 TB"}]))
    focus = tmp_path / "storage_2025-03.csv"

    call_command(
        "storage_usage",
        "--period",
        "2025-03",
        "--quotas",
        str(quotas),
        "--output",
        str(focus),
        stdout=StringIO(),
    )

    (row,) = list(csv.DictReader(focus.open(encoding="utf-8")))
    assert (row["ListCost"], row["BilledCost"], row["ConsumedQuantity"]) == (
        "62.50",
        "28.75",
        "12.5",
    )
    assert json.loads(row["Tags"])["pi_email"] == "ada@example.edu"
    assert Charge.objects.count() == 0
    call_command("ingest", str(focus), "--source", "storage", stdout=StringIO())
    assert totals() == (Decimal("62.50"), Decimal("28.75"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ingest"], "no CPU-hour rate for partition 'scavenger'"),
        (["--what-if", "--ingest"], "--what-if writes nothing"),
        ([], "say what to do"),
        (["--dry-run", "--what-if"], "--dry-run goes with --ingest"),
    ],
)
def test_user_errors_are_one_line_and_write_nothing(
    tmp_path: Path, args: list[str], message: str
) -> None:
    rate("cpu", "standard", "0.01")
    path = sacct_file(tmp_path, job("8001", partition="scavenger"))

    with pytest.raises(CommandError) as caught:
        call_command("slurm_usage", "--period", "2025-03", "--sacct-file", str(path), *args)

    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
    assert not Import.objects.exists()
    assert not Charge.objects.exists()


def test_a_missing_file_and_a_bad_period_are_reported(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="no such file"):
        call_command(
            "slurm_usage", "--period", "2025-03", "--sacct-file", str(tmp_path / "x"), "--what-if"
        )
    with pytest.raises(CommandError, match="not a month"):
        call_command("storage_usage", "--period", "2025-13", "--quotas", str(tmp_path), "--what-if")


# --- One statement, three kinds of usage --------------------------------------------------


def test_hpc_and_storage_appear_on_the_same_statement_as_cloud_charges(
    tmp_path: Path, defaults: None
) -> None:
    rate("cpu", "standard", "0.01", subsidy_percent="25")
    rate("storage", "standard", "5", free_allowance="1", subsidy_percent="50")
    mapped("slurm", "chem", "chem-101")
    mapped("storage", "/projects/chem", "chem-101")
    path = sacct_file(tmp_path, job("9001", cpus=72, elapsed="1-02:30:00"))
    quotas = tmp_path / "quotas.csv"
    quotas.write_text("quota,bytes_used\n/projects/chem,12.5 TB\n", encoding="utf-8")
    cloud = write_focus(
        tmp_path / "aws_2025-03.csv",
        [focus_row(period="2025-03", billed="10.00", project="chem-101", fund_org="NSF-CHE-2025")],
    )
    actor = Actor(name="tester", channel="cli")
    file_import(path=cloud, source=Source.objects.get(slug="aws"), actor=actor)
    run("slurm_usage", "--period", "2025-03", "--sacct-file", str(path), "--ingest")
    run("storage_usage", "--period", "2025-03", "--quotas", str(quotas), "--ingest")
    period_close(period="2025-03", actor=actor)

    statements_generate(period="2025-03", actor=actor, sync=True)

    statement = Statement.objects.get(project__project_id="chem-101")
    sources = set(statement.items.values_list("charge__source__slug", flat=True))
    assert sources == {"aws", "hpc", "storage"}
    assert statement.list_total == Decimal("10.00") + Decimal("19.08") + Decimal("62.50")
    assert statement.billed_total == Decimal("10.00") + Decimal("14.31") + Decimal("28.75")
    assert statement.discount_total == Decimal("4.77") + Decimal("33.75")


def test_json_output_accounts_for_every_input_line(tmp_path: Path) -> None:
    rate("cpu", "standard", "0.01")
    mapped("slurm", "chem", "chem-101")
    path = sacct_file(
        tmp_path,
        job("10001", cpus=2),
        job("10002", cpus=2, state="CANCELLED by 0"),
        job("10003", cpus=2, elapsed="04:00", state="FAILED"),
    )

    report = run("slurm_usage", "--period", "2025-03", "--sacct-file", str(path), "--what-if")

    summary = report["conversion"]["input_summary"]
    assert (summary["lines"], summary["jobs_billed"], summary["cpu_hours"]) == (3, 1, "2")
    assert summary["skipped_by_state"] == {"CANCELLED": 1, "FAILED": 1}


def _fake_sacct(tmp_path: Path, body: str) -> str:
    """A stand-in for sacct: records its arguments and environment, then runs `body`."""
    script = tmp_path / "fake-sacct"
    script.write_text(
        "#!/usr/bin/env python3\n"
        "import json, os, sys\n"
        f"open({str(tmp_path / 'argv.json')!r}, 'w').write(json.dumps("
        "[sys.argv[1:], os.environ.get('SLURM_TIME_FORMAT')]))\n" + body,
        encoding="utf-8",
    )
    script.chmod(0o755)
    return str(script)


def test_run_sacct_asks_sacct_for_the_month_and_reads_its_output(
    tmp_path: Path, settings: Any
) -> None:
    rate("cpu", "standard", "0.01", subsidy_percent="25")
    mapped("slurm", "chem", "chem-101")
    line = job("11001", cpus=72, elapsed="1-02:30:00")
    settings.OPENCHARGEBACK_SACCT_COMMAND = _fake_sacct(tmp_path, f"print({line!r})\n")

    report = run("slurm_usage", "--period", "2025-03", "--run-sacct", "--ingest")

    assert report["conversion"]["billed_cost"] == "14.31"
    argv, time_format = json.loads((tmp_path / "argv.json").read_text())
    assert time_format == "standard"
    assert argv[:4] == ["--allocations", "--parsable2", "--noheader", "--allusers"]
    assert argv[argv.index("--starttime") + 1] == "2025-03-01T00:00:00"
    assert argv[argv.index("--endtime") + 1] == "2025-04-01T00:00:00"
    assert argv[argv.index("--format") + 1] == SACCT_FIELDS.replace("|", ",")
    assert totals() == (Decimal("19.08"), Decimal("14.31"))


def test_a_failing_or_missing_sacct_is_one_line_and_writes_nothing(
    tmp_path: Path, settings: Any
) -> None:
    settings.OPENCHARGEBACK_SACCT_COMMAND = _fake_sacct(
        tmp_path,
        "sys.stderr.write('sacct: error: Problem talking to the database\\n')\nsys.exit(1)\n",
    )
    with pytest.raises(CommandError, match=r"exit 1.*Problem talking to the database"):
        call_command("slurm_usage", "--period", "2025-03", "--run-sacct", "--ingest")

    settings.OPENCHARGEBACK_SACCT_COMMAND = str(tmp_path / "no-such-sacct")
    with pytest.raises(CommandError, match=r"not found .*OPENCHARGEBACK_SACCT_COMMAND"):
        call_command("slurm_usage", "--period", "2025-03", "--run-sacct", "--what-if")
    assert not Import.objects.exists()


def test_no_billable_usage_is_said_plainly_and_imports_nothing(tmp_path: Path) -> None:
    path = sacct_file(tmp_path, job("12001", state="CANCELLED by 0"))

    with pytest.raises(CommandError) as caught:
        call_command("slurm_usage", "--period", "2025-03", "--sacct-file", str(path), "--ingest")

    assert str(caught.value).startswith("sacct.txt: no billable usage in 2025-03 (1 sacct line,")
    assert str(caught.value).endswith("; nothing was imported")
    assert not Import.objects.exists()
