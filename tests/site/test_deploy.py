"""The deployment guide's commands, run as the guide says, with production settings:
migrate, collectstatic, check --deploy, gunicorn serving the admin and its static
files (whitenoise) behind a TLS proxy, /healthz over plain HTTP; and the
environment reference is the one generated from .env.example."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from openchargeback.envdoc import env_example, render

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def production(tmp_path: Path) -> dict[str, str]:
    """The environment file of a production site (docs/deployment.md)."""
    env_file = tmp_path / "env"
    env_file.write_text(
        "\n".join(
            [
                "SECRET_KEY=production-" + "k3y" * 20,
                "ALLOWED_HOSTS=billing.example.edu,127.0.0.1",
                "CSRF_TRUSTED_ORIGINS=https://billing.example.edu",
                "BEHIND_TLS_PROXY=true",
                "AXES_PROXY_COUNT=1",
                f"OPENCHARGEBACK_INSTANCE_DIR={tmp_path / 'instance'}",
                f"DATABASE_URL=sqlite:///{tmp_path / 'instance' / 'db.sqlite3'}",
                "LOG_FORMAT=json",
                "LOG_LEVEL=INFO",
            ]
        )
        + "\n"
    )
    (tmp_path / "instance").mkdir()
    scrubbed = {"DATABASE_URL", "SECRET_KEY", "DEBUG", "STATIC_ROOT", "MEDIA_ROOT", "LOG_FILE"}
    env = {k: v for k, v in os.environ.items() if k not in scrubbed}
    env["OPENCHARGEBACK_ENV_FILE"] = str(env_file)
    return env


def _openchargeback(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "openchargeback.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def gunicorn(production: dict[str, str]) -> Iterator[str]:
    for step in (("migrate", "--no-input"), ("collectstatic", "--no-input")):
        done = _openchargeback(production, *step)
        assert done.returncode == 0, done.stderr
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "openchargeback.wsgi:application",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
        ],
        cwd=ROOT,
        env=production,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(base + "/healthz", timeout=10)  # noqa: S310
                break
            except OSError:  # not listening yet, or the workers still starting
                time.sleep(0.2)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def _get(url: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    opener = urllib.request.build_opener(_NoRedirect)
    request = urllib.request.Request(url, headers=headers)  # noqa: S310
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_check_deploy_is_clean(production: dict[str, str]) -> None:
    done = _openchargeback(production, "check", "--deploy", "--fail-level", "WARNING")
    assert done.returncode == 0, done.stdout + done.stderr


def test_gunicorn_serves_the_site_behind_a_tls_proxy(gunicorn: str) -> None:
    status, _headers, body = _get(gunicorn + "/healthz")
    assert status == 200
    assert json.loads(body)["status"] == "ok"

    status, headers, _body = _get(gunicorn + "/admin/login/", Host="billing.example.edu")
    assert status == 301
    assert headers["Location"].startswith("https://billing.example.edu/")

    proxied = {"Host": "billing.example.edu", "X-Forwarded-Proto": "https"}
    status, headers, body = _get(gunicorn + "/admin/login/", **proxied)
    assert status == 200
    assert b"OpenChargeback" in body
    assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    policy = headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    status, _headers, _body = _get(gunicorn + "/media/statements/", **proxied)
    assert status == 404  # stored files only through the admin's views
    css = body.decode().split('href="/static/admin/css/base.')[1].split('"')[0]
    assert css.endswith(".css")
    assert len(css) > len("css")
    status, headers, _body = _get(f"{gunicorn}/static/admin/css/base.{css}", **proxied)
    assert status == 200
    assert headers["Content-Type"].startswith("text/css")
    assert "immutable" in headers["Cache-Control"]


def test_environment_reference_is_current() -> None:
    expected = render(env_example().read_text(encoding="utf-8"))
    assert (ROOT / "docs" / "environment.md").read_text(encoding="utf-8") == expected, (
        "docs/environment.md is out of date: run `make env-docs`"
    )


@pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith("postgres"),
    reason="connection pooling is for PostgreSQL (CI's second pass)",
)
def test_a_postgresql_site_runs_with_a_connection_pool(tmp_path: Path) -> None:
    from tests.conftest import fresh_database_url

    with fresh_database_url(tmp_path, "pool") as url:
        env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY"}}
        env.update(
            DEBUG="true",
            DATABASE_URL=url,
            DB_POOL_MAX_SIZE="3",
            OPENCHARGEBACK_INSTANCE_DIR=str(tmp_path / "instance"),
        )
        assert _openchargeback(env, "migrate", "--no-input", "-v", "0").returncode == 0
        done = _openchargeback(
            env,
            "shell",
            "-v",
            "0",
            "-c",
            "from django.db import connection; connection.ensure_connection(); "
            "from openchargeback.health import report; "
            "print(type(connection.pool).__name__, connection.pool.max_size, report()[0])",
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["ConnectionPool", "3", "True"]
