"""Ingest: real-looking FOCUS files land whole, exactly, once."""

from __future__ import annotations

import csv
import gzip
import io
import json
import shutil
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.management import call_command
from django.db.models import Sum

from billing import flags
from billing.audit import Actor
from billing.models import PI, AuditEvent, BillingPeriod, Charge, PatternRule, Project, Source
from ingest.focus.services import IngestError, file_import
from ingest.models import Import
from tests.conftest import focus_row, tags

pytestmark = pytest.mark.django_db

FOCUS_10_COLUMNS = [
    "AvailabilityZone",
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "CommitmentDiscountCategory",
    "CommitmentDiscountId",
    "CommitmentDiscountName",
    "CommitmentDiscountStatus",
    "CommitmentDiscountType",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedCost",
    "ContractedUnitPrice",
    "EffectiveCost",
    "InvoiceIssuerName",
    "ListCost",
    "ListUnitPrice",
    "PricingCategory",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "RegionId",
    "RegionName",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "ServiceCategory",
    "ServiceName",
    "SkuId",
    "SkuPriceId",
    "SubAccountId",
    "SubAccountName",
    "Tags",
    "x_ServiceCode",
]


def _provider_row(**over: str) -> dict[str, str]:
    row = dict.fromkeys(FOCUS_10_COLUMNS, "")
    row.update(
        {
            "AvailabilityZone": "NULL",
            "BilledCost": "0.00000080000",
            "BillingAccountId": "123456789012",
            "BillingAccountName": 'Research, Inc. "Main" account',
            "BillingCurrency": "USD",
            "BillingPeriodEnd": "2024-10-01 00:00:00",
            "BillingPeriodStart": "2024-09-01 00:00:00",
            "ChargeCategory": "Usage",
            "ChargeClass": "NULL",
            "ChargeDescription": 'Storage, "hot" tier; per GB-hour',
            "ChargeFrequency": "Usage-Based",
            "ChargePeriodEnd": "2024-09-18 23:00:00",
            "ChargePeriodStart": "2024-09-18 22:00:00",
            "CommitmentDiscountCategory": "NULL",
            "CommitmentDiscountId": "NULL",
            "CommitmentDiscountName": "NULL",
            "CommitmentDiscountStatus": "NULL",
            "CommitmentDiscountType": "NULL",
            "ConsumedQuantity": "0.00010000000",
            "ConsumedUnit": "GB-Hours",
            "ContractedCost": "0.00000080000",
            "ContractedUnitPrice": "0.00800000000",
            "EffectiveCost": "0.00000080000",
            "InvoiceIssuerName": "Microsoft",
            "ListCost": "0.00000100000",
            "ListUnitPrice": "NULL",
            "PricingCategory": "Standard",
            "PricingQuantity": "0.00010000000",
            "PricingUnit": "1 GB/Hour",
            "ProviderName": "Microsoft",
            "PublisherName": "Microsoft",
            "RegionId": "eastus",
            "RegionName": "East US",
            "ResourceId": "/subscriptions/abc/resourceGroups/rg-bio/providers/x/y/vol1",
            "ResourceName": "vol1",
            "ResourceType": "Disk",
            "ServiceCategory": "Storage",
            "ServiceName": "Storage Accounts",
            "SkuId": "DZH318Z0BNVX",
            "SkuPriceId": "DZH318Z0BNVX/00C9",
            "SubAccountId": "sub-1",
            "SubAccountName": "Biology, Lab 3",
            "Tags": tags(
                pi_email="ada@example.edu", project_id="genome-x", fund_org="NSF-BIO-2024"
            ),
            "x_ServiceCode": "AzureStorage",
        }
    )
    row.update(over)
    return row


