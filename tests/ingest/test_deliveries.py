"""Deliveries: a month's part files imported together (one transaction, one
record per file, occurrences counted across them, --replace makes the month
their union), and a multi-provider file routed to sources by provider."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from decimal import Decimal
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from billing.audit import Actor
from billing.models import AuditEvent, BillingPeriod, Charge, Source
from billing.review import charges_review
from ingest.focus import importer
from ingest.focus.services import DeliveryFile, delivery_import, file_import
from ingest.models import Import
from tests.conftest import FOCUS_COLUMNS, focus_row, write_focus

pytestmark = pytest.mark.django_db

PROVIDER_COLUMNS = [*FOCUS_COLUMNS, "ProviderName"]


def row(resource: str, billed: str = "1.25", **extra: Any) -> dict[str, str]:
    return focus_row(resource=resource, billed=billed, **extra)


def ingest(*args: str) -> str:
    out = StringIO()
    call_command("ingest", *args, stdout=out)
    return out.getvalue()


def ingest_json(*args: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ingest(*args, "--json"))
    return data


def state() -> dict[str, Any]:
    """Everything an import writes, to compare before and after a refused one."""
    return {
        "charges": sorted(
            Charge.objects.values_list(
                "source__slug", "resource_id", "occurrence", "billed_cost", "import_record_id"
            )
        ),
        "imports": sorted(Import.objects.values_list("pk", "status")),
        "periods": sorted(BillingPeriod.objects.values_list("period", flat=True)),
        "audit": AuditEvent.objects.count(),
    }


def kept_files(settings: Any) -> list[Path]:
    root = Path(settings.MEDIA_ROOT) / "imports"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.fixture
def parts(tmp_path: Path) -> Callable[..., list[Path]]:
    """parts(rows_1, rows_2, ..., names=...) writes one CSV per list of rows."""

    def make(*row_lists: list[dict[str, str]], names: list[str] | None = None) -> list[Path]:
        names = names or [f"aws_2025-01_part{i + 1}.csv" for i in range(len(row_lists))]
        return [
            write_focus(tmp_path / name, rows) for name, rows in zip(names, row_lists, strict=True)
        ]

    return make


# --- part files of one delivery -------------------------------------------------------


def test_rows_identical_across_part_files_are_distinct_charges(defaults: None, parts: Any) -> None:
    """The bug: part 2 repeating a line item of part 1 lost it as a 'duplicate'."""
    p1, p2 = parts(
        [row("vm-1"), row("vm-2", "0.02"), row("vm-3")],
        [row("vm-2", "0.02"), row("vm-4", "2.00"), row("vm-2", "0.02")],
    )
    out = ingest(str(p1), str(p2), "--source", "aws")
    assert Charge.objects.count() == 6
    vm2 = Charge.objects.filter(resource_id="vm-2")
    assert sorted(vm2.values_list("occurrence", flat=True)) == [0, 1, 2]
    records = list(Import.objects.order_by("pk"))
    assert [r.file_name for r in records] == [str(p1), str(p2)]
    assert records[0].delivery is not None
    assert records[0].delivery == records[1].delivery
    assert [r.charges_created for r in records] == [3, 3]
    assert [r.duplicates_skipped for r in records] == [0, 0]
    assert [r.sha256 for r in records] == [
        hashlib.sha256(p.read_bytes()).hexdigest() for p in (p1, p2)
    ]
    # Line numbers are each file's own.
    assert sorted(
        Charge.objects.filter(import_record=records[1]).values_list("line_number", flat=True)
    ) == [2, 3, 4]
    assert Charge.objects.filter(import_record=records[0]).count() == 3
    # One line per file (and its FOCUS conformance notes, indented), then the delivery's.
    lines = [line for line in out.splitlines() if not line.startswith("  ")]
    assert len(lines) == 3
    assert lines[2].startswith(f"delivery 1 of 1 (aws, 2025-01): 2 files ({p1}, {p2}); ")
    assert "imported 6 charges, billed $4.56 (exact 4.56); 0 duplicates skipped" in lines[2]
    assert f"[delivery {records[0].delivery}]" in lines[2]
    total = sum(Charge.objects.values_list("billed_cost", flat=True), Decimal(0))
    assert total == Decimal("4.56")


def test_occurrences_are_shared_through_the_parallel_parser(
    defaults: None, parts: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "PARALLEL_MIN_BYTES", 0)  # every file in a helper process
    p1, p2 = parts([row("vm-1"), row("vm-2")], [row("vm-1"), row("vm-1"), row("vm-3")])
    ingest(str(p1), str(p2), "--source", "aws")
    assert sorted(Charge.objects.values_list("resource_id", "occurrence")) == [
        ("vm-1", 0),
        ("vm-1", 1),
        ("vm-1", 2),
        ("vm-2", 0),
        ("vm-3", 0),
    ]


def test_reimporting_a_delivery_changes_nothing_and_a_later_one_adds_only_new_rows(
    defaults: None, parts: Any, tmp_path: Path
) -> None:
    p1, p2 = parts([row("vm-1"), row("vm-2")], [row("vm-2"), row("vm-3")])
    ingest(str(p1), str(p2), "--source", "aws")
    before = state()
    out = ingest(str(p1), str(p2), "--source", "aws")
    assert state() == before
    assert "already imported; nothing changed" in out.splitlines()[-1]
    # Month to date: part 1 unchanged, part 2 grew (one more vm-2 and a new vm-4).
    write_focus(p2, [row("vm-2"), row("vm-3"), row("vm-2"), row("vm-4")])
    data = ingest_json(str(p1), str(p2), "--source", "aws")
    assert data["charges_created"] == 2
    assert [f["status"] for f in data["files"]] == ["already_imported", "imported"]
    assert data["files"][1]["duplicates_skipped"] == 2
    assert sorted(Charge.objects.values_list("resource_id", "occurrence")) == [
        ("vm-1", 0),
        ("vm-2", 0),
        ("vm-2", 1),
        ("vm-2", 2),
        ("vm-3", 0),
        ("vm-4", 0),
    ]
    # The part that added nothing left no import record.
    assert Import.objects.count() == 3
    assert len(data["deliveries"]) == 1
    assert data["deliveries"][0]["files"] == [str(p1), str(p2)]


def test_a_file_given_twice_is_refused(defaults: None, parts: Any) -> None:
    (p1,) = parts([row("vm-1")])
    with pytest.raises(CommandError, match=r"the same file as .*part1\.csv .*nothing was imported"):
        ingest(str(p1), str(p1), "--source", "aws")
    assert Charge.objects.count() == 0


def test_one_bad_file_refuses_the_whole_delivery(defaults: None, parts: Any, settings: Any) -> None:
    p1, p2 = parts([row("vm-1"), row("vm-2")], [row("vm-3"), row("vm-4", "abc")])
    before = state()
    with pytest.raises(CommandError) as info:
        ingest(str(p1), str(p2), "--source", "aws")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{p2}, line 3, column 7 (BilledCost): not a number: 'abc'")
    assert state() == before
    assert Import.objects.count() == 0
    assert Charge.objects.count() == 0
    assert kept_files(settings) == []


def test_without_replace_files_of_other_months_are_separate_deliveries(
    defaults: None, parts: Any
) -> None:
    jan, feb, jan2 = parts(
        [row("vm-1")],
        [row("vm-1", period="2025-02")],
        [row("vm-1"), row("vm-9")],
        names=["aws_2025-01_a.csv", "aws_2025-02.csv", "aws_2025-01_b.csv"],
    )
    out = ingest(str(jan), str(feb), str(jan2))
    summaries = [line for line in out.splitlines() if line.startswith("delivery ")]
    assert summaries[0].startswith(f"delivery 1 of 2 (aws, 2025-01): 2 files ({jan}, {jan2})")
    assert summaries[1].startswith(f"delivery 2 of 2 (aws, 2025-02): 1 file ({feb})")
    deliveries = {r.file_name: r.delivery for r in Import.objects.all()}
    assert deliveries[str(jan)] == deliveries[str(jan2)] != deliveries[str(feb)]
    # The same row in both January parts: two charges.
    assert Charge.objects.filter(period__period="2025-01", resource_id="vm-1").count() == 2


# --- --replace ---------------------------------------------------------------------------


def test_replace_with_part_files_makes_the_month_their_union(
    defaults: None, parts: Any, actor: Actor, focus_file: Any
) -> None:
    aws = Source.objects.get(slug="aws")
    first = file_import(
        path=focus_file([row("vm-1"), row("vm-2", "3.00"), row("old", "9.00"), row("vm-3")]),
        source=aws,
        actor=actor,
    )
    charges_review(
        charges=Charge.objects.filter(resource_id="vm-2"), action="reject", actor=actor, note="no"
    )
    kept_id = Charge.objects.get(resource_id="vm-2").pk
    p1, p2 = parts(
        [row("vm-1"), row("vm-3"), row("new-1")],
        [row("vm-3"), row("vm-2", "3.00"), row("new-2", "0.50")],
    )
    data = ingest_json(str(p1), str(p2), "--source", "aws", "--replace")
    assert sorted(Charge.objects.values_list("resource_id", "occurrence")) == [
        ("new-1", 0),
        ("new-2", 0),
        ("vm-1", 0),
        ("vm-2", 0),
        ("vm-3", 0),
        ("vm-3", 1),
    ]
    assert data["charges_removed"] == 1  # "old"
    assert data["charges_created"] == 3  # new-1, new-2 and the second vm-3
    vm2 = Charge.objects.get(resource_id="vm-2")
    assert (vm2.pk, vm2.review_state, vm2.review_note) == (kept_id, "rejected", "no")
    records = {r.file_name: r for r in Import.objects.all()}
    assert records[str(p2)].pk == vm2.import_record_id
    assert records[str(p1)].delivery == records[str(p2)].delivery
    assert first.import_id is not None
    old = Import.objects.get(pk=first.import_id)
    assert old.status == Import.Status.SUPERSEDED
    event = AuditEvent.objects.get(action="import.supersede")
    assert event.after is not None
    assert event.after["delivery"] == str(records[str(p1)].delivery)
    assert sorted(event.after["by_imports"]) == sorted(r.pk for r in records.values() if r.replace)
    total = sum(Charge.objects.values_list("billed_cost", flat=True), Decimal(0))
    assert total == Decimal("1.25") * 4 + Decimal("3.00") + Decimal("0.50")
    # The same delivery again: nothing changes.
    before = state()
    data = ingest_json(str(p1), str(p2), "--source", "aws", "--replace")
    assert data["status"] == "already_imported"
    assert state() == before


def test_replace_refuses_a_delivery_mixing_sources(defaults: None, parts: Any) -> None:
    a, b = parts([row("vm-1")], [row("vm-2")], names=["aws_2025-01.csv", "azure_2025-01.csv"])
    with pytest.raises(CommandError) as info:
        ingest(str(a), str(b), "--replace")
    assert str(info.value) == (
        f"{b}: is source azure but {a} is aws; a --replace delivery is one source and one "
        "month: import them separately; nothing was imported"
    )
    assert Charge.objects.count() == 0


def test_replace_refuses_a_delivery_mixing_months(defaults: None, parts: Any) -> None:
    a, b = parts([row("vm-1")], [row("vm-2")], names=["aws_2025-01.csv", "aws_2025-02.csv"])
    with pytest.raises(CommandError, match=r"aws_2025-02\.csv: is for 2025-02 but .*aws_2025-01"):
        ingest(str(a), str(b), "--replace")
    # Names without a month: the rows tell.
    c, d = parts(
        [row("vm-1")], [row("vm-2", period="2025-02")], names=["part-0001.csv", "part-0002.csv"]
    )
    before = state()
    with pytest.raises(CommandError) as info:
        ingest(str(c), str(d), "--source", "aws", "--replace")
    assert str(info.value) == (
        f"{d}: rows in 2025-02 but {c} has 2025-01; a --replace delivery is one source and one "
        "month: import the months separately; nothing was imported"
    )
    with pytest.raises(CommandError, match=r"part-0002\.csv: rows in 2025-02 but --period 2025-01"):
        ingest(str(c), str(d), "--source", "aws", "--replace", "--period", "2025-01")
    assert state() == before
    assert Import.objects.count() == 0


def test_dry_run_of_a_delivery_is_exact(
    defaults: None, parts: Any, actor: Actor, focus_file: Any
) -> None:
    aws = Source.objects.get(slug="aws")
    file_import(path=focus_file([row("vm-1"), row("gone", "4.00")]), source=aws, actor=actor)
    p1, p2 = parts(
        [row("vm-1"), row("vm-1"), row("x", pi="")],
        [row("vm-1"), row("y", "2.50", project="proj-new", pi="new@example.edu")],
    )
    for replace in (False, True):
        files = [DeliveryFile(path=p) for p in (p1, p2)]
        kwargs: dict[str, Any] = {"files": files, "source": aws, "actor": actor, "replace": replace}
        before = state()
        dry = delivery_import(**kwargs, dry_run=True)
        assert state() == before  # a dry run writes nothing
        real = delivery_import(**kwargs)
        keys = ("charges_created", "duplicates_skipped", "charges_removed", "billed_total")
        for key in (*keys, "flagged", "flags", "periods", "new_periods", "rows_read"):
            assert [getattr(r, key) for r in dry.files] == [getattr(r, key) for r in real.files]
        assert dry.as_dict() | {"status": "", "delivery": "", "import_ids": []} == (
            real.as_dict() | {"status": "", "delivery": "", "import_ids": []}
        )
        if replace:
            assert real.charges_removed == 1  # "gone"; the rest is there since the first pass
        else:
            assert real.charges_created == 4
            assert real.duplicates_skipped == 1


def test_replace_dry_run_counts_the_removed_charges(
    defaults: None, parts: Any, actor: Actor, focus_file: Any
) -> None:
    aws = Source.objects.get(slug="aws")
    file_import(path=focus_file([row("vm-1"), row("gone", "4.00")]), source=aws, actor=actor)
    p1, p2 = parts([row("vm-1")], [row("vm-2")])
    files = [DeliveryFile(path=p) for p in (p1, p2)]
    dry = delivery_import(files=files, source=aws, actor=actor, replace=True, dry_run=True)
    real = delivery_import(files=files, source=aws, actor=actor, replace=True)
    assert (dry.charges_created, dry.charges_removed) == (real.charges_created, 1) == (1, 1)
    assert dry.duplicates_skipped == real.duplicates_skipped == 1


# --- routing by provider ---------------------------------------------------------------


def provider_row(resource: str, provider: str, billed: str = "1.00") -> dict[str, str]:
    return {**focus_row(resource=resource, billed=billed), "ProviderName": provider}


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    rows = [
        provider_row("i-1", "AWS"),
        provider_row("vm-1", "Microsoft", "2.00"),
        provider_row("i-2", "Amazon Web Services"),
        provider_row("oc-1", "Oracle", "0.25"),
        provider_row("vm-2", "microsoft", "3.00"),
        provider_row("oc-2", "Oracle", "0.25"),
    ]
    return write_focus(tmp_path / "focus_mixed.csv", rows, PROVIDER_COLUMNS)


def test_default_sources_claim_their_providers(defaults: None) -> None:
    claims = dict(Source.objects.values_list("slug", "provider_names"))
    assert claims["aws"] == "AWS, Amazon Web Services"
    assert claims["azure"] == "Microsoft, Microsoft Azure, Azure"
    assert claims["gcp"] == "Google Cloud, GCP, Google"


def test_unclaimed_provider_refuses_the_file(defaults: None, mixed: Path) -> None:
    Source.objects.filter(slug="oci").update(provider_names="")  # nobody claims Oracle
    with pytest.raises(CommandError) as info:
        ingest(str(mixed), "--route-by-provider")
    assert str(info.value) == (
        f"{mixed}, line 5, column 14 (ProviderName): provider 'Oracle' is claimed by no source "
        "(2 rows, this the first); claim it with "
        '`openchargeback sources set SLUG --provider-names "Oracle"`; nothing was imported'
    )
    assert Charge.objects.count() == 0
    assert Import.objects.count() == 0


def test_route_by_provider_imports_each_part_into_its_source(
    defaults: None, mixed: Path, settings: Any
) -> None:
    # The default oci source claims Oracle; names are normalised when set.
    call_command("sources", "set", "oci", "--provider-names", " oracle ,OCI", stdout=StringIO())
    assert Source.objects.get(slug="oci").provider_names == "oracle, OCI"
    data = ingest_json(str(mixed), "--route-by-provider")
    by_source = {d["source"]: d for d in data["deliveries"]}
    assert {s: d["charges_created"] for s, d in by_source.items()} == {
        "aws": 2,
        "azure": 2,
        "oci": 2,
    }
    assert by_source["azure"]["billed_total"] == "5.00"
    lines = dict(Charge.objects.values_list("resource_id", "line_number"))
    assert lines == {"i-1": 2, "vm-1": 3, "i-2": 4, "oc-1": 5, "vm-2": 6, "oc-2": 7}
    sha = hashlib.sha256(mixed.read_bytes()).hexdigest()
    records = list(Import.objects.all())
    assert {r.sha256 for r in records} == {sha}
    assert sorted((r.source_id and r.source.slug, r.rows_read) for r in records) == [
        ("aws", 2),
        ("azure", 2),
        ("oci", 2),
    ]
    assert len(kept_files(settings)) == 3  # the original, kept with each source's import
    before = state()
    data = ingest_json(str(mixed), "--route-by-provider")
    assert data["status"] == "already_imported"
    assert state() == before


def test_a_provider_claimed_twice_is_refused(defaults: None) -> None:
    with pytest.raises(CommandError, match="provider 'AWS' is already claimed by source aws"):
        call_command("sources", "set", "gcp", "--provider-names", "aws", stdout=StringIO())


# --- the upload page ---------------------------------------------------------------------

UPLOAD = "/admin/ingest/import/upload/"


def _upload(name: str, rows: list[dict[str, str]]) -> Any:
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.ingest_helpers import focus_lines, join_lines

    return SimpleUploadedFile(name, join_lines(focus_lines(rows)).encode(), content_type="text/csv")


def _worker(post: Any) -> Any:
    """A request, then the jobs it queued (django-q2 runs them inline in tests)."""
    from django.test import TestCase

    with TestCase.captureOnCommitCallbacks(execute=True):
        return post()


def _import_all(client: Any, files: list[Any], *, jobs: bool = True) -> Any:
    form: dict[str, str] = {"action": "import-all"}
    for u in files:
        form.update({f"u{u.pk}-source": u.source.slug, f"u{u.pk}-period": u.period})
    url = f"{UPLOAD}{files[0].batch}/"
    if jobs:
        _worker(lambda: client.post(url, form))
        return client.get(url)
    return client.post(url, form, follow=True)


@pytest.fixture
def admin_client(defaults: None) -> Any:
    from billing.roles import BILLING_ADMIN
    from tests.conftest import role_client

    return role_client(BILLING_ADMIN)


def _drop_parts(client: Any) -> list[Any]:
    from ingest.models import Upload

    files = [
        _upload("aws_2025-01_part1.csv", [row("vm-1"), row("vm-2")]),
        _upload("aws_2025-01_part2.csv", [row("vm-2"), row("vm-3")]),
        _upload("azure_2025-01.csv", [row("az-1")]),
    ]
    _worker(lambda: client.post(UPLOAD, {"files": files}))
    return list(Upload.objects.order_by("pk"))


def test_import_all_imports_part_files_as_one_delivery(admin_client: Any) -> None:
    from ingest.models import Upload

    files = _drop_parts(admin_client)
    assert [u.status for u in files] == [Upload.Status.PREVIEWED] * 3
    page = admin_client.get(f"{UPLOAD}{files[0].batch}/").content.decode()
    assert "One delivery with aws_2025-01_part2.csv (same source and period)" in page
    assert "One delivery with aws_2025-01_part1.csv" in page
    assert page.count("ocb-delivery") == 2  # azure's file is alone
    response = _import_all(admin_client, files)
    html = response.content.decode()
    assert sorted(
        Charge.objects.filter(source__slug="aws").values_list("resource_id", flat=True)
    ) == [
        "vm-1",
        "vm-2",
        "vm-2",
        "vm-3",
    ]
    done = list(Upload.objects.order_by("pk"))
    assert [u.status for u in done] == [Upload.Status.IMPORTED] * 3
    aws = [u.import_record for u in done[:2]]
    assert aws[0] is not None
    assert aws[1] is not None
    assert done[2].import_record is not None
    assert aws[0].delivery == aws[1].delivery != done[2].import_record.delivery
    assert done[0].result["delivery_summary"]["files"] == [u.file_name for u in done[:2]]
    assert "Imported as one delivery of 2 files: 4 charges in all." in html


def test_a_delivery_is_imported_by_one_worker_job(
    admin_client: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from ingest.models import Upload

    files = _drop_parts(admin_client)
    with django_capture_on_commit_callbacks() as queued:
        response = _import_all(admin_client, files[:2], jobs=False)
    assert response.content.decode().count(">Import queued: waiting for a worker</strong>") == 2
    assert len(queued) == 1
    assert not Charge.objects.exists()
    assert {u.status for u in Upload.objects.filter(pk__in=[f.pk for f in files[:2]])} == {
        Upload.Status.IMPORTING
    }
    queued[0]()  # the worker
    done = list(Upload.objects.order_by("pk"))[:2]
    assert [u.status for u in done] == [Upload.Status.IMPORTED] * 2
    assert Charge.objects.filter(source__slug="aws").count() == 4
    assert done[0].import_record is not None
    assert done[1].import_record is not None
    assert done[0].import_record.delivery == done[1].import_record.delivery


def test_a_bad_part_file_fails_the_whole_delivery_on_the_upload_page(
    admin_client: Any, settings: Any
) -> None:
    from ingest.models import Upload

    files = _drop_parts(admin_client)
    staged = Path(settings.MEDIA_ROOT) / files[1].stored_file
    staged.write_text("BilledCost\n1\n", encoding="utf-8")  # broken after its preview
    response = _import_all(admin_client, files[:2])
    done = list(Upload.objects.order_by("pk"))[:2]
    assert [u.status for u in done] == [Upload.Status.FAILED] * 2
    assert done[0].error == done[1].error
    assert "aws_2025-01_part2.csv" in done[0].error
    assert "\n" not in done[0].error
    assert done[0].error in response.content.decode()
    assert not Charge.objects.exists()
    assert not Import.objects.exists()


def test_upload_page_routes_a_multi_provider_file(admin_client: Any, mixed: Path) -> None:
    from ingest.models import Upload

    assert Source.objects.get(slug="oci").provider_names  # the default oci source claims Oracle
    _worker(lambda: admin_client.post(UPLOAD, {"files": [_upload_bytes(mixed)]}))
    upload = Upload.objects.get()
    assert upload.status == Upload.Status.STAGED  # no source in the name
    batch = f"{UPLOAD}{upload.batch}/"
    form = {f"u{upload.pk}-source": "", f"u{upload.pk}-period": "", f"u{upload.pk}-route": "on"}
    _worker(lambda: admin_client.post(batch, {**form, "action": f"preview:{upload.pk}"}))
    upload.refresh_from_db()
    assert upload.status == Upload.Status.PREVIEWED, upload.error
    assert upload.preview["charges_created"] == 6
    assert [(d["source"], d["charges_created"]) for d in upload.preview["routed"]] == [
        ("aws", 2),
        ("azure", 2),
        ("oci", 2),
    ]
    page = admin_client.get(batch).content.decode()
    assert "Routed by provider" in page
    assert "oci: 2 charges (0.50)" in page
    _worker(lambda: admin_client.post(batch, {**form, "action": f"import:{upload.pk}"}))
    upload.refresh_from_db()
    assert upload.status == Upload.Status.IMPORTED, upload.error
    assert upload.result["charges_created"] == 6
    counts = {s: Charge.objects.filter(source__slug=s).count() for s in ("aws", "azure", "oci")}
    assert counts == {"aws": 2, "azure": 2, "oci": 2}
    assert upload.import_record is not None
    assert upload.import_record.source.slug == "aws"


def _upload_bytes(path: Path) -> Any:
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(path.name, path.read_bytes(), content_type="text/csv")


# --- the inbox ---------------------------------------------------------------------------


def test_inbox_imports_a_months_part_files_as_one_delivery(
    defaults: None, settings: Any, tmp_path: Path
) -> None:
    from ingest.uploads.inbox import inbox_process

    settings.OPENCHARGEBACK_INBOX_DIR = tmp_path / "inbox"
    settings.OPENCHARGEBACK_INBOX_SETTLE_SECONDS = 0
    folder = tmp_path / "inbox" / "aws"
    folder.mkdir(parents=True)
    write_focus(folder / "aws_2025-01_part1.csv", [row("vm-1"), row("vm-2")])
    write_focus(folder / "aws_2025-01_part2.csv", [row("vm-2"), row("vm-3")])
    bad = row("vm-9")
    bad["BilledCost"] = "lots"
    write_focus(folder / "aws_2025-02_part1.csv", [row("vm-1", period="2025-02")])
    write_focus(folder / "aws_2025-02_part2.csv", [bad])
    outcomes = inbox_process(actor=Actor("cron", "cli"))
    assert sorted((o.file, o.status) for o in outcomes) == [
        ("aws_2025-01_part1.csv", "imported"),
        ("aws_2025-01_part2.csv", "imported"),
        ("aws_2025-02_part1.csv", "failed"),
        ("aws_2025-02_part2.csv", "failed"),
    ]
    assert sorted(Charge.objects.values_list("resource_id", flat=True)) == [
        "vm-1",
        "vm-2",
        "vm-2",
        "vm-3",
    ]
    assert len({r.delivery for r in Import.objects.all()}) == 1
    reason = (folder / "failed" / "aws_2025-02_part1.csv.reason.txt").read_text()
    assert "aws_2025-02_part2.csv, line 2, column 7 (BilledCost)" in reason
