"""Request bodies bounded per path, before anything reads them.

Django's CSRF check reads a POST body (a multipart one is parsed, its files
spooled to disk) before the view decides anything, so the size of a body
must be decided earlier, from its headers. This middleware runs right after
the session middleware (so the session cookie tells who is asking) and
before the CSRF check:

- the upload endpoint (the admin's import page) takes a body only from a
  signed-in user allowed to import; the view then refuses one larger than
  ``OPENCHARGEBACK_UPLOAD_MAX_REQUEST_BYTES`` before reading it;
- every other path takes at most ``OPENCHARGEBACK_ANONYMOUS_REQUEST_MAX_BYTES``
  before signing in and ``OPENCHARGEBACK_REQUEST_MAX_BYTES`` after;
- a body sent without a Content-Length (``Transfer-Encoding: chunked``) is
  refused: under WSGI Django reads at most Content-Length bytes of a body,
  so a length in the headers bounds what is read.

A refusal is a short page (413, 403 or 411) and a log line; the body is not
read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user
from django.http import HttpRequest, HttpResponse
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils.html import format_html

logger = logging.getLogger(__name__)

UPLOAD_PERMISSION = "ingest.import_focus"


def size_text(size: int) -> str:
    return str(filesizeformat(size)).replace("\xa0", " ")


def may_upload(user: Any) -> bool:
    return bool(
        user.is_authenticated
        and user.is_active
        and user.is_staff
        and user.has_perm(UPLOAD_PERMISSION)
    )


class RequestSizeMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.refusal(request) or self.get_response(request)

    def refusal(self, request: HttpRequest) -> HttpResponse | None:
        meta = request.META
        if meta.get("HTTP_TRANSFER_ENCODING"):
            return _refuse(
                request,
                411,
                "Length required",
                "Send the request body with a Content-Length header "
                "(bodies of unknown length are not accepted).",
            )
        try:
            length = int(meta.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if length < 0:
            return _refuse(request, 400, "Bad request", "The Content-Length header is not a size.")
        if length == 0:
            return None
        if request.path == reverse("admin:ingest_import_upload"):
            if not may_upload(self.user(request)):
                return _refuse(
                    request,
                    403,
                    "Forbidden",
                    "Sign in as a user allowed to import files before uploading them.",
                )
            return None  # the view refuses a body over the upload limit before reading it
        anonymous_limit = int(settings.OPENCHARGEBACK_ANONYMOUS_REQUEST_MAX_BYTES)
        if length <= anonymous_limit:
            return None
        if not self.user(request).is_authenticated:
            return _too_large(request, length, anonymous_limit, "before signing in")
        limit = int(settings.OPENCHARGEBACK_REQUEST_MAX_BYTES)
        if length > limit:
            return _too_large(request, length, limit, "")
        return None

    @staticmethod
    def user(request: HttpRequest) -> Any:
        """The session's user, kept where the authentication middleware looks
        for it (so it is read from the database once)."""
        if not hasattr(request, "_cached_user"):
            request._cached_user = get_user(request)  # type: ignore[attr-defined]
        return request._cached_user  # type: ignore[attr-defined]


def _too_large(request: HttpRequest, length: int, limit: int, when: str) -> HttpResponse:
    return _refuse(
        request,
        413,
        "Request too large",
        f"The request body ({size_text(length)}) is larger than the "
        f"{size_text(limit)} this page accepts{' ' + when if when else ''}; "
        "nothing was read.",
    )


def _refuse(request: HttpRequest, status: int, title: str, message: str) -> HttpResponse:
    logger.warning(
        "request body refused",
        extra={
            "status": status,
            "path": request.path,
            "method": request.method,
            "content_length": request.META.get("CONTENT_LENGTH") or "",
        },
    )
    page = format_html(
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{}</title></head>'
        "<body><h1>{}</h1><p>{}</p></body></html>",
        title,
        title,
        message,
    )
    return HttpResponse(page, status=status, content_type="text/html; charset=utf-8")
