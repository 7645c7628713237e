"""List or add charge sources (aws, azure, hpc, ...). `add` refuses duplicates,
so re-running it is safe (it fails without changing anything). ``--dry-run``
makes the change and rolls it back."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandParser

from billing.commands import BillingCommand
from billing.errors import BillingError
from billing.models import Project, Source
from billing.services import source_add, source_set


class Command(BillingCommand):
    help = "Charge sources: list, add."
    takes_json = ("list", "add", "set")
    json_help = {
        "list": "Print a JSON array.",
        "add": "Print the new source as JSON.",
        "set": "Print the source as JSON.",
    }
    takes_user = ("add", "set")
    takes_dry_run = ("add", "set")
    dry_run_help = "Make the change and roll it back: report, write nothing."
    dry_run_rolls_back = True

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        sub.add_parser("list", help="List sources.")
        add = sub.add_parser("add", help="Add a source.")
        add.add_argument("slug", help="Lowercase identifier, e.g. 'oci'.")
        add.add_argument("--name", default="", help="Display name.")
        add.add_argument(
            "--pattern", default="", help="File-name regex for auto-detection, e.g. 'oci|oracle'."
        )
        add.add_argument("--credit-fund-org", default="", help="Fund/org credited in journals.")
        add.add_argument("--account-code", default="", help="GL account code.")

        change = sub.add_parser(
            "set", help="Change a source: name, filename pattern, journal accounting, cost basis."
        )
        change.add_argument("slug", help="The source, e.g. 'aws'.")
        change.add_argument("--name", help="Display name.")
        change.add_argument("--pattern", help="Filename pattern (regular expression).")
        change.add_argument("--credit-fund-org", help="Fund/org credited in journals.")
        change.add_argument("--account-code", help="GL account code of its charges.")
        change.add_argument(
            "--provider-names",
            help="Comma-separated ProviderName values (any case) whose rows this source takes "
            "from a multi-provider file (`ingest --route-by-provider`); '' for none.",
        )
        # Cost basis (docs/decisions/0006-cost-basis.md)
        change.add_argument(
            "--cost-basis",
            choices=[c.value for c in Source.CostBasis],
            help="Bill BilledCost (billed) or EffectiveCost (amortised) to PIs.",
        )
        change.add_argument(
            "--commitment-handling",
            choices=[c.value for c in Source.CommitmentHandling],
            help="Amortised basis: commitment purchases and unused commitment go to the "
            "central commitment project (central) or are excluded (exclude).",
        )
        change.add_argument(
            "--commitment-project", metavar="PROJECT", help="The central commitment project id."
        )
        change.add_argument(
            "--commitment-fund-org",
            metavar="FUND_ORG",
            help="Fund/org of commitment charges (blank: the commitment project's default).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "list":
            self._list(as_json=options["json"])
            return
        if options["action"] == "set":
            source = source_set(
                slug=options["slug"],
                actor=self.actor(options),
                name=options["name"],
                filename_pattern=options["pattern"],
                credit_fund_org=options["credit_fund_org"],
                account_code=options["account_code"],
                provider_names=options["provider_names"],
                **_basis_changes(options),
            )
            if options["json"]:
                self.stdout.write(json.dumps(_as_dict(source)))
            else:
                self.stdout.write(
                    f"Source {source.slug}: credit fund/org {source.credit_fund_org or '-'}, "
                    f"account {source.account_code or '-'}, "
                    f"providers {source.provider_names or '-'}, {_basis_text(source)}."
                )
            return
        source = source_add(
            slug=options["slug"],
            name=options["name"],
            filename_pattern=options["pattern"],
            credit_fund_org=options["credit_fund_org"],
            account_code=options["account_code"],
            actor=self.actor(options),
        )
        if options["json"]:
            self.stdout.write(json.dumps(_as_dict(source)))
        else:
            self.stdout.write(f"Added source {source.slug} ({source.name}).")

    def _list(self, *, as_json: bool) -> None:
        sources = list(Source.objects.order_by("slug"))
        if as_json:
            self.stdout.write(json.dumps([_as_dict(s) for s in sources]))
            return
        self.stdout.write(
            f"{'SLUG':<14} {'NAME':<24} {'PATTERN':<22} {'CREDIT FUND/ORG':<18} {'ACCOUNT':<10} ON"
        )
        for s in sources:
            self.stdout.write(
                f"{s.slug:<14} {s.name[:24]:<24} {s.filename_pattern[:22]:<22} "
                f"{s.credit_fund_org[:18]:<18} {s.account_code[:10]:<10} "
                f"{'yes' if s.enabled else 'no'}"
            )


def _as_dict(source: Source) -> dict[str, Any]:
    return {
        "slug": source.slug,
        "name": source.name,
        "filename_pattern": source.filename_pattern,
        "credit_fund_org": source.credit_fund_org,
        "account_code": source.account_code,
        "enabled": source.enabled,
        "provider_names": source.provider_names,
        # Cost basis
        "cost_basis": source.cost_basis,
        "commitment_handling": source.commitment_handling,
        "commitment_project": (
            source.commitment_project.project_id if source.commitment_project else ""
        ),
        "commitment_fund_org": source.commitment_fund_org,
    }


def _basis_changes(options: dict[str, Any]) -> dict[str, Any]:
    """The cost basis options of `sources set`, the project id resolved."""
    changes: dict[str, Any] = {
        "cost_basis": options["cost_basis"],
        "commitment_handling": options["commitment_handling"],
        "commitment_fund_org": options["commitment_fund_org"],
    }
    code = options["commitment_project"]
    if code is not None:
        project = Project.objects.filter(project_id=code.strip()).first()
        if project is None:
            raise BillingError(f"no project {code.strip()!r} (projects are created by imports)")
        changes["commitment_project_id"] = project.pk
    return changes


_BASIS_TEXT = {"billed": "billed cost (BilledCost)", "amortised": "amortised cost (EffectiveCost)"}


def _basis_text(source: Source) -> str:
    text = f"bills the {_BASIS_TEXT.get(source.cost_basis, source.cost_basis)}"
    if source.cost_basis == Source.CostBasis.AMORTISED:
        if source.commitment_handling == Source.CommitmentHandling.EXCLUDE:
            text += ", commitment charges excluded"
        else:
            project = source.commitment_project
            text += f", commitment charges to {project.project_id if project else '-'}"
            text += f" ({source.commitment_fund_org or 'its default fund/org'})"
    return text
