"""simtopup settings: one module, every knob an environment variable (SIMTOPUP_*).

The README lists every variable. Helpers below read them with types, Healthchecks-style;
``*_FILE`` variants let secrets come from files (Docker/Kubernetes secrets).
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent


def env(name: str, default: str = "") -> str:
    file_path = os.environ.get(f"SIMTOPUP_{name}_FILE")
    if file_path:
        return Path(file_path).read_text().strip()
    return os.environ.get(f"SIMTOPUP_{name}", default)


def envbool(name: str, default: bool) -> bool:
    value = env(name, "1" if default else "0").strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ImproperlyConfigured(f"SIMTOPUP_{name} must be a boolean, not {value!r}")


def envint(name: str, default: int) -> int:
    value = env(name, str(default))
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"SIMTOPUP_{name} must be an integer, not {value!r}") from None


def envlist(name: str, default: str) -> list[str]:
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


DATA_DIR = Path(env("DATA_DIR", str(Path.cwd() / "var"))).resolve()
DEBUG = envbool("DEBUG", False)
SECRET_KEY = env("SECRET_KEY", "")
if not SECRET_KEY:
    # A development default, derived per data directory so it is stable across restarts.
    # Production deployments set SIMTOPUP_SECRET_KEY (checked by `simtopup check --deploy`).
    SECRET_KEY = "insecure-dev-key-" + str(DATA_DIR)
NETWORK_SECRET = env("NETWORK_SECRET", "dev-network-secret")
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1],testserver")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", "")
SITE_URL = env("SITE_URL", "http://127.0.0.1:8000")

# The operator's currency: card credit, reseller floats and plan prices are in it.
CURRENCY = env("CURRENCY", "CNY")
# Pay-per-use tariff used when the database has none yet, in minor units per started MB.
DEFAULT_PAYG_TARIFF_PER_MB = envint("PAYG_TARIFF_PER_MB", 10)

# Fulfilment retry policy (seconds between attempts; the last failure refunds).
FULFILMENT_BACKOFF = [int(s) for s in envlist("FULFILMENT_BACKOFF", "5,30,120,600,3600")]
# How long a fulfilment may stay `fulfilling` before the reconciler takes it over.
FULFILMENT_LEASE_SECONDS = envint("FULFILMENT_LEASE_SECONDS", 120)
WEBHOOK_BACKOFF = [int(s) for s in envlist("WEBHOOK_BACKOFF", "10,60,300,1800,7200,21600")]
WEBHOOK_TIMEOUT_SECONDS = envint("WEBHOOK_TIMEOUT_SECONDS", 10)
RECONCILE_INTERVAL_SECONDS = envint("RECONCILE_INTERVAL_SECONDS", 15)
# Network adapter: "builtin" (grants bundles locally) or a dotted path to an adapter class.
NETWORK_ADAPTER = env("NETWORK_ADAPTER", "builtin")
UPSTREAM_URL = env("UPSTREAM_URL", "")
UPSTREAM_TIMEOUT_SECONDS = envint("UPSTREAM_TIMEOUT_SECONDS", 30)
SIGNATURE_TOLERANCE_SECONDS = 300
IDEMPOTENCY_RETENTION_HOURS = envint("IDEMPOTENCY_RETENTION_HOURS", 48)
IDEMPOTENCY_LEASE_SECONDS = envint("IDEMPOTENCY_LEASE_SECONDS", 60)

# --- customers: one-time codes, senders (accounts/, notifications/) ------------------------

# --- payments: routing, sandbox gateway (payments/) ---------------------------------------

# --- payment providers: stripe, alipay, wechatpay (payments/providers/) --------------------

# --- receipts (orders/receipts.py) ---------------------------------------------------------

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_tasks_db",
    "simtopup.core",
    "simtopup.ledger",
    "simtopup.catalog",
    "simtopup.accounts",
    "simtopup.devices",
    "simtopup.resellers",
    "simtopup.orders",
    "simtopup.payments",
    "simtopup.usage",
    "simtopup.network",
    "simtopup.notifications",
    "simtopup.api",
    "simtopup.backoffice",
    "simtopup.web",
]

MIDDLEWARE = [
    "simtopup.api.middleware.BodySizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "simtopup.urls"
WSGI_APPLICATION = "simtopup.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------
DEFAULT_SQLITE = f"sqlite:///{DATA_DIR / 'simtopup.sqlite3'}"
DATABASE_URL = env("DATABASE_URL", DEFAULT_SQLITE)
_db = dj_database_url.parse(DATABASE_URL, conn_max_age=envint("DB_CONN_MAX_AGE", 60))
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers run beside the writer; IMMEDIATE takes the write lock at BEGIN so two
    # writers queue on the busy timeout instead of failing with "database is locked" when a
    # read transaction tries to upgrade.
    _db["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": envint("SQLITE_BUSY_TIMEOUT", 30),
        "init_command": (
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
            f"PRAGMA busy_timeout={envint('SQLITE_BUSY_TIMEOUT', 30) * 1000};"
        ),
    }
    _db["CONN_MAX_AGE"] = 0 if _db["NAME"] == ":memory:" else _db["CONN_MAX_AGE"]
    # Tests use a file, not :memory:, so that threads and worker processes share it.
    _db["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}
elif _db["ENGINE"] == "django.db.backends.postgresql":
    _db["CONN_HEALTH_CHECKS"] = True
    _db.setdefault("OPTIONS", {})
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

TASKS = {
    "default": {
        "BACKEND": "django_tasks_db.DatabaseBackend",
        "QUEUES": ["default"],
    }
}

CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

# --- i18n -----------------------------------------------------------------------------
LANGUAGE_CODE = "en"
LANGUAGES = [("zh-hans", "简体中文"), ("zh-hant", "繁體中文"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_I18N = True
USE_TZ = True
TIME_ZONE = "UTC"
DISPLAY_TIME_ZONE = env("DISPLAY_TIME_ZONE", "Asia/Shanghai")

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# Request bodies over 1 MiB are refused with 413 before they are read.
MAX_REQUEST_BYTES = 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BYTES

SESSION_COOKIE_SECURE = envbool("SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if envbool("BEHIND_PROXY", False) else None
)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "django_tasks_db": {"level": "WARNING"},
    },
}

STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # also creates DATA_DIR
