"""The app boundaries that the import contract (.importlinter) cannot see:
model references by name, and the registries that invert a dependency
(docs/decisions/0004-app-boundaries.md)."""

from __future__ import annotations

from django.apps import apps
from django.contrib import admin
from django.db.models import Model

from billing.models import PI, BillingPeriod, Project
from billing.ratecard import RATE_CARD_FINDERS
from openchargeback import overviews

PROJECT_APPS = {"billing", "ingest", "statements", "journals", "openchargeback"}


def test_billing_models_refer_to_no_other_app_but_charge_to_import() -> None:
    references = set()
    for model in apps.get_app_config("billing").get_models():
        for field in model._meta.get_fields():
            related = field.related_model
            if not field.is_relation or field.auto_created:
                continue
            # a resolved relation's model is a model class ("self" is resolved too)
            assert isinstance(related, type), field
            assert issubclass(related, Model), field
            if related._meta.app_label in PROJECT_APPS - {"billing"}:
                references.add((model.__name__, field.name, related._meta.label))
    assert references == {("Charge", "import_record", "ingest.Import")}


def test_ingest_tells_billing_which_sources_the_rate_card_prices() -> None:
    from ingest.usage.ratecard import rate_card_sources

    assert dict(RATE_CARD_FINDERS) == {"ingest": rate_card_sources}


def test_the_site_shows_the_period_and_owner_pages_across_the_apps() -> None:
    registry = admin.site._registry
    assert type(registry[BillingPeriod]) is overviews.PeriodAdmin
    assert type(registry[PI]) is overviews.PIOverviewAdmin
    assert type(registry[Project]) is overviews.ProjectOverviewAdmin