def _provider_file(path: Path) -> tuple[Path, list[dict[str, str]]]:
    rows = [
        _provider_row(),
        # Negative usage cost (a correction), 11 decimals.
        _provider_row(
            BilledCost="-0.12345678900",
            ContractedCost="-0.12345678900",
            EffectiveCost="-0.12345678900",
            ListCost="-0.20000000000",
            ResourceId="vol2",
            ResourceName="vol2",
        ),
        # NULL ListCost and NULL Tags: lands, flagged.
        _provider_row(
            ListCost="NULL",
            Tags="NULL",
            BilledCost="12.50000000000",
            ContractedCost="12.50000000000",
            EffectiveCost="12.50000000000",
            ResourceId="vm-9",
        ),
        # Tag keys with odd case and spaces.
        _provider_row(
            Tags='{"User:PI_Email ": "Grace@Example.edu", " Project_ID": "ocean-y", " org": '
            '"NOAA-OCN-7", "ms:Department": "Oceanography", "grant_number": 12345}',
            BilledCost="1234.56789012300",
            ContractedCost="1234.56789012300",
            EffectiveCost="1234.56789012300",
            ListCost="1500.00000000000",
            ResourceId="vm-10",
        ),
        # Invalid Tags JSON.
        _provider_row(
            Tags="{pi_email: broken",
            BilledCost="3.00000000000",
            ContractedCost="3.00000000000",
            EffectiveCost="3.00000000000",
            ResourceId="vm-11",
        ),
        # Second billing period in the same file.
        _provider_row(
            BillingPeriodStart="2024-10-01 00:00:00",
            BillingPeriodEnd="2024-11-01 00:00:00",
            ChargePeriodStart="2024-10-02 05:00:00",
            ChargePeriodEnd="2024-10-02 06:00:00",
            BilledCost="7.10000000100",
            ContractedCost="7.10000000100",
            EffectiveCost="7.10000000100",
            ListCost="8.00000000000",
            ResourceId="vm-12",
        ),
    ]
    # Two identical line items: both are charges.
    rows.append(dict(rows[0]))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FOCUS_10_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return path, rows


def test_provider_export_lands_every_row_exactly(
    defaults: None, tmp_path: Path, actor: Actor
) -> None:
    path, rows = _provider_file(tmp_path / "azure_focus_2024-09.csv")
    result = file_import(path=path, source=Source.objects.get(slug="azure"), actor=actor)

    assert result.status == "imported"
    assert result.charges_created == len(rows) == Charge.objects.count()
    assert result.periods == ["2024-09", "2024-10"]
    expected = sum((Decimal(r["BilledCost"]) for r in rows), Decimal(0))
    stored = Charge.objects.aggregate(total=Sum("billed_cost"))["total"]
    assert stored == expected == result.billed_total
    assert result.values_rounded == 0


def test_digits_beyond_a_nano_unit_are_rounded_half_even_and_reported(
    defaults: None, focus_file: Callable[..., Path], actor: Actor
) -> None:
    # Float noise as some exports carry it: 0.00036383999999999996.
    rows = [
        focus_row(resource="a", billed="0.00036383999999999996"),
        focus_row(resource="b", billed="0.0000000025"),  # exactly half: to even (2)
        focus_row(resource="c", billed="0.0000000035"),  # exactly half: to even (4)
    ]
    result = file_import(path=focus_file(rows), source=Source.objects.get(slug="aws"), actor=actor)
    assert result.values_rounded == 3 * 4  # four cost columns per row
    assert Charge.objects.get(resource_id="a").billed_cost == Decimal("0.00036384")
    assert Charge.objects.get(resource_id="b").billed_cost == Decimal("0.000000002")
    assert Charge.objects.get(resource_id="c").billed_cost == Decimal("0.000000004")
    assert Import.objects.get().values_rounded == 12


