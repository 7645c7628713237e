"""The admin's import pages, as a mixin of the Import admin (ingest/admin.py):
the drop zone that stages several files, the batch page that previews,
changes, imports or discards each file, and the status the batch page polls.
The work itself is ingest.uploads.services (uploads_batch decides what a
button of the batch page does) and what the pages show is read through
ingest.uploads.selectors; these views parse the request, call them and report."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    JsonResponse,
)
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from billing import flags
from billing.adminkit import actor_for
from billing.audit import Actor
from billing.errors import BillingError, web_text
from billing.models import InstitutionSettings, Source
from billing.periods import parse_period
from ingest.models import Upload
from ingest.uploads import selectors, staging
from ingest.uploads import services as uploads

S = Upload.Status


def charges_url(import_id: int, *, pending: bool = False) -> str:
    """The review queue filtered to one import's charges (those waiting for review)."""
    url = reverse("admin:billing_charge_changelist") + f"?import_record__id__exact={import_id}"
    return url + "&review_state__exact=pending" if pending else url


def _errors(form: forms.Form) -> str:
    return "; ".join(str(e) for errs in form.errors.values() for e in errs)


# The batch page's notes as the admin's messages.
LEVELS = {"info": messages.INFO, "warning": messages.WARNING, "error": messages.ERROR}


class PeriodField(forms.CharField):
    def clean(self, value: Any) -> str:
        text = str(super().clean(value) or "").strip()
        if not text:
            return ""
        try:
            return parse_period(text)
        except BillingError as exc:
            raise forms.ValidationError(web_text(exc)) from None


class UploadOptionsForm(forms.Form):
    """What applies to every file of an upload (each can still be changed afterwards)."""

    source = forms.ModelChoiceField(
        queryset=selectors.enabled_sources(),
        to_field_name="slug",
        required=False,
        empty_label="Detect from each file name",
        help_text="The longest matching file-name pattern of the sources wins "
        "(it_storage before storage).",
    )
    period = PeriodField(
        required=False,
        max_length=7,
        label="Expected period",
        widget=forms.TextInput(attrs={"size": 8, "placeholder": "YYYY-MM"}),
        help_text="Blank: detected from each file name (2025-01, 2025_01 or 202501). "
        "Rows of other months are flagged for review.",
    )


class UploadChoiceForm(forms.Form):
    """One staged file's source and expected period (prefixed with the upload id)."""

    source = forms.ModelChoiceField(
        queryset=selectors.enabled_sources(),
        to_field_name="slug",
        required=False,
        empty_label="(choose)",
    )
    period = PeriodField(
        required=False,
        max_length=7,
        label="Expected period",
        widget=forms.TextInput(attrs={"size": 8, "placeholder": "YYYY-MM"}),
    )
    route = forms.BooleanField(
        required=False,
        label="Route by provider",
        help_text="A file of several providers: each provider's rows go to the source "
        "claiming it (the source above is not used).",
    )

    def __init__(self, data: Any = None, *, upload: Upload) -> None:
        initial = {
            "source": upload.source,
            "period": upload.period,
            "route": selectors.is_routed(upload),
        }
        super().__init__(data, prefix=f"u{upload.pk}", initial=initial)
        help_id = f"u{upload.pk}-detected"
        for field in self.fields.values():
            field.widget.attrs["aria-describedby"] = help_id

    def choice(self) -> uploads.UploadChoice:
        """The posted source and period (or why they were refused)."""
        if not self.is_valid():
            return uploads.UploadChoice(error=_errors(self))
        data = self.cleaned_data
        return uploads.UploadChoice(
            source=data["source"], period=data["period"], route=data["route"]
        )


def state_label(upload: Upload) -> str:
    """What a file's status line says (the page and its status poll agree)."""
    status = upload.status
    if status in selectors.RUNNING:
        step = "Preview" if status == S.PREVIEWING else "Import"
        if selectors.is_stalled(upload):
            return f"{step} stalled (its worker stopped): preview again"
        if selectors.waiting_for_worker(upload):
            return (
                f"{step} queued: no worker has taken it yet (is openchargeback qcluster running?)"
            )
        if upload.job_started_at is None:
            return f"{step} queued: waiting for a worker"
        return "Previewing…" if status == S.PREVIEWING else "Importing…"
    if status == S.IMPORTED and upload.result.get("status") == "already_imported":
        return "Already imported: nothing new"
    labels: dict[str, str] = {
        S.STAGED: "Waiting for a source",
        S.PREVIEWED: "Previewed: ready to import",
        S.IMPORTED: "Imported",
        S.FAILED: "Failed",
        S.DISCARDED: "Discarded",
    }
    return labels.get(status, status)


