"""Who pays for an imported row: its Tags (completed by the source's cloud
account mappings, ingest.focus.cloud_accounts) resolved to a PI, a project,
a fund/org and the attribution flags, with the PIs and projects met for the
first time created (and audited) as the import goes.

This is attribution; what amount a row bills (the cost basis) is
ingest.focus.amortised. One :class:`Attributor` serves a whole delivery, so
its files share the caches; the caches are bounded by distinct values, not
rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from billing.audit import Actor, audit
from billing.models import PI, Project
from billing.owners import pis_create, projects_create
from billing.rules import (
    EMAIL_RE,
    Attribution,
    RuleSet,
    attribution_flags,
    map_tags,
    unmapped_account,
)
from ingest.focus.cloud_accounts import (
    CloudMappings,
    CloudOwner,
    charge_day,
    merge_owner,
    unmapped_label,
)
from ingest.focus.rows import B_RESOURCE_ID, BASE_COLUMNS

_ATTRIBUTION_CACHE_LIMIT = 200_000
# Row values the cloud account mappings look at (billing account: once parsed).
_B_SUB_ACCOUNT = BASE_COLUMNS.index("sub_account_id")
_B_SUB_ACCOUNT_NAME = BASE_COLUMNS.index("sub_account_name")
_B_CHARGE_START = BASE_COLUMNS.index("charge_period_start")
_B_BILLING_ACCOUNT = (
    BASE_COLUMNS.index("billing_account_id") if "billing_account_id" in BASE_COLUMNS else None
)


@dataclass(frozen=True)
class Who:
    """A Tags value resolved: who pays, and the attribution flags."""

    values: tuple[Any, ...]  # ingest.focus.bulk.WHO_COLUMNS, in order
    mask: int
    details: dict[str, Any]
    details_json: str


class Attributor:
    """Resolves the rows of one delivery to their owners.

    ``next_fake_id`` gives dry runs ids for the PIs and projects they do not
    create (unique in the delivery, shared with the periods not created).
    """

    def __init__(
        self,
        *,
        ruleset: RuleSet,
        cloud: CloudMappings | None,
        actor: Actor,
        dry_run: bool,
        next_fake_id: Callable[[], int],
    ) -> None:
        self.ruleset = ruleset
        self.cloud = cloud  # None: the source has no cloud mappings
        self.actor = actor
        self.dry_run = dry_run
        self.next_fake_id = next_fake_id
        # Keyed by the Tags text; with cloud account mappings by (Tags, mapping, sub-account).
        self.cache: dict[Any, Who] = {}
        # Tags mapped by register_owners() and not yet through attribution().
        self.mapped: dict[str, Attribution] = {}
        self.pis: dict[str, int] = {}
        self.projects: dict[str, tuple[int, int | None]] = {}
        self.pi_email_by_id: dict[int, str] = {}

    def load_owners(self) -> None:
        """Read the PIs and projects that exist (once per delivery)."""
        for pi_id, email in PI.objects.values_list("pk", "email"):
            self.pis[email] = pi_id
            self.pi_email_by_id[pi_id] = email
        for proj_pk, code, pi_id in Project.objects.values_list("pk", "project_id", "pi_id"):
            self.projects[code] = (proj_pk, pi_id)

    def cloud_attribution(self, raw: str, base: tuple[Any, ...], period: str) -> Who:
        """Tags completed by the source's cloud account mappings (ingest.focus.cloud_accounts).

        Cached per (Tags text, mapping); rows no mapping covers also per
        sub-account, which their unmapped_account flag names.
        """
        cloud = self.cloud
        assert cloud is not None
        sub_account = base[_B_SUB_ACCOUNT]
        owner = cloud.resolve(
            resource_id=base[B_RESOURCE_ID],
            sub_account_id=sub_account,
            billing_account_id=base[_B_BILLING_ACCOUNT] if _B_BILLING_ACCOUNT is not None else "",
            day=lambda: charge_day(base[_B_CHARGE_START], period),
        )
        key = (raw, owner.mapping_id, "") if owner else (raw, 0, sub_account)
        who = self.cache.get(key)
        if who is None:
            unmapped = ""
            if owner is None and sub_account:
                unmapped = unmapped_label(sub_account, base[_B_SUB_ACCOUNT_NAME])
            who = self.attribution(raw, key=key, owner=owner, unmapped=unmapped)
        return who

    def attribution(
        self,
        raw: str,
        *,
        key: Any = None,
        owner: CloudOwner | None = None,
        unmapped: str = "",
    ) -> Who:
        """Tags -> PI, project, fund/org and their flags; cached per distinct Tags text
        (or per ``key``, with a cloud account mapping ``owner`` completing the tags).

        Safe to cache: a project's owner, once known, does not change during an
        import, so the same Tags text always resolves the same way.
        """
        key = raw if key is None else key
        who = self.cache.get(key)
        if who is not None:
            return who
        attribution = self.mapped.pop(raw, None) or map_tags(raw, self.ruleset)
        values = merge_owner(attribution.values, owner)
        pi_email = values.get("pi_email", "")
        project_code = values.get("project_id", "")
        pi_id = self._pi(pi_email)
        project_id, owner_email = self._project(project_code, pi_id)
        mask, details = attribution_flags(
            self.ruleset,
            pi_email=pi_email,
            project_id=project_code,
            fund_org=values.get("fund_org", ""),
            tags_invalid=attribution.tags_invalid,
            project_owner_email=owner_email,
            unmapped=unmapped_account(attribution.tags) or unmapped,
        )
        if attribution.tags_invalid:
            details["invalid_tags"] = attribution.raw_invalid
        who = Who(
            values=(
                pi_id,
                project_id,
                values.get("fund_org", "")[:100],
                values.get("cost_center", "")[:100],
                values.get("reference_1", "")[:200],
                values.get("reference_2", "")[:200],
                values.get("account_code", "")[:40],
                json.dumps(attribution.tags, ensure_ascii=False) if attribution.tags else "{}",
            ),
            mask=mask,
            details=details,
            details_json=json.dumps(details) if details else "{}",
        )
        if len(self.cache) > _ATTRIBUTION_CACHE_LIMIT:
            self.cache.clear()
        self.cache[key] = who
        return who

    def register_owners(self, raw_tags: list[str]) -> None:
        """Create a chunk's new PIs and projects with one insert each (and their audit events).

        Row by row, each first sight would cost a round trip or two to the
        database. Same outcome as :meth:`_pi` and :meth:`_project` met in row
        order: a new project belongs to the first PI named with it in the
        chunk (if none is, it stays without one until a later row names one).
        """
        if self.dry_run:
            return
        new_pis: dict[str, None] = {}
        new_projects: dict[str, str] = {}  # code -> first valid PI email seen with it
        for raw in dict.fromkeys(raw_tags):
            if raw in self.cache or raw in self.mapped:
                continue
            attribution = map_tags(raw, self.ruleset)
            self.mapped[raw] = attribution
            email = attribution.values.get("pi_email", "")
            valid = bool(email) and EMAIL_RE.match(email) is not None
            if valid and email not in self.pis:
                new_pis[email] = None
            code = attribution.values.get("project_id", "")[:200]
            if code and code not in self.projects:
                if valid and not new_projects.get(code):
                    new_projects[code] = email
                else:
                    new_projects.setdefault(code, "")
        if new_pis:
            for pi in pis_create(emails=new_pis, actor=self.actor):
                self.pis[pi.email] = pi.pk
                self.pi_email_by_id[pi.pk] = pi.email
        if new_projects:
            owners = {
                code: (self.pis[email] if email else None, email)
                for code, email in new_projects.items()
            }
            for project in projects_create(owners=owners, actor=self.actor):
                self.projects[project.project_id] = (project.pk, project.pi_id)

    def _pi(self, email: str) -> int | None:
        if not email or not EMAIL_RE.match(email):
            return None
        pi_id = self.pis.get(email)
        if pi_id is None:
            if self.dry_run:
                pi_id = self.next_fake_id()
            else:
                [pi] = pis_create(emails=[email], actor=self.actor)
                pi_id = pi.pk
            self.pis[email] = pi_id
            self.pi_email_by_id[pi_id] = email
        return pi_id

    def _project(self, code: str, pi_id: int | None) -> tuple[int | None, str | None]:
        """(project id, email of the PI it already belongs to)."""
        if not code:
            return None, None
        code = code[:200]
        hit = self.projects.get(code)
        if hit is None:
            if self.dry_run:
                proj_id = self.next_fake_id()
            else:
                owner = (pi_id, self.pi_email_by_id.get(pi_id or 0, ""))
                [project] = projects_create(owners={code: owner}, actor=self.actor)
                proj_id = project.pk
            self.projects[code] = (proj_id, pi_id)
            return proj_id, None
        proj_id, owner_id = hit
        if owner_id is None and pi_id is not None:
            # First time the project is seen with a PI: it becomes the owner.
            if not self.dry_run:
                Project.objects.filter(pk=proj_id).update(pi_id=pi_id)
                audit(
                    actor=self.actor,
                    action="project.assign_pi",
                    object_type="billing.project",
                    object_id=str(proj_id),
                    object_repr=code,
                    before={"pi": None},
                    after={"pi": self.pi_email_by_id[pi_id]},
                )
            self.projects[code] = (proj_id, pi_id)
            return proj_id, None
        return proj_id, self.pi_email_by_id.get(owner_id) if owner_id is not None else None