def test_provider_export_values_and_attribution(
    defaults: None, tmp_path: Path, actor: Actor
) -> None:
    path, _rows = _provider_file(tmp_path / "azure_focus_2024-09.csv")
    file_import(path=path, source=Source.objects.get(slug="azure"), actor=actor)

    first = Charge.objects.get(line_number=2)
    assert first.billed_cost == Decimal("0.0000008")
    assert first.list_cost == Decimal("0.000001")
    assert first.pi is not None
    assert first.pi.email == "ada@example.edu"
    assert first.project is not None
    assert first.project.project_id == "genome-x"
    assert first.fund_org == "NSF-BIO-2024"
    assert first.charge_description == 'Storage, "hot" tier; per GB-hour'
    assert first.sub_account_name == "Biology, Lab 3"
    assert first.charge_period_start is not None
    assert first.charge_period_start.isoformat() == "2024-09-18T22:00:00+00:00"
    assert first.review_state == Charge.ReviewState.APPROVED

    negative = Charge.objects.get(resource_id="vol2")
    assert negative.billed_cost == Decimal("-0.123456789")

    no_tags = Charge.objects.get(resource_id="vm-9")
    assert no_tags.list_cost == Decimal("12.5")  # NULL ListCost -> BilledCost
    assert set(no_tags.flag_reasons) == {"missing_pi", "missing_project", "missing_fund_org"}
    assert no_tags.review_state == Charge.ReviewState.PENDING

    odd = Charge.objects.get(resource_id="vm-10")
    assert odd.pi is not None
    assert odd.pi.email == "grace@example.edu"
    assert odd.project is not None
    assert odd.project.project_id == "ocean-y"
    assert odd.fund_org == "NOAA-OCN-7"
    assert odd.cost_center == "Oceanography"
    assert odd.reference_1 == "12345"
    assert odd.flags == 0

    broken = Charge.objects.get(resource_id="vm-11")
    assert "invalid_tags" in broken.flag_reasons
    assert broken.flag_details["invalid_tags"] == "{pi_email: broken"

    assert Charge.objects.get(resource_id="vm-12").period.period == "2024-10"
    assert (
        Charge.objects.filter(resource_id=first.resource_id, billed_cost=first.billed_cost).count()
        == 2
    )


def test_reimport_same_file_changes_nothing(defaults: None, tmp_path: Path, actor: Actor) -> None:
    path, rows = _provider_file(tmp_path / "azure_2024-09.csv")
    azure = Source.objects.get(slug="azure")
    file_import(path=path, source=azure, actor=actor)
    audit_count = AuditEvent.objects.count()

    again = file_import(path=path, source=azure, actor=actor)

    assert again.status == "already_imported"
    assert again.charges_created == 0
    assert Charge.objects.count() == len(rows)
    assert Import.objects.count() == 1
    assert AuditEvent.objects.count() == audit_count


def test_same_rows_gzipped_under_another_name_add_nothing(
    defaults: None, tmp_path: Path, actor: Actor
) -> None:
    path, rows = _provider_file(tmp_path / "azure_2024-09.csv")
    azure = Source.objects.get(slug="azure")
    file_import(path=path, source=azure, actor=actor)
    other = tmp_path / "export-copy.csv.gz"
    with open(path, "rb") as src, gzip.open(other, "wb") as dst:
        shutil.copyfileobj(src, dst)

    again = file_import(path=other, source=azure, actor=actor)

    assert again.status == "already_imported"
    assert again.duplicates_skipped == len(rows)
    assert Charge.objects.count() == len(rows)
    assert Import.objects.count() == 1


def test_parquet_with_the_same_rows_is_recognised(
    defaults: None, tmp_path: Path, actor: Actor
) -> None:
    rows = [focus_row(resource=f"r-{i}", billed=f"{i}.25") for i in range(5)]
    table = pa.table({key: [row[key] for row in rows] for key in rows[0]})
    path = tmp_path / "aws_2025-01.parquet"
    pq.write_table(table, path)

    result = file_import(path=path, source=Source.objects.get(slug="aws"), actor=actor)

    assert result.charges_created == 5
    assert result.billed_total == Decimal("11.25")
    assert Charge.objects.get(resource_id="r-3").line_number == 4  # row number in Parquet


