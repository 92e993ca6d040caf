"""simtopup settings: one module, every knob an environment variable (SIMTOPUP_*).

The README lists every variable. Helpers below read them with types, Healthchecks-style;
``*_FILE`` variants let secrets come from files (Docker/Kubernetes secrets).
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

from simtopup.core.keyfile import KeyFileError, read_or_create

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
# Secrets that were not set and come from files generated in DATA_DIR: {name: file}. The
# system checks (ops/checks.py) and `serve`'s start-up notes read it.
GENERATED_SECRETS: dict[str, str] = {}


def generated_secret(name: str, filename: str, nbytes: int) -> str:
    """A random secret made once per installation and kept in DATA_DIR/<filename> (mode
    0600), for SIMTOPUP_<name> when it is not set (core/keyfile.py)."""
    path = DATA_DIR / filename
    try:
        value = read_or_create(path, nbytes)
    except (OSError, KeyFileError) as exc:
        raise ImproperlyConfigured(
            f"SIMTOPUP_{name} is not set and {path} cannot be used ({exc}): set"
            f" SIMTOPUP_{name}, or let simtopup write to SIMTOPUP_DATA_DIR"
        ) from None
    GENERATED_SECRETS[name] = str(path)
    return value


# Django's signing key (sessions, CSRF, signed links, one-time code hashes; the sandbox's
# webhook secret and the demo's logins are derived from it). Unset: generated per
# installation. Several hosts serving one installation must all set the same value.
SECRET_KEY = env("SECRET_KEY", "") or generated_secret("SECRET_KEY", "secret_key", 48)
# HMAC secret the network signs its usage reports with (X-Simtopup-Signature).
NETWORK_SECRET = env("NETWORK_SECRET", "") or generated_secret(
    "NETWORK_SECRET", "network_secret", 32
)
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1],testserver")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", "")
SITE_URL = env("SITE_URL", "http://127.0.0.1:8000")
# `serve` on Ctrl-C/SIGTERM: how long the web server and the worker get to finish what they
# are doing before what is left is killed.
SHUTDOWN_GRACE_SECONDS = envint("SHUTDOWN_GRACE_SECONDS", 15)

# The operator's currency: card credit, reseller floats and plan prices are in it.
CURRENCY = env("CURRENCY", "CNY")
# Pay-per-use tariff used when the database has none yet, in minor units per started MB.
DEFAULT_PAYG_TARIFF_PER_MB = envint("PAYG_TARIFF_PER_MB", 10)

# Fulfilment retry policy (seconds between attempts; the last failure refunds).
FULFILMENT_BACKOFF = [int(s) for s in envlist("FULFILMENT_BACKOFF", "5,30,120,600,3600")]
# How long a fulfilment may stay `fulfilling` before the reconciler takes it over.
FULFILMENT_LEASE_SECONDS = envint("FULFILMENT_LEASE_SECONDS", 120)
WEBHOOK_BACKOFF = [int(s) for s in envlist("WEBHOOK_BACKOFF", "10,60,300,1800,7200,21600")]
# The whole of one webhook call (DNS lookup, connect, TLS, sending, the answer), in seconds.
WEBHOOK_TIMEOUT_SECONDS = envint("WEBHOOK_TIMEOUT_SECONDS", 10)
# Reseller webhooks go to https URLs on public addresses only (resellers/webhooks.py); 1, for
# a test installation, also allows plain http and private or loopback addresses.
WEBHOOK_ALLOW_PRIVATE = envbool("WEBHOOK_ALLOW_PRIVATE", False)
# Threads of the worker's webhook lane: deliveries run there, beside payments and fulfilment.
WEBHOOK_WORKERS = envint("WEBHOOK_WORKERS", 4)
RECONCILE_INTERVAL_SECONDS = envint("RECONCILE_INTERVAL_SECONDS", 15)
# How often the worker audits the ledger (check-ledger's checks, one snapshot) and stores the
# result for /metrics; checked on each reconciler pass. 0 turns the scheduled audit off.
LEDGER_AUDIT_INTERVAL_SECONDS = envint("LEDGER_AUDIT_INTERVAL_SECONDS", 300)
# Network adapter: "builtin" (grants bundles locally), "airalo" (resells Airalo's data through
# its Partner API, network/airalo.py), "esimgo" (eSIM Go's API, network/esimgo.py) or a dotted
# path to an adapter class.
NETWORK_ADAPTER = env("NETWORK_ADAPTER", "builtin")
# On PostgreSQL with the builtin adapter, a reseller top-up that will succeed runs as one SQL
# function call (resellers/fast_sale.py); 0 sends every top-up through the general path.
FAST_TOPUP = envbool("FAST_TOPUP", True)
# Airalo Partner API v2 (NETWORK_ADAPTER=airalo): the SDK's base URL is a constant; this one
# is ours to point at (their sandbox, a test server). Client credentials from the Partner
# Platform.
AIRALO_URL = env("AIRALO_URL", "https://partners-api.airalo.com/v2/")
AIRALO_CLIENT_ID = env("AIRALO_CLIENT_ID", "")
AIRALO_CLIENT_SECRET = env("AIRALO_CLIENT_SECRET", "")
# eSIM Go API v2.4 (NETWORK_ADAPTER=esimgo): its base URL and the organisation's API key (which
# also signs its V3 callbacks).
ESIMGO_URL = env("ESIMGO_URL", "https://api.esim-go.com/v2.4/")
ESIMGO_API_KEY = env("ESIMGO_API_KEY", "")
# One call to a wholesale provider waits this long for its answer.
UPSTREAM_TIMEOUT_SECONDS = envint("UPSTREAM_TIMEOUT_SECONDS", 30)
# How often the usage of a card sold through a wholesale provider is read from it (the janitor,
# ops/upstream_usage.py); never more often than the provider allows (Airalo: 10 / min / ICCID).
UPSTREAM_USAGE_INTERVAL_SECONDS = envint("UPSTREAM_USAGE_INTERVAL_SECONDS", 300)
SIGNATURE_TOLERANCE_SECONDS = 300
IDEMPOTENCY_RETENTION_HOURS = envint("IDEMPOTENCY_RETENTION_HOURS", 48)
IDEMPOTENCY_LEASE_SECONDS = envint("IDEMPOTENCY_LEASE_SECONDS", 60)
# Automatic top-up: orders per device per 24 h, and the pause after a failed attempt.
AUTO_TOPUP_DAILY_LIMIT = envint("AUTO_TOPUP_DAILY_LIMIT", 3)
AUTO_TOPUP_RETRY_SECONDS = envint("AUTO_TOPUP_RETRY_SECONDS", 3600)
# Goodwill credit from customer service (devices/goodwill.py): above this many minor units a
# second staff member with the approval permission must approve it.
GOODWILL_APPROVAL_ABOVE = envint("GOODWILL_APPROVAL_ABOVE", 5000)
# Alerts (usage/alerts.py): retries of a channel that failed, seconds; a bundle that ended
# longer ago than this is closed by the expiry job without an `expired` alert (old data).
ALERT_BACKOFF = [int(s) for s in envlist("ALERT_BACKOFF", "30,120,600,3600")]
ALERT_EXPIRED_WINDOW_SECONDS = envint("ALERT_EXPIRED_WINDOW_SECONDS", 86400)
# Web Push (VAPID): the application server's P-256 key is derived from this secret
# (unset: generated per installation); the subject is sent to push services as a contact.
VAPID_SECRET = env("VAPID_SECRET", "") or generated_secret("VAPID_SECRET", "vapid_secret", 32)
VAPID_SUBJECT = env("VAPID_SUBJECT", "mailto:support@example.com")
PUSH_TIMEOUT_SECONDS = envint("PUSH_TIMEOUT_SECONDS", 10)

# --- customers: one-time codes, senders (accounts/, notifications/) ------------------------
# Phone numbers typed without "+<country code>" are read as numbers of this region.
PHONE_DEFAULT_REGION = env("PHONE_DEFAULT_REGION", "CN")
LOGIN_CODE_TTL_SECONDS = envint("LOGIN_CODE_TTL_SECONDS", 600)
LOGIN_CODE_MAX_ATTEMPTS = envint("LOGIN_CODE_MAX_ATTEMPTS", 5)
# Rate limits on code requests, "<count>/<seconds>" each, counted in the database so they
# hold across processes: per phone number / email, and per client IP.
LOGIN_CODE_IDENTITY_LIMITS = envlist("LOGIN_CODE_IDENTITY_LIMITS", "1/60,5/3600")
LOGIN_CODE_IP_LIMITS = envlist("LOGIN_CODE_IP_LIMITS", "20/3600")
# Wrong proofs (PIN or eSIM activation code) when binding a card, per customer and per
# client IP (devices/binding.py); past a limit every binding attempt is refused until the
# window ends.
BIND_PROOF_CUSTOMER_LIMITS = envlist("BIND_PROOF_CUSTOMER_LIMITS", "5/3600")
BIND_PROOF_IP_LIMITS = envlist("BIND_PROOF_IP_LIMITS", "20/3600")
# The request header (META name, e.g. HTTP_X_FORWARDED_FOR) that carries the client IP when
# behind a trusted reverse proxy; its last entry is used. Empty: REMOTE_ADDR.
CLIENT_IP_HEADER = env("CLIENT_IP_HEADER", "")
# Who may read /metrics: a Prometheus bearer token, or a client address in these networks.
METRICS_TOKEN = env("METRICS_TOKEN", "")
METRICS_NETWORKS = envlist("METRICS_NETWORKS", "127.0.0.0/8,::1/128")
# Senders: "console" (prints to the server's output), "memory" (tests), "smtp" (email),
# "http" (SMS), or a dotted path to a sender class.
SMS_SENDER = env("SMS_SENDER", "console")
EMAIL_SENDER = env("EMAIL_SENDER", "console")
EMAIL_FROM = env("EMAIL_FROM", "simtopup <no-reply@localhost>")
SMTP_HOST = env("SMTP_HOST", "localhost")
SMTP_PORT = envint("SMTP_PORT", 587)
SMTP_USER = env("SMTP_USER", "")
SMTP_PASSWORD = env("SMTP_PASSWORD", "")
SMTP_SECURITY = env("SMTP_SECURITY", "starttls")  # starttls | ssl | none
SMTP_TIMEOUT_SECONDS = envint("SMTP_TIMEOUT_SECONDS", 10)
# A CA bundle to verify the SMTP server's certificate (a private CA); empty: the system's.
SMTP_CA_FILE = env("SMTP_CA_FILE", "")
SMS_HTTP_URL = env("SMS_HTTP_URL", "")
SMS_HTTP_API_KEY = env("SMS_HTTP_API_KEY", "")
SMS_HTTP_SIGNING_SECRET = env("SMS_HTTP_SIGNING_SECRET", "")
SMS_HTTP_SENDER_ID = env("SMS_HTTP_SENDER_ID", "")
SMS_HTTP_TIMEOUT_SECONDS = envint("SMS_HTTP_TIMEOUT_SECONDS", 10)

# --- payments: routing, sandbox gateway (payments/) ---------------------------------------

# Which provider serves the payment methods: one for all (sandbox, stripe, alipay, wechatpay),
# and per-method overrides, e.g. "card=stripe,alipay=alipay,wechat_pay=wechatpay".
PAYMENT_PROVIDER = env("PAYMENT_PROVIDER", "sandbox")
PAYMENT_ROUTES = dict(item.split("=", 1) for item in envlist("PAYMENT_ROUTES", "") if "=" in item)
# The sandbox pays any order for free from its hosted page: with DEBUG off, `serve`, `worker`
# and `check --deploy` refuse it unless this says the installation is a test one.
SANDBOX_ALLOWED = envbool("SANDBOX_ALLOWED", False)
# An order not paid within this many seconds is cancelled (a later payment is refunded).
PAYMENT_EXPIRY_SECONDS = envint("PAYMENT_EXPIRY_SECONDS", 1800)
# When the janitor asks the provider about a payment still pending: seconds after creation
# (Kill Bill-like: minutes, then hours).
PAYMENT_QUERY_SCHEDULE = [
    int(s) for s in envlist("PAYMENT_QUERY_SCHEDULE", "60,300,900,3600,21600,86400")
]
# Seconds between retries of a provider refund that could not be made yet.
PAYMENT_REFUND_BACKOFF = [int(s) for s in envlist("PAYMENT_REFUND_BACKOFF", "30,300,1800,7200")]
# How long a quote (price confirmation) holds its price.
QUOTE_TTL_SECONDS = envint("QUOTE_TTL_SECONDS", 900)
# Sandbox gateway: its webhook signing secret (derived from SECRET_KEY when unset, so as
# private as the key), the merchant id it reports, and knobs to exercise real failure modes
# in demos and tests.
SANDBOX_WEBHOOK_SECRET = env("SANDBOX_WEBHOOK_SECRET", "")
SANDBOX_MERCHANT = env("SANDBOX_MERCHANT", "simtopup-sandbox")
SANDBOX_DECLINE_ALL = envbool("SANDBOX_DECLINE_ALL", False)
SANDBOX_WEBHOOK_DELAY_SECONDS = envint("SANDBOX_WEBHOOK_DELAY_SECONDS", 0)
SANDBOX_WEBHOOK_COPIES = envint("SANDBOX_WEBHOOK_COPIES", 1)
SANDBOX_OUT_OF_ORDER = envbool("SANDBOX_OUT_OF_ORDER", False)
# "http": POST to the notify URL like a real gateway; "direct": hand the signed request to
# our own webhook handler in the worker process (no HTTP hop; single-host demos, benchmark).
SANDBOX_WEBHOOK_DELIVERY = env("SANDBOX_WEBHOOK_DELIVERY", "http")
SANDBOX_WEBHOOK_BACKOFF = [int(s) for s in envlist("SANDBOX_WEBHOOK_BACKOFF", "5,30,120,600")]

# --- payment providers: stripe, alipay, wechatpay (payments/providers/) --------------------
# Credentials are never committed: set them in the environment, or give a file with the
# *_FILE variant (SIMTOPUP_ALIPAY_APP_PRIVATE_KEY_FILE=/run/secrets/alipay_app_key.pem).
# PEM keys may be inline (real newlines or "\n" escapes), or bare base64 as Alipay's key tool
# prints them. A provider checks its credentials when it is first used (ImproperlyConfigured).
# Stripe (cards, Alipay and WeChat Pay through Stripe): secret or restricted API key, the
# webhook endpoint's signing secret, optionally a connected account (Connect) to act for.
STRIPE_SECRET_KEY = env("STRIPE_SECRET_KEY", "")
STRIPE_WEBHOOK_SECRET = env("STRIPE_WEBHOOK_SECRET", "")
STRIPE_ACCOUNT = env("STRIPE_ACCOUNT", "")
STRIPE_API_VERSION = env("STRIPE_API_VERSION", "")  # empty: the SDK's pinned version
STRIPE_TIMEOUT_SECONDS = envint("STRIPE_TIMEOUT_SECONDS", 30)
STRIPE_MAX_NETWORK_RETRIES = envint("STRIPE_MAX_NETWORK_RETRIES", 2)
STRIPE_API_BASE = env("STRIPE_API_BASE", "")  # empty: Stripe's own API (https://api.stripe.com)
# Alipay direct (RSA2): the app, its private key and Alipay's public key (public-key mode).
ALIPAY_APP_ID = env("ALIPAY_APP_ID", "")
ALIPAY_APP_PRIVATE_KEY = env("ALIPAY_APP_PRIVATE_KEY", "")
ALIPAY_PUBLIC_KEY = env("ALIPAY_PUBLIC_KEY", "")
# The seller's Alipay user id (2088…); when set, notifications for another seller are refused.
ALIPAY_SELLER_ID = env("ALIPAY_SELLER_ID", "")
ALIPAY_SANDBOX = envbool("ALIPAY_SANDBOX", False)  # Alipay's sandbox gateway
ALIPAY_GATEWAY = env("ALIPAY_GATEWAY", "")  # explicit gateway URL (overrides ALIPAY_SANDBOX)
# "page" (desktop cashier page), "wap" (mobile browser page) or "qr" (precreate: a QR code).
ALIPAY_PAYMENT_MODE = env("ALIPAY_PAYMENT_MODE", "page")
# Notifications whose notify_time is older than this are refused (Alipay retries for ~25 h).
ALIPAY_NOTIFY_MAX_AGE_SECONDS = envint("ALIPAY_NOTIFY_MAX_AGE_SECONDS", 26 * 3600)
ALIPAY_TIMEOUT_SECONDS = envint("ALIPAY_TIMEOUT_SECONDS", 15)
ALIPAY_VERBOSE = envbool("ALIPAY_VERBOSE", False)  # the SDK logs requests (debug only)
# WeChat Pay direct (APIv3, Native QR payments): merchant, app, APIv3 key, merchant API key
# and its certificate serial; then EITHER the WeChat Pay public key and its id (PUB_KEY_ID_…)
# OR a directory of platform certificates (<serial>.pem; downloaded by the SDK when empty).
WECHATPAY_MCHID = env("WECHATPAY_MCHID", "")
WECHATPAY_APPID = env("WECHATPAY_APPID", "")
WECHATPAY_APIV3_KEY = env("WECHATPAY_APIV3_KEY", "")
WECHATPAY_PRIVATE_KEY = env("WECHATPAY_PRIVATE_KEY", "")
WECHATPAY_CERT_SERIAL_NO = env("WECHATPAY_CERT_SERIAL_NO", "")
WECHATPAY_PUBLIC_KEY = env("WECHATPAY_PUBLIC_KEY", "")
WECHATPAY_PUBLIC_KEY_ID = env("WECHATPAY_PUBLIC_KEY_ID", "")
WECHATPAY_CERT_DIR = env("WECHATPAY_CERT_DIR", "")
WECHATPAY_GATEWAY = env("WECHATPAY_GATEWAY", "")  # empty: https://api.mch.weixin.qq.com
# Where WeChat Pay posts refund results (optional: refunds are also settled by their answer).
WECHATPAY_REFUND_NOTIFY_URL = env("WECHATPAY_REFUND_NOTIFY_URL", "")
WECHATPAY_TIMEOUT_SECONDS = envint("WECHATPAY_TIMEOUT_SECONDS", 15)
# WeChat Pay inside WeChat's browser (JSAPI) needs the payer's openid for WECHATPAY_APPID (an
# official account, 公众号): its AppSecret lets the website ask WeChat for it (OAuth
# snsapi_base, silent). Empty: no JSAPI, the website offers the card inside WeChat.
WECHAT_OAUTH_SECRET = env("WECHAT_OAUTH_SECRET", "")
WECHAT_OAUTH_API = env("WECHAT_OAUTH_API", "")  # empty: https://api.weixin.qq.com

# --- receipts (orders/receipts.py) ---------------------------------------------------------
# The operator's name, printed on receipts and shown on the receipt verification page.
OPERATOR_NAME = env("OPERATOR_NAME", "simtopup")
# Font embedded (as a subset) in PDF receipts: a .ttf/.otf/.ttc/.otc file with Chinese glyphs,
# optionally "path#face-index" for a collection. Empty: find Noto Sans CJK (fonts-noto-cjk).
RECEIPT_FONT = env("RECEIPT_FONT", "")

# --- reseller portal (web/agent.py) -----------------------------------------------------------
# Failed staff logins allowed, "<count>/<seconds>" each (fixed windows; an attempt is counted
# before its password is checked, and given back when it was right). Per user name from one
# client address, in longer steps (5 a quarter-hour, 10 an hour, 20 a day; a success clears
# it): a stranger's guesses stop the stranger, not the clerk at another address. Per user name
# from all addresses: a far larger cap against guessing from many addresses. Per client
# address (IPv6 per /64) across user names: against trying many names.
AGENT_LOGIN_USER_IP_LIMITS = envlist("AGENT_LOGIN_USER_IP_LIMITS", "5/900,10/3600,20/86400")
AGENT_LOGIN_USER_LIMITS = envlist("AGENT_LOGIN_USER_LIMITS", "100/3600,300/86400")
AGENT_LOGIN_IP_LIMITS = envlist("AGENT_LOGIN_IP_LIMITS", "30/900,300/86400")

# --- the operator console (backoffice/) ----------------------------------------------------
# Failed staff logins (a wrong password or code), "<count>/<seconds>" each, counted before the
# password is checked and given back when the login succeeds: per user name from one client
# address, per user name from all addresses, per client address (IPv6 per /64).
STAFF_LOGIN_USER_IP_LIMITS = envlist("STAFF_LOGIN_USER_IP_LIMITS", "5/900,10/3600,20/86400")
STAFF_LOGIN_USER_LIMITS = envlist("STAFF_LOGIN_USER_LIMITS", "50/3600,100/86400")
STAFF_LOGIN_IP_LIMITS = envlist("STAFF_LOGIN_IP_LIMITS", "30/900,300/86400")
# A staff login ends after this many minutes without a console request.
STAFF_IDLE_MINUTES = envint("STAFF_IDLE_MINUTES", 30)
# How long a one-time enrolment link (`simtopup staff add` / `staff link`) can be used.
STAFF_ENROL_HOURS = envint("STAFF_ENROL_HOURS", 72)
# The console's dashboard: a reseller float below this many minor units is marked low
# (100000 = ¥1000.00), and an order paid but not fulfilled after this many minutes is stuck.
LOW_FLOAT_THRESHOLD = envint("LOW_FLOAT_THRESHOLD", 100_000)
STUCK_ORDER_MINUTES = envint("STUCK_ORDER_MINUTES", 15)
# Whether a staff member with a password but no authenticator yet may enrol one at the login
# page, with the password alone. Off: such a login is refused (a failed login) and an
# authenticator is enrolled only through a one-time enrolment link.
STAFF_ENROL_AT_LOGIN = envbool("STAFF_ENROL_AT_LOGIN", False)
# The name authenticator apps show beside a staff member's codes.
OTP_TOTP_ISSUER = OPERATOR_NAME
# Passkeys (WebAuthn, django-otp-webauthn) as a staff member's second factor after the password
# (backoffice/passkeys.py reads the site's origin from SITE_URL at each request). Browsers
# offer them only on https:// or on http://localhost: on another plain-http address (the
# default http://127.0.0.1:8000) the console does not offer them, and the library's check of
# that origin is silenced. Never passwordless: the password comes first.
OTP_WEBAUTHN_RP_NAME = OPERATOR_NAME
OTP_WEBAUTHN_RP_ID = urlsplit(SITE_URL).hostname or "localhost"
OTP_WEBAUTHN_ALLOWED_ORIGINS = [f"{urlsplit(SITE_URL).scheme}://{urlsplit(SITE_URL).netloc}"]
OTP_WEBAUTHN_ALLOW_PASSWORDLESS_LOGIN = False
OTP_WEBAUTHN_HELPER_CLASS = "simtopup.backoffice.passkeys.Helper"
SILENCED_SYSTEM_CHECKS = (
    []
    if OTP_WEBAUTHN_ALLOWED_ORIGINS[0].startswith(("https://", "http://localhost"))
    else ["otp_webauthn.E031"]
)

# --- customer service: the help page's contact form (support/, web/help.py) ---------------
# Where new support tickets are emailed (through the email sender); empty: stored and logged only.
SUPPORT_EMAIL = env("SUPPORT_EMAIL", "")
# Rate limits on contact-form messages per client IP, "<count>/<seconds>" each.
SUPPORT_IP_LIMITS = envlist("SUPPORT_IP_LIMITS", "5/3600,20/86400")
# A customer who writes again within this many days continues their unsolved ticket.
SUPPORT_THREAD_DAYS = envint("SUPPORT_THREAD_DAYS", 30)
# Receipt and agent lookups on the public verification pages, per client IP.
VERIFY_IP_LIMITS = envlist("VERIFY_IP_LIMITS", "30/60,300/86400")

INSTALLED_APPS = [
    # django.contrib.admin with the console's two-factor site as admin.site.
    "simtopup.backoffice.admin_config.ConsoleAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # Second factors of staff logins: authenticator apps (TOTP) and recovery codes.
    "django_otp",
    # The libraries' own app configs with their console section names translated
    # (backoffice/library_apps.py): same apps and labels.
    "simtopup.backoffice.library_apps.AuthenticatorAppsConfig",  # django_otp.plugins.otp_totp
    "simtopup.backoffice.library_apps.RecoveryCodesConfig",  # django_otp.plugins.otp_static
    "simtopup.backoffice.library_apps.PasskeysConfig",  # django_otp_webauthn (passkeys)
    "simtopup.backoffice.library_apps.BackgroundTasksConfig",  # django_tasks_db
    "ninja",  # its static files: Swagger UI for /api/docs, served by us (CSP: no CDN)
    "simtopup.core",
    "simtopup.audit",
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
    "simtopup.support",
    # The daily reconciliation of our payments with each provider's statement.
    "simtopup.finance",
    "simtopup.api",
    "simtopup.backoffice",
    "simtopup.web",
    # The worker, serve, demo and the deployment checks: above every domain (ops/__init__.py).
    "simtopup.ops",
]

MIDDLEWARE = [
    # Outermost: every answer (the 413 below, the top-up hot path) carries X-Request-Id, and
    # every log line, problem and webhook of the request its id (core/requestid.py); a
    # regular-expression match or a uuid4 per request.
    "simtopup.core.requestid.RequestIdMiddleware",
    "simtopup.api.middleware.BodySizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Response headers only, so their place among the others changes nothing; outside the
    # top-up hot path below so that its responses carry them too.
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    # Under /api/, /reseller/ and /network/ a plain error answer from any layer below (a 404
    # page, ninja's bare 405) becomes a problem document; inside the header middleware above
    # so that it carries their headers. A crash in any layer goes to handler500
    # (simtopup/errors.py).
    "simtopup.api.middleware.ProblemMiddleware",
    # The reseller top-up hot path (resellers/fast_sale.py, hooked in here): a bearer-key API
    # call that needs no session, language, CSRF, user or messages; any other request goes on.
    "simtopup.api.fast_topup.FastTopupMiddleware",
    # The balance and authorization polls (api/hot_reads.py): answered here when the answer
    # is a plain 200, from the API's own checks, read and body; anything else goes on.
    "simtopup.api.hot_reads.HotReadsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # request.user.is_verified(): the second factor of this session (the console needs it).
    "django_otp.middleware.OTPMiddleware",
    # Staff sessions end after STAFF_IDLE_MINUTES without a console request.
    "simtopup.backoffice.idle.StaffIdleMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "simtopup.urls"
WSGI_APPLICATION = "simtopup.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # Templates that must win over the apps' own: the console's admin/base_site.html
        # (django.contrib.admin, installed first, would otherwise be found first).
        "DIRS": [BASE_DIR / "backoffice" / "overrides"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
                "django.template.context_processors.csp",
                "simtopup.web.context.site",
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
    # Django's backend, with a health check that asks the server only when the socket says
    # something happened or the connection sat idle (simtopup/core/db/postgresql/base.py).
    _db["ENGINE"] = "simtopup.core.db.postgresql"
    _db["CONN_HEALTH_CHECKS"] = True
    _db.setdefault("OPTIONS", {})
    # A database that does not answer (down, restarting, frozen, a dropped network path) is
    # noticed in seconds, not after the operating system's TCP timeouts (minutes): a connect
    # gives up after SIMTOPUP_DB_CONNECT_TIMEOUT seconds, and an idle connection whose server
    # vanished is found dead by TCP keepalives. A URL's own parameters win.
    for _name, _value in (
        ("connect_timeout", envint("DB_CONNECT_TIMEOUT", 5)),
        ("keepalives", 1),
        ("keepalives_idle", 10),
        ("keepalives_interval", 5),
        ("keepalives_count", 3),
    ):
        _db["OPTIONS"].setdefault(_name, _value)
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

TASKS = {
    "default": {
        "BACKEND": "django_tasks_db.DatabaseBackend",
        # "webhooks": reseller webhook deliveries, served by the worker's webhook lane.
        "QUEUES": ["default", "webhooks"],
    }
}

CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

# --- i18n -----------------------------------------------------------------------------
LANGUAGES = [("zh-hans", "简体中文"), ("zh-hant", "繁體中文"), ("en", "English")]
# The site's language when the visitor has chosen none (language cookie) and the browser's
# Accept-Language names none we have: this operator's customers read Chinese.
LANGUAGE_CODE = env("LANGUAGE", "zh-hans").strip().lower()
if LANGUAGE_CODE not in dict(LANGUAGES):
    raise ImproperlyConfigured(
        f"SIMTOPUP_LANGUAGE must be one of {', '.join(dict(LANGUAGES))}, not {LANGUAGE_CODE!r}"
    )
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
# HSTS only when served over HTTPS (secure cookies on): a year, subdomains included.
SECURE_HSTS_SECONDS = envint("HSTS_SECONDS", 31536000 if SESSION_COOKIE_SECURE else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_SECONDS > 0
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_AGE = envint("SESSION_COOKIE_AGE", 30 * 24 * 3600)
LOGIN_URL = "web:login"
# Django's built-in Content Security Policy: no inline script or style without the request's
# nonce (templates: nonce="{{ csp_nonce }}"); forms may post on to payment gateways (https).
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF, CSP.NONCE],
    "img-src": [CSP.SELF, "data:"],
    "font-src": [CSP.SELF],
    "connect-src": [CSP.SELF],
    "manifest-src": [CSP.SELF],
    "worker-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF, "https:"],
}
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if envbool("BEHIND_PROXY", False) else None
)

# "plain" (a line of text) or "json" (one JSON object per line with the request id, for a log
# collector: core/logformat.py).
LOG_FORMAT = env("LOG_FORMAT", "plain").strip().lower()
if LOG_FORMAT not in {"plain", "json"}:
    raise ImproperlyConfigured(f"SIMTOPUP_LOG_FORMAT must be plain or json, not {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "simtopup.core.logformat.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "django_tasks_db": {"level": "WARNING"},
    },
}

STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # also creates DATA_DIR
