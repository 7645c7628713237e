"""The console script, configuration errors, default seeding, the demo command."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from billing.models import PI, Charge, FlagRule, Project, Source, TagMapping
from billing.seed import defaults_seed
from openchargeback.cli import _alias, _summary, version

ROOT = Path(__file__).resolve().parents[2]


def _run(args: list[str], env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "SECRET_KEY"}}
    base.update(
        {
            "OPENCHARGEBACK_INSTANCE_DIR": str(tmp_path),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite3'}",
        }
    )
    base.pop("DEBUG", None)
    base.update(env)
    return subprocess.run(
        [sys.executable, "-m", "openchargeback.cli", *args],
        cwd=ROOT,
        env=base,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_hyphenated_command_names_are_aliases() -> None:
    assert _alias(["oc", "export-journal", "--period", "2025-01"]) == [
        "oc",
        "export_journal",
        "--period",
        "2025-01",
    ]
    assert _alias(["oc", "--help"]) == ["oc", "--help"]
    assert _alias(["oc", "ingest", "my-file.csv"]) == ["oc", "ingest", "my-file.csv"]


def test_hyphenated_alias_runs_the_command(tmp_path: Path) -> None:
    out = tmp_path / "samples"
    done = _run(
        ["generate-sample-data", "--output", str(out), "--months", "2025-01"],
        {"DEBUG": "true"},
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert (out / "aws_2025-01-00001.csv").is_file()


def test_missing_secret_key_outside_debug_is_one_line_and_exit_1(tmp_path: Path) -> None:
    done = _run(["periods", "list"], {}, tmp_path)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1
    assert "SECRET_KEY is not set" in done.stderr
    assert "Traceback" not in done.stderr


def test_secret_key_from_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / "prod.env"
    env_file.write_text("SECRET_KEY=from-a-file-" + "x" * 40 + "\n")
    migrate = _run(["migrate", "-v", "0"], {"OPENCHARGEBACK_ENV_FILE": str(env_file)}, tmp_path)
    assert migrate.returncode == 0, migrate.stderr
    done = _run(["periods", "list"], {"OPENCHARGEBACK_ENV_FILE": str(env_file)}, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "No billing periods yet" in done.stdout


def test_usage_error_exits_2(tmp_path: Path) -> None:
    done = _run(["ingest"], {"DEBUG": "true"}, tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr


@pytest.mark.django_db
def test_seeding_is_idempotent_and_keeps_admin_edits() -> None:
    Source.objects.filter(slug="aws").update(name="Our AWS", credit_fund_org="IT-CLOUD-01")
    FlagRule.objects.filter(reason="large_charge").update(enabled=False)
    TagMapping.objects.filter(field="pi_email").update(tag_keys="owner")

    created = defaults_seed()

    assert created["sources"] == 0
    assert created["tag_mapping"] == 0
    aws = Source.objects.get(slug="aws")
    assert (aws.name, aws.credit_fund_org) == ("Our AWS", "IT-CLOUD-01")
    assert not FlagRule.objects.get(reason="large_charge").enabled
    assert TagMapping.objects.get(field="pi_email").tag_keys == "owner"
    assert Source.objects.count() == 8


@pytest.mark.django_db
def test_seeding_restores_what_is_missing() -> None:
    Source.objects.filter(slug="openai").delete()
    assert defaults_seed()["sources"] == 1
    assert set(Source.objects.values_list("slug", flat=True)) == {
        "aws",
        "azure",
        "gcp",
        "hpc",
        "storage",
        "it_storage",
        "openai",
        "oci",
    }


def test_env_example_copied_as_is_is_a_working_configuration(tmp_path: Path) -> None:
    """A new site's first step: `cp .env.example .env`, set the secret key."""
    env_file = tmp_path / "site.env"
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    lines = [
        line
        for line in text.splitlines()
        if not line.startswith(("DATABASE_URL=", "OPENCHARGEBACK_INSTANCE_DIR=", "SECRET_KEY="))
    ]
    env_file.write_text("\n".join([*lines, "SECRET_KEY=" + "s3cret" * 10]) + "\n")
    done = _run(["check"], {"OPENCHARGEBACK_ENV_FILE": str(env_file)}, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.django_db
def test_demo_loads_sample_data_and_is_safe_to_rerun(
    tmp_path: Path, settings: object, capsys: pytest.CaptureFixture[str]
) -> None:
    settings.DEBUG = True  # type: ignore[attr-defined]
    call_command("demo", "--output", str(tmp_path / "samples"))
    first = Charge.objects.count()
    assert first > 1000
    assert PI.objects.exclude(name="").count() >= 15
    assert Project.objects.exclude(title="").count() >= 40
    assert Charge.objects.filter(review_state="pending").exists()
    out = capsys.readouterr().out
    assert "admin / admin" in out
    # the first month went through the whole cycle: closed, statements, emails
    from billing.models import BillingPeriod
    from statements.models import EmailLog, Statement

    assert BillingPeriod.objects.get(period="2026-08").status == "closed"
    assert Statement.objects.filter(period__period="2026-08", status="ready").count() >= 40
    assert EmailLog.objects.filter(status="sent").count() >= 15
    assert "Month-end 2026-08: period closed" in out
    assert "ledger balanced" in out
    from journals.models import JournalExport

    assert JournalExport.objects.filter(period__period="2026-08", format="gl").count() == 1

    call_command("demo", "--output", str(tmp_path / "samples"))
    assert Charge.objects.count() == first
    assert JournalExport.objects.count() == 1  # nothing changed: no second export


def test_check_deploy_is_clean_with_production_settings(tmp_path: Path) -> None:
    env = {
        "SECRET_KEY": "production-" + "k3y" * 20,
        "ALLOWED_HOSTS": "billing.example.edu",
        "BEHIND_TLS_PROXY": "true",
    }
    done = _run(["check", "--deploy", "--fail-level", "WARNING"], env, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    # HSTS preload is off unless a site sets it: Django's W021 is silenced then.
    assert "System check identified no issues (1 silenced)" in done.stdout


def test_failed_logins_are_throttled(db: None, client: object) -> None:
    from django.contrib.auth import get_user_model
    from django.test import Client

    assert isinstance(client, Client)
    get_user_model().objects.create_user("rita", password="right-password-123")
    statuses = [
        client.post(
            "/admin/login/?next=/admin/", {"username": "rita", "password": "wrong"}
        ).status_code
        for _ in range(5)
    ]
    assert statuses == [200, 200, 200, 200, 429]  # the fifth failure locks the account out
    locked = client.post(
        "/admin/login/?next=/admin/", {"username": "rita", "password": "right-password-123"}
    )
    assert locked.status_code == 429


def test_help_lists_the_products_commands_with_descriptions_first(tmp_path: Path) -> None:
    done = _run(["--help"], {"DEBUG": "true", "COLUMNS": "100"}, tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"Usage: openchargeback COMMAND [options]   (OpenChargeback {version()})"
    ours = lines.index("OpenChargeback commands:")
    django_own = lines.index("Django's commands (site and database administration):")
    assert ours < django_own
    product = "\n".join(lines[ours:django_own])
    for heading in ("Import", "Periods, review, sources and rates", "Statements and emails"):
        assert f"\n  {heading}\n" in product
    # each product command on one line with the first sentence of its help
    assert re.search(
        r"^    periods +Billing periods: list, open, close, reopen, finalize\.$", product, re.M
    )
    assert re.search(
        r"^    export-journal +Export a closed period's general-ledger journal", product, re.M
    )
    assert re.search(r"^    ingest +Import FOCUS billing files", product, re.M)
    assert re.search(r"^    backup +Write a backup", product, re.M)
    assert "migrate" not in product
    assert "runserver" not in product
    theirs = "\n".join(lines[django_own:])
    assert re.search(r"^    migrate +Updates database schema", theirs, re.M)
    assert "periods" not in theirs
    assert all(len(line) <= 100 for line in lines)
    # `help` alone is the same list; `help COMMAND` is still the command's own help
    assert _run(["help"], {"DEBUG": "true", "COLUMNS": "100"}, tmp_path).stdout == done.stdout
    periods = _run(["help", "periods"], {"DEBUG": "true"}, tmp_path)
    assert periods.returncode == 0
    assert "usage: " in periods.stdout
    assert "finalize" in periods.stdout


def test_help_without_a_configuration_still_lists_the_commands(tmp_path: Path) -> None:
    done = _run(["--help"], {}, tmp_path)  # no SECRET_KEY, no DEBUG
    assert done.returncode == 0, done.stderr
    assert "periods" in done.stdout
    assert "export-journal" in done.stdout
    assert "Configuration error: SECRET_KEY is not set" in done.stdout


def test_version_is_the_products(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib import metadata

    import django

    done = _run(["--version"], {}, tmp_path)  # needs no configuration
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{metadata.version('openchargeback')}\n"
    assert done.stdout.strip() != django.get_version()
    command = _run(["periods", "--version"], {"DEBUG": "true"}, tmp_path)
    assert command.returncode == 0
    assert command.stdout == done.stdout
    # a source tree run without installing: the version in pyproject.toml
    import tomllib

    expected = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]

    def missing(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", missing)
    assert version() == expected


def test_a_long_description_is_cut_to_one_line() -> None:
    assert _summary("Do a thing. Then more.", 40) == "Do a thing."
    assert _summary("Do   a\n  thing", 40) == "Do a thing"
    cut = _summary("Import every file waiting in the inbox, then move it", 30)
    assert cut == "Import every file waiting..."
    assert len(cut) <= 30