def test_overlapping_month_to_date_export_adds_only_new_rows(
    defaults: None, focus_file: Callable[..., Path], actor: Actor
) -> None:
    aws = Source.objects.get(slug="aws")
    first_days = [focus_row(day=d, resource=f"r-{d}") for d in range(1, 11)]
    file_import(path=focus_file(first_days, name="mtd-10.csv"), source=aws, actor=actor)

    later = [focus_row(day=d, resource=f"r-{d}") for d in range(1, 16)]
    result = file_import(path=focus_file(later, name="mtd-15.csv"), source=aws, actor=actor)

    assert result.charges_created == 5
    assert result.duplicates_skipped == 10
    assert Charge.objects.count() == 15


def test_identical_line_items_in_one_file_are_all_kept_and_reimport_keeps_count(
    defaults: None, focus_file: Callable[..., Path], actor: Actor
) -> None:
    aws = Source.objects.get(slug="aws")
    same = focus_row(resource="", billed="2.00")  # no resource id at all
    path = focus_file([same, same, same], name="dupes.csv")

    assert file_import(path=path, source=aws, actor=actor).charges_created == 3
    # The same three rows in a new export next to a fourth identical one.
    bigger = focus_file([same, same, same, same], name="dupes-2.csv")
    result = file_import(path=bigger, source=aws, actor=actor)

    assert result.charges_created == 1
    assert Charge.objects.count() == 4
    assert sorted(Charge.objects.values_list("occurrence", flat=True)) == [0, 1, 2, 3]


def test_same_rows_for_another_source_are_separate_charges(
    defaults: None, focus_file: Callable[..., Path], actor: Actor
) -> None:
    path = focus_file([focus_row()], name="x.csv")
    file_import(path=path, source=Source.objects.get(slug="aws"), actor=actor)
    result = file_import(path=path, source=Source.objects.get(slug="gcp"), actor=actor)
    assert result.charges_created == 1
    assert Charge.objects.count() == 2


def test_review_decisions_survive_reimport_and_replace(
    defaults: None, focus_file: Callable[..., Path], actor: Actor
) -> None:
    aws = Source.objects.get(slug="aws")
    rows = [focus_row(resource=f"r-{i}", pi="") for i in range(3)]
    file_import(path=focus_file(rows, name="a.csv"), source=aws, actor=actor)
    Charge.objects.filter(resource_id="r-0").update(
        review_state=Charge.ReviewState.APPROVED, reviewed_by="rev"
    )

    file_import(
        path=focus_file([*rows, focus_row(resource="r-9", pi="")], name="b.csv"),
        source=aws,
        actor=actor,
    )
    assert Charge.objects.get(resource_id="r-0").review_state == Charge.ReviewState.APPROVED

    replaced = file_import(
        path=focus_file([rows[0], rows[2]], name="c.csv"), source=aws, actor=actor, replace=True
    )

    assert replaced.charges_created == 0
    assert replaced.charges_removed == 2  # r-1 and r-9 are gone
    assert set(Charge.objects.values_list("resource_id", flat=True)) == {"r-0", "r-2"}
    kept = Charge.objects.get(resource_id="r-0")
    assert kept.review_state == Charge.ReviewState.APPROVED
    assert kept.import_record_id == replaced.import_id
    assert set(Import.objects.values_list("status", flat=True)) == {"imported", "superseded"}
    assert AuditEvent.objects.filter(action="import.supersede").count() == 2


def test_replace_leaves_other_periods_and_sources_alone(
    defaults: None, focus_file: Callable[..., Path], actor: Actor
) -> None:
    aws, gcp = Source.objects.get(slug="aws"), Source.objects.get(slug="gcp")
    file_import(
        path=focus_file([focus_row(period="2025-01"), focus_row(period="2025-02")], name="two.csv"),
        source=aws,
        actor=actor,
    )
    file_import(
        path=focus_file([focus_row(period="2025-01")], name="g.csv"), source=gcp, actor=actor
    )

    file_import(
        path=focus_file([focus_row(period="2025-01", resource="new")], name="r.csv"),
        source=aws,
        actor=actor,
        replace=True,
    )

    assert Charge.objects.filter(source=aws, period__period="2025-02").count() == 1
    assert Charge.objects.filter(source=gcp).count() == 1
    assert list(
        Charge.objects.filter(source=aws, period__period="2025-01").values_list(
            "resource_id", flat=True
        )
    ) == ["new"]


