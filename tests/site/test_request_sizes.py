"""Request bodies bounded per path before anything reads them
(openchargeback/bodylimit.py): small everywhere, large only on the upload
endpoint and only for a user allowed to import; bodies without a length
refused. Each refusal is checked to read no byte of the body."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from billing.roles import BILLING_ADMIN, VIEWER
from ingest.models import Upload
from tests.conftest import role_client

pytestmark = pytest.mark.django_db

UPLOAD = "/admin/ingest/import/upload/"
LOGIN = "/admin/login/"
MULTIPART = "multipart/form-data; boundary=ocb"


class Body:
    """A request body that counts what is read of it (``wsgi.input``)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.read_bytes = 0

    def read(self, n: int = -1) -> bytes:
        left = self.size - self.read_bytes
        take = left if n is None or n < 0 else min(n, left)
        self.read_bytes += take
        return b"x" * take

    def readline(self, n: int = -1) -> bytes:
        return self.read(n)


def send(
    client: Client, path: str, size: int, *, length: str | None = None, **headers: str
) -> tuple[Any, Body]:
    """POST a body of ``size`` bytes (claimed as ``length``, or none with "")."""
    body = Body(size)
    extra: dict[str, Any] = {
        "wsgi.input": body,
        "CONTENT_LENGTH": str(size) if length is None else length,
        "CONTENT_TYPE": MULTIPART,
        **headers,
    }
    response = client.generic("POST", path, b"", **extra)
    return response, body


def upload_dir(settings: Any) -> list[Path]:
    root = Path(settings.MEDIA_ROOT) / "uploads"
    return sorted(root.iterdir()) if root.exists() else []


def test_a_large_anonymous_upload_is_refused_unread(defaults: None, settings: Any) -> None:
    response, body = send(Client(), UPLOAD, 100 * 1024**2)
    assert response.status_code == 403
    assert "Sign in as a user allowed to import files" in response.content.decode()
    assert body.read_bytes == 0
    # The view never ran: nothing staged, not even a temporary file.
    assert upload_dir(settings) == []
    assert not Upload.objects.exists()


def test_a_small_anonymous_upload_is_refused_unread_too(defaults: None, settings: Any) -> None:
    response, body = send(Client(), UPLOAD, 100)
    assert response.status_code == 403
    assert body.read_bytes == 0
    assert upload_dir(settings) == []


def test_an_upload_from_a_user_who_may_not_import_is_refused_unread(
    defaults: None, settings: Any
) -> None:
    response, body = send(role_client(VIEWER), UPLOAD, 10 * 1024**2)
    assert response.status_code == 403
    assert body.read_bytes == 0
    assert upload_dir(settings) == []
    assert not Upload.objects.exists()


def test_a_large_anonymous_post_to_the_login_page_is_refused_unread(
    defaults: None, settings: Any
) -> None:
    limit = settings.OPENCHARGEBACK_ANONYMOUS_REQUEST_MAX_BYTES
    response, body = send(Client(), LOGIN, limit + 1)
    assert response.status_code == 413
    html = response.content.decode()
    assert "larger than the 64.0 KB this page accepts before signing in" in html
    assert body.read_bytes == 0

    # A login form is far below the limit: signing in works as before.
    from tests.conftest import user_in

    user_in(BILLING_ADMIN, password="a-long-password")
    client = Client()
    signed_in = client.post(
        LOGIN, {"username": "billing_admin", "password": "a-long-password", "next": "/admin/"}
    )
    assert signed_in.status_code == 302
    assert signed_in["Location"] == "/admin/"


def test_signed_in_users_have_a_larger_limit_on_other_pages(defaults: None, settings: Any) -> None:
    settings.OPENCHARGEBACK_REQUEST_MAX_BYTES = 1024**2
    client = role_client(BILLING_ADMIN)
    over, body = send(client, "/admin/billing/source/add/", 1024**2 + 1)
    assert over.status_code == 413
    assert body.read_bytes == 0
    assert "larger than the 1.0 MB this page accepts;" in over.content.decode()
    # Under the limit (and over the anonymous one) the request goes on to the
    # CSRF check and the view, which read it.
    under, body = send(client, "/admin/billing/source/add/", 100 * 1024)
    assert under.status_code != 413
    assert body.read_bytes > 0


def test_the_upload_endpoint_takes_a_large_body_from_an_importer(
    defaults: None, settings: Any
) -> None:
    """Past the middleware; the view refuses it (unread) over the upload limit."""
    settings.OPENCHARGEBACK_UPLOAD_MAX_REQUEST_BYTES = 64 * 1024**2
    response, body = send(role_client(BILLING_ADMIN), UPLOAD, 65 * 1024**2)
    assert response.status_code == 413
    assert body.read_bytes == 0
    assert "(OPENCHARGEBACK_UPLOAD_MAX_REQUEST_BYTES); nothing was stored." in (
        response.content.decode()
    )
    assert upload_dir(settings) == []


@pytest.mark.parametrize("path", [UPLOAD, LOGIN])
@pytest.mark.parametrize("who", ["anonymous", BILLING_ADMIN])
def test_a_chunked_body_without_a_length_is_refused_unread(
    defaults: None, settings: Any, path: str, who: str
) -> None:
    client = Client() if who == "anonymous" else role_client(who)
    response, body = send(client, path, 200 * 1024**2, length="", HTTP_TRANSFER_ENCODING="chunked")
    assert response.status_code == 411
    assert "Send the request body with a Content-Length header" in response.content.decode()
    assert body.read_bytes == 0
    assert upload_dir(settings) == []
    assert not Upload.objects.exists()


def test_a_length_that_is_not_a_size_is_refused(defaults: None) -> None:
    response, body = send(Client(), LOGIN, 10, length="ten")
    assert response.status_code == 400
    assert body.read_bytes == 0


def test_form_and_memory_limits_are_set() -> None:
    from django.conf import settings

    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE == settings.FILE_UPLOAD_MAX_MEMORY_SIZE == 2621440
    # Nothing an anonymous client may send reaches the disk: it fits in memory.
    anonymous = settings.OPENCHARGEBACK_ANONYMOUS_REQUEST_MAX_BYTES
    assert anonymous <= settings.FILE_UPLOAD_MAX_MEMORY_SIZE
    middleware = settings.MIDDLEWARE
    limit = middleware.index("openchargeback.bodylimit.RequestSizeMiddleware")
    assert middleware.index("django.contrib.sessions.middleware.SessionMiddleware") < limit
    assert limit < middleware.index("django.middleware.csrf.CsrfViewMiddleware")
