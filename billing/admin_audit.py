"""The audit trail's admin page: read only, its actions and object types in
words."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin
from django.utils.html import format_html

from billing import listwords
from billing.adminkit import ReadOnlyAdmin
from billing.models import AuditEvent


class WordsFilter(admin.AllValuesFieldListFilter):
    """The values of a code field, shown in words (billing.listwords); the
    query string keeps the code (?action=charge.approve)."""

    words: Callable[[str], str] = staticmethod(str)

    def choices(self, changelist: Any) -> Any:
        for choice in super().choices(changelist):
            if choice["display"] in self.lookup_choices:
                choice = {**choice, "display": self.words(str(choice["display"]))}
            yield choice


class ActionFilter(WordsFilter):
    words = staticmethod(listwords.action_words)


class ObjectTypeFilter(WordsFilter):
    words = staticmethod(listwords.object_type_words)


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """The audit trail: read-only for everyone, superusers included."""

    list_display = ["created_at", "actor", "channel", "what", "period", "reason"]
    list_filter = [
        ("action", ActionFilter),
        "channel",
        ("object_type", ObjectTypeFilter),
        "period",
        "actor",
    ]
    list_select_related = ["period"]
    search_fields = ["actor", "object_repr", "object_id", "reason"]
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    date_hierarchy = "created_at"

    @admin.display(description="what", ordering="action")
    def what(self, obj: AuditEvent) -> str:
        """The action and its object in words (billing.listwords), the code in
        the tooltip, linked to the object's page when it has one."""
        url = listwords.audit_object_url(obj)
        sentence = listwords.audit_sentence(obj)
        if url:
            return format_html('<a href="{}" title="{}">{}</a>', url, obj.action, sentence)
        return format_html('<span title="{}">{}</span>', obj.action, sentence)