def test_dry_run_reports_exactly_and_writes_nothing(
    defaults: None, focus_file: Callable[..., Path], actor: Actor
) -> None:
    rows = [focus_row(resource=f"r-{i}", billed="1.10") for i in range(4)] + [
        focus_row(resource="odd", pi="not-an-email")
    ]
    path = focus_file(rows)
    aws = Source.objects.get(slug="aws")
    before = (AuditEvent.objects.count(), PI.objects.count(), BillingPeriod.objects.count())

    dry = file_import(path=path, source=aws, actor=actor, dry_run=True, expected_period="2025-01")

    assert (AuditEvent.objects.count(), PI.objects.count(), BillingPeriod.objects.count()) == before
    assert Charge.objects.count() == 0
    assert Import.objects.count() == 0
    real = file_import(path=path, source=aws, actor=actor, expected_period="2025-01")
    assert dry.status == "dry_run"
    for key in ("charges_created", "flagged", "flags", "billed_total", "periods"):
        assert getattr(dry, key) == getattr(real, key), key
    assert dry.new_periods == ["2025-01"]
    again = file_import(path=path, source=aws, actor=actor, dry_run=True)
    assert again.charges_created == 0
    assert again.duplicates_skipped == 5


def test_every_flag_reason_is_stored(
    defaults: None, focus_file: Callable[..., Path], actor: Actor
) -> None:
    PatternRule.objects.create(name="gpu", pattern=r"(?i)gpu", target="any")
    rows = [
        focus_row(resource="owner", pi="ada@example.edu", project="shared"),
        focus_row(resource="all-wrong", tag_text=tags(pi_email="bob", fund_org="bad org")),
        focus_row(
            resource="gpu-node",
            service="GPU Cluster",
            billed="20000.00",
            currency="EUR",
            pi="eve@example.edu",
            project="shared",
            period="2024-12",
        ),
    ]
    file_import(
        path=focus_file(rows),
        source=Source.objects.get(slug="hpc"),
        actor=actor,
        expected_period="2025-01",
    )

    wrong = Charge.objects.get(resource_id="all-wrong")
    assert set(wrong.flag_reasons) == {"invalid_pi_email", "missing_project", "invalid_fund_org"}
    gpu = Charge.objects.get(resource_id="gpu-node")
    assert set(gpu.flag_reasons) == {
        "pattern_match",
        "period_mismatch",
        "currency_mismatch",
        "large_charge",
        "project_pi_mismatch",
    }
    assert gpu.flag_details["pattern_match"] == ["gpu"]
    assert gpu.flag_details["project_pi_mismatch"] == {"project_pi": "ada@example.edu"}
    assert gpu.period.period == "2024-12"
    assert Charge.objects.get(resource_id="owner").flags == 0
    assert Project.objects.get(project_id="shared").pi.email == "ada@example.edu"  # type: ignore[union-attr]


def test_disabled_flag_rule_is_not_applied(
    defaults: None, focus_file: Callable[..., Path], actor: Actor
) -> None:
    from billing.models import FlagRule

    FlagRule.objects.filter(reason="missing_fund_org").update(enabled=False)
    file_import(
        path=focus_file([focus_row(fund_org="")]),
        source=Source.objects.get(slug="aws"),
        actor=actor,
    )
    assert Charge.objects.get().flags == 0


