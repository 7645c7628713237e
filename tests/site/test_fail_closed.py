"""Defaults that fail closed: no development key outside DEBUG or the test
runner, whatever the command line; the demo's admin/admin refused with DEBUG
off; HSTS preload only when a site asks for it.

The processes that matter here are not pytest, so they run as subprocesses
(with neither DEBUG nor SECRET_KEY from this environment)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import authenticate, get_user_model
from django.test import Client, RequestFactory

from openchargeback.auth import DEMO_PASSWORD, DEMO_USERNAME
from openchargeback.management.commands.demo import Command as DemoCommand

ROOT = Path(__file__).resolve().parents[2]
MISSING_KEY = "SECRET_KEY is not set"
_SCRUBBED = {"DEBUG", "SECRET_KEY", "DATABASE_URL", "OPENCHARGEBACK_ENV_FILE", "LOG_FILE"}
_SCRUBBED |= {"STATIC_ROOT", "MEDIA_ROOT", "OPENCHARGEBACK_INSTANCE_DIR", "SECURE_HSTS_PRELOAD"}
PRODUCTION = {
    "SECRET_KEY": "production-" + "k3y" * 20,
    "ALLOWED_HOSTS": "billing.example.edu",
    "BEHIND_TLS_PROXY": "true",
}


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    env.update(
        DJANGO_SETTINGS_MODULE="openchargeback.settings",
        OPENCHARGEBACK_INSTANCE_DIR=str(tmp_path / "instance"),
        DATABASE_URL=f"sqlite:///{tmp_path / 'instance' / 'db.sqlite3'}",
    )
    env.update(extra)
    return env


def _run(tmp_path: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """`python ARGS` in the project, with no SECRET_KEY and no DEBUG unless given."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=_env(tmp_path, **extra),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _python(tmp_path: Path, code: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """`python -c CODE`: a process with no arguments, as gunicorn, mod_wsgi and uWSGI start."""
    return _run(tmp_path, "-c", code, **extra)


def _last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


# --- SECRET_KEY -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        "import django; django.setup()",
        "import openchargeback.wsgi",
        "import openchargeback.asgi",
        "from django.conf import settings; print(settings.SECRET_KEY)",
    ],
)
def test_a_process_without_arguments_refuses_to_start_without_a_key(
    tmp_path: Path, code: str
) -> None:
    done = _python(tmp_path, code, DEBUG="false")
    assert done.returncode == 1
    assert done.stdout == ""  # the development key was never printed
    assert _last_line(done.stderr).startswith(
        f"django.core.exceptions.ImproperlyConfigured: {MISSING_KEY}: "
    )


def test_debug_off_by_default_also_refuses(tmp_path: Path) -> None:
    done = _python(tmp_path, "import openchargeback.wsgi")  # DEBUG not set at all
    assert done.returncode == 1
    assert MISSING_KEY in _last_line(done.stderr)


@pytest.mark.parametrize(
    "args",
    [
        ["makemigrations", "--check", "--dry-run"],
        ["help", "periods"],
        ["test"],
        ["check"],
    ],
)
def test_no_command_gets_the_development_key(tmp_path: Path, args: list[str]) -> None:
    """Not even the ones that used to (makemigrations, help) or that look like tests."""
    done = _run(tmp_path, "-m", "openchargeback.cli", *args)
    assert done.returncode == 1
    assert done.stderr.startswith(f"Configuration error: {MISSING_KEY}")
    assert done.stderr.count("\n") == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_gunicorn_started_from_its_config_file_alone_does_not_boot(tmp_path: Path) -> None:
    config = tmp_path / "gunicorn.conf.py"
    config.write_text(
        'wsgi_app = "openchargeback.wsgi:application"\n'
        f'bind = "127.0.0.1:{_free_port()}"\n'
        "workers = 1\n"
    )
    started = time.monotonic()
    done = _run(tmp_path, "-m", "gunicorn", "--config", str(config))
    assert done.returncode == 3  # gunicorn's "worker failed to boot"
    assert f"ImproperlyConfigured: {MISSING_KEY}" in done.stderr
    assert time.monotonic() - started < 120


def test_debug_on_uses_the_development_key(tmp_path: Path) -> None:
    done = _python(
        tmp_path,
        "from django.conf import settings; "
        "print(settings.SECRET_KEY == settings._DEV_SECRET_KEY, settings.TESTING)",
        DEBUG="true",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "False"]


def test_a_set_key_is_used_whatever_debug_says(tmp_path: Path) -> None:
    done = _python(
        tmp_path,
        "from django.conf import settings; print(settings.SECRET_KEY)",
        **PRODUCTION,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == PRODUCTION["SECRET_KEY"]


def test_the_test_runner_is_told_by_pytest_not_by_the_command_line() -> None:
    assert settings.TESTING is True
    assert settings.SECRET_KEY == settings._DEV_SECRET_KEY  # no SECRET_KEY in the test run


# --- the demo user ----------------------------------------------------------------------


@pytest.fixture
def demo_user(db: None, settings: Any) -> Any:
    """The account `openchargeback demo` creates (it does so with DEBUG on only)."""
    settings.DEBUG = True
    DemoCommand()._admin_user()
    user = get_user_model().objects.get(username=DEMO_USERNAME)
    assert user.is_superuser
    assert user.check_password(DEMO_PASSWORD)
    return user


def _login(username: str, password: str) -> Any:
    return Client().post("/admin/login/?next=/admin/", {"username": username, "password": password})


def test_the_demo_user_logs_in_with_debug_on(demo_user: Any) -> None:
    response = _login(DEMO_USERNAME, DEMO_PASSWORD)
    assert response.status_code == 302
    assert response["Location"] == "/admin/"


def test_the_demo_user_is_refused_with_debug_off(
    demo_user: Any, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.DEBUG = False
    response = _login(DEMO_USERNAME, DEMO_PASSWORD)
    assert response.status_code == 200  # the login form again, with its error
    assert "Please enter the correct username and password" in response.content.decode()
    assert "_auth_user_id" not in response.wsgi_request.session
    assert (
        authenticate(
            RequestFactory().post("/admin/login/"), username=DEMO_USERNAME, password=DEMO_PASSWORD
        )
        is None
    )
    assert "the demo password works only with DEBUG=true" in caplog.text


def test_the_demo_password_is_refused_for_any_account_with_debug_off(
    db: None, settings: Any
) -> None:
    settings.DEBUG = False
    get_user_model().objects.create_user("rita", password=DEMO_PASSWORD, is_staff=True)
    assert (
        authenticate(
            RequestFactory().post("/admin/login/"), username="rita", password=DEMO_PASSWORD
        )
        is None
    )


def test_a_new_password_makes_the_demo_account_an_ordinary_one(
    demo_user: Any, settings: Any
) -> None:
    settings.DEBUG = False
    demo_user.set_password("a-real-password-of-this-site")
    demo_user.save()
    response = _login(DEMO_USERNAME, "a-real-password-of-this-site")
    assert response.status_code == 302
    assert response["Location"] == "/admin/"


def test_the_demo_creates_no_user_with_debug_off(db: None, settings: Any) -> None:
    settings.DEBUG = False
    DemoCommand()._admin_user()
    assert not get_user_model().objects.filter(username=DEMO_USERNAME).exists()


# --- HSTS -------------------------------------------------------------------------------

_HSTS = (
    "import django; django.setup(); from django.conf import settings; "
    "from django.test import Client; "
    "r = Client().get('/no-such-page', secure=True, HTTP_HOST='billing.example.edu'); "
    "print(r.headers['Strict-Transport-Security']); "
    "print(settings.SECURE_HSTS_PRELOAD, settings.SILENCED_SYSTEM_CHECKS)"
)


def test_hsts_preload_is_off_unless_configured(tmp_path: Path) -> None:
    done = _python(tmp_path, _HSTS, **PRODUCTION)
    assert done.returncode == 0, done.stderr
    header, flags = done.stdout.strip().splitlines()
    assert header == "max-age=31536000; includeSubDomains"
    assert flags == "False ['security.W021']"


def test_hsts_preload_when_a_site_asks_for_it(tmp_path: Path) -> None:
    done = _python(tmp_path, _HSTS, **PRODUCTION, SECURE_HSTS_PRELOAD="true")
    assert done.returncode == 0, done.stderr
    header, flags = done.stdout.strip().splitlines()
    assert header == "max-age=31536000; includeSubDomains; preload"
    assert flags == "True []"


@pytest.mark.parametrize("preload", ["false", "true"])
def test_check_deploy_is_clean_either_way(tmp_path: Path, preload: str) -> None:
    done = _run(
        tmp_path,
        *("-m", "openchargeback.cli", "check", "--deploy", "--fail-level", "INFO"),
        **PRODUCTION,
        SECURE_HSTS_PRELOAD=preload,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    silenced = 1 if preload == "false" else 0
    assert f"System check identified no issues ({silenced} silenced)" in done.stdout
