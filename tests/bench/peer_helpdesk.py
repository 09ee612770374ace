"""django-helpdesk's side of the peer benchmark (peer.py): its virtualenv, its Django project, its phases.

Installed by ``ensure_venv`` (pip, the exact versions in PINS) into a cached
virtualenv; the phases here run under that virtualenv's interpreter (peer.py
--child), which has Django and django-helpdesk and not mailcase: they import
Django's modules by name, and this module imports only the standard library.

  peer-prep  ``migrate`` into the database every peer phase starts from;
  peer       one IMAP Queue, then ``helpdesk.email.process_email()`` timed
             (what ``manage.py get_email`` runs, without Django's start-up);
             checked and counted afterwards: mails left on the server, tickets,
             follow-ups, attachment files, what it logged at WARNING and above,
             and text it damaged (U+FFFD where it decoded a non-UTF-8 message
             as UTF-8; UTF-8 read as Latin-1 where it decoded a part with
             ``unicode_escape``).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

#: django-helpdesk and everything it installs, exactly (pip freeze of a fresh install)
PINS = (
    "django-helpdesk==2.6.1", "Django==5.2.19", "asgiref==3.13.0", "beautifulsoup4==4.15.0",
    "certifi==2026.10.19.post1", "charset-normalizer==3.5.3", "django-cleanup==9.0.0",
    "django-model-utils==5.0.0", "djangorestframework==3.18.3", "email-reply-parser==0.5.12", "idna==3.21",
    "Markdown==3.11.3", "nh3==0.3.8", "oauthlib==4.0.1", "requests==2.34.2", "requests-oauthlib==2.0.0",
    "soupsieve==4.1.4", "sqlparse==0.6.1", "typing_extensions==4.16.0", "urllib3==2.8.0",
)
QUEUE_SLUG = "support"

SETTINGS = '''"""A minimal Django project for django-helpdesk (written by mailcase's tests/bench/peer.py)."""
import os

SECRET_KEY = "mailcase-bench-peer"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.sites",
    "django.contrib.humanize",
    "rest_framework",
    "helpdesk",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "benchdesk.urls"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "DIRS": [],
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
DATABASES = {"default": {
    "ENGINE": "django.db.backends.sqlite3",
    "NAME": os.environ["BENCH_PEER_DB"],
    # as mailcase's SQLite: write-ahead log, every commit synced
    "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL"},
}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
SITE_ID = 1
STATIC_URL = "/static/"
MEDIA_ROOT = os.environ["BENCH_PEER_MEDIA"]
MEDIA_URL = "/media/"
DEFAULT_FROM_EMAIL = "support@support.example"
# the notifications helpdesk composes are rendered, then dropped (mailcase's figures send nothing either)
EMAIL_BACKEND = "django.core.mail.backends.dummy.EmailBackend"
HELPDESK_TEAMS_MODE_ENABLED = False  # teams need pinax-teams
# every attachment kept, as mailcase keeps them (by default .zip, .xlsx and others are refused)
HELPDESK_VALIDATE_ATTACHMENT_TYPES = False
'''
URLS = '''from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("helpdesk.urls", namespace="helpdesk")),
]
'''


def cache_root() -> Path:
    env = os.environ.get("MAILCASE_BENCH_CACHE")
    return Path(env) / "peer" if env else Path("/tmp/mailcase-bench-peer")


def ensure_venv(cache: Path) -> Path:
    """django-helpdesk's virtualenv (made once per pins and Python version); its interpreter."""
    key = hashlib.sha256(json.dumps([PINS, platform.python_version()]).encode()).hexdigest()[:12]
    venv = cache / f"venv-{key}"
    python = venv / "bin" / "python"
    if (venv / ".complete").exists():
        return python
    shutil.rmtree(venv, ignore_errors=True)  # a half-made one
    cache.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    print(f"peer: making django-helpdesk's virtualenv {venv} ({PINS[0]})...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input", *PINS],
                         capture_output=True, text=True)
    if pip.returncode != 0:
        raise RuntimeError(f"pip could not install django-helpdesk's virtualenv:\n{pip.stdout[-3000:]}{pip.stderr[-3000:]}")
    (venv / ".complete").write_text("\n".join(PINS) + "\n")
    print(f"peer: virtualenv ready in {time.perf_counter() - t0:.0f} s", flush=True)
    return python


def write_project(where: Path) -> Path:
    """The Django project (package ``benchdesk``) in ``where``; returns ``where``."""
    pkg = where / "benchdesk"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "settings.py").write_text(SETTINGS)
    (pkg / "urls.py").write_text(URLS)
    return where


def _django_setup(spec: dict[str, Any], db: Path) -> None:
    """Point the generated project at ``db`` and start Django (django-helpdesk's interpreter)."""
    media = Path(spec["workdir"]) / "media"
    media.mkdir(exist_ok=True)
    os.environ.update(DJANGO_SETTINGS_MODULE="benchdesk.settings", BENCH_PEER_DB=str(db),
                      BENCH_PEER_MEDIA=str(media))
    sys.path.insert(0, spec["project"])
    # django and helpdesk exist only in the peer's virtualenv: imported by name
    importlib.import_module("django").setup()


def phase_peer_prep(spec: dict[str, Any], timed: Any) -> dict[str, Any]:
    """The migrated database every peer phase starts from (not a figure)."""
    db = Path(spec["db"])
    _django_setup(spec, db)
    call_command = importlib.import_module("django.core.management").call_command
    timed(lambda: call_command("migrate", verbosity=0, interactive=False))
    templates = importlib.import_module("helpdesk.models").EmailTemplate.objects.count()
    # one file, no write-ahead log beside it: copied as it is
    importlib.import_module("django.db").connection.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return {"count": templates, "ok": templates > 0, "check": f"migrated; {templates} e-mail templates"}


class _Collect(logging.Handler):
    """Keeps what helpdesk logs at WARNING and above, grouped."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage().split("\n")[0]
        key = f"{record.levelname} {text[:120]}"
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            key += f" [{type(exc).__name__}: {str(exc)[:100]}]"
        self.seen[key] = self.seen.get(key, 0) + 1


def _left_on_server(spec: dict[str, Any]) -> int:
    import imaplib

    imap = imaplib.IMAP4("127.0.0.1", spec["port"])
    imap.login(spec["user"], Path(spec["password_file"]).read_text().strip())
    imap.select("INBOX", readonly=True)
    data = imap.search(None, "NOT", "DELETED")[1]
    imap.logout()
    return len(data[0].split()) if data and data[0] else 0


def _damage(text: str) -> str | None:
    """How helpdesk damaged a text, if it did: replacement characters (bytes that were not
    UTF-8, decoded as UTF-8), or UTF-8 read as Latin-1 (a part decoded with unicode_escape)."""
    if "\ufffd" in text:
        return "U+FFFD"
    if text.isascii():
        return None
    try:
        text.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return None
    return "UTF-8 as Latin-1"


def phase_peer(spec: dict[str, Any], timed: Any) -> dict[str, Any]:
    """django-helpdesk's process_email (what ``manage.py get_email`` runs) on one IMAP queue."""
    db = Path(spec["workdir"]) / "helpdesk.db"
    shutil.copyfile(spec["template_db"], db)
    _django_setup(spec, db)
    models = importlib.import_module("helpdesk.models")
    process_email = importlib.import_module("helpdesk.email").process_email
    models.Queue.objects.create(
        title="Support", slug=QUEUE_SLUG, email_address="support@support.example",
        allow_email_submission=True, email_box_type="imap", email_box_host="127.0.0.1",
        email_box_port=spec["port"], email_box_ssl=False, email_box_user=spec["user"],
        email_box_pass=Path(spec["password_file"]).read_text().strip(), email_box_imap_folder="INBOX",
        email_box_interval=0, logging_type="warn",  # its warnings and errors, kept by _Collect
    )
    collect = _Collect()
    for name in (f"django.helpdesk.queue.{QUEUE_SLUG}", "helpdesk"):
        logging.getLogger(name).addHandler(collect)
    timed(lambda: process_email(quiet=True))
    n = spec["n"]
    left = _left_on_server(spec)
    imported = n - left
    followups = models.FollowUp.objects.count()
    by_email = models.FollowUp.objects.exclude(message_id__isnull=True).exclude(message_id="").count()
    tickets = models.Ticket.objects.count()
    attachments = models.FollowUpAttachment.objects.count()
    notified = models.FollowUp.objects.exclude(email_recipients=[]).count()
    crashed = sum(v for k, v in collect.seen.items() if "Queue processing failed" in k)
    damaged: dict[str, int] = {}
    for what, texts in (("text", models.FollowUp.objects.values_list("comment", flat=True)),
                        ("subject", models.Ticket.objects.values_list("title", flat=True))):
        for text in texts:
            if how := _damage(text or ""):
                damaged[f"{what} {how}"] = damaged.get(f"{what} {how}", 0) + 1
    ok = imported > 0 and followups == by_email == imported and not crashed
    return {
        "count": imported, "ok": ok, "imported": imported, "left": left, "tickets": tickets,
        "followups": followups, "attachments": attachments, "notified": notified, "logged": collect.seen,
        "damaged": damaged,
        "check": f"{imported} of {n} mails imported ({left} left on the server): {tickets} tickets,"
                 f" {followups} follow-ups ({by_email} from e-mail), {attachments} attachment files,"
                 f" {notified} follow-ups with a notification composed; "
                 f"{sum(collect.seen.values())} warnings/errors logged; damaged: "
                 + (", ".join(f"{v} {k}" for k, v in sorted(damaged.items())) or "none"),
    }
