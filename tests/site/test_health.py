"""/healthz: the verdict for anyone, the figures for staff, 503 when not healthy."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from django_q.models import OrmQ

from billing.roles import VIEWER
from openchargeback import health
from tests.conftest import role_client


@pytest.fixture(autouse=True)
def _fresh_migration_check() -> None:
    health._migrations_checked = None


def test_healthy_instance_answers_200_and_reveals_nothing(db: None) -> None:
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "migrations": "ok", "queue": "ok"},
    }
    assert response["Cache-Control"].startswith("max-age=0")
    text = response.content.decode()
    for secret in ("/", "sqlite", "postgres", "5.2", "version"):
        assert secret not in text


def test_staff_see_queue_figures(db: None) -> None:
    OrmQ.objects.create(key="openchargeback", payload="x", lock=timezone.now())
    body = role_client(VIEWER).get("/healthz").json()
    assert body["status"] == "ok"
    assert body["details"]["queue"]["waiting"] == 1
    assert body["details"]["migrations_pending"] == 0


def test_a_stalled_queue_answers_503(db: None, settings: Any) -> None:
    settings.OPENCHARGEBACK_HEALTH_QUEUE_MAX_AGE = 60
    OrmQ.objects.create(
        key="openchargeback", payload="x", lock=timezone.now() - timedelta(minutes=5)
    )
    running = OrmQ.objects.create(
        key="openchargeback", payload="y", lock=timezone.now() + timedelta(minutes=5)
    )
    response = Client().get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["queue"] == "stalled"
    assert "details" not in response.json()
    staff = role_client(VIEWER).get("/healthz").json()["details"]["queue"]
    assert staff["waiting"] == 1
    assert staff["running"] == 1
    assert staff["oldest_seconds"] >= 300
    running.delete()


def test_pending_migrations_answer_503(db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    class Executor:
        def __init__(self, _connection: object) -> None:
            graph = type("G", (), {"leaf_nodes": lambda _self: []})
            self.loader = type("L", (), {"graph": graph()})

        def migration_plan(self, _targets: object) -> list[object]:
            return [("billing", "0099_future")]

    monkeypatch.setattr(health, "MigrationExecutor", Executor)
    response = Client().get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["migrations"] == "pending"


def test_only_get(db: None) -> None:
    assert Client().post("/healthz").status_code == 405
