"""Django settings for OpenChargeback.

One file; the environment decides. Every knob is read through django-environ
from the process environment, an optional ``.env`` next to ``manage.py``, or
the file named by ``OPENCHARGEBACK_ENV_FILE`` (handy for cron). See
``.env.example`` for the full list with defaults.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
_env_file = os.environ.get("OPENCHARGEBACK_ENV_FILE")
if _env_file:
    if not Path(_env_file).is_file():
        raise ImproperlyConfigured(f"OPENCHARGEBACK_ENV_FILE={_env_file} does not exist")
    env.read_env(_env_file)
elif (BASE_DIR / ".env").is_file():
    env.read_env(str(BASE_DIR / ".env"))

# The test runner: pytest is imported before the settings. Nothing about the
# command line decides it (a production process started without arguments
# -- gunicorn from its config file, mod_wsgi, uWSGI, `python -c` -- must not
# look like a test or a development run).
TESTING = "pytest" in sys.modules

DEBUG = env.bool("DEBUG", default=False)

# A fixed development key (never random): web and django-q2 workers must sign
# and verify task payloads with the same key. Used only with DEBUG=true or
# under the test runner; anything else without a SECRET_KEY refuses to start.
_DEV_SECRET_KEY = "insecure-openchargeback-development-key-do-not-use-in-production"  # noqa: S105
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not (DEBUG or TESTING):
        raise ImproperlyConfigured(
            "SECRET_KEY is not set: put a long random value in the environment or .env "
            "(or set DEBUG=true for local development)"
        )
    SECRET_KEY = _DEV_SECRET_KEY

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Where the instance keeps its state: the SQLite database, stored import
# files, statement PDFs and journal exports.
INSTANCE_DIR = Path(env.str("OPENCHARGEBACK_INSTANCE_DIR", default=str(BASE_DIR / "instance")))
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(INSTANCE_DIR / "files")))
MEDIA_URL = "/media/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(INSTANCE_DIR / "static")))
STATIC_URL = "/static/"
STATICFILES_DIRS: list[Path] = []

INSTALLED_APPS = [
    "openchargeback.apps.OpenChargebackAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "crispy_forms",
    "crispy_bootstrap5",
    "django_q",
    "axes",
    "billing",
    "ingest",
    "statements",
    "journals",
    "openchargeback.apps.OpenChargebackConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # Before anything reads a body (the CSRF check does): sizes per path.
    "openchargeback.bodylimit.RequestSizeMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "openchargeback.logging.RequestLogMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it locks out repeated failed logins.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    # Django's ModelBackend, refusing the demo's admin/admin with DEBUG off.
    "openchargeback.auth.SiteBackend",
]

ROOT_URLCONF = "openchargeback.urls"
WSGI_APPLICATION = "openchargeback.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # A site's own templates (e.g. statements/email/body.html) come first.
        "DIRS": [
            *env.list("OPENCHARGEBACK_TEMPLATE_DIRS", default=[]),
            BASE_DIR / "templates",
        ],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------
_DEFAULT_SQLITE = INSTANCE_DIR / "openchargeback.sqlite3"
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{_DEFAULT_SQLITE}")}
_db = DATABASES["default"]
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers run beside one writer; IMMEDIATE takes the write lock
    # at BEGIN so two writers queue on the busy timeout instead of failing
    # half-way with "database is locked".
    _db.setdefault("OPTIONS", {})
    _db["OPTIONS"].update(
        {
            "timeout": env.int("SQLITE_BUSY_TIMEOUT", default=120),
            "transaction_mode": "IMMEDIATE",
            "init_command": (
                "PRAGMA journal_mode=WAL;"
                "PRAGMA synchronous=NORMAL;"
                "PRAGMA foreign_keys=ON;"
                "PRAGMA temp_store=MEMORY;"
            ),
        }
    )
    if _db["NAME"] and _db["NAME"] != ":memory:":
        Path(_db["NAME"]).parent.mkdir(parents=True, exist_ok=True)
elif env.int("DB_POOL_MAX_SIZE", default=0) > 0:
    # A connection pool per process (psycopg_pool): several gunicorn threads
    # or busy workers share up to DB_POOL_MAX_SIZE connections.
    _db["CONN_MAX_AGE"] = 0  # Django requires it with a pool
    _db.setdefault("OPTIONS", {})["pool"] = {
        "min_size": env.int("DB_POOL_MIN_SIZE", default=1),
        "max_size": env.int("DB_POOL_MAX_SIZE", default=0),
        "timeout": env.int("DB_POOL_TIMEOUT", default=30),
    }
else:
    _db.setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    _db.setdefault("CONN_HEALTH_CHECKS", True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
]
if TESTING:
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

# --- Email ----------------------------------------------------------------
if env.str("EMAIL_URL", default=""):  # empty, as in .env.example, means unset
    vars().update(env.email_url("EMAIL_URL"))
else:
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = str(INSTANCE_DIR / "outbox")
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=30)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="billing@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# A failed statement email is retried after 5 min, 15 min, 1 h, 4 h, ...
# (each wait three times the last, at most 12 h) up to this many attempts;
# then it waits for an operator.
OPENCHARGEBACK_EMAIL_MAX_ATTEMPTS = env.int("OPENCHARGEBACK_EMAIL_MAX_ATTEMPTS", default=6)
OPENCHARGEBACK_EMAIL_RETRY_SECONDS = env.int("OPENCHARGEBACK_EMAIL_RETRY_SECONDS", default=300)
# An email claimed ("sending") longer than this is shown as stuck: the worker
# may have died after the mail server took it, so only an operator may resend.
OPENCHARGEBACK_EMAIL_STUCK_SECONDS = env.int("OPENCHARGEBACK_EMAIL_STUCK_SECONDS", default=900)

# --- Forms ----------------------------------------------------------------
CRISPY_ALLOWED_TEMPLATE_PACKS = "bootstrap5"
CRISPY_TEMPLATE_PACK = "bootstrap5"

# --- Background jobs (django-q2) -----------------------------------------
# The ORM broker is named explicitly; timeout < retry so a slow task is
# killed before it would be handed to a second worker.
Q_CLUSTER = {
    "name": "openchargeback",
    "orm": "default",
    "workers": env.int("Q_WORKERS", default=2),
    "timeout": env.int("Q_TIMEOUT", default=600),
    "retry": env.int("Q_RETRY", default=720),
    "max_attempts": env.int("Q_MAX_ATTEMPTS", default=3),
    # Tasks taken from the queue per poll: fewer round trips to the broker.
    "bulk": env.int("Q_BULK", default=1),
    # Results of successful jobs kept (older ones pruned; 0 keeps all).
    "save_limit": env.int("Q_SAVE_LIMIT", default=250),
    "ack_failures": True,
    "catch_up": False,
    "sync": TESTING,
}

# Month-end automation (`openchargeback setup_schedules`, docs/operations.md).
# The inbox: FOCUS files dropped into INBOX_DIR/<source>/ are imported every
# INBOX_MINUTES, once unchanged for INBOX_SETTLE_SECONDS.
OPENCHARGEBACK_INBOX_DIR = Path(
    env.str("OPENCHARGEBACK_INBOX_DIR", default="") or INSTANCE_DIR / "inbox"
)
OPENCHARGEBACK_INBOX_MINUTES = env.int("OPENCHARGEBACK_INBOX_MINUTES", default=10)
OPENCHARGEBACK_INBOX_SETTLE_SECONDS = env.int("OPENCHARGEBACK_INBOX_SETTLE_SECONDS", default=60)
# Daily reminder to reviewers at this hour (TIME_ZONE) while charges are pending.
OPENCHARGEBACK_REMINDER_HOUR = env.int("OPENCHARGEBACK_REMINDER_HOUR", default=8)
# Send the statements of closed months with nothing pending, hourly.
OPENCHARGEBACK_AUTO_SEND = env.bool("OPENCHARGEBACK_AUTO_SEND", default=False)
# The site's address as people reach it (links in reminder emails), e.g.
# https://billing.example.edu
OPENCHARGEBACK_SITE_URL = env.str("OPENCHARGEBACK_SITE_URL", default="")
# On-premises usage converters (docs/integrations/). `slurm-usage` bills jobs
# in these states; FAILED jobs only when they ran at least this many minutes.
OPENCHARGEBACK_SLURM_BILLABLE_STATES = env.list(
    "OPENCHARGEBACK_SLURM_BILLABLE_STATES",
    default=["COMPLETED", "TIMEOUT", "OUT_OF_MEMORY", "FAILED"],
)
OPENCHARGEBACK_SLURM_FAILED_MIN_MINUTES = env.int(
    "OPENCHARGEBACK_SLURM_FAILED_MIN_MINUTES", default=5
)
# `slurm-usage --run-sacct` runs this sacct program, waiting at most this long.
OPENCHARGEBACK_SACCT_COMMAND = env.str("OPENCHARGEBACK_SACCT_COMMAND", default="sacct")
OPENCHARGEBACK_SACCT_TIMEOUT = env.int("OPENCHARGEBACK_SACCT_TIMEOUT", default=600)
# `storage-usage`: the tier of quota rows that name none.
OPENCHARGEBACK_STORAGE_TIER = env.str("OPENCHARGEBACK_STORAGE_TIER", default="standard")
# /healthz answers 503 when the oldest job has waited longer than this (seconds):
# no worker is taking jobs.
OPENCHARGEBACK_HEALTH_QUEUE_MAX_AGE = env.int("OPENCHARGEBACK_HEALTH_QUEUE_MAX_AGE", default=900)
# The admin generates or sends up to this many statements/emails within the
# request; more are queued for the django-q2 workers (openchargeback qcluster).
OPENCHARGEBACK_ADMIN_INLINE_LIMIT = env.int("OPENCHARGEBACK_ADMIN_INLINE_LIMIT", default=200)

# --- Ingest limits ----------------------------------------------------------
# Files larger than this (on disk) are refused before parsing.
OPENCHARGEBACK_INGEST_MAX_FILE_BYTES = env.int(
    "OPENCHARGEBACK_INGEST_MAX_FILE_BYTES", default=4 * 1024**3
)
# Decompressed bytes allowed from a .csv.gz (decompression-bomb guard).
OPENCHARGEBACK_INGEST_MAX_UNCOMPRESSED_BYTES = env.int(
    "OPENCHARGEBACK_INGEST_MAX_UNCOMPRESSED_BYTES", default=16 * 1024**3
)
# Rows parsed and inserted per chunk; memory stays bounded by this.
OPENCHARGEBACK_INGEST_CHUNK_ROWS = env.int("OPENCHARGEBACK_INGEST_CHUNK_ROWS", default=20_000)

# Uploads through the admin's import page: the largest file and the largest
# request (all files dropped together). Previews and imports run on a worker.
OPENCHARGEBACK_UPLOAD_MAX_BYTES = env.int("OPENCHARGEBACK_UPLOAD_MAX_BYTES", default=1024**3)
OPENCHARGEBACK_UPLOAD_MAX_REQUEST_BYTES = env.int(
    "OPENCHARGEBACK_UPLOAD_MAX_REQUEST_BYTES", default=4 * 1024**3
)

# --- Request sizes (openchargeback/bodylimit.py, docs/security.md) ----------
# Every path but the upload endpoint: the largest request body from a
# signed-in user, and from anyone before signing in. Refused (413) from the
# headers, before the body is read.
OPENCHARGEBACK_REQUEST_MAX_BYTES = env.int("OPENCHARGEBACK_REQUEST_MAX_BYTES", default=16 * 1024**2)
OPENCHARGEBACK_ANONYMOUS_REQUEST_MAX_BYTES = env.int(
    "OPENCHARGEBACK_ANONYMOUS_REQUEST_MAX_BYTES", default=64 * 1024
)
# Form fields (not files) held in memory, and uploaded files (other than the
# import page's, which stream to MEDIA_ROOT) held in memory before spooling.
DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440

# SQLite page cache (KiB) used while importing: big enough to hold the
# fingerprint index of a large table, so inserts do not thrash.
OPENCHARGEBACK_SQLITE_IMPORT_CACHE_KIB = env.int(
    "OPENCHARGEBACK_SQLITE_IMPORT_CACHE_KIB", default=128 * 1024
)

# --- Logging --------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="WARNING").upper()
LOG_FORMAT = env.str("LOG_FORMAT", default="keyvalue")  # keyvalue | json
LOG_FILE = env.str("LOG_FILE", default="")
if LOG_FORMAT not in {"keyvalue", "json"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be 'keyvalue' or 'json', not {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "structured": {
            "()": "openchargeback.logging.StructuredFormatter",
            "fmt": LOG_FORMAT,
        },
    },
    "handlers": {
        "default": (
            {"class": "logging.FileHandler", "filename": LOG_FILE, "formatter": "structured"}
            if LOG_FILE
            else {"class": "logging.StreamHandler", "formatter": "structured"}
        ),
    },
    "root": {"handlers": ["default"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "django_q": {"level": env.str("Q_LOG_LEVEL", default="WARNING"), "propagate": True},
    },
}

# --- Login throttling (django-axes) -----------------------------------------
# After AXES_FAILURE_LIMIT failed logins for one user name from one address,
# that pair is locked out for AXES_COOLOFF_MINUTES (a success resets the count).
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=60))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# Behind a reverse proxy, the client address comes from X-Forwarded-For: set
# AXES_PROXY_COUNT to the number of proxies in front of the application.
AXES_IPWARE_PROXY_COUNT = env.int("AXES_PROXY_COUNT", default=0)
AXES_IPWARE_META_PRECEDENCE_ORDER = (
    ["HTTP_X_FORWARDED_FOR", "REMOTE_ADDR"] if AXES_IPWARE_PROXY_COUNT else ["REMOTE_ADDR"]
)

# --- Security (production values come from the environment) ---------------
_PRODUCTION = not DEBUG and not TESTING
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("BEHIND_TLS_PROXY", default=False) else None
)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=_PRODUCTION)
# Load balancers probe the health check over plain HTTP inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000 if _PRODUCTION else 0)
# HSTS covers this host name and its subdomains (*.billing.example.edu), not
# the parent domain.
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=_PRODUCTION)
# Preload is a site's own decision (browsers ship the preload list; leaving
# it takes months), so it is off unless set. Off, Django's deployment check
# warns about it (security.W021): that warning is the decision, not a fault.
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SILENCED_SYSTEM_CHECKS: list[str] = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=_PRODUCTION)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=_PRODUCTION)
SESSION_COOKIE_HTTPONLY = True
if _PRODUCTION:
    # Static files straight from the application: collectstatic puts them in
    # STATIC_ROOT, compressed and with hashed names (development serves them
    # from the apps).
    MIDDLEWARE.insert(1, "whitenoise.middleware.WhiteNoiseMiddleware")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if _PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=8 * 3600)
X_FRAME_OPTIONS = "DENY"