def test_closed_period_refuses_file_and_open_one_accepts(
    defaults: None, focus_file: Callable[..., Path], actor: Actor
) -> None:
    BillingPeriod.objects.create(period="2025-01", status=BillingPeriod.Status.CLOSED)
    path = focus_file([focus_row(period="2025-02"), focus_row(period="2025-01")])
    with pytest.raises(IngestError, match=r"period 2025-01 is closed.*periods reopen 2025-01"):
        file_import(path=path, source=Source.objects.get(slug="aws"), actor=actor)
    assert Charge.objects.count() == 0
    assert not BillingPeriod.objects.filter(period="2025-02").exists()


def test_import_is_audited_with_the_acting_user(
    defaults: None, focus_file: Callable[..., Path]
) -> None:
    result = file_import(
        path=focus_file([focus_row()]),
        source=Source.objects.get(slug="aws"),
        actor=Actor(name="mallory", channel="cli"),
    )
    event = AuditEvent.objects.get(action="import.create")
    assert event.actor == "mallory"
    assert event.object_id == str(result.import_id)
    assert event.after is not None
    assert event.after["charges_created"] == 1
    record = Import.objects.get()
    assert record.actor == "mallory"
    assert record.billed_total == Decimal("10.00")


def test_original_file_is_kept_compressed(
    defaults: None, focus_file: Callable[..., Path], actor: Actor, settings: object
) -> None:
    path = focus_file([focus_row()])
    file_import(path=path, source=Source.objects.get(slug="aws"), actor=actor)
    record = Import.objects.get()
    assert record.stored_file.endswith(".csv.zst")
    stored = Path(settings.MEDIA_ROOT) / record.stored_file  # type: ignore[attr-defined]
    with pa.CompressedInputStream(str(stored), "zstd") as fh:
        assert fh.read() == path.read_bytes()
    assert not [p.name for p in stored.parent.parent.rglob("*") if p.name.startswith(".")]


def test_gzipped_file_is_kept_as_it_is(
    defaults: None, focus_file: Callable[..., Path], actor: Actor, settings: object
) -> None:
    plain = focus_file([focus_row()])
    packed = plain.with_suffix(".csv.gz")
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    file_import(path=packed, source=Source.objects.get(slug="aws"), actor=actor)
    record = Import.objects.get()
    stored = Path(settings.MEDIA_ROOT) / record.stored_file  # type: ignore[attr-defined]
    assert stored.read_bytes() == packed.read_bytes()


