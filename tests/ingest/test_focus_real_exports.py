"""Real cloud exports read right: whole-row identity, dates and zones, NULLs,
sizes, FOCUS 1.0-preview to 1.3 columns, invoices, conformance, split allocation.

Every test writes its own files (CSV, CSV.gz, Parquet).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.management import call_command
from django.db.models import Field

from billing import flags
from billing.audit import Actor
from billing.models import Charge, Source
from ingest.focus.errors import IngestError
from ingest.focus.fingerprints import legacy_fingerprints
from ingest.focus.parsers import open_focus
from ingest.focus.rows import TEXT_FIELDS, TEXT_LIMITS, RowPreparer
from ingest.focus.services import file_import
from ingest.models import Import

PI_TAGS = json.dumps({"pi_email": "ada@example.edu", "project_id": "proj-a", "fund_org": "F-1"})


@pytest.fixture
def aws(defaults: None) -> Source:
    return Source.objects.get(slug="aws")


def row(**values: str) -> dict[str, str]:
    base = {
        "BillingPeriodStart": "2024-09-01T00:00:00Z",
        "BillingPeriodEnd": "2024-10-01T00:00:00Z",
        "ChargePeriodStart": "2024-09-03T00:00:00Z",
        "ChargePeriodEnd": "2024-09-04T00:00:00Z",
        "ListCost": "2.50",
        "BilledCost": "2.00",
        "BillingCurrency": "USD",
        "ChargeCategory": "Usage",
        "ResourceId": "i-0abc",
        "ResourceName": "web",
        "ServiceName": "Amazon EC2",
        "Tags": PI_TAGS,
    }
    base.update(values)
    return base


def write_csv(path: Path, rows: Sequence[dict[str, str]], *, gz: bool = False) -> Path:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    data = buffer.getvalue().encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def load(path: Path, source: Source, actor: Actor, **kwargs: Any) -> Any:
    return file_import(path=path, source=source, actor=actor, **kwargs)


# --- 1. whole-row identity ------------------------------------------------------------


# The version 1 fingerprints of tests/fixed rows, computed with the code
# before version 2 existed: the old algorithm must keep these bytes.
V1_FIXED = [
    ("bc70707baeaa4de0714567faeb5d72f2", 0),
    ("bc70707baeaa4de0714567faeb5d72f2", 1),
    ("d95253311418cd95784c70071ed4bac3", 0),
]
FIXED_CSV = (
    "BillingPeriodStart,BillingPeriodEnd,ChargePeriodStart,ChargePeriodEnd,ListCost,BilledCost,"
    "BillingCurrency,ResourceId,ResourceName,ServiceName,x_Extra,Tags\n"
    "2024-09-01T00:00:00Z,2024-10-01T00:00:00Z,2024-09-03T00:00:00Z,2024-09-04T00:00:00Z,"
    '2.50,2.00,USD,i-0abc,web,Amazon EC2,alpha,"{""pi_email"": ""ada@example.edu""}"\n'
    "2024-09-01T00:00:00Z,2024-10-01T00:00:00Z,2024-09-03T00:00:00Z,2024-09-04T00:00:00Z,"
    '2.50,2.00,USD,i-0abc,web,Amazon EC2,beta,"{""pi_email"": ""ada@example.edu""}"\n'
    "2024-09-01T00:00:00Z,2024-10-01T00:00:00Z,2024-09-03T00:00:00Z,2024-09-04T00:00:00Z,"
    "1,1,USD,NULL,NULL,Amazon S3,,\n"
)


def test_version_1_fingerprint_bytes_are_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "fixed.csv"
    path.write_text(FIXED_CSV)
    reader = open_focus(path)
    preparer = RowPreparer(reader, lambda v: v, legacy_periods=frozenset({"2024-09"}))
    prepared = [p for c in reader.chunks() if (p := preparer.prepare(c)) is not None]
    assert prepared[0].legacy == V1_FIXED
    # ... and version 2 tells the first two rows apart (they differ in x_Extra).
    fingerprints = [base[1] for base in prepared[0].bases]
    assert len(set(fingerprints)) == 3
    assert [base[2] for base in prepared[0].bases] == [0, 0, 0]


def test_rows_differing_only_in_unrecognised_columns_are_two_charges(
    tmp_path: Path, aws: Source, actor: Actor
) -> None:
    rows = [row(x_CostCategory="a"), row(x_CostCategory="b"), row(AllocatedResourceId="pod-1")]
    result = load(write_csv(tmp_path / "part1.csv", rows), aws, actor)
    assert result.charges_created == 3
    assert result.duplicates_skipped == 0


def test_column_order_and_an_added_empty_column_do_not_change_identity(
    tmp_path: Path, aws: Source, actor: Actor
) -> None:
    rows = [row(x_a="1"), row(x_a="2")]
    load(write_csv(tmp_path / "a.csv", rows), aws, actor)
    reordered = [dict(reversed(list(r.items()))) | {"x_new": ""} for r in rows]
    again = load(write_csv(tmp_path / "b.csv", reordered), aws, actor)
    assert again.status == "already_imported"
    assert Charge.objects.count() == 2


def test_identical_rows_keep_the_occurrence_rule(tmp_path: Path, aws: Source, actor: Actor) -> None:
    load(write_csv(tmp_path / "a.csv", [row(), row()]), aws, actor)
    more = load(write_csv(tmp_path / "b.csv", [row(), row(), row()]), aws, actor)
    assert more.charges_created == 1
    assert more.duplicates_skipped == 2
    assert sorted(Charge.objects.values_list("occurrence", flat=True)) == [0, 1, 2]


def test_a_provisional_invoice_id_is_not_part_of_the_identity(
    tmp_path: Path, aws: Source, actor: Actor
) -> None:
    load(write_csv(tmp_path / "mtd.csv", [row(InvoiceId="")]), aws, actor)
    final = load(write_csv(tmp_path / "final.csv", [row(InvoiceId="INV-9")]), aws, actor)
    assert final.status == "already_imported"


def _make_version_1(import_id: int, path: Path) -> None:
    """Turn an import into what the code before version 2 stored."""
    reader = open_focus(path)
    preparer = RowPreparer(reader, lambda v: v, legacy_periods=frozenset({"2024-09"}))
    keys = [k for c in reader.chunks() for k in (preparer.prepare(c).legacy or [])]  # type: ignore[union-attr]
    charges = list(Charge.objects.filter(import_record_id=import_id).order_by("line_number"))
    for charge, key in zip(charges, keys, strict=True):
        assert key is not None
        charge.fingerprint, charge.occurrence = key
        charge.save(update_fields=["fingerprint", "occurrence"])
    Import.objects.filter(pk=import_id).update(fingerprint_version=1)


def test_files_imported_with_version_1_stay_idempotent(
    tmp_path: Path, aws: Source, actor: Actor
) -> None:
    rows = [row(x_a="1"), row(x_a="2"), row(ResourceId="i-2")]
    first = load(write_csv(tmp_path / "sept.csv", rows), aws, actor)
    _make_version_1(first.import_id, tmp_path / "sept.csv")
    # The same rows in another file (gzipped: another SHA-256) change nothing...
    again = load(write_csv(tmp_path / "sept.csv.gz", rows, gz=True), aws, actor)
    assert again.status == "already_imported", again
    # ... and a month-to-date re-export adds only its new row.
    later = load(write_csv(tmp_path / "sept2.csv", [*rows, row(ResourceId="i-3")]), aws, actor)
    assert (later.charges_created, later.duplicates_skipped) == (1, 3)
    assert Import.objects.get(pk=later.import_id).fingerprint_version == 2


def test_v1_parquet_timestamps_match_with_their_old_text(
    tmp_path: Path, aws: Source, actor: Actor
) -> None:
    table = pa.table(
        {
            "BillingPeriodStart": pa.array(
                [datetime(2024, 9, 1, tzinfo=UTC)] * 2, pa.timestamp("us", tz="UTC")
            ),
            "BilledCost": ["1.00", "2.00"],
            "Tags": [PI_TAGS, PI_TAGS],
        }
    )
    path = tmp_path / "sept.parquet"
    pq.write_table(table, path)
    first = load(path, aws, actor)
    _make_version_1(first.import_id, path)
    legacy = Charge.objects.values_list("fingerprint", flat=True)
    # The old reader hashed the timestamp without its zone.
    columns = {
        "BillingPeriodStart": ["2024-09-01T00:00:00.000000"] * 2,
        "BilledCost": ["1.00", "2.00"],
        "Tags": [PI_TAGS, PI_TAGS],
    }
    assert sorted(legacy) == sorted(d.hex() for d in legacy_fingerprints(columns))
    pq.write_table(table, tmp_path / "copy.parquet", compression="gzip")
    assert load(tmp_path / "copy.parquet", aws, actor).status == "already_imported"


# --- 2. dates and zones ---------------------------------------------------------------


def _instants() -> list[tuple[str, Any, Any]]:
    return list(
        Charge.objects.order_by("line_number").values_list(
            "period__period", "charge_period_start", "charge_period_end"
        )
    )


@pytest.mark.parametrize("kind", ["csv", "parquet-tz", "parquet-string"])
def test_an_offset_never_moves_the_billing_month(
    tmp_path: Path, aws: Source, actor: Actor, kind: str
) -> None:
    plus2 = timezone(timedelta(hours=2))
    start = datetime(2024, 10, 1, tzinfo=plus2)
    text = "2024-10-01T00:00:00+02:00"
    if kind == "csv":
        path = write_csv(
            tmp_path / "oct.csv",
            [row(BillingPeriodStart=text, ChargePeriodStart=text, ChargePeriodEnd=text)],
        )
    else:
        if kind == "parquet-tz":
            column: Any = pa.array([start], pa.timestamp("s", tz="+02:00"))
        else:
            column = pa.array([text])
        path = tmp_path / "oct.parquet"
        pq.write_table(
            pa.table(
                {
                    "BillingPeriodStart": column,
                    "ChargePeriodStart": column,
                    "ChargePeriodEnd": column,
                    "BilledCost": ["2.00"],
                    "Tags": [PI_TAGS],
                }
            ),
            path,
        )
    result = load(path, aws, actor)
    assert result.periods == ["2024-10"]
    instant = datetime(2024, 9, 30, 22, 0, tzinfo=UTC)
    assert _instants() == [("2024-10", instant, instant)]


@pytest.mark.parametrize("kind", ["naive", "date32"])
def test_parquet_without_a_zone_reads_like_csv_without_one(
    tmp_path: Path, aws: Source, actor: Actor, kind: str
) -> None:
    if kind == "naive":
        column: Any = pa.array([datetime(2024, 10, 1)], pa.timestamp("ms"))
        text = "2024-10-01T00:00:00"
    else:
        column = pa.array([date(2024, 10, 1)], pa.date32())
        text = "2024-10-01"
    path = tmp_path / "oct.parquet"
    pq.write_table(
        pa.table(
            {
                "BillingPeriodStart": column,
                "ChargePeriodStart": column,
                "BilledCost": ["2.00"],
                "Tags": [PI_TAGS],
            }
        ),
        path,
    )
    load(path, aws, actor)
    from_parquet = _instants()
    Charge.objects.all().delete()
    Import.objects.all().delete()
    csv_path = write_csv(
        tmp_path / "oct.csv", [row(BillingPeriodStart=text, ChargePeriodStart=text)]
    )
    load(csv_path, aws, actor)
    assert [r[:2] for r in _instants()] == [r[:2] for r in from_parquet]
    assert from_parquet[0][:2] == ("2024-10", datetime(2024, 10, 1, tzinfo=UTC))


# --- 3. NULLs and sizes --------------------------------------------------------------


def test_null_text_means_no_value_in_every_column(
    tmp_path: Path, aws: Source, actor: Actor
) -> None:
    nulls = {
        "ListCost": "NULL",
        "BillingCurrency": "NULL",
        "ResourceId": "null",
        "ResourceName": "NULL",
        "ChargePeriodStart": "NULL",
        "ChargeCategory": "NULL",
        "ConsumedQuantity": "NULL",
        "ConsumedUnit": "NULL",
        "SubAccountName": "NULL",
        "InvoiceId": "NULL",
        "x_Vendor": "NULL",
    }
    path = write_csv(tmp_path / "nulls.csv", [row(**nulls), row(**nulls, Tags="NULL")])
    result = load(path, aws, actor)
    assert result.charges_created == 2  # they differ in Tags only
    charge = Charge.objects.get(line_number=2)
    assert (charge.resource_name, charge.resource_id, charge.billing_currency) == ("", "", "")
    assert (charge.consumed_quantity, charge.consumed_unit, charge.invoice_id) == ("", "", "")
    assert charge.charge_period_start is None
    assert charge.list_cost == Decimal("2.00")  # no ListCost: the billed cost
    assert not Charge.objects.filter(resource_name="NULL").exists()
    assert not Charge.objects.filter(billing_currency="NUL").exists()


def test_parquet_nulls_and_csv_null_text_are_the_same_row(
    tmp_path: Path, aws: Source, actor: Actor
) -> None:
    load(write_csv(tmp_path / "a.csv", [row(ResourceName="NULL", x_a="NULL")]), aws, actor)
    first = row()
    table = pa.table(
        {
            **{k: [v] for k, v in first.items() if k != "ResourceName"},
            "ResourceName": pa.array([None], pa.string()),
            "x_a": pa.array([None], pa.int64()),
        }
    )
    pq.write_table(table, tmp_path / "a.parquet")
    assert load(tmp_path / "a.parquet", aws, actor).status == "already_imported"


def test_long_text_is_refused_naming_line_and_column(
    tmp_path: Path, aws: Source, actor: Actor
) -> None:
    path = write_csv(tmp_path / "long.csv", [row(), row(ServiceName="S" * 201)])
    with pytest.raises(IngestError) as excinfo:
        load(path, aws, actor)
    message = str(excinfo.value)
    assert "long.csv, line 3, column 11 (ServiceName): 201 characters, over the 200" in message
    assert Charge.objects.count() == 0


def test_long_resource_names_and_exact_quantities_are_kept_in_full(
    tmp_path: Path, aws: Source, actor: Actor
) -> None:
    quantity = "123456789012345678901234567890.123456789012345678901234567890"
    name = "n" * 400
    load(
        write_csv(tmp_path / "q.csv", [row(ResourceName=name, ConsumedQuantity=quantity)]),
        aws,
        actor,
    )
    charge = Charge.objects.get()
    assert (charge.resource_name, charge.consumed_quantity) == (name, quantity)


@pytest.mark.parametrize("value", ["US", "DOLLARS", "U$D"])
def test_billing_currency_must_be_a_three_letter_code(
    tmp_path: Path, aws: Source, actor: Actor, value: str
) -> None:
    with pytest.raises(IngestError) as excinfo:
        load(write_csv(tmp_path / "c.csv", [row(BillingCurrency=value)]), aws, actor)
    assert "c.csv, line 2, column 7 (BillingCurrency): not a 3-letter code" in str(excinfo.value)


def test_lower_case_currency_is_upper_cased(tmp_path: Path, aws: Source, actor: Actor) -> None:
    load(write_csv(tmp_path / "c.csv", [row(BillingCurrency="usd")]), aws, actor)
    assert Charge.objects.get().billing_currency == "USD"


def test_text_limits_follow_the_charge_model() -> None:
    for name, limit in TEXT_LIMITS.items():
        field = Charge._meta.get_field(TEXT_FIELDS[name])
        assert isinstance(field, Field), name
        assert field.max_length == limit, name


@pytest.mark.parametrize("value", [["a", "b"], {"code": "a"}])
def test_an_object_or_array_tag_value_flags_and_is_never_an_id(
    tmp_path: Path, aws: Source, actor: Actor, value: Any
) -> None:
    tags = json.dumps({"pi_email": "ada@example.edu", "project_id": value, "fund_org": "F-1"})
    load(write_csv(tmp_path / "t.csv", [row(Tags=tags)]), aws, actor)
    charge = Charge.objects.get()
    assert charge.project is None
    assert "invalid_tags" in flags.from_mask(charge.flags)


def test_an_empty_billed_cost_column_is_one_sentence(
    tmp_path: Path, aws: Source, actor: Actor, settings: Any
) -> None:
    settings.OPENCHARGEBACK_INGEST_CHUNK_ROWS = 2  # every chunk empty, not just the first
    rows = [row(BilledCost=v) for v in ("", "NULL", "", "", "", "")]
    with pytest.raises(IngestError) as excinfo:
        load(write_csv(tmp_path / "empty.csv", rows), aws, actor)
    assert str(excinfo.value) == (
        "empty.csv: BilledCost is empty in every row; a FOCUS file must have a billed cost "
        "for each row; nothing was imported"
    )


def test_empty_billed_cost_before_real_ones_names_the_cells(
    tmp_path: Path, aws: Source, actor: Actor, settings: Any
) -> None:
    settings.OPENCHARGEBACK_INGEST_CHUNK_ROWS = 2
    rows = [row(BilledCost=""), row(BilledCost=""), row(BilledCost="1")]
    with pytest.raises(IngestError) as excinfo:
        load(write_csv(tmp_path / "part.csv", rows), aws, actor)
    assert "part.csv, line 2, column 6 (BilledCost): not a number: ''" in str(excinfo.value)
    assert Charge.objects.count() == 0


# --- 4. FOCUS 1.0-preview to 1.3 -----------------------------------------------------------


def test_focus_1_0_preview_names_are_recognised(tmp_path: Path, aws: Source, actor: Actor) -> None:
    preview = row(Provider="AWS", Publisher="AWS", UsageQuantity="1.5", UsageUnit="Hours")
    preview["ChargeType"] = preview.pop("ChargeCategory")
    load(write_csv(tmp_path / "preview.csv", [preview]), aws, actor)
    charge = Charge.objects.get()
    assert (charge.provider_name, charge.publisher_name) == ("AWS", "AWS")
    assert (charge.consumed_quantity, charge.consumed_unit, charge.charge_category) == (
        "1.5",
        "Hours",
        "Usage",
    )


def test_the_current_name_wins_over_an_older_one_beside_it(
    tmp_path: Path, aws: Source, actor: Actor
) -> None:
    load(write_csv(tmp_path / "both.csv", [row(Provider="old", ProviderName="new")]), aws, actor)
    assert Charge.objects.get().provider_name == "new"


def test_focus_1_3_columns_are_stored(tmp_path: Path, aws: Source, actor: Actor) -> None:
    new = row(
        ProviderName="Microsoft",
        ServiceProviderName="Contoso SaaS",
        HostProviderName="Microsoft",
        PublisherName="Contoso",
        InvoiceId="INV-1",
        ChargeClass="",
        BillingAccountId="ba-1",
        BillingAccountName="University",
        PricingCurrency="CREDITS",
        PricingCurrencyListUnitPrice="0.000123456789012",
        PricingCurrencyContractedUnitPrice="0.0001",
        PricingCurrencyEffectiveCost="12.3456789012345",
        AllocatedMethodId="",
    )
    load(write_csv(tmp_path / "v13.csv", [new]), aws, actor)
    charge = Charge.objects.get()
    assert charge.provider_name == "Contoso SaaS"
    assert (charge.host_provider_name, charge.publisher_name) == ("Microsoft", "Contoso")
    assert (charge.billing_account_id, charge.billing_account_name) == ("ba-1", "University")
    assert charge.invoice_id == "INV-1"
    assert charge.pricing_currency == "CREDITS"
    assert charge.pricing_currency_list_unit_price == "0.000123456789012"
    assert charge.pricing_currency_effective_cost == "12.3456789012345"
    assert charge.billed_cost == Decimal("2.00")  # PricingCurrency amounts are never money


def test_correction_rows_keep_the_period_they_correct(
    tmp_path: Path, aws: Source, actor: Actor
) -> None:
    correction = row(
        ChargeClass="Correction",
        ChargePeriodStart="2024-08-10T00:00:00Z",
        ChargePeriodEnd="2024-08-11T00:00:00Z",
        BilledCost="-0.40",
        ListCost="-0.40",
    )
    result = load(write_csv(tmp_path / "sept.csv", [row(), correction]), aws, actor)
    assert result.periods == ["2024-09"]
    fixed = Charge.objects.get(charge_class="Correction")
    assert fixed.period.period == "2024-09"
    assert fixed.charge_period_start == datetime(2024, 8, 10, tzinfo=UTC)
    assert fixed.billed_cost == Decimal("-0.40")


def test_invoice_totals_are_exact_per_invoice(tmp_path: Path, aws: Source, actor: Actor) -> None:
    rows = [
        row(InvoiceId="INV-1", BilledCost="0.000000001", ResourceId="a"),
        row(InvoiceId="INV-1", BilledCost="10.10", ResourceId="b"),
        row(InvoiceId="INV-2", BilledCost="-1", ResourceId="c", ChargeCategory="Credit"),
        row(InvoiceId="", BilledCost="3", ResourceId="d"),
    ]
    result = load(write_csv(tmp_path / "inv.csv", rows), aws, actor)
    expected = {"": "3.00", "INV-1": "10.100000001", "INV-2": "-1.00"}
    assert result.invoice_totals == expected
    assert Import.objects.get(pk=result.import_id).invoice_totals == expected
    assert result.as_dict()["invoice_totals"] == expected


def _allocation_rows() -> list[dict[str, str]]:
    origin_tags = json.dumps({"team": "platform"})
    common = {
        "ResourceId": "eks-cluster-1",
        "ServiceName": "Amazon EKS",
        "Tags": origin_tags,
    }
    return [
        row(**common, BilledCost="10.00", ListCost="10.00", AllocatedMethodId=""),
        row(
            **common,
            BilledCost="6.00",
            ListCost="6.00",
            AllocatedMethodId="aws-split-cpu",
            AllocatedResourceId="pod-a",
            AllocatedResourceName="pod a",
            AllocatedTags=PI_TAGS,
        ),
        row(
            **common,
            BilledCost="4.00",
            ListCost="4.00",
            AllocatedMethodId="aws-split-cpu",
            AllocatedResourceId="pod-b",
            AllocatedTags=json.dumps(
                {"pi_email": "bob@example.edu", "project_id": "proj-b", "fund_org": "F-2"}
            ),
        ),
        row(ResourceId="i-other", BilledCost="1.00", ListCost="1.00"),
    ]


def test_split_allocation_bills_the_allocated_rows_never_the_origin(
    tmp_path: Path, aws: Source, actor: Actor
) -> None:
    result = load(write_csv(tmp_path / "eks.csv", _allocation_rows()), aws, actor)
    assert (result.rows_read, result.charges_created, result.allocation_origins) == (4, 3, 1)
    assert result.billed_total == Decimal("11.00")
    pods = Charge.objects.filter(resource_id="eks-cluster-1").order_by("allocated_resource_id")
    assert [(c.allocated_resource_id, c.pi.email, c.project.project_id) for c in pods] == [  # type: ignore[union-attr]
        ("pod-a", "ada@example.edu", "proj-a"),
        ("pod-b", "bob@example.edu", "proj-b"),
    ]
    assert pods[0].tags["team"] == "platform"  # Tags kept beside AllocatedTags
    assert pods[0].allocated_method_id == "aws-split-cpu"
    assert pods[0].allocated_resource_name == "pod a"
    again = load(write_csv(tmp_path / "eks.csv.gz", _allocation_rows(), gz=True), aws, actor)
    assert again.status == "already_imported"


def test_split_allocation_across_chunks_and_in_parquet(
    tmp_path: Path, aws: Source, actor: Actor, settings: Any
) -> None:
    settings.OPENCHARGEBACK_INGEST_CHUNK_ROWS = 1  # the origin before its allocated rows
    rows = _allocation_rows()
    table = pa.table({k: [r.get(k, "") for r in rows] for k in rows[1]})
    pq.write_table(table, tmp_path / "eks.parquet")
    result = load(tmp_path / "eks.parquet", aws, actor)
    assert (result.charges_created, result.allocation_origins) == (3, 1)
    assert result.billed_total == Decimal("11.00")


def test_conformance_summary_names_rules_rows_and_first_lines(
    tmp_path: Path, aws: Source, actor: Actor
) -> None:
    rows = [
        row(ResourceId="a", BilledCost="-1", ListCost="-1"),
        row(ResourceId="b", BillingCurrency=""),
        row(ResourceId="c", ListCost="1.00", BilledCost="2.00"),
        row(ResourceId="d", ChargePeriodStart="2024-09-05T00:00:00Z"),
        row(ResourceId="e", BilledCost="-2", ListCost="-2", ChargeCategory="Credit"),
    ]
    result = load(write_csv(tmp_path / "conf.csv", rows), aws, actor, dry_run=True)
    rules = {e["rule"]: (e["rows"], e["lines"]) for e in result.conformance}
    assert rules["negative_cost"] == (1, [2])
    assert rules["billing_currency_missing"] == (1, [3])
    assert rules["list_below_billed"] == (1, [4])
    assert rules["charge_period_reversed"] == (1, [5])
    missing = next(e for e in result.conformance if e["rule"] == "missing_columns")
    assert "BillingAccountId" in missing["columns"]
    assert result.status == "dry_run"


def test_ingest_command_prints_invoices_and_conformance(
    tmp_path: Path, aws: Source, capsys: Any
) -> None:
    rows = [row(InvoiceId="INV-7", BilledCost="-1", ListCost="-1"), row(ResourceId="z")]
    path = write_csv(tmp_path / "cmd.csv", rows)
    out = io.StringIO()
    call_command("ingest", str(path), "--source", "aws", "--dry-run", stdout=out)
    text = out.getvalue()
    assert "invoice INV-7: billed -1.00" in text
    assert "invoice (no InvoiceId): billed 2.00" in text
    assert (
        "FOCUS: BilledCost is negative outside ChargeCategory Credit or Adjustment: 1 rows" in text
    )
    out = io.StringIO()
    call_command("ingest", str(path), "--source", "aws", "--json", stdout=out)
    data = json.loads(out.getvalue())
    assert data["files"][0]["invoice_totals"] == {"": "2.00", "INV-7": "-1.00"}
    imported = Import.objects.get(pk=data["files"][0]["import_id"])
    assert {e["rule"] for e in imported.conformance} >= {"negative_cost", "missing_columns"}
