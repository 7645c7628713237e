"""Login throttling behind a reverse proxy: the client's address comes from
X-Forwarded-For as the configured proxies wrote it, and a lockout holds one
user name from one address, through the real login view."""

from __future__ import annotations

from typing import Any

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import get_user_model
from django.test import Client, RequestFactory

from openchargeback.proxy import client_ip

PROXY = "10.0.0.2"  # the reverse proxy: every request's REMOTE_ADDR
CLIENT_1, CLIENT_2 = "203.0.113.1", "203.0.113.2"
PASSWORD = "the right password"


@pytest.fixture
def behind_one_proxy(settings: Any) -> None:
    settings.OPENCHARGEBACK_PROXY_COUNT = 1


@pytest.fixture
def users(db: None) -> None:
    for name in ("ann", "ben"):
        get_user_model().objects.create_user(name, password=PASSWORD, is_staff=True)


def _login(username: str, password: str, forwarded: str | None) -> int:
    """POST the admin's login form as it reaches the site through the proxy."""
    headers: dict[str, Any] = {"REMOTE_ADDR": PROXY}
    if forwarded is not None:
        headers["HTTP_X_FORWARDED_FOR"] = forwarded
    response = Client().post(
        "/admin/login/?next=/admin/", {"username": username, "password": password}, **headers
    )
    return int(response.status_code)


def _fail_five_times(username: str, forwarded: list[str]) -> None:
    for header in forwarded:
        assert _login(username, "wrong", header) in (200, 429)


LOGGED_IN, REFUSED, LOCKED = 302, 200, 429


def test_a_lockout_holds_one_user_from_one_client(users: None, behind_one_proxy: None) -> None:
    _fail_five_times("ann", [CLIENT_1] * 5)
    attempt = AccessAttempt.objects.get()
    assert (attempt.username, attempt.ip_address, attempt.failures_since_start) == (
        "ann",
        CLIENT_1,
        5,
    )
    assert _login("ann", PASSWORD, CLIENT_1) == LOCKED  # even the right password
    assert _login("ann", PASSWORD, CLIENT_2) == LOGGED_IN  # the same user elsewhere
    assert _login("ben", PASSWORD, CLIENT_1) == LOGGED_IN  # another user from there


def test_four_failures_do_not_lock(users: None, behind_one_proxy: None) -> None:
    _fail_five_times("ann", [CLIENT_1] * 4)
    assert _login("ann", PASSWORD, CLIENT_1) == LOGGED_IN
    assert not AccessAttempt.objects.exists()  # a success resets the count


def test_without_a_proxy_count_x_forwarded_for_is_ignored(users: None, settings: Any) -> None:
    settings.OPENCHARGEBACK_PROXY_COUNT = 0
    _fail_five_times("ann", [CLIENT_1, CLIENT_2, "198.51.100.9", CLIENT_1, CLIENT_2])
    # Every request counted against the connection's address, whatever it claimed.
    assert list(AccessAttempt.objects.values_list("ip_address", flat=True)) == [PROXY]
    assert _login("ann", PASSWORD, CLIENT_2) == LOCKED
    assert _login("ben", PASSWORD, CLIENT_1) == LOGGED_IN


def test_prepending_addresses_does_not_dodge_a_lockout(users: None, behind_one_proxy: None) -> None:
    """Each try claims another address first; the proxy's entry is the last."""
    _fail_five_times("ann", [f"198.51.100.{n}, {CLIENT_1}" for n in range(5)])
    assert _login("ann", PASSWORD, f"198.51.100.77, {CLIENT_1}") == LOCKED
    assert _login("ann", PASSWORD, CLIENT_1) == LOCKED
    assert list(AccessAttempt.objects.values_list("ip_address", flat=True)) == [CLIENT_1]


def test_prepending_someone_elses_address_does_not_lock_them_out(
    users: None, behind_one_proxy: None
) -> None:
    """An attacker at client 1 claiming to be client 2 locks only himself."""
    _fail_five_times("ann", [f"{CLIENT_2}, {CLIENT_1}"] * 5)
    assert _login("ann", PASSWORD, CLIENT_2) == LOGGED_IN
    assert _login("ann", PASSWORD, CLIENT_1) == LOCKED


def test_without_the_header_the_connection_address_counts(
    users: None, behind_one_proxy: None
) -> None:
    _fail_five_times("ann", [None] * 5)  # type: ignore[list-item]
    assert list(AccessAttempt.objects.values_list("ip_address", flat=True)) == [PROXY]
    assert _login("ann", PASSWORD, CLIENT_1) == LOGGED_IN


# --- the address itself ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "forwarded", "expected"),
    [
        (0, "203.0.113.1", PROXY),  # no proxy configured: the header is the client's word
        (1, "203.0.113.1", "203.0.113.1"),
        (1, "198.51.100.1, 203.0.113.1", "203.0.113.1"),  # prepended: ignored
        (1, " 198.51.100.1 ,203.0.113.1 ", "203.0.113.1"),
        (1, "2001:db8::1", "2001:db8::1"),
        (1, "2001:DB8:0::1", "2001:db8::1"),  # one spelling per address
        (2, "198.51.100.1, 203.0.113.1, 10.0.0.9", "203.0.113.1"),  # two proxies
        (2, "203.0.113.1", "203.0.113.1"),  # fewer entries than proxies: the leftmost
        (1, "", PROXY),
        (1, "unknown", PROXY),  # not an address: the connection's
        (1, "203.0.113.1:4711", PROXY),
    ],
)
def test_client_ip(settings: Any, count: int, forwarded: str, expected: str) -> None:
    settings.OPENCHARGEBACK_PROXY_COUNT = count
    request = RequestFactory().get("/", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=forwarded)
    assert client_ip(request) == expected


def test_axes_uses_it(settings: Any) -> None:
    from axes.helpers import get_client_ip_address

    settings.OPENCHARGEBACK_PROXY_COUNT = 1
    request = RequestFactory().get("/", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=CLIENT_2)
    assert get_client_ip_address(request) == CLIENT_2