def test_ingest_command_json_output(
    defaults: None, focus_file: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = focus_file([focus_row(billed="0.10"), focus_row(resource="b", billed="0.20", pi="")])
    call_command(
        "ingest", str(path), "--source", "AWS", "--period", "2025-01", "--json", "--user", "ops"
    )
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "imported"
    assert out["charges_created"] == 2
    assert out["duplicates_skipped"] == 0
    assert out["flagged"] == 1
    assert out["flags"] == {"missing_pi": 1}
    assert out["billed_total"] == "0.30"
    assert out["periods"] == ["2025-01"]

    call_command("ingest", str(path), "--source", "aws", "--json")
    again = json.loads(capsys.readouterr().out)
    assert again["status"] == "already_imported"
    assert again["charges_created"] == 0

    call_command("ingest", str(path), "--source", "aws", "--json", "--dry-run")
    assert json.loads(capsys.readouterr().out)["status"] == "dry_run"


def test_ingest_command_detects_source_from_file_name(
    defaults: None, focus_file: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = focus_file([focus_row()], name="it_storage_2025-01.csv")
    call_command("ingest", str(path))
    assert "for it_storage" in capsys.readouterr().out
    assert Charge.objects.get().source.slug == "it_storage"


def test_periods_list_json_excludes_rejected(
    defaults: None,
    focus_file: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    actor: Actor,
) -> None:
    rows = [
        focus_row(resource="a", billed="1.50"),
        focus_row(resource="b", billed="2.25"),
        focus_row(resource="c", billed="4.00", pi=""),
    ]
    file_import(path=focus_file(rows), source=Source.objects.get(slug="aws"), actor=actor)
    Charge.objects.filter(resource_id="b").update(review_state=Charge.ReviewState.REJECTED)

    call_command("periods", "list", "--json")

    [period] = json.loads(capsys.readouterr().out)
    assert period == {
        "period": "2025-01",
        "status": "open",
        "charges": 3,
        "pending": 1,
        "rejected": 1,
        "billed_total": "5.50",
        "list_total": "5.50",
    }


def test_sources_add_and_list(defaults: None, capsys: pytest.CaptureFixture[str]) -> None:
    call_command("sources", "add", "IBM", "--name", "IBM Cloud", "--pattern", "ibm")
    call_command("sources", "list", "--json")
    listed = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert {"slug": "ibm", "name": "IBM Cloud"}.items() <= next(
        s for s in listed if s["slug"] == "ibm"
    ).items()
    assert AuditEvent.objects.filter(action="source.create", object_repr="ibm").exists()
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="already exists"):
        call_command("sources", "add", "ibm")


def test_flag_bits_are_stable() -> None:
    # Stored in the database: renumbering would corrupt existing charges.
    assert flags.BIT["missing_pi"] == 1
    assert flags.BIT["project_pi_mismatch"] == 512
    assert flags.BIT["invalid_tags"] == 1024


@pytest.mark.parametrize(
    ("name", "source", "period"),
    [
        ("aws_2025-01.csv", "aws", "2025-01"),
        ("it_storage_2025_01.csv.gz", "it_storage", "2025-01"),
        ("research-storage-202512.parquet", "storage", "2025-12"),
        ("Azure-export.csv", "azure", None),
        ("report-2025-13.csv", None, None),
    ],
)
def test_source_and_period_are_detected_from_file_names(
    defaults: None, name: str, source: str | None, period: str | None
) -> None:
    from billing.periods import period_in_name
    from billing.selectors import detect_source

    found = detect_source(name)
    assert (found.slug if found else None) == source
    assert period_in_name(name) == period


def test_new_pis_and_projects_are_created_once_each_with_an_audit_event(
    focus_file: Callable[..., Path], actor: Actor
) -> None:
    """First sight creates the registry rows in bulk; the owner is the first PI named."""
    rows = [
        focus_row(resource="untagged-first", pi="", project="late-owner"),
        focus_row(resource="owner-named", pi="bob@example.edu", project="late-owner"),
        focus_row(resource="other-pi", pi="cy@example.edu", project="late-owner"),
        focus_row(resource="again", pi="bob@example.edu", project="late-owner"),
        focus_row(resource="bob-second", pi="bob@example.edu", project="bob-2"),
        focus_row(resource="bad-email", pi="not-an-email", project="orphan"),
    ]
    file_import(path=focus_file(rows), source=Source.objects.get(slug="aws"), actor=actor)

    assert sorted(PI.objects.values_list("email", flat=True)) == [
        "bob@example.edu",
        "cy@example.edu",
    ]
    owners = dict(Project.objects.values_list("project_id", "pi__email"))
    assert owners == {"late-owner": "bob@example.edu", "bob-2": "bob@example.edu", "orphan": None}
    created = AuditEvent.objects.filter(action__in=["pi.create", "project.create"])
    assert sorted(created.values_list("action", "object_repr")) == [
        ("pi.create", "bob@example.edu"),
        ("pi.create", "cy@example.edu"),
        ("project.create", "bob-2"),
        ("project.create", "late-owner"),
        ("project.create", "orphan"),
    ]
    assert created.get(object_repr="late-owner").after == {
        "project_id": "late-owner",
        "pi": "bob@example.edu",
    }
    by_resource = {c.resource_id: set(c.flag_reasons) for c in Charge.objects.all()}
    assert by_resource["other-pi"] == {"project_pi_mismatch"}
    assert "project_pi_mismatch" not in by_resource["untagged-first"]
    assert by_resource["owner-named"] == by_resource["again"] == by_resource["bob-second"] == set()