class UploadViews(admin.ModelAdmin):
    """The upload and batch pages of the Import admin (mixed in before its base)."""

    def has_import_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("ingest.import_focus")

    def upload_urls(self) -> list[URLPattern]:
        site = self.admin_site
        # The upload view parses the request body itself (to stream files to
        # disk), so it runs its own CSRF check after choosing the handler.
        return [
            path(
                "upload/",
                site.admin_view(csrf_exempt(self.upload_view)),
                name="ingest_import_upload",
            ),
            path(
                "upload/<uuid:batch>/",
                site.admin_view(self.batch_view),
                name="ingest_import_batch",
            ),
            path(
                "upload/<uuid:batch>/status/",
                site.admin_view(self.batch_status_view),
                name="ingest_import_batch_status",
            ),
        ]

    # -- the drop zone -------------------------------------------------------------
    def upload_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_import_permission(request):
            raise PermissionDenied
        if request.method not in ("GET", "POST"):
            return HttpResponseNotAllowed(["GET", "POST"])
        if request.method == "GET":
            return self._upload_page(request, UploadOptionsForm())
        # Refuse an oversize request before reading a byte of its body.
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > staging.max_request_bytes():
            error = (
                f"The upload ({staging.size_text(length)}) is larger than the limit of "
                f"{staging.size_text(staging.max_request_bytes())} for all files together "
                "(OPENCHARGEBACK_UPLOAD_MAX_REQUEST_BYTES); nothing was stored. "
                "Upload fewer files at a time."
            )
            return self._upload_page(request, UploadOptionsForm(), errors=[error], status=413)
        handler = staging.StagingUploadHandler(request)
        request.upload_handlers = [handler]
        kept: set[str] = set()
        try:
            response: HttpResponse = csrf_protect(self._upload_post)(request, handler, kept)
        finally:
            # Whatever was not turned into an upload (refused, CSRF failure,
            # an error) leaves nothing behind.
            handler.discard_partial()
            for entry in handler.received:
                if entry.path is not None and str(entry.path) not in kept:
                    entry.path.unlink(missing_ok=True)
        return response

    def _upload_post(
        self, request: HttpRequest, handler: staging.StagingUploadHandler, kept: set[str]
    ) -> HttpResponse:
        form = UploadOptionsForm(request.POST)
        received = handler.received
        if not form.is_valid() or not received:
            errors = [] if received else ["Choose at least one file."]
            return self._upload_page(request, form, errors=errors, status=400)
        actor = actor_for(request)
        batch = uuid.uuid4()
        staged: list[Upload] = []
        for entry in received:
            if entry.error:
                messages.error(request, entry.error)
                continue
            if entry.size == 0:
                messages.error(request, f"{entry.file_name}: the file is empty; nothing was stored")
                continue
            staged.append(
                uploads.upload_stage(
                    batch=batch,
                    file_name=entry.file_name,
                    stored_file=entry.relative,
                    size=entry.size,
                    source=form.cleaned_data["source"],
                    period=form.cleaned_data["period"],
                    actor=actor,
                )
            )
            kept.add(str(entry.path))
        if not staged:
            return HttpResponseRedirect(reverse("admin:ingest_import_upload"))
        for upload in staged:
            # The batch page shows each file's outcome (and why it waits or failed).
            if upload.source is not None:
                self._preview(request, upload, upload.source, upload.period, actor)
        return HttpResponseRedirect(reverse("admin:ingest_import_batch", args=[batch]))

    def _upload_page(
        self,
        request: HttpRequest,
        form: UploadOptionsForm,
        *,
        errors: list[str] | None = None,
        status: int = 200,
    ) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Upload FOCUS files",
            "form": form,
            "errors": errors or [],
            "waiting": selectors.waiting_batches(),
            "max_file": staging.max_file_bytes(),
            "max_request": staging.max_request_bytes(),
            "max_file_text": staging.size_text(staging.max_file_bytes()),
            "max_request_text": staging.size_text(staging.max_request_bytes()),
        }
        return TemplateResponse(request, "admin/ingest/import/upload.html", context, status=status)

    # -- a batch: preview, change, import, discard ---------------------------------
    def _batch(self, request: HttpRequest, batch: uuid.UUID) -> list[Upload]:
        if not self.has_import_permission(request):
            raise PermissionDenied
        found = selectors.batch_uploads(batch)
        if found is None:
            raise Http404("No such upload.")
        return found

    def batch_view(self, request: HttpRequest, batch: uuid.UUID) -> HttpResponse:
        files = self._batch(request, batch)
        if request.method == "POST":
            self._batch_action(request, files)
            if not any(u.status != S.DISCARDED for u in files):
                return HttpResponseRedirect(reverse("admin:ingest_import_upload"))
            return HttpResponseRedirect(reverse("admin:ingest_import_batch", args=[batch]))
        if request.method != "GET":
            return HttpResponseNotAllowed(["GET", "POST"])
        if not files:
            messages.info(request, "Every file of that upload was discarded.")
            return HttpResponseRedirect(reverse("admin:ingest_import_upload"))
        rows = [self._row(u) for u in files]
        # Files that "Import all" imports together, as one delivery.
        waiting = [u for u in files if u.status == S.PREVIEWED]
        together = {
            u.pk: [other.file_name for other in group if other.pk != u.pk]
            for group in selectors.delivery_groups(waiting)
            if len(group) > 1
            for u in group
        }
        for row in rows:
            row["delivery_with"] = together.get(row["upload"].pk, [])
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Check and import {len(files)} file{'s' if len(files) != 1 else ''}",
            "rows": rows,
            "batch": batch,
            "busy": any(r["running"] for r in rows),
            "importable": sum(1 for u in files if u.status == S.PREVIEWED),
            "discardable": sum(1 for r in rows if r["may_discard"]),
            "status_url": reverse("admin:ingest_import_batch_status", args=[batch]),
        }
        return TemplateResponse(request, "admin/ingest/import/batch.html", context)

    def batch_status_view(self, request: HttpRequest, batch: uuid.UUID) -> JsonResponse:
        """What the batch page polls while a preview or import runs on a worker."""
        files = self._batch(request, batch)
        states = []
        for u in files:
            progress = selectors.progress_of(u)
            states.append(
                {
                    "id": u.pk,
                    "status": u.status,
                    "running": selectors.is_running(u),
                    "label": state_label(u),
                    "percent": progress.percent if progress else None,
                    "progress": progress.text if progress else "",
                }
            )
        return JsonResponse({"busy": any(s["running"] for s in states), "uploads": states})

    def _batch_action(self, request: HttpRequest, files: list[Upload]) -> None:
        kind, _, ident = request.POST.get("action", "").partition(":")
        choices = {u.pk: UploadChoiceForm(request.POST, upload=u).choice() for u in files}
        result = uploads.uploads_batch(
            uploads=files, action=kind, target=ident, choices=choices, actor=actor_for(request)
        )
        for note in result.notes:
            messages.add_message(request, LEVELS[note.level], note.text)

    def _preview(
        self,
        request: HttpRequest,
        upload: Upload,
        source: Source | None,
        period: str,
        actor: Actor,
        *,
        route: bool = False,
    ) -> None:
        """Queue the file's preview; its card on the batch page follows the job."""
        try:
            uploads.upload_preview(
                upload=upload, source=source, period=period, actor=actor, route=route
            )
        except BillingError as exc:
            messages.error(request, web_text(exc))

    def _row(self, upload: Upload) -> dict[str, Any]:
        """One file as the batch page shows it."""
        money = InstitutionSettings.cached().format_money
        running = selectors.is_running(upload)
        progress = selectors.progress_of(upload)
        row: dict[str, Any] = {
            "upload": upload,
            "form": UploadChoiceForm(upload=upload),
            "size": staging.size_text(upload.file_size),
            "label": state_label(upload),
            "running": running,
            "queued": running and upload.job_started_at is None,
            "percent": progress.percent if progress else None,
            "progress": progress.text if progress else "",
            "may_preview": selectors.is_editable(upload),
            "may_import": upload.status == S.PREVIEWED,
            "may_discard": selectors.is_editable(upload),
        }
        preview = upload.preview
        if preview:
            row["preview"] = {
                **preview,
                "billed": money(Decimal(preview.get("billed_total") or "0")),
                "flag_list": sorted(
                    ((flags.LABEL.get(k, k), v) for k, v in (preview.get("flags") or {}).items()),
                    key=lambda item: (-item[1], item[0]),
                ),
            }
        result = upload.result
        if result:
            import_id = upload.import_record_id or result.get("import_id")
            row["result"] = {
                **result,
                "billed": money(Decimal(result.get("billed_total") or "0")),
                "import_url": reverse("admin:ingest_import_change", args=[import_id])
                if import_id
                else "",
                "charges_url": charges_url(import_id) if import_id else "",
                "pending_url": charges_url(import_id, pending=True) if import_id else "",
            }
        return row
